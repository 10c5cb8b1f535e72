"""make demo, the main job on its built-in default: generated NQ sample -> SQuAD JSON -> tiny model -> train
-> eval, and the model must beat answering nothing by at least 20 F1 points (demo_summary.py checks it)."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_make_demo_learns(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    done = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_DIR={data}", f"DEMO_OUT={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    gain = re.search(r"The model learnt: F1 ([\d.]+) against ([\d.]+)", done.stdout)
    model_f1, baseline_f1 = map(float, gain.groups())
    assert model_f1 - baseline_f1 >= 20
    stats = json.loads((data / "dev.json.stats.json").read_text())
    assert stats  # the conversion reported its counts
    run = out / "run"
    for name in ("report.png", "report.html", "qa_config.json", "README.md", "model.safetensors"):
        assert (run / name).exists(), name
    # Re-running the data step does no work twice.
    again = subprocess.run(["make", "--no-print-directory", "demo-data", f"DEMO_DIR={data}"], cwd=ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout


def test_summary_fails_when_the_model_did_not_learn(tmp_path):
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
        "context": "Ada wrote it.", "qas": [
            {"id": "1", "question": "who", "answers": [{"text": "Ada", "answer_start": 0}], "is_impossible": False},
            {"id": "2", "question": "why", "answers": [], "is_impossible": True}]}]}]}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_results_10.json").write_text(json.dumps({"exact": 60.0, "f1": 65.0}))
    (run / "eval_results_5.json").write_text(json.dumps({"exact": 100.0, "f1": 100.0}))
    done = subprocess.run([sys.executable, "scripts/demo_summary.py", str(run), str(dev)], capture_output=True, text=True)
    # The newest step (10) is the one judged: 65 is only 15 points over the baseline of 50.
    assert done.returncode == 1 and "+15.00 points" in done.stderr
    ok = subprocess.run([sys.executable, "scripts/demo_summary.py", str(run), str(dev), "--min-gain", "10"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "F1 65.00 against 50.00" in ok.stdout
