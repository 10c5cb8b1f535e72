"""scripts/status.py (`make status`): a run's progress, ETA, checkpoints and GPUs, from the files it writes."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import status
from bash_scripts import SCRIPTS
from qa import run_dir, storage


def _write_run(run, with_eval=True):
    run.mkdir(parents=True)
    lines = []
    t0 = 1_700_000_000.0
    # A first stretch at 1 step/s, a restart (resume) after a gap, then 2 steps/s.
    for step in range(10, 110, 10):
        lines.append({"step": step, "time": t0 + step, "train/loss": 6.0 - step / 100, "train/learning_rate": 3e-5})
    for step in range(110, 210, 10):
        lines.append({"step": step, "time": t0 + 5000 + (step - 110) / 2, "train/loss": 4.0 - step / 1000})
    if with_eval:
        lines.append({"step": 200, "time": t0 + 5045, "eval/exact": 41.5, "eval/f1": 44.25, "eval/HasAns_f1": 30.0})
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 21'  # a line being written
    (run / "metrics.jsonl").write_text(text)
    (run / "args.json").write_text(json.dumps({"max_steps": -1, "num_train_epochs": 2}))
    for name, step, epoch, complete in [("checkpoint-100", 100, 0.5, True), ("checkpoint-old-name", 150, 0.75, True),
                                        ("checkpoint-200", 200, 1.0, False)]:
        (run / name).mkdir()
        (run / name / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": epoch, "max_steps": 400}))
        if complete:
            storage.write_marker(str(run / name), run_dir.COMPLETE)  # as qa.checkpoints writes it
    (run / "training_plan.json").write_text(json.dumps({"total_steps": 400}))  # written by the trainer at start
    return t0


def test_status_summary_from_a_run(tmp_path):
    run = tmp_path / "run"
    t0 = _write_run(run)
    s = status.summarize(str(run), now=t0 + 5105, gpus=None, gpu_note="no GPU (nvidia-smi not found)")
    assert s["step"] == 200 and s["total_steps"] == 400
    assert s["loss"] == pytest.approx(4.0 - 200 / 1000) and s["loss_step"] == 200
    assert s["eval"] == {"eval/exact": 41.5, "eval/f1": 44.25, "eval/HasAns_f1": 30.0}
    assert s["steps_per_second"] == pytest.approx(2.0)  # only the stretch after the restart
    assert s["eta_seconds"] == pytest.approx(100.0)
    assert s["last_update_seconds_ago"] == pytest.approx(60.0)
    # The step comes from trainer_state.json, not the folder name; checkpoint-200 is incomplete.
    assert s["newest_complete_checkpoint"].endswith("checkpoint-old-name")
    assert s["newest_complete_checkpoint_step"] == 150
    assert [os.path.basename(p) for p in s["incomplete_checkpoints"]] == ["checkpoint-200"]
    assert s["epoch"] == pytest.approx(1.0) and s["epoch_estimated"]
    assert s["unreadable_metrics_lines"] == 1
    text = status.format_status(s)
    assert "step:         200 / 400 (50.0%)" in text
    assert "exact 41.50, f1 44.25" in text
    assert "ETA 0:01:40" in text
    assert "no GPU (nvidia-smi not found)" in text


def test_status_total_from_train_log_and_detached_session(tmp_path):
    # What run_squad.py really writes: trainer_state.json without a total, the total in train.log
    # ("training: ..., N steps, ..."), and detach.sh's lines in console.log.
    run = tmp_path / "run"
    run.mkdir()
    t0 = 1_700_000_000.0
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": step, "time": t0 + step / 4, "train/loss": 1.0}) + "\n" for step in range(100, 700, 100)))
    (run / "args.json").write_text(json.dumps({"max_steps": -1, "num_train_epochs": 7}))
    (run / "train.log").write_text(
        "2026-11-26 10:00:00 training: 4000 features, 1 process(es) x 8 x 1 accumulation = 8 per step, 999 steps, "
        "precision float32\n"
        "2026-11-26 11:00:00 resuming from run/checkpoint-300: step 300, epoch 0, 2400 micro-batches into it\n"
        "2026-11-26 11:00:01 training: 4000 features, 2 process(es) x 8 x 1 accumulation = 16 per step, 1800 steps, "
        "precision torch.float16\n")
    # The trainer writes the total as data at every start; the resume (2 processes) rewrote it.
    (run / "training_plan.json").write_text(json.dumps({"total_steps": 1800, "world_size": 2}))
    console = run / "console.log"
    console.write_text("[detach] 2026-11-26 10:59:58 start in tmux session 'qa-train': python run_squad.py\n"
                       "train:  10%|#         | 180/1800 [00:45<06:45, 4.0step/s]\n")
    s = status.summarize(str(run), now=t0 + 200)
    assert s["total_steps"] == 1800  # the newest start wins
    assert s["eta_seconds"] == pytest.approx((1800 - 600) / 4.0)
    assert s["finished"] is None
    assert s["detached_session"] == {"started": "2026-11-26 10:59:58", "multiplexer": "tmux", "name": "qa-train",
                                     "ended": None, "exit_status": None}
    text = status.format_status(s)
    assert "step:         600 / 1800 (33.3%)" in text and "ETA 0:05:00" in text
    assert "session:      tmux session 'qa-train' started 2026-11-26 10:59:58, no exit recorded" in text

    with console.open("a") as handle:
        handle.write("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"
                     "[detach] 2026-11-26 11:20:00 exit status 1\n")
    text = status.format_status(status.summarize(str(run), now=t0 + 200))
    assert f"ended 2026-11-26 11:20:00 with exit status 1: see the end of {console}" in text
    assert "training:     finished" not in text

    (run / "training_summary.json").write_text(json.dumps({"global_step": 600, "early_stopped": True}))
    text = status.format_status(status.summarize(str(run), now=t0 + 200))
    assert f"training:     finished at step 600 (early stopping); final model in {run}" in text
    assert "ETA" not in text


def test_status_cli_without_nvidia_smi_and_without_a_run(tmp_path):
    run = tmp_path / "run"
    _write_run(run, with_eval=False)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # python, but no nvidia-smi
    result = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), str(run)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "gpu:          no GPU (nvidia-smi not found)" in result.stdout
    assert "last eval:    none yet" in result.stdout
    assert "disk free:" in result.stdout
    as_json = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), str(run), "--json"],
                             capture_output=True, text=True, env=env)
    assert json.loads(as_json.stdout)["step"] == 200

    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (empty, tmp_path / "missing"):
        result = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), str(folder)], capture_output=True, text=True, env=env)
        assert result.returncode == 1
        assert f"no run in {folder}" in result.stderr and "make train" in result.stderr


def test_parse_nvidia_smi_rows():
    text = "0, NVIDIA H200, 1234, 143771, 97\n1, NVIDIA H200, [N/A], 143771, 0\n"
    assert status.parse_nvidia_smi(text) == [
        {"index": 0, "name": "NVIDIA H200", "memory_used_mib": 1234, "memory_total_mib": 143771, "utilization_pct": 97}]


@pytest.mark.gpu
def test_status_reads_a_real_gpu(tmp_path):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi here")
    gpus, note = status.query_gpus()
    assert note is None and gpus and gpus[0]["memory_total_mib"] > 0


def test_make_status_shows_an_eta_only_while_the_run_holds_its_folder(tmp_path):
    # Issue 19 #8: after the run ended (here: its lock let go, as when the process dies), no ETA; the step is the
    # newest checkpoint's when it is newer than metrics.jsonl's last line (a SIGTERM's checkpoint at 247, say).
    from qa import run_lock

    run = tmp_path / "run x"
    _write_run(run)
    newest = run / "checkpoint-247"
    newest.mkdir()
    (newest / "trainer_state.json").write_text(json.dumps({"global_step": 247, "epoch": 1.2}))
    storage.write_marker(str(newest), run_dir.COMPLETE)

    def make_status():
        done = subprocess.run(["make", "--no-print-directory", "-C", str(SCRIPTS.parent), "status", f"OUTPUT_DIR={run}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    lock = run_lock.hold(str(run))
    try:
        live = make_status()
    finally:
        lock.release()
    assert "step:         247 / 400" in live and f"process:      training now, pid {os.getpid()}" in live
    assert "ETA " in live
    ended = make_status()
    assert "step:         247 / 400" in ended and "ETA" not in ended
    assert "steps/s when it last ran" in ended
    hint = next(line for line in ended.splitlines() if line.startswith("process:"))
    assert hint.endswith(f"continue it: make resume OUTPUT_DIR='{run}'")


def test_make_status_offers_make_train_when_there_is_no_checkpoint_to_resume(tmp_path):
    # Review #4: a run that stopped before its first complete checkpoint has nothing to resume; the hint starts it
    # again with its recorded settings (a failed start's traces are taken over: no --overwrite_output_dir needed).
    run = tmp_path / "run a"
    run.mkdir()
    (run / "args.json").write_text(json.dumps({"model_name_or_path": "albert-base-v2", "learning_rate": 5e-5,
                                               "num_train_epochs": 2.0, "per_gpu_train_batch_size": 8}))
    (run / "train.log").write_text("started\n")
    (run / run_dir.LOCK_FILE).write_text("{}")  # its lock file, free: the run is not running
    done = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(SCRIPTS.parent), "status",
                           f"OUTPUT_DIR={run}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (hint,) = [line for line in done.stdout.splitlines() if line.startswith("process:")]
    assert "make resume" not in hint
    assert hint.endswith(f"start it again: make train MODEL=albert-base-v2 OUTPUT_DIR='{run}' LR=5e-05 EPOCHS=2 "
                         "BATCH=8"), hint
    (run / "notes.txt").write_text("mine")  # not a failed start's trace: train refuses the folder without overwrite
    again = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(SCRIPTS.parent), "status",
                            f"OUTPUT_DIR={run}"], capture_output=True, text=True, timeout=120)
    assert "BATCH=8 EXTRA=--overwrite_output_dir\n" in again.stdout
