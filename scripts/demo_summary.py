#!/usr/bin/env python
"""Print the demo's scores: a run beside the all-no-answer baseline, or the guide's model beside the
candidate-mode model; fail when a model did not learn enough; write the table as JSON.

    python scripts/demo_summary.py outputs/demo/run data/demo/dev.json
    python scripts/demo_summary.py RUN_DIR DEV_JSON --min-gain 20
    python scripts/demo_summary.py outputs/demo/run data/demo/dev.json \
        --nq-results outputs/demo/run/eval/nq-400/nq_eval_results_400.json
    python scripts/demo_summary.py outputs/demo/run data/demo/dev.json --nq-results GUIDE_NQ --train-time GUIDE_TIME \
        --candidates outputs/demo/run-candidates --candidates-nq-results CANDIDATES_NQ \
        --candidates-train-time CANDIDATES_TIME --json outputs/demo/summary.json

The baseline answers "" to every question: on SQuAD 2.0-style data it scores the share of
unanswerable questions, which a model that learnt nothing reaches by always abstaining. The
demo passes when each model's F1 (at the default null threshold 0) beats the baseline's by at
least --min-gain points; the exit status is 1 otherwise, so `make demo` fails visibly.

Those SQuAD-style scores are an oracle: each question comes with its gold paragraph. With
--nq-results (the nq_eval_results_<step>.json of scripts/predict_nq.py) the official NQ long and
short answer F1 of the same model on whole documents, where it must find that paragraph among the
page's candidates, are printed beside them (informative: they do not decide the exit status).

With --candidates RUN_DIR (a model trained on candidate-mode data; its --candidates-nq-results and
--candidates-train-time, the guide's --nq-results and --train-time) the two models are printed side by side:
oracle F1 on DEV_JSON, whole-page NQ long / short F1, the pages answered yes or no (read from the
nq_predictions.json beside each NQ results file), the training time. A training-time file holds two numbers,
the start and end of training in seconds (time.time() before and after; make demo writes them). --json
writes that table as {"guide": {...}, "candidates": {...}} (atomically).
"""

import argparse
import json
import os
import re
import sys

from qa import squad_io
from qa.metrics import evaluate
from qa.run_dir import eval_steps, nq_predictions_file, read_eval_results
from qa.squad_io import read_squad
from qa.storage import atomic_write

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


def read_json(path, what_to_do):
    """squad_io.read_json (the one reader of a JSON output file) with the step to take added to its error."""
    try:
        return squad_io.read_json(path)
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file; {what_to_do}") from None
    except squad_io.SquadFormatError as exc:
        raise SystemExit(f"{exc}; {what_to_do}") from None


def read_nq_results(path):
    """The official NQ metrics dict written by scripts/predict_nq.py; SystemExit saying what to do."""
    results = read_json(path, "run scripts/predict_nq.py first (it writes nq_eval_results_<step>.json)")
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


def yes_no_answered(nq_results_path):
    """(pages answered YES or NO, pages) of the nq_predictions.json beside an NQ results file."""
    path = nq_predictions_file(os.path.dirname(os.path.abspath(nq_results_path)))
    predictions = read_json(path, "run scripts/predict_nq.py again (it writes it beside its results)")
    if not isinstance(predictions, dict) or not isinstance(predictions.get("predictions"), list):
        raise SystemExit(f"{path}: no 'predictions' list: not the output of scripts/predict_nq.py")
    entries = predictions["predictions"]
    return sum(entry.get("yes_no_answer", "NONE") in ("YES", "NO") for entry in entries), len(entries)


def train_seconds(path):
    """Seconds between the two numbers (start, end) of a training-time file."""
    try:
        with open(path, encoding="utf-8") as f:
            start, end = (float(word) for word in f.read().split())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file; it is written around the training command (make demo)") from None
    except ValueError:
        raise SystemExit(f"{path}: expected two numbers, the start and end of training in seconds") from None
    return end - start


def scored_results(run_dir, nq_results):
    """(step, eval_results) of the model predict_nq scored (the step in nq_eval_results_<step>.json: the run's
    model, which may be its best checkpoint) when the run evaluated that step, else of the newest evaluation."""
    scored = re.fullmatch(r"nq_eval_results_(\d+)\.json", os.path.basename(nq_results or ""))
    if scored and int(scored.group(1)) in eval_steps(run_dir):
        return int(scored.group(1)), read_eval_results(run_dir, int(scored.group(1)))
    return final_results(run_dir)


def model_summary(run_dir, nq_results, time_file):
    """The summary.json entry of one model: oracle and whole-page scores, yes/no answers, training time."""
    step, oracle = scored_results(run_dir, nq_results)
    entry = {"run_dir": run_dir, "step": step, "oracle_f1": oracle["f1"], "oracle_exact": oracle["exact"]}
    if nq_results:
        nq = read_nq_results(nq_results)
        for _, key in NQ_ROWS:
            entry[f"nq_{key}_f1"] = 100 * nq[f"{key}-best-threshold-f1"]
            entry[f"nq_{key}_precision"] = 100 * nq[f"{key}-best-threshold-precision"]
            entry[f"nq_{key}_recall"] = 100 * nq[f"{key}-best-threshold-recall"]
        entry["rank"] = nq.get("rank")
        entry["yes_no_answered"], entry["nq_pages"] = yes_no_answered(nq_results)
    if time_file:
        entry["train_seconds"] = round(train_seconds(time_file), 1)
    return entry


SIDE_ROWS = (("oracle F1 (dev.json, gold paragraph given)", "oracle_f1", "{:.2f}"),
             ("NQ long answer F1 (whole page)", "nq_long_f1", "{:.2f}"),
             ("NQ short answer F1 (whole page)", "nq_short_f1", "{:.2f}"),
             ("pages answered yes / no", "yes_no_answered", "{}"),
             ("training time (s)", "train_seconds", "{:.1f}"),
             ("step of the model scored", "step", "{}"),
             ("candidate rank rule (predict_nq)", "rank", "{}"))


def format_side_by_side(summary):
    names = list(summary)
    lines = [f"{'':<44}" + "".join(f"{name:>14}" for name in names), "-" * (44 + 14 * len(names))]
    for label, key, form in SIDE_ROWS:
        cells = [form.format(summary[name][key]) if summary[name].get(key) is not None else "-" for name in names]
        lines.append(f"{label:<44}" + "".join(f"{cell:>14}" for cell in cells))
    pages = {summary[name].get("nq_pages") for name in names} - {None}
    if pages:
        lines.append(f"NQ F1: official metrics (best threshold) x 100 on {'/'.join(map(str, pages))} pages.")
    lines.append("Oracle F1: dev.json is the guide's conversion: a page whose gold long answer has no short answer "
                 "(or a yes/no) is labelled impossible there, the same for both models.")
    return "\n".join(lines)


def write_summary(path, summary):
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")


def check_gain(name, f1, baseline_f1, min_gain):
    """1 (and a FAIL line) when a model's F1 beats answering nothing by less than min_gain points."""
    gain = f1 - baseline_f1
    label = "The model" if name is None else f"The {name} model"
    if gain < min_gain:
        print(f"FAIL: {label} F1 {f1:.2f} is only {gain:+.2f} points over the "
              f"all-no-answer baseline ({baseline_f1:.2f}); the demo expects at least +{min_gain:g}.", file=sys.stderr)
        return 1
    print(f"{label} learnt: F1 {f1:.2f} against {baseline_f1:.2f} for answering nothing ({gain:+.2f} points).")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="the guide's run (or the one run to judge)")
    parser.add_argument("dev_file")
    parser.add_argument("--min-gain", type=float, default=20.0, help="F1 points each model must beat the baseline by")
    parser.add_argument("--nq-results", help="nq_eval_results_<step>.json of scripts/predict_nq.py: print NQ F1 beside")
    parser.add_argument("--train-time", help="the run's training-time file (start and end in seconds)")
    parser.add_argument("--candidates", metavar="RUN_DIR",
                        help="the candidate-mode model's run: printed side by side with the guide's")
    parser.add_argument("--candidates-nq-results", help="its nq_eval_results_<step>.json")
    parser.add_argument("--candidates-train-time", help="its training-time file")
    parser.add_argument("--json", help="write the summary as JSON here ({'guide': {...}, 'candidates': {...}})")
    args = parser.parse_args(argv)
    both = (args.candidates, args.candidates_nq_results, args.candidates_train_time, args.nq_results, args.train_time)
    if any(both[:3]) and not all(both):
        parser.error("the side-by-side summary needs --candidates, --candidates-nq-results, --candidates-train-time, "
                     "--nq-results and --train-time")
    if (args.json or args.train_time) and not args.candidates:
        parser.error("--json and --train-time are for the side-by-side summary: give --candidates (and its results) too")
    return args


def print_one_run(args, baseline):
    """The single-run table (and its whole-document scores); the run's oracle F1."""
    step, model = final_results(args.run_dir)
    print(format_table(step, model, baseline))
    if args.nq_results:
        print()
        print(format_nq(model, read_nq_results(args.nq_results)))
    return {None: model["f1"]}


def print_both(args):
    """The side-by-side table (and summary.json); each model's oracle F1 by name."""
    summary = {"guide": model_summary(args.run_dir, args.nq_results, args.train_time),
               "candidates": model_summary(args.candidates, args.candidates_nq_results, args.candidates_train_time)}
    print(format_side_by_side(summary))
    if args.json:
        write_summary(args.json, summary)
        print(f"\nwrote {args.json}")
    return {name: entry["oracle_f1"] for name, entry in summary.items()}


def main(argv=None):
    args = parse_args(argv)
    baseline = baseline_results(args.dev_file)
    oracle = print_both(args) if args.candidates else print_one_run(args, baseline)
    print()
    failed = [check_gain(name, f1, baseline["f1"], args.min_gain) for name, f1 in oracle.items()]
    return 1 if any(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
