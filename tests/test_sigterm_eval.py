"""A SIGTERM during a long evaluation (torchrun kills workers ~30 s after forwarding it): the evaluation is
abandoned, the checkpoint saved at once, and the evaluation runs first thing after the resume."""

import json
import signal
import time

import pytest

from conftest import shared_file
from helpers import PREDICT, finish, start, train_argv

torch = pytest.importorskip("torch")
from qa import run_dir  # noqa: E402


def test_sigterm_during_a_slow_evaluation_saves_at_once_and_the_evaluation_runs_after_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, tmp_path / "cache", "--per_gpu_train_batch_size", "2", "--max_steps", "8",
                      "--logging_steps", "4", "--save_steps", "100", "--evaluate_during_training", "--predict_file",
                      str(shared_file(*PREDICT)), "--max_eval_samples", "40", "--per_gpu_eval_batch_size", "2")
    # Each of the ~40 evaluation batches sleeps 1 s: the evaluation at step 4 would take 40 s or more.
    proc = start(argv, QA_TEST_SLEEP_PER_EVAL_BATCH="1")
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and "train/loss" in metrics.read_text()):
        time.sleep(0.05)
    time.sleep(1.5)  # inside the evaluation of step 4 (logged just before it starts)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc)
    stopped_after = time.time() - sent
    assert code == 128 + signal.SIGTERM, output
    assert "evaluation at step 4 abandoned for the signal; it runs again after resume" in output
    assert stopped_after < 25, f"took {stopped_after:.1f} s: the evaluation was not abandoned"
    assert [s for s, _ in run_dir.list_checkpoints(out)] == [4]
    assert run_dir.load_train_state(out / "checkpoint-4")["eval_pending"] is True
    assert not (out / "eval_results_4.json").exists()
    # The resume evaluates step 4 first (quickly now), then trains to the end.
    code, output = finish(start([*argv, "--resume_from_checkpoint", "auto"]))
    assert code == 0, output
    assert output.index("eval at step 4:") < output.index("eval at step 8:")
    assert json.loads((out / "eval_results_4.json").read_text())["step"] == 4
    assert run_dir.read_summary(out)["global_step"] == 8
