#!/usr/bin/env python
"""Export a trained model (the final model or a checkpoint) to ONNX, and call the export good only if it scores the same.

    python scripts/export_onnx.py -- outputs/nq-albert-xlarge-v2                     # the run's model -> RUN/onnx
    python scripts/export_onnx.py --checkpoint checkpoint-1500 -- outputs/nq-albert   # -> RUN/onnx-checkpoint-1500
    python scripts/export_onnx.py --out deploy/onnx --predict_file data/squad/dev-v2.0.json -- outputs/run
    python scripts/export_onnx.py --check-only -- outputs/run/onnx                   # check an export again
    make export [CKPT=checkpoint-1500|best|final] [ONNX_DIR=deploy/onnx]

The folder written holds model.onnx, the tokenizer files, config.json and qa_config.json (the windows and the
tuned null threshold the model was evaluated with), so `make ask MODEL_DIR=...`, `scripts/ask.py`,
`scripts/predict_nq.py` and anything calling qa.inference.load_inference_model run it through onnxruntime.

Before the folder is put in place, both models are evaluated on the same windows of the run's dev file (its
--predict_file, or --predict_file here) and timed: when exact or F1 (at the tuned threshold, or of the best
non-null answers, every question answered) differ by more than 0.1 points, or a logit by more than 1e-3 of the
logits' scale, the export is refused (exit 1) and nothing is written; an earlier export at the same place is left as it was. The scores and
windows/s of both go into the export's onnx_check.json. The folder is written atomically, ONNX_COMPLETE (its
files' sizes and hashes) last.
"""

import argparse
import json
import os
import sys

from qa import run_dir
from qa.onnx_export import CHECK_FILE, LOGIT_TOLERANCE, ONNX_MARKER, TOLERANCE, check_export, describe_check, export_onnx
from qa.run_dir import CheckpointError
from qa.storage import atomic_folder

DIFFERS = (f"exact or F1 (at the threshold, or always answering) differs from the PyTorch model's by more than "
           f"{TOLERANCE} points, or a logit by more than {LOGIT_TOLERANCE} of their scale")


class ExportRejected(Exception):
    """The export's scores differ from the model's by more than TOLERANCE."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a run's output folder or a model folder (with --check-only: an export)")
    p.add_argument("--checkpoint", default=None,
                   help="which model of the run: checkpoint-N, a path, best or final (default: the run's model, as make eval)")
    p.add_argument("--out", default=None, help="where the export goes (default: RUN/onnx, or RUN/onnx-checkpoint-N)")
    p.add_argument("--predict_file", default=None, help="the dev file both models are scored on (default: the run's)")
    p.add_argument("--max_eval_samples", type=int, default=None, help="score on the first N questions only")
    p.add_argument("--per_device_eval_batch_size", type=int, default=32, help="windows per forward pass (default 32)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for both models (default: torch's own)")
    p.add_argument("--check-only", action="store_true", help="check an existing export against the model it came from")
    args = p.parse_args(argv)
    if not os.path.isdir(args.folder):
        p.error(f"{args.folder}: no such folder")
    for name in ("max_eval_samples", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.check_only and (args.checkpoint or args.out):
        p.error("--check-only checks the export FOLDER against the model it was exported from: no --checkpoint or --out")
    return args


def run_predict_file(model_dir):
    """The dev file the run of model_dir evaluated on: its args.json (a final model) or trainer_state.json (a checkpoint)."""
    recorded = run_dir.read_args(model_dir) or run_dir.read_args(os.path.dirname(os.path.abspath(model_dir))) or {}
    if os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE)):
        recorded = run_dir.load_train_state(model_dir).get("args") or recorded
    return recorded.get("predict_file")


def default_out(model_dir):
    model_dir = os.path.normpath(model_dir)
    if run_dir.has_final_model(model_dir) and not os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE)):
        return os.path.join(model_dir, "onnx")
    return os.path.join(os.path.dirname(model_dir), "onnx-" + os.path.basename(model_dir))


def check(model_dir, onnx_dir, predict_file, args):
    report = check_export(model_dir, onnx_dir, predict_file, args.max_eval_samples, args.per_device_eval_batch_size,
                          args.threads)
    print("\n".join(describe_check(report)))
    return report


def check_only(args):
    config = run_dir.read_json(os.path.join(args.folder, run_dir.QA_CONFIG_FILE)) or {}
    previous = run_dir.read_json(os.path.join(args.folder, CHECK_FILE)) or {}
    model_dir = config.get("exported_from")
    predict_file = args.predict_file or previous.get("predict_file")
    if not model_dir or not os.path.isdir(model_dir) or not predict_file:
        print(f"export_onnx.py: {args.folder}: the model it was exported from ({model_dir}) or its dev file "
              f"({predict_file}) is not known or not here; export again", file=sys.stderr)
        return 2
    report = check(model_dir, args.folder, predict_file, args)
    if not report["passed"]:
        print(f"export_onnx.py: {args.folder} does NOT score like {model_dir}: {DIFFERS}; export it again",
              file=sys.stderr)
        return 1
    print(f"{args.folder} scores like {model_dir}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.check_only:
        return check_only(args)
    try:
        model_dir = run_dir.resolve_model(args.checkpoint, args.folder)
    except CheckpointError as exc:
        print(f"export_onnx.py: {exc}", file=sys.stderr)
        return 2
    predict_file = args.predict_file or run_predict_file(model_dir)
    if not predict_file or not os.path.isfile(predict_file):
        print(f"export_onnx.py: the dev file to compare the two models on ({predict_file or 'none recorded'}) is not "
              "here: give --predict_file (make export PREDICT_FILE=...)", file=sys.stderr)
        return 2
    out = args.out or default_out(model_dir)
    print(f"exporting {model_dir} to {out}, checked on {predict_file}")
    try:
        with atomic_folder(out, marker=ONNX_MARKER) as tmp:
            export_onnx(model_dir, tmp)
            report = check(model_dir, tmp, predict_file, args)
            if not report["passed"]:
                raise ExportRejected()
            with open(os.path.join(tmp, CHECK_FILE), "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
    except ExportRejected:
        print(f"export_onnx.py: refused: the export's {DIFFERS}; nothing was written to {out}", file=sys.stderr)
        return 1
    print(f"wrote {out}: scores like {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
