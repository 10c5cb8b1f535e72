"""scripts/demo_summary.py: a run's scores beside the all-no-answer baseline (the exit status of `make demo`),
and the whole-document NQ scores printed beside the oracle ones."""

import json
import re
import subprocess
import sys

from conftest import ROOT

SCRIPT = str(ROOT / "scripts" / "demo_summary.py")


def demo_run(tmp_path, f1_by_step):
    """(run folder with one eval_results_<step>.json per step, dev.json of one answerable and one
    unanswerable question: the all-no-answer baseline scores F1 50 on it)."""
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
        "context": "Ada wrote it.", "qas": [
            {"id": "1", "question": "who", "answers": [{"text": "Ada", "answer_start": 0}], "is_impossible": False},
            {"id": "2", "question": "why", "answers": [], "is_impossible": True}]}]}]}))
    run = tmp_path / "run"
    run.mkdir()
    for step, (exact, f1) in f1_by_step.items():
        (run / f"eval_results_{step}.json").write_text(json.dumps({"exact": exact, "f1": f1}))
    return run, dev


def summary(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_summary_fails_when_the_model_did_not_learn(tmp_path):
    run, dev = demo_run(tmp_path, {10: (60.0, 65.0), 5: (100.0, 100.0)})
    done = summary(run, dev)
    # The newest step (10) is the one judged: 65 is only 15 points over the baseline of 50.
    assert done.returncode == 1 and "+15.00 points" in done.stderr
    ok = summary(run, dev, "--min-gain", "10")
    assert ok.returncode == 0 and "F1 65.00 against 50.00" in ok.stdout


def test_demo_summary_prints_whole_document_scores_beside_the_oracle(tmp_path):
    run, dev = demo_run(tmp_path, {10: (80.0, 85.0)})
    nq = tmp_path / "nq_eval_results_10.json"
    nq.write_text(json.dumps({"long-best-threshold-f1": 0.625, "long-best-threshold-precision": 0.5,
                              "long-best-threshold-recall": 0.8333, "short-best-threshold-f1": 0.25,
                              "short-best-threshold-precision": 0.2, "short-best-threshold-recall": 1 / 3}))
    done = summary(run, dev, "--nq-results", nq)
    assert done.returncode == 0, done.stderr
    assert re.search(r"F1 \(SQuAD-style\)\s+85\.00", done.stdout)
    assert re.search(r"NQ long answer F1\s+62\.50\s+\(P 50\.00, R 83\.33\)", done.stdout)
    assert re.search(r"NQ short answer F1\s+25\.00\s+\(P 20\.00, R 33\.33\)", done.stdout)
    nq.write_text(json.dumps({"f1": 1.0}))
    done = summary(run, dev, "--nq-results", nq)
    assert done.returncode == 1 and "not the output of the NQ evaluation" in done.stderr


def nq_eval(folder, long_f1, short_f1, yes_no):
    """An NQ evaluation folder as predict_nq writes it: nq_eval_results_10.json (official metrics, 0-1) and
    nq_predictions.json with four pages, the first `yes_no` of them answered YES or NO."""
    folder.mkdir(parents=True)
    metrics = {"rank": "margin"}
    for key, f1 in (("long", long_f1), ("short", short_f1)):
        metrics.update({f"{key}-best-threshold-f1": f1, f"{key}-best-threshold-precision": f1,
                        f"{key}-best-threshold-recall": f1})
    (folder / "nq_eval_results_10.json").write_text(json.dumps(metrics))
    answers = ["YES", "NO", "NONE", "NONE"][:yes_no] + ["NONE"] * (4 - yes_no)
    (folder / "nq_predictions.json").write_text(json.dumps({"predictions": [
        {"example_id": i, "yes_no_answer": answer} for i, answer in enumerate(answers)]}))
    return folder / "nq_eval_results_10.json"


def side_by_side(tmp_path, candidates_f1=(70.0, 90.0)):
    """The arguments of a guide run and a candidate-mode run (each with NQ results and a training-time file)."""
    guide, dev = demo_run(tmp_path, {10: (80.0, 85.0)})
    candidates = tmp_path / "run-candidates"
    candidates.mkdir()
    (candidates / "eval_results_10.json").write_text(json.dumps(dict(zip(("exact", "f1"), candidates_f1))))
    (tmp_path / "guide.time").write_text("100.0\n112.5\n")
    (tmp_path / "candidates.time").write_text("200.0\n230.5\n")
    return [guide, dev, "--nq-results", nq_eval(guide / "eval" / "nq-10", 0.5, 0.25, 0),
            "--train-time", tmp_path / "guide.time", "--candidates", candidates,
            "--candidates-nq-results", nq_eval(candidates / "eval" / "nq-10", 0.875, 0.75, 2),
            "--candidates-train-time", tmp_path / "candidates.time", "--json", tmp_path / "out" / "summary.json"]


def test_side_by_side_table_and_summary_json(tmp_path):
    done = summary(*side_by_side(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = {line[:44].strip(): line[44:].split() for line in done.stdout.splitlines() if len(line) > 44}
    assert rows["oracle F1 (dev.json, gold paragraph given)"] == ["85.00", "90.00"]
    assert rows["NQ long answer F1 (whole page)"] == ["50.00", "87.50"]
    assert rows["NQ short answer F1 (whole page)"] == ["25.00", "75.00"]
    assert rows["pages answered yes / no"] == ["0", "2"]
    assert rows["training time (s)"] == ["12.5", "30.5"]
    assert "The guide model learnt: F1 85.00 against 50.00" in done.stdout
    assert "The candidates model learnt: F1 90.00 against 50.00" in done.stdout
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(written) == {"guide", "candidates"}
    for entry in written.values():
        assert {"oracle_f1", "nq_long_f1", "nq_short_f1", "train_seconds", "yes_no_answered"} <= set(entry)
    assert written["candidates"]["nq_long_f1"] == 87.5 and written["guide"]["nq_short_f1"] == 25.0
    assert written["candidates"]["train_seconds"] == 30.5 and written["candidates"]["yes_no_answered"] == 2
    assert written["guide"]["oracle_f1"] == 85.0 and written["candidates"]["nq_pages"] == 4
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["summary.json"]  # no temporary file left


def test_side_by_side_fails_when_the_candidate_model_did_not_learn(tmp_path):
    done = summary(*side_by_side(tmp_path, candidates_f1=(50.0, 55.0)))
    assert done.returncode == 1
    assert "FAIL: The candidates model F1 55.00 is only +5.00 points" in done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["candidates"]["oracle_f1"] == 55.0


def test_side_by_side_needs_every_file_and_says_which(tmp_path):
    args = side_by_side(tmp_path)
    partial = args[:args.index("--candidates-train-time")]
    done = summary(*partial)
    assert done.returncode == 2 and "needs --candidates, --candidates-nq-results, --candidates-train-time" in done.stderr
    (tmp_path / "candidates.time").write_text("200.0\n")
    done = summary(*args)
    assert done.returncode == 1 and "candidates.time: expected two numbers" in done.stderr
    (tmp_path / "run-candidates" / "eval" / "nq-10" / "nq_predictions.json").unlink()
    done = summary(*args)
    assert done.returncode == 1 and "nq_predictions.json: no such file" in done.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_the_oracle_score_is_that_of_the_model_scored_on_whole_pages(tmp_path):
    # predict_nq scored the run's model (its best checkpoint, step 10), not the last evaluation (step 20).
    args = side_by_side(tmp_path)
    (tmp_path / "run" / "eval_results_20.json").write_text(json.dumps({"exact": 70.0, "f1": 75.0}))
    done = summary(*args)
    assert done.returncode == 0, done.stderr
    guide = json.loads((tmp_path / "out" / "summary.json").read_text())["guide"]
    assert (guide["step"], guide["oracle_f1"]) == (10, 85.0)
    # Without an evaluation at the scored step, the newest one.
    (tmp_path / "run" / "eval_results_10.json").unlink()
    assert summary(*args).returncode == 0
    guide = json.loads((tmp_path / "out" / "summary.json").read_text())["guide"]
    assert (guide["step"], guide["oracle_f1"]) == (20, 75.0)
