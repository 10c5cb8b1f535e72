"""Checkpoints that outlive the machine: a run mirrored to S3 (moto on 127.0.0.1) is killed, its folder deleted,
and `--resume_from_checkpoint auto --sync_checkpoints s3://...` on the empty folder ends bit-identical."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import servers
from conftest import ROOT
from helpers import env, finish, read_weights, start, train_argv

torch = pytest.importorskip("torch")
from qa import run_dir  # noqa: E402
from qa.sync import list_remote_checkpoints  # noqa: E402

moto_server, s3 = servers.moto_server, servers.s3


def test_resume_on_an_empty_folder_from_s3_is_bit_identical(tiny_model_dir, tmp_path, s3):
    s3.create_bucket(Bucket="runs")
    remote = "s3://runs/nq/b"
    common = ["--per_gpu_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--num_train_epochs", "2",
              "--save_steps", "4", "--logging_steps", "3", "--learning_rate", "1e-3", "--save_total_limit", "2"]
    cache = tmp_path / "cache"
    code, output = finish(start(train_argv(tiny_model_dir, tmp_path / "a", cache, *common)))
    assert code == 0, output
    # The same run mirrored to S3, SIGKILLed in epoch 2 (micro-batch 30: after checkpoint-12).
    killed = start(train_argv(tiny_model_dir, tmp_path / "b", cache, *common, "--sync_checkpoints", remote),
                   QA_TEST_KILL_AT_MICRO_STEP="30",
                   # A pause in each save (0.3 s x 3): the background uploader gets the CPU on a loaded machine.
                   QA_CHECKPOINT_TEST_SLEEP_AFTER_MODEL="0.3")
    code, output = finish(killed)
    assert code == -signal.SIGKILL, output
    # Uploads run in the background: what reached S3 before the kill is complete there, rotation mirrored.
    remote_steps = [step for step, _ in list_remote_checkpoints(remote, client=s3)]
    assert remote_steps and remote_steps[-1] <= 12 and len(remote_steps) <= 3
    shutil.rmtree(tmp_path / "b")  # the machine is gone
    # On the fresh machine only where the run is and where its copy lives: the settings come from its record in S3.
    code, output = finish(start(["--output_dir", str(tmp_path / "b"), "--do_train", "--resume_from_checkpoint", "auto",
                                 "--sync_checkpoints", remote]))
    assert code == 0, output
    assert f"fetched {tmp_path / 'b' / f'checkpoint-{remote_steps[-1]}'}" in output
    assert f"resuming from {tmp_path / 'b' / f'checkpoint-{remote_steps[-1]}'}: step {remote_steps[-1]}" in output
    a, b = read_weights(tmp_path / "a"), read_weights(tmp_path / "b")
    assert [n for n in a if not torch.equal(a[n], b[n])] == []
    # The final model and its summary reached S3 too, with the newest checkpoints: rotation mirrored there deletes
    # only what it deleted here, so the killed run's older checkpoints, which this fresh disk never had, stay.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="runs", Prefix="nq/b/")["Contents"]}
    assert {"nq/b/model.safetensors", "nq/b/training_summary.json", "nq/b/args.json"} <= keys
    local = [os.path.basename(p) for _, p in run_dir.list_checkpoints(tmp_path / "b")]
    never_here = [f"checkpoint-{step}" for step in remote_steps[:-1]]
    remote_now = [name for _, name in list_remote_checkpoints(remote, client=s3)]
    assert remote_now == never_here + local and "everything is in s3://runs/nq/b" in output


def children(pid):
    """Process ids whose parent is `pid` (torchrun's workers), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_sigterm_under_torchrun_drains_the_checkpoint_to_s3_before_any_rank_exits(tiny_model_dir, tmp_path, s3):
    """Spot reclaim: SIGTERM reaches both workers. Each saves the step's checkpoint, and rank 0 uploads it while
    rank 1 waits at a barrier: were rank 1 to exit first with 143, torchrun would terminate rank 0 mid-upload.
    Uploads are slowed to 0.2 s an object (QA_TEST_SYNC_DELAY_S), so draining takes a few seconds."""
    s3.create_bucket(Bucket="runs")
    remote, out = "s3://runs/term", tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(ROOT / "run_squad.py"),
            *train_argv(tiny_model_dir, out, tmp_path / "cache", "--per_gpu_train_batch_size", "2", "--num_train_epochs",
                        "40", "--save_steps", "4", "--logging_steps", "4", "--save_total_limit", "1",
                        "--sync_checkpoints", remote)]
    launcher = subprocess.Popen(argv, cwd=ROOT, env=env(QA_TEST_SYNC_DELAY_S="0.2"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not run_dir.list_checkpoints(out) and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.1)
        assert run_dir.list_checkpoints(out), "no checkpoint was written"
        workers = children(launcher.pid)
        assert len(workers) == 2, workers
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        output, _ = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    # Both ranks stop with 143; once past the barrier (uploads drained) the exit order is a race, and torchrun may
    # SIGTERM the slower rank on its way out: what must hold is that the uploads finished before anyone exited.
    assert launcher.returncode != 0 and "exitcode  : 143" in output, output
    assert output.index("everything is in") < output.index("exitcode  :"), output
    (step, path), = run_dir.list_checkpoints(out)  # the checkpoint saved at the signal (--save_total_limit 1)
    assert f"stopped by signal {signal.SIGTERM} at step {step}" in output, output
    assert list_remote_checkpoints(remote, client=s3) == [(step, os.path.basename(path))], output
    assert f"everything is in {remote}" in output
