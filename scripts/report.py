#!/usr/bin/env python
"""Draw a run from its own logs: report.png and report.html in the run folder.

    python scripts/report.py outputs/nq-albert-xlarge-v2
    python scripts/report.py outputs/demo/run --predict-file data/demo/dev.json
    make report RUN=outputs/demo

Panels: training loss and learning rate by step (metrics.jsonl); exact/F1 overall, HasAns and
NoAns at each evaluation, with the best checkpoint (best_checkpoint.json) starred at its step and
named in the legend with its metric and value; F1 and exact against the null-score threshold for
the newest evaluation (from its null_odds and n-best files and the gold answers of the predict
file), with the tuned threshold marked and a caption saying in words what the threshold does. A
dashed line on the step panels marks each step where the run was resumed (train.log). report.html holds the figure, one table row per
evaluation of the training record (the best row marked), a second table for the evaluations run
later into RUN/eval/<data>-<step>/ (`make eval`) when there are any, and every number of the
newest evaluation. Needs matplotlib; reads nothing but the run folder (through qa/run_dir.py) and
the predict file named in its args.json.
"""

import argparse
import base64
import html
import json
import os
import re
import sys

from qa import run_dir as run_dir_files
from qa.metrics import null_threshold_curve
from qa.run_dir import CheckpointError, all_eval_results, best_checkpoint, eval_steps, read_metrics
from qa.squad_io import read_squad
from qa.storage import atomic_write

# The columns of the evaluation tables, in the order a reader compares runs: overall, then by kind of
# question, then the score at the tuned null threshold and that threshold.
TABLE_COLUMNS = ("exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh")
BEST_MARK = "\u2605"  # the star drawn at the best checkpoint, also in its table row
# Readable in the 1800 x 700 pixel PNG shown at half size in a browser or a chat: 14 pt text, 12 pt legends.
FONT_SIZE, LEGEND_SIZE = 14, 12
# trainer.py logs "resuming from RUN/checkpoint-300: step 300, epoch 0, ..." at every resume.
RESUME_LINE = re.compile(r"resuming from .*: step (\d+), epoch ")
# What the third panel shows, in words: the threshold is the margin by which the model's "no answer" score must
# beat its best answer's score for it to say "no answer".
THRESHOLD_CAPTION = ("The model answers a question only when its best answer's score is not beaten by its\n"
                     "\"no answer\" score by more than the threshold. Further right: more questions answered;\n"
                     "further left: more left unanswered. ask and eval use the tuned threshold (red).")


class ReportError(Exception):
    """The run folder cannot be reported on; the message says why and what to do."""


def run_label(run_dir):
    """The run folder as a reader finds it: relative to here when it is below, else absolute."""
    relative = os.path.relpath(run_dir)
    return os.path.abspath(run_dir) if relative.startswith("..") else relative


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


def later_eval_results(run_dir):
    """[(data file stem, step, eval_results)] of the evaluations run after training, in RUN/eval/<stem>-<step>/,
    by stem then step. The stem is the folder name less its "-<step>" (run_dir.eval_dir names it so)."""
    root = os.path.join(run_dir, run_dir_files.EVAL_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        for step, results in all_eval_results(folder):
            found.append((name.removesuffix(f"-{step}"), step, results))
    return sorted(found, key=lambda item: (item[0], item[1]))


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def best_marker(best):
    """(step, value, legend label) for the best checkpoint's star, or None when none is recorded or it is
    unreadable (no step or no numeric value)."""
    if not best or not is_number(best.get("step")) or not is_number(best.get("value")):
        return None
    label = f"best: {best.get('checkpoint', 'step ' + str(best['step']))} ({best.get('metric', 'metric')} {best['value']:.2f})"
    return best["step"], float(best["value"]), label


def resume_steps(run_dir):
    """The steps at which the run was resumed (train.log's "resuming from ...: step N" lines), ascending, once each."""
    try:
        with open(os.path.join(run_dir, run_dir_files.TRAIN_LOG), encoding="utf-8", errors="replace") as log:
            return sorted({int(m.group(1)) for m in map(RESUME_LINE.search, log) if m})
    except OSError:
        return []


def marker_size(steps, width=6.0):
    """The size of the evaluation points: smaller when two of them are closer than 3% of the steps shown, so
    neighbours (a last checkpoint at 1100 and the final evaluation at 1120) stay two points."""
    steps = sorted(set(steps))
    if len(steps) < 2:
        return width
    closest = min(b - a for a, b in zip(steps, steps[1:]))
    return width if closest >= 0.03 * (steps[-1] - steps[0]) else width / 2


def mark_resumes(axes, resumes):
    """A dashed vertical line at each resume on the step panels, labelled once in each legend."""
    for ax in axes:
        for i, step in enumerate(resumes):
            ax.axvline(step, color="tab:purple", linestyle="--", linewidth=1.2, zorder=1,
                       label=f"resumed at step {', '.join(map(str, resumes))}" if i == 0 else None)


def eval_records(records, eval_results):
    """The evaluation points of the panel as metrics.jsonl records ("step", "eval/<metric>"). metrics.jsonl
    first (it is what training logged); a run whose metrics.jsonl is gone still has its eval_results files."""
    logged = [r for r in records if "eval/f1" in r]
    if logged:
        return logged
    return [{"step": step, **{f"eval/{k}": v for k, v in results.items() if is_number(v)}}
            for step, results in eval_results if is_number(step)]


def figure(run_dir, records, curve, eval_results, step=None, evals=None, marker=None, resumes=()):
    """The report's matplotlib figure (three panels); `marker` is best_marker()'s answer, `resumes` the steps
    where the run was resumed (resume_steps). The caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"font.size": FONT_SIZE, "legend.fontsize": LEGEND_SIZE}):
        fig, axes = plt.subplots(1, 3, figsize=(18, 7))
        draw_training(axes[0], records)
        draw_evaluations(axes[1], records, evals, marker)
        mark_resumes(axes[:2], resumes)
        if _legend_entries(axes[0])[0]:
            axes[0].legend(*_legend_entries(axes[0]), loc="upper right")
        if axes[1].get_legend_handles_labels()[0]:  # below the panel: the curves fill it
            axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        draw_threshold_curve(axes[2], curve, eval_results, step)
        fig.suptitle(run_label(run_dir))
        fig.tight_layout()
    return fig


def _legend_entries(ax):
    """Handles and labels of the panel and of its twin axis (the learning rate), in one legend."""
    handles, labels = ax.get_legend_handles_labels()
    for twin in getattr(ax, "_report_twins", ()):
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    return handles, labels


def draw_training(ax, records):
    train = [r for r in records if "train/loss" in r]
    if train:
        ax.plot([r["step"] for r in train], [r["train/loss"] for r in train], color="tab:blue", label="loss")
        ax.set_ylabel("training loss")
        lr = [r for r in records if "train/learning_rate" in r]
        if lr:
            twin = ax.twinx()
            twin.plot([r["step"] for r in lr], [r["train/learning_rate"] for r in lr], color="tab:orange",
                      label="learning rate")
            twin.set_ylabel("learning rate")
            ax._report_twins = (twin,)  # one legend for both axes (figure() draws it)
    else:
        ax.text(0.5, 0.5, "no training steps logged", ha="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_title("Training")


def draw_evaluations(ax, records, evals, marker):
    evals = [r for r in records if "eval/f1" in r] if evals is None else evals
    size = marker_size([r["step"] for r in evals])
    for key, style in (("f1", "-"), ("exact", "--")):
        for part, color in (("", "black"), ("HasAns_", "tab:green"), ("NoAns_", "tab:red")):
            name = f"eval/{part}{key}"
            points = [r for r in evals if name in r]
            if points:
                ax.plot([r["step"] for r in points], [r[name] for r in points], style, marker="o", markersize=size,
                        color=color, label=f"{part or 'all '}{key}".replace("_", " "))
    if marker is not None:
        best_step, best_value, label = marker
        # Drawn over the curves (zorder) and big enough (markersize 16 against the points' 6) to find at a glance.
        ax.plot([best_step], [best_value], linestyle="none", marker="*", markersize=16, color="gold",
                markeredgecolor="black", zorder=5, label=label)
        ax.axvline(best_step, color="gold", linewidth=1, zorder=1)
    if not evals:
        ax.text(0.5, 0.5, "no evaluation logged", ha="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("score (%)")
    ax.set_title("Evaluation")


def draw_threshold_curve(ax, curve, eval_results, step):
    thresholds, f1s, exacts = curve
    if thresholds:
        # A question flips from "" to its answer once the threshold reaches its diff: a step function.
        ax.plot(thresholds, f1s, drawstyle="steps-post", label="F1")
        ax.plot(thresholds, exacts, "--", drawstyle="steps-post", label="exact")
        tuned = (eval_results or {}).get("best_f1_thresh")
        if tuned is not None:
            ax.axvline(tuned, color="tab:red", linestyle=":", label=f"tuned threshold {tuned:.3f}")
        ax.axvline(0.0, color="grey", linestyle=":", linewidth=0.8, label="threshold 0 (default)")
        ax.set_xlabel('threshold: how far "no answer" must outscore the best answer')
        ax.set_ylabel("score (%)")
        ax.legend(loc="lower right")
        ax.text(0.5, -0.2, THRESHOLD_CAPTION, ha="center", va="top", transform=ax.transAxes,
                fontsize=LEGEND_SIZE - 1)
    else:
        ax.text(0.5, 0.5, "no evaluation files", ha="center", transform=ax.transAxes)
    ax.set_title("Answer or say \"no answer\"?" + (f" (evaluation at step {step})" if step is not None else ""))


def draw(run_dir, records, curve, eval_results, out_png, step=None, evals=None, marker=None, resumes=()):
    import matplotlib.pyplot as plt

    fig = figure(run_dir, records, curve, eval_results, step, evals, marker, resumes)
    tmp = out_png + ".tmp.png"
    try:
        fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    os.replace(tmp, out_png)


def format_cell(value):
    """One table cell's text, escaped: scores and thresholds to 4 decimals, a missing value as a dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, float):
        return html.escape(f"{value:.4f}")
    return html.escape(str(value))


def eval_table(rows, best_step=None, with_data=False):
    """An HTML table of evaluations: rows are (data stem or None, step, eval_results). With a `best_step`
    (the training record's table) a first "best" column stars that step's row, which also gets class "best"."""
    marks = best_step is not None
    head = (["best"] if marks else []) + (["data"] if with_data else []) + ["step", *TABLE_COLUMNS]
    out = ["<table border='1' cellpadding='4'><thead><tr>", "".join(f"<th>{html.escape(h)}</th>" for h in head),
           "</tr></thead><tbody>"]
    for stem, step, results in rows:
        is_best = marks and step == best_step
        cells = ([BEST_MARK if is_best else ""] if marks else []) + ([format_cell(stem)] if with_data else [])
        cells += [format_cell(step)] + [format_cell((results or {}).get(column)) for column in TABLE_COLUMNS]
        out.append("<tr class='best' style='font-weight:bold;background:#fff3b0'>" if is_best else "<tr>")
        out.append("".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def write_html(run_dir, png_path, eval_results, step, all_results=(), later=(), best=None):
    with open(png_path, "rb") as f:
        image = base64.b64encode(f.read()).decode("ascii")
    rows = "".join(f"<tr><td>{format_cell(k)}</td><td>{format_cell(v)}</td></tr>" for k, v in (eval_results or {}).items())
    title = html.escape(run_label(run_dir))
    marker = best_marker(best)
    best_line = ""
    if marker is not None:
        best_line = (f"<p>{BEST_MARK} best checkpoint: {html.escape(str(best.get('checkpoint')))} at step "
                     f"{html.escape(str(best['step']))}, {html.escape(str(best.get('metric')))} "
                     f"{html.escape(f'{marker[1]:.4f}')}</p>")
    sections = [f"<h2>Every evaluation during training ({len(all_results)})</h2>", best_line]
    sections.append(eval_table([(None, s, r) for s, r in all_results], marker[0] if marker else None)
                    if all_results else "<p>no eval_results in the run folder</p>")
    if later:
        sections.append(f"<h2>Evaluations run later ({html.escape(run_dir_files.EVAL_DIR)}/, {len(later)})</h2>")
        sections.append(eval_table(later, with_data=True))
    if step is not None:
        sections.append(f"<h2>Evaluation at step {html.escape(str(step))}</h2><table border='1' cellpadding='4'>{rows}</table>")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Report: {title}</title></head><body>"
        f"<h1>{title}</h1><img alt='training report' src='data:image/png;base64,{image}' style='max-width:100%'>"
        + "".join(sections) + "</body></html>"
    )
    path = os.path.join(run_dir, run_dir_files.REPORT_HTML)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def make_report(run_dir, predict_file=None):
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir}: no such run folder (give RUN=outputs/<run>)")
    records = read_metrics(run_dir)
    step = newest_eval_step(run_dir)
    all_results = all_eval_results(run_dir)
    if not records and not all_results:
        raise ReportError(f"{run_dir}: no metrics.jsonl and no eval_results_*.json: has this run started?")
    try:
        best = best_checkpoint(run_dir)
    except CheckpointError as exc:
        raise ReportError(str(exc)) from None
    eval_results, curve = None, ([], [], [])
    if step is not None:
        eval_results = run_dir_files.read_eval_results(run_dir, step)
        if predict_file is None:
            predict_file = (run_dir_files.read_args(run_dir) or {}).get("predict_file")
        if predict_file and os.path.exists(predict_file):
            curve = null_threshold_curve(*load_threshold_inputs(run_dir, step, predict_file))
        else:
            print(f"predict file {predict_file!r} not found: the threshold curve is left out (pass --predict-file)")
    png = os.path.join(run_dir, run_dir_files.REPORT_PNG)
    draw(run_dir, records, curve, eval_results, png, step, eval_records(records, all_results), best_marker(best),
         resume_steps(run_dir))
    page = write_html(run_dir, png, eval_results, step, all_results, later_eval_results(run_dir), best)
    return png, page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="the run's output folder (run_squad.py --output_dir)")
    parser.add_argument("--predict-file", help="gold data for the threshold curve (default: from the run's args.json)")
    args = parser.parse_args(argv)
    try:
        png, page = make_report(args.run_dir, args.predict_file)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {png}\nwrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
