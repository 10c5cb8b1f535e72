#!/usr/bin/env python
"""Print a run's scores beside the all-no-answer baseline; fail when it did not learn enough.

    python scripts/demo_summary.py outputs/demo/run data/demo/dev.json
    python scripts/demo_summary.py RUN_DIR DEV_JSON --min-gain 20
    python scripts/demo_summary.py outputs/demo/run data/demo/dev.json \
        --nq-results outputs/demo/run/eval/nq-400/nq_eval_results_400.json

The baseline answers "" to every question: on SQuAD 2.0-style data it scores the share of
unanswerable questions, which a model that learnt nothing reaches by always abstaining. The
demo passes when the model's F1 (at the default null threshold 0) beats the baseline's by at
least --min-gain points; the exit status is 1 otherwise, so `make demo` fails visibly.

Those SQuAD-style scores are an oracle: each question comes with its gold paragraph. With
--nq-results (the nq_eval_results_<step>.json of scripts/predict_nq.py) the official NQ long and
short answer F1 of the same model on whole documents, where it must find that paragraph among the
page's candidates, are printed beside them (informative: they do not decide the exit status).
"""

import argparse
import json
import sys

from qa.metrics import evaluate
from qa.run_dir import eval_steps, read_eval_results
from qa.squad_io import read_squad

ROWS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_f1", "best_f1_thresh")


def final_results(run_dir):
    """eval_results of the newest evaluation step in run_dir (the final model's, after training)."""
    steps = eval_steps(run_dir)
    if not steps:
        raise SystemExit(f"{run_dir}: no eval_results_<step>.json; did training and evaluation finish?")
    return steps[-1], read_eval_results(run_dir, steps[-1])


def baseline_results(dev_file):
    examples = read_squad(dev_file)
    return evaluate(examples, {ex.qas_id: "" for ex in examples})


def format_table(step, model, baseline):
    lines = [f"{'metric':<16}{'model (step ' + str(step) + ')':>18}{'all no-answer':>16}", "-" * 50]
    for name in ROWS:
        if name in model:
            base = baseline.get(name, "")
            base = f"{base:.2f}" if isinstance(base, float) else base
            lines.append(f"{name:<16}{model[name]:>18.2f}{base:>16}")
    return "\n".join(lines)


NQ_ROWS = (("long answer", "long"), ("short answer", "short"))


def read_nq_results(path):
    """The official NQ metrics dict written by scripts/predict_nq.py; SystemExit saying what to do."""
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file; run scripts/predict_nq.py first (it writes nq_eval_results_<step>.json)") from None
    except ValueError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc}); run scripts/predict_nq.py again") from None
    missing = [f"{key}-best-threshold-f1" for _, key in NQ_ROWS if f"{key}-best-threshold-f1" not in results]
    if missing:
        raise SystemExit(f"{path}: no {', '.join(missing)}: not the output of the NQ evaluation (qa.nq_eval)")
    return results


def format_nq(squad, nq):
    """Oracle (gold paragraph given, SQuAD-style F1 in points) beside whole document (official NQ F1, in points)."""
    lines = [f"{'':<16}{'oracle paragraph':>18}{'whole document':>16}", "-" * 50,
             f"{'F1 (SQuAD-style)':<16}{squad['f1']:>18.2f}{'':>16}"]
    for label, key in NQ_ROWS:
        precision, recall = nq[f"{key}-best-threshold-precision"], nq[f"{key}-best-threshold-recall"]
        lines.append(f"{'NQ ' + label + ' F1':<16}{'':>18}{100 * nq[f'{key}-best-threshold-f1']:>16.2f}"
                     f"   (P {100 * precision:.2f}, R {100 * recall:.2f})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("dev_file")
    parser.add_argument("--min-gain", type=float, default=20.0, help="F1 points the model must beat the baseline by")
    parser.add_argument("--nq-results", help="nq_eval_results_<step>.json of scripts/predict_nq.py: print NQ F1 beside")
    args = parser.parse_args(argv)
    nq = read_nq_results(args.nq_results) if args.nq_results else None
    step, model = final_results(args.run_dir)
    baseline = baseline_results(args.dev_file)
    print(format_table(step, model, baseline))
    if nq is not None:
        print()
        print(format_nq(model, nq))
    gain = model["f1"] - baseline["f1"]
    if gain < args.min_gain:
        print(f"\nFAIL: F1 {model['f1']:.2f} is only {gain:+.2f} points over the all-no-answer baseline "
              f"({baseline['f1']:.2f}); the demo expects at least +{args.min_gain:g}.", file=sys.stderr)
        return 1
    print(f"\nThe model learnt: F1 {model['f1']:.2f} against {baseline['f1']:.2f} for answering nothing "
          f"({gain:+.2f} points).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
