"""make report: the threshold curve agrees with the metrics' tuning, and the PNG/HTML are written."""

import json
import subprocess
import sys

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


def test_report_without_a_run(tmp_path):
    done = subprocess.run([sys.executable, "scripts/report.py", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "has this run started" in done.stderr
