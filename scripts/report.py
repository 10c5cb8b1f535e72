#!/usr/bin/env python
"""Draw a run from its own logs: report.png and report.html in the run folder.

    python scripts/report.py outputs/nq-albert-xlarge-v2
    make report RUN=outputs/demo

Panels: training loss and learning rate by step (metrics.jsonl); exact/F1 overall, HasAns and
NoAns at each evaluation; F1 and exact against the null-score threshold for the newest
evaluation (from its null_odds and n-best files and the gold answers of the predict file),
with the tuned threshold marked. Needs matplotlib; reads nothing but the run folder and the
predict file named in its args.json.
"""

import argparse
import base64
import html
import json
import os
import sys

from qa import run_dir as run_dir_files
from qa.metrics import null_threshold_curve
from qa.run_dir import eval_steps, read_metrics
from qa.squad_io import read_squad
from qa.storage import atomic_write


def newest_eval_step(run_dir):
    """The largest step with eval_results, null_odds and nbest files, or None."""
    steps = [step for step in eval_steps(run_dir)
             if all(os.path.exists(run_dir_files.eval_file(run_dir, kind, step)) for kind in ("null_odds", "nbest_predictions"))]
    return max(steps) if steps else None


def load_threshold_inputs(run_dir, step, predict_file):
    with open(run_dir_files.eval_file(run_dir, "null_odds", step), encoding="utf-8") as f:
        null_score_diff = json.load(f)
    with open(run_dir_files.eval_file(run_dir, "nbest_predictions", step), encoding="utf-8") as f:
        nbest = json.load(f)
    best_non_null = {qid: next((c["text"] for c in cands if c["text"]), "") for qid, cands in nbest.items()}
    return read_squad(predict_file), best_non_null, null_score_diff


def draw(run_dir, records, curve, eval_results, out_png, step=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    train = [r for r in records if "train/loss" in r]
    ax = axes[0]
    if train:
        lines = ax.plot([r["step"] for r in train], [r["train/loss"] for r in train], color="tab:blue", label="loss")
        ax.set_ylabel("training loss")
        lr = [r for r in records if "train/learning_rate" in r]
        if lr:
            twin = ax.twinx()
            lines += twin.plot([r["step"] for r in lr], [r["train/learning_rate"] for r in lr], color="tab:orange",
                               label="learning rate")
            twin.set_ylabel("learning rate")
        # One legend for both axes, where the curves leave room (both usually start high on the left).
        ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    else:
        ax.text(0.5, 0.5, "no training steps logged", ha="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_title("Training")

    ax = axes[1]
    evals = [r for r in records if "eval/f1" in r]
    for key, style in (("f1", "-"), ("exact", "--")):
        for part, color in (("", "black"), ("HasAns_", "tab:green"), ("NoAns_", "tab:red")):
            name = f"eval/{part}{key}"
            points = [r for r in evals if name in r]
            if points:
                ax.plot([r["step"] for r in points], [r[name] for r in points], style, marker="o", color=color,
                        label=f"{part or 'all '}{key}".replace("_", " "))
    if not evals:
        ax.text(0.5, 0.5, "no evaluation logged", ha="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("score (%)")
    ax.set_title("Evaluation")
    ax.legend(fontsize=8)

    ax = axes[2]
    thresholds, f1s, exacts = curve
    if thresholds:
        # A question flips from "" to its answer once the threshold reaches its diff: a step function.
        ax.plot(thresholds, f1s, drawstyle="steps-post", label="F1")
        ax.plot(thresholds, exacts, "--", drawstyle="steps-post", label="exact")
        tuned = (eval_results or {}).get("best_f1_thresh")
        if tuned is not None:
            ax.axvline(tuned, color="tab:red", linestyle=":", label=f"tuned threshold {tuned:.3f}")
        ax.axvline(0.0, color="grey", linestyle=":", linewidth=0.8, label="threshold 0 (default)")
        ax.set_xlabel("null score difference threshold")
        ax.set_ylabel("score (%)")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluation files", ha="center", transform=ax.transAxes)
    ax.set_title("F1 against the null threshold" + (f" (evaluation at step {step})" if step is not None else ""))
    fig.suptitle(os.path.relpath(run_dir) if not os.path.relpath(run_dir).startswith("..") else os.path.abspath(run_dir))
    fig.tight_layout()
    tmp = out_png + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_png)


def write_html(run_dir, png_path, eval_results, step):
    with open(png_path, "rb") as f:
        image = base64.b64encode(f.read()).decode("ascii")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" if isinstance(v, float) else
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in (eval_results or {}).items()
    )
    title = html.escape(os.path.basename(os.path.abspath(run_dir)))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><img alt='training report' src='data:image/png;base64,{image}' style='max-width:100%'>"
        f"<h2>Evaluation at step {step}</h2><table border='1' cellpadding='4'>{rows}</table></body></html>"
    )
    path = os.path.join(run_dir, "report.html")
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def make_report(run_dir, predict_file=None):
    if not os.path.isdir(run_dir):
        raise SystemExit(f"{run_dir}: no such run folder (give RUN=outputs/<run>)")
    records = read_metrics(run_dir)
    step = newest_eval_step(run_dir)
    if not records and step is None:
        raise SystemExit(f"{run_dir}: no metrics.jsonl and no eval_results_*.json: has this run started?")
    eval_results, curve = None, ([], [], [])
    if step is not None:
        eval_results = run_dir_files.read_eval_results(run_dir, step)
        if predict_file is None:
            predict_file = (run_dir_files.read_args(run_dir) or {}).get("predict_file")
        if predict_file and os.path.exists(predict_file):
            curve = null_threshold_curve(*load_threshold_inputs(run_dir, step, predict_file))
        else:
            print(f"predict file {predict_file!r} not found: the threshold curve is left out (pass --predict-file)")
    png = os.path.join(run_dir, "report.png")
    draw(run_dir, records, curve, eval_results, png, step)
    page = write_html(run_dir, png, eval_results, step)
    return png, page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="the run's output folder (run_squad.py --output_dir)")
    parser.add_argument("--predict-file", help="gold data for the threshold curve (default: from the run's args.json)")
    args = parser.parse_args(argv)
    png, page = make_report(args.run_dir, args.predict_file)
    print(f"wrote {png}\nwrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
