#!/usr/bin/env python
"""Training throughput of qa.trainer.train: batches padded to their longest member against --pad_to_max_length.

    python benchmarks/bench_train.py --out benchmarks/results
    python benchmarks/bench_train.py --out /tmp/bench --steps 40 --batch-size 8 --hidden-size 256 --threads 2

Same data (real SQuAD 2.0 questions, ../shared/data/squad/squad2-dev-normans-rhine.json: short
contexts, ~150 tokens, in windows of the guide's max_seq_length 384), same model (an ALBERT of
a few million parameters, random weights, CPU), same steps; only the padding differs. Prints
a table and writes OUT/train.json.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad" / "squad2-dev-normans-rhine.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for train.json")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="SQuAD-format JSON to train on")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps timed per setting")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared machine)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per setting, alternating; the fastest is kept")
    args = p.parse_args(argv)
    if not os.path.exists(args.data):
        p.error(f"--data {args.data}: no such file (the real SQuAD subset lives in ../shared/data/squad/)")
    return args


def train_args(output_dir, steps, batch_size, pad_to_max_length):
    """The namespace qa.trainer.train reads: run_squad's defaults, no evaluation, no checkpoints."""
    from qa.args import parse_args as run_squad_args

    args = run_squad_args(["--model_name_or_path", "unused", "--output_dir", output_dir, "--do_train",
                           "--train_file", "unused", "--report_to", "none"])
    args.max_steps, args.per_gpu_train_batch_size = steps, batch_size
    args.logging_steps = args.save_steps = 10**9
    args.pad_to_max_length = pad_to_max_length
    return args


def run(features, model_dir, steps, batch_size, pad_to_max_length, tokenizer):
    import torch
    from transformers import AutoModelForQuestionAnswering

    from qa import trainer
    from qa.runlog import RunLogger

    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    runtime = trainer.Runtime(device=torch.device("cpu"))
    with tempfile.TemporaryDirectory() as out:
        args = train_args(out, steps, batch_size, pad_to_max_length)
        log = RunLogger(out, report_to=["none"])
        # One warm-up step outside the timing (allocator, kernels).
        trainer.train(train_args(out, 1, batch_size, pad_to_max_length), model, tokenizer, features, runtime, log)
        started = time.perf_counter()
        trainer.train(args, model, tokenizer, features, runtime, log)
        seconds = time.perf_counter() - started
        log.close()
    order = trainer.epoch_order(len(features), 0, args.seed)[: steps * batch_size]
    widths = [features.batch(b, pad_to_max_length)["input_ids"].shape[1] for b in trainer.micro_batches(order, batch_size)]
    return {"padding": "max_length" if pad_to_max_length else "dynamic", "steps": steps, "seconds": round(seconds, 3),
            "features_per_s": round(steps * batch_size / seconds, 2), "mean_batch_width": round(sum(widths) / len(widths), 1)}


def main(argv=None):
    args = parse_args(argv)
    import torch
    import transformers

    import make_tiny_model
    from qa.features import FeatureParams, build_features
    from qa.squad_io import read_squad

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as model_dir:
        make_tiny_model.build(model_dir, make_tiny_model.squad_texts(args.data), vocab_size=3000,
                              hidden_size=args.hidden_size, layers=args.layers, heads=4)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        examples = read_squad(args.data)
        features = build_features(examples, tokenizer, FeatureParams(args.max_seq_length, 128, 64), training=True)
        params = sum(p.numel() for p in transformers.AutoModelForQuestionAnswering.from_pretrained(model_dir).parameters())
        runs = [run(features, model_dir, args.steps, args.batch_size, pad, tokenizer)
                for _ in range(args.repeats) for pad in (False, True)]
        results = [min((r for r in runs if r["padding"] == name), key=lambda r: r["seconds"])
                   for name in ("dynamic", "max_length")]
    speedup = results[0]["features_per_s"] / results[1]["features_per_s"]
    report = {
        "benchmark": "train", "device": "cpu", "threads": args.threads, "data": os.path.basename(args.data),
        "features": len(features), "max_seq_length": args.max_seq_length, "batch_size": args.batch_size,
        "model": {"type": "albert", "hidden_size": args.hidden_size, "layers": args.layers, "parameters": params},
        "repeats": args.repeats, "results": results, "dynamic_padding_speedup": round(speedup, 2),
    }
    print(f"training throughput, CPU x{args.threads} threads, ALBERT {params / 1e6:.1f} M params, batch {args.batch_size}, "
          f"max_seq_length {args.max_seq_length}, {args.steps} steps")
    print(f"{'padding':<12} {'mean width':>10} {'seconds':>8} {'features/s':>11}")
    for r in results:
        print(f"{r['padding']:<12} {r['mean_batch_width']:>10} {r['seconds']:>8} {r['features_per_s']:>11}")
    print(f"dynamic padding: {speedup:.2f}x the throughput of padding to max length")
    os.makedirs(args.out, exist_ok=True)
    from qa.storage import atomic_write

    with atomic_write(os.path.join(args.out, "train.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
