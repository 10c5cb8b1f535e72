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
