"""Checkpoints that outlive the machine: a run mirrored to S3 (moto on 127.0.0.1) is killed, its folder deleted,
and `--resume_from_checkpoint auto --sync_checkpoints s3://...` on the empty folder ends bit-identical."""

import os
import shutil
import signal

import pytest

import servers
from test_resume import finish, read_weights, start, train_argv

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
    # The final model and its summary reached S3 too, with the newest checkpoints (rotation mirrored there).
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="runs", Prefix="nq/b/")["Contents"]}
    assert {"nq/b/model.safetensors", "nq/b/training_summary.json", "nq/b/args.json"} <= keys
    local = sorted(os.path.basename(p) for _, p in run_dir.list_checkpoints(tmp_path / "b"))
    remote_now = sorted(name for _, name in list_remote_checkpoints(remote, client=s3))
    assert remote_now == local and "everything is in s3://runs/nq/b" in output
