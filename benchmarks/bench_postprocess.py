"""Post-processing speed: qa.postprocess (numpy) against the legacy per-window Python loop.

    .venv/bin/python benchmarks/bench_postprocess.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_postprocess.py --out /tmp/bench --features 2000 --seq-len 384 --repeat 1

Random logits for N windows of L tokens (1-4 overlapping windows per example, questions of
3-10 tokens, random max-context masks), the same inputs for both. The legacy loop is the
plain-Python reference of tests/test_postprocess.py (`legacy_postprocess`), given its inputs
as Python lists and dicts already (the legacy script held them so); converting them is not
timed, which favours the legacy side. Both must give the same predictions, or this exits 1.
Writes OUT/postprocess.json.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from test_postprocess import legacy_inputs, legacy_postprocess, random_case  # noqa: E402

from qa.postprocess import postprocess_predictions  # noqa: E402
from qa.storage import atomic_write  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for postprocess.json")
    p.add_argument("--features", type=int, default=10_000, help="windows (default 10,000)")
    p.add_argument("--seq-len", type=int, default=384, help="tokens per window (default 384, the guide's)")
    p.add_argument("--n-best-size", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3, help="timed runs of the vectorised code; the best is kept")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("features", "n_best_size", "max_answer_length", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seq_len < 16:
        p.error("--seq-len must be at least 16 (a question of up to 10 tokens plus 3 special tokens)")
    return args


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    examples, features, start, end = random_case(rng, args.features, seq_len=args.seq_len, trim=False)
    params = dict(n_best_size=args.n_best_size, max_answer_length=args.max_answer_length)

    ours = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = postprocess_predictions(examples, features, start, end, **params)
        ours.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    windows = legacy_inputs(features, start, end)
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    legacy_preds = legacy_postprocess(examples, windows, version_2_with_negative=True,
                                      null_score_diff_threshold=0.0, **params)[0]
    legacy_s = time.perf_counter() - t0
    agree = legacy_preds == result.predictions

    ours_s = min(ours)
    report = {
        "features": len(features.example_index),
        "examples": len(examples),
        "seq_len": args.seq_len,
        "n_best_size": args.n_best_size,
        "max_answer_length": args.max_answer_length,
        "legacy_loop_s": round(legacy_s, 4),
        "legacy_input_conversion_s_untimed": round(convert_s, 4),
        "vectorised_s": round(ours_s, 4),
        "vectorised_runs_s": [round(t, 4) for t in ours],
        "speedup": round(legacy_s / ours_s, 1),
        "vectorised_features_per_s": round(len(features.example_index) / ours_s),
        "predictions_agree": agree,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
    }
    print(f"post-processing {report['features']:,} windows x {args.seq_len} tokens "
          f"({report['examples']:,} examples), n_best_size {args.n_best_size}")
    print(f"{'implementation':<28}{'seconds':>10}{'windows/s':>12}{'speedup':>9}")
    print(f"{'legacy loop (Python)':<28}{legacy_s:>10.3f}{report['features'] / legacy_s:>12,.0f}{1.0:>8.1f}x")
    print(f"{'qa.postprocess (numpy)':<28}{ours_s:>10.3f}{report['features'] / ours_s:>12,.0f}{report['speedup']:>8.1f}x")
    print(f"predictions agree: {agree}")
    os.makedirs(args.out, exist_ok=True)
    with atomic_write(os.path.join(args.out, "postprocess.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
