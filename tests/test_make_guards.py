"""Through make, as users run it (issue 18, items 4 and 11): a float that is not a number and windows longer than the
model's positions are refused before anything is built, naming the make variable; a diverged `make train` fails
(run_squad.py exit 3, "Error 3" in make's line) with one line and leaves the last finite checkpoint the newest,
with no final model."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, shared_file

pytest.importorskip("torch")
from qa import run_dir  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
PREDICT = ("squad", "squad2-dev-normans-complexity.json")


def make_train(model_dir, out, *variables):
    data = out.parent / "data"  # copies: the features cache goes beside the data, not into ../shared
    data.mkdir(exist_ok=True)
    files = [shutil.copy(shared_file(*name), data / name[-1]) for name in (TRAIN, PREDICT)]
    return subprocess.run(["make", "--no-print-directory", "train", f"MODEL={model_dir}", f"OUTPUT_DIR={out}",
                           f"TRAIN_FILE={files[0]}", f"PREDICT_FILE={files[1]}", "NGPUS=0",
                           "REPORT_TO=none", *variables],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def error_lines(done):
    return [line for line in done.stderr.splitlines() if line.startswith("run_squad.py: error:")]


def test_make_train_refuses_a_learning_rate_that_is_not_a_number(tiny_model_dir, tmp_path):
    done = make_train(tiny_model_dir, tmp_path / "run", "LR=nan")
    assert done.returncode == 2, done.stderr[-2000:]
    assert error_lines(done) == ["run_squad.py: error: argument LR: nan is not a finite number (torch computes in "
                                 "float32, up to 3.4e38): give a number, e.g. LR=5e-05"]
    assert not (tmp_path / "run").exists()


def test_make_train_refuses_windows_longer_than_the_models_positions(tiny_model_dir, tmp_path):
    done = make_train(tiny_model_dir, tmp_path / "run", "MAX_SEQ_LENGTH=1024")
    assert done.returncode == 2, done.stderr[-2000:]
    assert error_lines(done) == [f"run_squad.py: error: MAX_SEQ_LENGTH=1024 is longer than the 512 positions of the model "
                                 f"({tiny_model_dir}: max_position_embeddings 512): use MAX_SEQ_LENGTH=512 or less"]
    assert not (tmp_path / "run").exists()  # refused before any feature was built


def test_a_diverged_make_train_exits_3_without_saving_the_bad_weights(tiny_model_dir, tmp_path):
    """LR=1e38 with 4 warmup steps and an evaluation at every step: step 1 (learning rate 0) is evaluated and saved;
    step 2's weights are finite, ~1e38, and its evaluation's logits NaN (a ValueError traceback before): the run stops
    there, before step 2's checkpoint. No final model, exit 3."""
    out = tmp_path / "run"
    done = make_train(tiny_model_dir, out, "LR=1e38", "MAX_SEQ_LENGTH=128", "SAVE_STEPS=1", "LOGGING_STEPS=1",
                      "EXTRA=--max_steps 6 --warmup_steps 4 --max_train_samples 8 --max_eval_samples 4")
    # "make:" run by hand, "make[1]:" under `make test` (a nested make names its level)
    assert done.returncode == 2 and re.search(r"make(\[\d+\])?: \*\*\* \[Makefile:\d+: train\] Error 3", done.stderr), \
        done.stderr[-3000:]  # make's own status is 2 for any failed recipe; run_squad.py's 3 is in its line
    diverged = [line for line in done.stderr.splitlines() if "training diverged" in line]
    assert len(diverged) == 1
    assert "error: training diverged at step 2: the evaluation's logits are not finite (NaN); stopping without saving " \
           "these weights (the newest checkpoint, checkpoint-1, holds the last finite weights): train again with a " \
           "lower LR into a new OUTPUT_DIR: a resume would restore this run's learning rate" in diverged[0]  # fp32
    assert "Traceback" not in done.stderr
    assert [step for step, _ in run_dir.list_checkpoints(out)] == [1]
    assert not run_dir.has_final_model(out)
    # Review #4: make status offers a new training, not `make resume` (which would restore the rate that diverged)
    status = subprocess.run(["make", "-s", "--no-print-directory", "status", f"OUTPUT_DIR={out}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    (hint,) = [line for line in status.stdout.splitlines() if line.startswith("process:")]
    assert "make resume" not in hint and "diverged at step 2" in hint
    assert f"e.g. make train MODEL={tiny_model_dir} OUTPUT_DIR={out}-2 " in hint, hint
    assert " LR=1e+37 " in hint and " MAX_SEQ_LENGTH=128 " in hint  # a tenth of the rate, the run's other settings
    assert json.loads((out / run_dir.DIVERGED_FILE).read_text())["step"] == 2


@pytest.mark.parametrize("demo_out", ["", "/", "//", "..", "/.."])
def test_make_demo_refuses_an_output_folder_that_is_not_its_own_before_anything_runs(tmp_path, demo_out):
    # Review #2: the demo recipe runs `rm -rf -- DEMO_OUT/run ...`; DEMO_OUT= or / would name /run.
    done = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_OUT={demo_out}", f"DEMO_DIR={tmp_path}/d"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "*** DEMO_OUT must " in done.stderr and f"got '{demo_out}'" in done.stderr
    assert done.stdout == "" and not (tmp_path / "d").exists()  # refused before demo-data made DEMO_DIR
