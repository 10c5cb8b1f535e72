#!/usr/bin/env python
"""Print a run's scores beside the all-no-answer baseline; fail when it did not learn enough.

    python scripts/demo_summary.py outputs/demo/run data/demo/dev.json
    python scripts/demo_summary.py RUN_DIR DEV_JSON --min-gain 20

The baseline answers "" to every question: on SQuAD 2.0-style data it scores the share of
unanswerable questions, which a model that learnt nothing reaches by always abstaining. The
demo passes when the model's F1 (at the default null threshold 0) beats the baseline's by at
least --min-gain points; the exit status is 1 otherwise, so `make demo` fails visibly.
"""

import argparse
import json
import os
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("dev_file")
    parser.add_argument("--min-gain", type=float, default=20.0, help="F1 points the model must beat the baseline by")
    args = parser.parse_args(argv)
    step, model = final_results(args.run_dir)
    baseline = baseline_results(args.dev_file)
    print(format_table(step, model, baseline))
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
