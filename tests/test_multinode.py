"""Two nodes that share no filesystem (two torchrun launchers, c10d rendezvous on 127.0.0.1, one CPU process each,
gloo): only global rank 0 writes and uploads to S3 (moto on 127.0.0.1); both are SIGKILLed, both resume with
`--resume_from_checkpoint auto --sync_checkpoints s3://...` from the same step (S3's newest, not node 0's newer
one whose upload the kill cut), and end bit-identical to a run never interrupted; a node whose own copy is stale
fetches S3's newest; a checkpoint S3 lacks stops both ranks with exit status 2 instead of a hang.

    .venv/bin/python -m pytest tests/test_multinode.py -q
"""

import os
import socket
import subprocess
import sys

import pytest

import servers
from conftest import ROOT
from helpers import dropout_model_dir, read_weights, train_argv  # noqa: F401  (dropout_model_dir: a fixture)

torch = pytest.importorskip("torch")
from qa import run_dir  # noqa: E402
from qa.sync import list_remote_checkpoints  # noqa: E402

moto_server, s3 = servers.moto_server, servers.s3

# 12 questions -> 42 windows -> 21 a rank -> 11 micro-batches of 2 (the last of 1) = 11 steps an epoch, 22 in all.
COMMON = ["--per_gpu_train_batch_size", "2", "--num_train_epochs", "2", "--save_steps", "4", "--logging_steps", "4",
          "--learning_rate", "1e-3", "--warmup_steps", "3"]
KILL_AT_MICRO_STEP = "21"  # step 21 of 22 (epoch 2), right after checkpoint-20, whose upload the kill may cut


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_nodes(tmp_path, label, port, node_argv, **extra_env):
    """Start node 0 and node 1 (two torchrun launchers); node_argv(node) gives run_squad.py's flags for each.

    Ranks in a c10d rendezvous are ordered by node address: --local_addr 127.0.0.1 makes node 0 global rank 0
    (127.0.0.2 is loopback too, a second "machine")."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                   **extra_env}
    launchers = []
    for node in (0, 1):
        argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "test",
                "--rdzv_conf", f"is_host={int(node == 0)}", "--local_addr", f"127.0.0.{node + 1}",
                str(ROOT / "run_squad.py"), *node_argv(node)]
        output = open(tmp_path / f"{label}-node{node}.log", "w+")
        launchers.append((subprocess.Popen(argv, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                           text=True), output))
    return launchers


def finish_nodes(launchers, timeout=240):
    """[(exit status, output)] of each node's launcher."""
    results = []
    for proc, output in launchers:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other, _ in launchers:
                other.kill()
            raise
        output.seek(0)
        results.append((proc.returncode, output.read()))
        output.close()
    return results


@pytest.mark.slow
def test_two_nodes_without_a_shared_folder_resume_from_s3_at_the_same_step(dropout_model_dir, tmp_path, s3):  # noqa: F811
    s3.create_bucket(Bucket="runs")
    remote = "s3://runs/two-nodes"
    machine = [tmp_path / "machine0", tmp_path / "machine1"]  # each node's own disk: its run folder and its cache

    def node_argv(run, *extra):
        return lambda node: train_argv(dropout_model_dir, machine[node] / run, machine[node] / "cache", *COMMON, *extra)

    # Uninterrupted, two nodes.
    results = finish_nodes(launch_nodes(tmp_path, "a", free_port(), node_argv("a")))
    assert [code for code, _ in results] == [0, 0], results
    assert run_dir.read_summary(machine[0] / "a")["global_step"] == 22
    assert not (machine[1] / "a").exists() or os.listdir(machine[1] / "a") == []  # only global rank 0 writes

    # The same run mirrored to S3, both workers SIGKILLed after their 21st micro-batch. Each save pauses 0.2 s
    # (1 s in all) so that the upload thread, about 8 steps behind on 2 loaded cores, gets checkpoint-4 or
    # later into S3 before the kill (each of 22 steps takes about 60 ms here).
    results = finish_nodes(launch_nodes(tmp_path, "b", free_port(), node_argv("b", "--sync_checkpoints", remote),
                                        QA_TEST_KILL_AT_MICRO_STEP=KILL_AT_MICRO_STEP,
                                        QA_CHECKPOINT_TEST_SLEEP_AFTER_MODEL="0.2"))
    # Node 0's worker dies by SIGKILL; node 1's launcher may report its own worker's SIGKILL or, when node 0's
    # launcher (which hosts the c10d store) went first, the lost store: either way a failed run.
    assert results[0][0] != 0 and "Signal 9 (SIGKILL)" in results[0][1], results[0]
    assert results[1][0] != 0 and ("Signal 9 (SIGKILL)" in results[1][1] or "RendezvousConnectionError" in results[1][1]), \
        results[1]
    local_steps = [step for step, _ in run_dir.list_checkpoints(machine[0] / "b")]
    assert local_steps == [4, 8, 12, 16, 20]
    assert not (machine[1] / "b").exists() or os.listdir(machine[1] / "b") == []  # node 1 wrote nothing
    # Uploads run in the background; the kill cut checkpoint-20's if it was still going. Where it was not, its
    # COMPLETE marker is removed (as a cut upload leaves it): node 0's newest checkpoint is not in S3.
    remote_steps = [step for step, _ in list_remote_checkpoints(remote, client=s3)]
    if remote_steps and remote_steps[-1] == 20:
        s3.delete_object(Bucket="runs", Key="two-nodes/checkpoint-20/COMPLETE")
    remote_steps = [step for step, _ in list_remote_checkpoints(remote, client=s3)]
    assert remote_steps and remote_steps[-1] < 20, remote_steps
    resumed_step = remote_steps[-1]

    # Both nodes resume: node 0 from its own copy of S3's newest checkpoint, node 1 from S3.
    results = finish_nodes(launch_nodes(tmp_path, "resume", free_port(),
                                        node_argv("b", "--sync_checkpoints", remote, "--resume_from_checkpoint", "auto")))
    assert [code for code, _ in results] == [0, 0], results
    (_, output0), (_, output1) = results
    node0_copy, node1_copy = machine[0] / "b" / f"checkpoint-{resumed_step}", machine[1] / "b" / f"checkpoint-{resumed_step}"
    assert (f"resuming from checkpoint-{resumed_step}, the newest complete checkpoint in {remote} (the newest in each "
            "rank's folder: checkpoint-20, None)") in output0
    assert f"rank 0: {node0_copy} is here and verifies: not fetched" in output0
    assert f"rank 1: fetched {node1_copy} (verified)" in output1
    assert f"resuming from {node0_copy}: step {resumed_step}" in output0
    # Node 1's folder got the checkpoint (verified against its COMPLETE marker) and the run's record from S3.
    assert run_dir.checkpoint_problem(node1_copy, check_hashes=True) is None
    assert run_dir.load_train_state(node1_copy)["global_step"] == resumed_step
    assert (machine[1] / "b" / run_dir.ARGS_FILE).is_file()
    assert run_dir.read_summary(machine[0] / "b")["global_step"] == 22
    a, b = read_weights(machine[0] / "a"), read_weights(machine[0] / "b")
    assert a.keys() == b.keys() and [name for name in a if not torch.equal(a[name], b[name])] == []

    # Resumed again from auto (the record supplies --sync_checkpoints): node 1's own copy is older than node 0's
    # newest, so both take S3's newest, checkpoint-20 (uploaded before the last run ended), and node 1 fetches it.
    # The run finished at step 22: going back to checkpoint-20 is asked for (--continue_finished).
    results = finish_nodes(launch_nodes(tmp_path, "again", free_port(), node_argv("b", "--resume_from_checkpoint", "auto",
                                                                                "--continue_finished")))
    assert [code for code, _ in results] == [0, 0], results
    (_, output0), (_, output1) = results
    assert (f"resuming from checkpoint-20, the newest complete checkpoint in {remote} (the newest in each rank's "
            f"folder: checkpoint-20, checkpoint-{resumed_step})") in output0
    assert f"rank 1: fetched {machine[1] / 'b' / 'checkpoint-20'} (verified)" in output1
    b = read_weights(machine[0] / "b")
    assert [name for name in a if not torch.equal(a[name], b[name])] == []

    # A checkpoint that S3 does not have: rank 0's fetch fails, and both ranks stop with its reason (exit status
    # 2) rather than rank 1 waiting for rank 0 at the next collective.
    missing = f"{remote}/checkpoint-99"
    results = finish_nodes(launch_nodes(tmp_path, "missing", free_port(),
                                        node_argv("b", "--sync_checkpoints", remote, "--resume_from_checkpoint", missing,
                                                  "--continue_finished")))
    for code, output in results:
        assert code != 0 and "exitcode  : 2" in output, output
        assert f"run_squad.py: rank 0: {missing}/: no such checkpoint in S3" in output, output
