"""make demo, the main job on its built-in default: generated NQ sample -> SQuAD JSON (the guide's and candidate
mode) -> two tiny models -> train -> eval, each model must beat answering nothing by at least 20 F1 points
(demo_summary.py checks it; its own tests are in test_demo_summary.py), and the candidate-mode model finds more
long answers on whole pages than the guide's."""

import json
import re
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_make_demo_learns(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    done = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_DIR={data}", f"DEMO_OUT={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("guide", "candidates"):
        gain = re.search(rf"The {name} model learnt: F1 ([\d.]+) against ([\d.]+)", done.stdout)
        model_f1, baseline_f1 = map(float, gain.groups())
        assert model_f1 - baseline_f1 >= 20
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"guide", "candidates"}
    for entry in summary.values():
        assert {"oracle_f1", "nq_long_f1", "nq_short_f1", "train_seconds", "yes_no_answered"} <= set(entry)
        assert entry["train_seconds"] > 0
    assert summary["candidates"]["nq_long_f1"] > summary["guide"]["nq_long_f1"]
    assert re.search(r"NQ long answer F1 \(whole page\)\s+[\d.]+\s+[\d.]+", done.stdout)
    stats = json.loads((data / "dev.json.stats.json").read_text())
    assert stats  # the conversion reported its counts
    run = out / "run"
    for name in ("report.png", "report.html", "qa_config.json", "README.md", "model.safetensors"):
        assert (run / name).exists(), name
    for name in ("qa_config.json", "model.safetensors"):
        assert (out / "run-candidates" / name).exists(), name
    # Re-running the data step does no work twice.
    again = subprocess.run(["make", "--no-print-directory", "demo-data", f"DEMO_DIR={data}"], cwd=ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout
