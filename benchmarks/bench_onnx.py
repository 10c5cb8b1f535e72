"""CPU inference speed of an ONNX export (onnxruntime) against the PyTorch model it came from, on the same windows.

    .venv/bin/python benchmarks/bench_onnx.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_onnx.py --out /tmp/bench --questions 16 --threads 1

A model of albert-base-v2's shape (hidden 768, 12 layers, 12 heads, feed-forward 3072, embeddings 128) built
here with random weights and a WordPiece tokenizer trained on the real SQuAD records (../shared/data/squad;
no download), exported by qa.onnx_export.export_onnx and measured by qa.onnx_export.check_export: the first
QUESTIONS questions of squad2-dev-normans-rhine.json cut into windows of 384 tokens (stride 128), each model
predicting all of them (length order, batches of BATCH, the same thread count for both), timed around
qa.inference.predict_logits. Also reported: the largest logit difference between the two, and whether their
exact/F1 agree within 0.1 (random weights: the scores themselves mean nothing). Writes OUT/onnx.json.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "squad" / "squad2-dev-normans-rhine.json"
SHAPE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, embedding_size=128)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for onnx.json")
    p.add_argument("--questions", type=int, default=48, help="questions of the dev file to cut into windows (default 48)")
    p.add_argument("--batch", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--threads", type=int, default=None, help="threads for both (default: torch's own)")
    args = p.parse_args(argv)
    for name in ("questions", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if not DATA.exists():
        p.error(f"{DATA}: the real SQuAD records are not here (../shared/data beside the checkout)")
    return args


def build_model(folder):
    """albert-base-v2's shape, random weights, a tokenizer of the real records; qa_config.json with the guide's windows."""
    import torch
    from transformers import AlbertConfig, AlbertForQuestionAnswering

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_tiny_model

    tokenizer = make_tiny_model.train_tokenizer(make_tiny_model.squad_texts(str(DATA)), vocab_size=8000)
    torch.manual_seed(0)
    model = AlbertForQuestionAnswering(AlbertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **SHAPE))
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    with open(os.path.join(folder, "qa_config.json"), "w", encoding="utf-8") as f:
        json.dump({"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64}, f)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from qa.onnx_export import check_export, describe_check, export_onnx
    from qa.storage import atomic_write

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, export_dir = os.path.join(tmp, "model"), os.path.join(tmp, "onnx")
        os.makedirs(model_dir), os.makedirs(export_dir)
        build_model(model_dir)
        export_onnx(model_dir, export_dir)
        onnx_mb = os.path.getsize(os.path.join(export_dir, "model.onnx")) / 2**20
        report = check_export(model_dir, export_dir, str(DATA), args.questions, args.batch, args.threads)
    print(f"albert-base-v2 shape, {report['windows']} windows (384 tokens, stride 128) of {report['questions']} "
          f"questions, batch {args.batch}, {report['threads']} thread(s), CPU; model.onnx {onnx_mb:.0f} MB")
    print("\n".join(describe_check(report)))
    speedup = report["pytorch"]["seconds"] / report["onnx"]["seconds"]  # the same windows: the ratio of windows/s
    print(f"onnxruntime / PyTorch: {speedup:.2f}x windows/s; scores agree: {report['passed']}")
    result = {"benchmark": "onnx", "shape": SHAPE, "batch": args.batch, "torch": torch.__version__,
              "cpu": platform.processor(), "cpus": os.cpu_count(), "onnx_mb": round(onnx_mb, 1), "speedup": speedup,
              **report}
    os.makedirs(args.out, exist_ok=True)
    with atomic_write(os.path.join(args.out, "onnx.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
