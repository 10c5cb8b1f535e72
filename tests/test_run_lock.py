"""One training run per output folder (issue 18 item 1): the run holds an OS lock on the folder (qa/run_lock.py);
a second training, resume or --overwrite_output_dir there is refused in one line naming the holder's pid and
host; readers keep working; a SIGKILLed holder leaves no stale lock.

Real processes: a holder started with `python -c` (so that it stays alive as long as the test wants) and
run_squad.py itself as the second start.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, shared_file
from qa import run_dir, run_lock

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
HOLDER = ("import sys; from qa import run_lock; lock = run_lock.hold(sys.argv[1]); lock.note_run_id('run-a'); "
          "print('held', flush=True); sys.stdin.read()")


def env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def start_holder(folder):
    """A live process holding `folder` (it says "held" once it does); it holds until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, env=env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"  # waits on the condition itself: the holder's own word
    return proc


def train(model_dir, out, *extra):
    argv = ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file(*TRAIN)), "--max_train_samples", "4", "--max_seq_length", "128", "--doc_stride", "64",
            "--features_cache_dir", str(out) + "-cache", "--report_to", "none", "--max_steps", "1", "--save_steps", "1",
            *extra]
    return subprocess.run([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=600)


def test_a_held_folder_refuses_a_second_training_a_resume_and_an_overwrite_until_its_holder_dies(tiny_model_dir,
                                                                                               tmp_path):
    out = tmp_path / "run"
    first = train(tiny_model_dir, out)  # a run with a checkpoint, so that a resume and an overwrite mean something
    assert first.returncode == 0, first.stderr[-2000:]
    before = sorted(os.listdir(out))
    holder = start_holder(out)
    try:
        expected = f"is in use by a training run, pid {holder.pid} on host {socket.gethostname()}"
        for extra in ([], ["--overwrite_output_dir"], ["--resume_from_checkpoint", "auto", "--continue_finished"]):
            started = time.monotonic()
            refused = train(tiny_model_dir, out, *extra)
            assert refused.returncode == 2, (extra, refused.stderr[-2000:])
            lines = [line for line in refused.stderr.splitlines() if line.startswith("run_squad.py:")]
            assert len(lines) == 1 and expected in lines[0], (extra, refused.stderr[-2000:])
            assert f"kill {holder.pid}" in lines[0] and "Traceback" not in refused.stderr
            assert time.monotonic() - started < 120  # refused before any model or data is loaded (generous: 2 shared cores)
        assert sorted(os.listdir(out)) == before  # nothing removed or written, the overwrite included
        # Readers keep working: the holder is visible, the run's record readable.
        assert run_lock.holder(out)["pid"] == holder.pid and run_lock.holder(out)["run_id"] == "run-a"
        assert run_dir.latest_checkpoint(out) is not None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # SIGKILL leaves no stale lock: the file is there, naming the dead holder, and a new start takes the folder.
    assert (out / run_dir.LOCK_FILE).exists() and run_lock.holder(out) is None
    again = train(tiny_model_dir, out, "--overwrite_output_dir")
    assert again.returncode == 0, again.stderr[-2000:]
    # The run held the folder itself: its pid, host and run id (args.json's) are in the lock file's record.
    record = json.loads((out / run_dir.LOCK_FILE).read_text())
    assert record["host"] == socket.gethostname() and record["run_id"] == run_dir.read_args(out)["run_id"]
    assert record["run_id"] and record["run_id"] != "run-a"
    assert run_dir.load_train_state(out / "checkpoint-1")["args"]["run_id"] == record["run_id"]  # checkpoints carry it
    assert run_lock.holder(out) is None  # released at exit


def test_the_lock_is_exclusive_between_processes_and_free_after_release(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(run_lock.FolderBusy, match=rf"pid {holder.pid} on host "):
            run_lock.hold(tmp_path)
        # Through make, the hint names make's form.
        with pytest.raises(run_lock.FolderBusy, match=rf"make status OUTPUT_DIR={tmp_path}"):
            run_lock.hold(tmp_path, environ={"QA_VIA_MAKE": "1"})
    finally:
        holder.kill()
        holder.wait(timeout=60)
    lock = run_lock.hold(tmp_path)
    assert lock.record["pid"] == os.getpid()
    lock.release()
    assert run_lock.holder(tmp_path) is None
    lock = run_lock.hold(tmp_path)  # the same process again, after its release
    lock.release()


def test_the_lock_file_is_not_a_run_and_never_a_reason_to_refuse(tmp_path):
    lock = run_lock.hold(tmp_path / "new")
    lock.release()
    assert (tmp_path / "new" / run_dir.LOCK_FILE).exists()
    assert not run_dir.output_dir_has_content(tmp_path / "new")  # a fresh start there is not refused
    assert not run_dir.is_previous_run_file(run_dir.LOCK_FILE)  # --overwrite_output_dir leaves it


def test_run_id_is_recorded_and_a_resume_keeps_it(tmp_path):
    """args.run_id: new for a fresh start, the record's for a resume (qa/resume_record.py takes it like any setting)."""
    from qa.args import given_settings, parse_args
    from qa.resume_record import continue_run_settings

    out, checkpoint = tmp_path / "run", tmp_path / "run" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4, "args": {"run_id": "abc123"}}))
    (out / "args.json").write_text(json.dumps({"run_id": "abc123"}))
    argv = ["--output_dir", str(out), "--do_train", "--resume_from_checkpoint", "auto"]
    args = parse_args(argv)
    assert args.run_id is None
    continue_run_settings(args, given_settings(argv), 1, checkpoint=str(checkpoint))
    assert args.run_id == "abc123"


def test_a_filesystem_without_locks_is_named_not_a_crash(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(run_lock.LocksUnsupported, match="its filesystem has no file locks"):
        run_lock.hold(tmp_path)
