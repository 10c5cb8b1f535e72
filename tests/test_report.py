"""make report: the threshold curve agrees with the metrics' tuning, the PNG/HTML are written, every evaluation
is in the HTML table with the best checkpoint marked (there and in the figure), later evaluations in their own table."""

import html
import html.parser
import json
import pathlib
import subprocess
import sys

import pytest

import report
from qa import run_dir
from qa.metrics import null_threshold_curve, tune_null_threshold
from qa.squad_io import Answer, SquadExample, write_squad

EXAMPLES = [
    SquadExample("a", "t", "who?", "Ada wrote it in 1843.", (Answer("Ada", 0),), False),
    SquadExample("b", "t", "when?", "Ada wrote it in 1843.", (Answer("1843", 16),), False),
    SquadExample("c", "t", "why?", "Ada wrote it in 1843.", (), True),
    SquadExample("d", "t", "where?", "Ada wrote it in 1843.", (), True),
]
BEST_NON_NULL = {"a": "Ada", "b": "wrote", "c": "Ada", "d": "1843"}
NULL_DIFF = {"a": -3.0, "b": 0.5, "c": 1.0, "d": -0.5}


def test_threshold_curve_by_hand():
    thresholds, f1s, exacts = null_threshold_curve(EXAMPLES, BEST_NON_NULL, NULL_DIFF)
    # Sorted by diff: a(-3, right), d(-0.5, wrong: should be null), b(0.5, wrong), c(1.0, wrong).
    assert thresholds == [-4.0, -3.0, -0.5, 0.5, 1.0]
    assert exacts == [50.0, 75.0, 50.0, 50.0, 25.0]
    tuned = tune_null_threshold(EXAMPLES, BEST_NON_NULL, NULL_DIFF)
    assert max(f1s) == tuned["best_f1"]
    assert thresholds[f1s.index(max(f1s))] == tuned["best_f1_thresh"] == -3.0


def test_report_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    predict_file = tmp_path / "dev.json"
    write_squad(EXAMPLES, str(predict_file))
    (run / "args.json").write_text(json.dumps({"predict_file": str(predict_file)}))
    lines = [{"step": s, "time": s, "train/loss": 3.0 / s, "train/learning_rate": 1e-4 * (1 - s / 40)} for s in range(1, 40)]
    lines += [{"step": 20, "time": 20, "eval/f1": 40.0, "eval/exact": 35.0, "eval/HasAns_f1": 30.0, "eval/NoAns_f1": 50.0},
              {"step": 39, "time": 39, "eval/f1": 60.0, "eval/exact": 55.0, "eval/HasAns_f1": 50.0, "eval/NoAns_f1": 70.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    tuned = tune_null_threshold(EXAMPLES, BEST_NON_NULL, NULL_DIFF)
    (run / "eval_results_39.json").write_text(json.dumps({"exact": 25.0, "f1": 30.0, **tuned}))
    (run / "null_odds_39.json").write_text(json.dumps(NULL_DIFF))
    nbest = {q: [{"text": "", "probability": 0.5}, {"text": t, "probability": 0.5}] for q, t in BEST_NON_NULL.items()}
    (run / "nbest_predictions_39.json").write_text(json.dumps(nbest))

    done = subprocess.run([sys.executable, "scripts/report.py", str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    png = (run / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    page = (run / "report.html").read_text()
    assert "data:image/png;base64," in page and "best_f1_thresh" in page and "Evaluation at step 39" in page
    assert page.count("<tr class='best'") == 0  # no best_checkpoint.json in this run: nothing is claimed best


def test_report_without_a_run(tmp_path):
    done = subprocess.run([sys.executable, "scripts/report.py", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "has this run started" in done.stderr


# -- the evaluation tables and the best checkpoint (issue 11) ------------------------------------------------
class _Tables(html.parser.HTMLParser):
    """Every <table> of a page as rows of (tr attributes, [cell texts]), and the <title>."""

    def __init__(self):
        super().__init__()
        self.tables, self.title, self._cell, self._in_title = [], "", None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append((dict(attrs), []))
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1][1].append(self._cell.strip())
            self._cell = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_title:
            self.title += data


def _parse(page):
    parser = _Tables()
    parser.feed(page)
    return parser


# Two evaluations with every column different, the best (by f1) the EARLIER one, so the newest is not taken for it.
RESULTS = {
    20: {"exact": 55.0, "f1": 60.125, "HasAns_f1": 50.5, "NoAns_f1": 70.25, "best_f1": 62.0, "best_f1_thresh": -1.5,
         "total": 4},
    39: {"exact": 35.0, "f1": 40.0, "HasAns_f1": 30.0, "NoAns_f1": 50.0, "best_f1": 45.75, "best_f1_thresh": 0.25,
         "total": 4},
}
BEST = {"checkpoint": "checkpoint-20", "step": 20, "metric": "f1", "value": 60.125, "greater_is_better": True}
COLUMNS = ["step", "exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"]


def _write_evaluated_run(run, best=BEST):
    run.mkdir(parents=True)
    lines = [{"step": s, "time": s, "train/loss": 3.0 / s, "train/learning_rate": 1e-4} for s in range(1, 40)]
    lines += [{"step": s, "time": s, **{f"eval/{k}": v for k, v in r.items()}} for s, r in RESULTS.items()]
    (run / run_dir.METRICS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    for step, results in RESULTS.items():
        pathlib.Path(run_dir.eval_file(str(run), "eval_results", step)).write_text(json.dumps({**results, "step": step}))
    if best is not None:
        (run / run_dir.BEST_FILE).write_text(json.dumps(best))
    return run


def _report(run):
    done = subprocess.run([sys.executable, "scripts/report.py", str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (run / "report.html").read_text(encoding="utf-8")


def test_html_lists_every_evaluation_and_marks_the_best(tmp_path):
    run = _write_evaluated_run(tmp_path / "run-<b>&co")
    page = _report(run)
    parsed = _parse(page)
    # The run folder names the page, escaped: no raw tag from a folder name reaches the HTML.
    assert str(run.resolve()) in parsed.title and str(run.resolve()) in html.unescape(page.split("<h1>")[1])
    assert "run-<b>" not in page and "run-&lt;b&gt;&amp;co" in page
    table = parsed.tables[0]
    header, rows = table[0][1], table[1:]
    assert header == ["best", *COLUMNS]
    assert len(rows) == len(RESULTS)
    for (attrs, cells), (step, results) in zip(rows, sorted(RESULTS.items())):
        assert int(cells[1]) == step
        assert [float(c) for c in cells[2:]] == pytest.approx([results[c] for c in COLUMNS[1:]], abs=1e-4)
        is_best = step == BEST["step"]
        assert (attrs.get("class") == "best") == is_best and (cells[0] == report.BEST_MARK) == is_best
    assert "checkpoint-20 at step 20, f1 60.1250" in page
    # No later-evaluations table without RUN/eval (nor the newest evaluation's detail: this run has no null_odds).
    assert len(parsed.tables) == 1 and "Evaluations run later" not in page


def test_html_without_a_recorded_best_marks_no_row(tmp_path):
    run = _write_evaluated_run(tmp_path / "run", best=None)
    rows = _parse(_report(run)).tables[0]
    assert rows[0][1] == COLUMNS and len(rows) == 1 + len(RESULTS)
    assert not any(attrs.get("class") == "best" for attrs, _ in rows)


def test_later_evaluations_table(tmp_path):
    run = _write_evaluated_run(tmp_path / "run")
    # A folder with no eval_results (whole-document NQ writes nq_eval_results_*) is no reason for the table.
    nq_folder = run / run_dir.EVAL_DIR / "nq-39"
    nq_folder.mkdir(parents=True)
    (nq_folder / "nq_eval_results_39.json").write_text("{}")
    assert "Evaluations run later" not in _report(run)

    later = {("dev-v2.0", 20): {"exact": 61.0, "f1": 66.5, "HasAns_f1": 58.0, "NoAns_f1": 75.0, "best_f1": 67.0,
                                "best_f1_thresh": -0.75},
             ("my&<dev>", 39): {"exact": 11.0, "f1": 12.0, "HasAns_f1": 13.0, "NoAns_f1": 14.0, "best_f1": 15.0,
                                "best_f1_thresh": 1.25}}
    for (data_file, step), results in later.items():
        folder = pathlib.Path(run_dir.eval_dir(str(run), f"data/{data_file}.json", step))
        folder.mkdir(parents=True)
        pathlib.Path(run_dir.eval_file(str(folder), "eval_results", step)).write_text(json.dumps(results))
    page = _report(run)
    assert "Evaluations run later" in page and "my&amp;&lt;dev&gt;" in page and "<dev>" not in page
    parsed = _parse(page)
    assert len(parsed.tables) == 2
    table = parsed.tables[1]
    assert table[0][1] == ["data", *COLUMNS]
    got = {(cells[0], int(cells[1])): [float(c) for c in cells[2:]] for _, cells in table[1:]}
    assert got == {key: pytest.approx([r[c] for c in COLUMNS[1:]]) for key, r in later.items()}
    # The training record's table is unchanged by them.
    assert len(parsed.tables[0]) == 1 + len(RESULTS)


def test_best_checkpoint_is_starred_in_the_evaluation_panel(tmp_path):
    import matplotlib.pyplot as plt

    run = _write_evaluated_run(tmp_path / "run")
    records = run_dir.read_metrics(str(run))
    marker = report.best_marker(run_dir.best_checkpoint(str(run)))
    assert marker == (20, 60.125, "best: checkpoint-20 (f1 60.12)")
    fig = report.figure(str(run), records, ([], [], []), None, marker=marker)
    try:
        panel = fig.axes[1]
        assert panel.get_title() == "Evaluation"
        stars = [line for line in panel.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 1 and list(stars[0].get_xydata()[0]) == [20, 60.125]
        labels = panel.get_legend_handles_labels()[1]
        assert "best: checkpoint-20 (f1 60.12)" in labels and "all f1" in labels
    finally:
        plt.close(fig)
    fig = report.figure(str(run), records, ([], [], []), None, marker=report.best_marker(None))
    try:
        assert not [line for line in fig.axes[1].get_lines() if line.get_marker() == "*"]
    finally:
        plt.close(fig)
    # A best without a numeric value (hand-edited, or a future format) draws no star rather than failing.
    assert report.best_marker({"checkpoint": "checkpoint-20", "step": 20, "metric": "f1", "value": "n/a"}) is None


def test_report_from_eval_results_alone(tmp_path):
    """metrics.jsonl lost (copied run): the panel and the table still come from the eval_results files."""
    run = _write_evaluated_run(tmp_path / "run")
    (run / run_dir.METRICS_FILE).unlink()
    evals = report.eval_records([], run_dir.all_eval_results(str(run)))
    assert [(r["step"], r["eval/f1"]) for r in evals] == [(20, 60.125), (39, 40.0)]
    page = _report(run)
    assert len(_parse(page).tables[0]) == 1 + len(RESULTS)
    png = (run / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreadable_best_file_is_named(tmp_path):
    run = _write_evaluated_run(tmp_path / "run")
    (run / run_dir.BEST_FILE).write_text("{not json")
    done = subprocess.run([sys.executable, "scripts/report.py", str(run)], capture_output=True, text=True)
    assert done.returncode == 2 and run_dir.BEST_FILE in done.stderr and "delete it" in done.stderr
    assert not (run / "report.html").exists()


def test_make_report_draws_the_recorded_best(tmp_path, monkeypatch):
    """End to end in-process: the figure make_report saves has the star at best_checkpoint.json's step and value."""
    run = _write_evaluated_run(tmp_path / "run")
    drawn = figure = report.figure

    def recording_figure(*args, **kwargs):
        nonlocal drawn
        drawn = figure(*args, **kwargs)
        return drawn

    monkeypatch.setattr(report, "figure", recording_figure)
    png, page = report.make_report(str(run))
    assert drawn is not figure and pathlib.Path(png).read_bytes()[:4] == b"\x89PNG"
    stars = [line.get_xydata().tolist() for line in drawn.axes[1].get_lines() if line.get_marker() == "*"]
    assert stars == [[[20.0, 60.125]]]


def _write_resumed_run(run):
    """A run resumed at step 600 (train.log's line), evaluated every 200 steps, then at 1100 and at the end, 1120."""
    run.mkdir(parents=True)
    predict_file = run.parent / "dev.json"
    write_squad(EXAMPLES, str(predict_file))
    (run / "args.json").write_text(json.dumps({"predict_file": str(predict_file)}))
    lines = [{"step": s, "time": s, "train/loss": 3.0 / s ** 0.3, "train/learning_rate": 1e-4 * (1 - s / 1200)}
             for s in range(10, 1130, 10)]
    lines += [{"step": s, "time": s, "eval/f1": f, "eval/exact": f - 5, "eval/HasAns_f1": f - 10, "eval/NoAns_f1": f + 8}
              for s, f in [(200, 40), (400, 50), (600, 55), (800, 60), (1000, 62), (1100, 63), (1120, 64)]]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run / "train.log").write_text("2026-11-26 10:00:00 training: 900 features, 1 process(es)\n"
                                   "2026-11-26 11:00:00 resuming from run/checkpoint-600: step 600, epoch 3, 0 micro-batches "
                                   "into it\n")
    tuned = tune_null_threshold(EXAMPLES, BEST_NON_NULL, NULL_DIFF)
    (run / "eval_results_1120.json").write_text(json.dumps({"exact": 25.0, "f1": 30.0, **tuned}))
    (run / "null_odds_1120.json").write_text(json.dumps(NULL_DIFF))
    nbest = {q: [{"text": "", "probability": 0.5}, {"text": t, "probability": 0.5}] for q, t in BEST_NON_NULL.items()}
    (run / "nbest_predictions_1120.json").write_text(json.dumps(nbest))
    return run


def test_figure_marks_the_resume_explains_the_threshold_and_keeps_close_points_apart(tmp_path):
    # Issue 19 #9, what the picture holds (looked at, too: resume line, caption, legends below the curves).
    import matplotlib.pyplot as plt

    run = _write_resumed_run(tmp_path / "run")
    assert report.resume_steps(str(run)) == [600]
    records = run_dir.read_metrics(str(run))
    curve = null_threshold_curve(*report.load_threshold_inputs(str(run), 1120, str(tmp_path / "dev.json")))
    fig = report.figure(str(run), records, curve, run_dir.read_eval_results(str(run), 1120), 1120,
                        resumes=report.resume_steps(str(run)))
    try:
        assert list(fig.get_size_inches() * fig.dpi) == [1800, 700]
        training, evaluation, threshold = fig.axes[:3]
        for panel in (training, evaluation):
            resumed = [line for line in panel.get_lines() if line.get_label() == "resumed at step 600"]
            assert len(resumed) == 1 and list(resumed[0].get_xdata()) == [600, 600]
            assert "resumed at step 600" in [text.get_text() for text in panel.get_legend().get_texts()]
        # 1100 and 1120 are 2% of the steps apart: smaller points, so they stay two.
        points = [line for line in evaluation.get_lines() if line.get_marker() == "o"]
        assert points and all(line.get_markersize() == 3 for line in points)
        assert "no answer" in threshold.get_title() and "null score difference" not in threshold.get_xlabel()
        caption = " ".join(text.get_text() for text in threshold.texts)
        assert "more questions answered" in caption and "tuned threshold" in caption
        assert min(ax.title.get_fontsize() for ax in (training, evaluation, threshold)) >= 14
    finally:
        plt.close(fig)
    assert report.marker_size([200, 400, 600]) == 6  # evenly spread: full-size points


def test_make_report_png_is_1800_by_700(tmp_path):
    run = _write_resumed_run(tmp_path / "run x")
    done = subprocess.run(["make", "--no-print-directory", "-C", str(pathlib.Path(report.__file__).parent.parent),
                           "report", f"RUN={run}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    png = (run / "report.png").read_bytes()
    assert int.from_bytes(png[16:20], "big") == 1800 and int.from_bytes(png[20:24], "big") == 700  # the IHDR chunk
