"""S3 outages and shared prefixes (issue 18 items 6 and 1), against a real moto server on 127.0.0.1: a refused
connection is retried with backoff; what did not reach S3 is listed and the exit status says so (4); `make sync`
(python -m qa.sync) uploads it later; a prefix is owned by one run (RUN_OWNER.json) and another is refused there."""

import json
import os
import socket
import subprocess
import sys
import threading
import uuid

import pytest

import make_tiny_model
import servers
from conftest import ROOT, shared_file
from helpers import TRAIN, env
from qa import run_dir, storage, sync
from qa.checkpoints import save_checkpoint

torch = pytest.importorskip("torch")
moto_server, s3 = servers.moto_server, servers.s3

FAST = {"attempts": 3, "backoff_s": 0.01}


@pytest.fixture
def bucket(s3):
    name = f"outage-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def closed_port():
    """A loopback port nothing listens on: connecting is refused, as during an outage."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_at(endpoint):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}, connect_timeout=2))


def finished_run(folder, run_id="run-a"):
    """A run folder as training leaves it: two checkpoints, a final model, its record and metrics."""
    model = make_tiny_model.make_tiny_albert(vocab_size=60, hidden_size=32)
    for step in (2, 4):
        save_checkpoint(str(folder), model, None, torch.optim.AdamW(model.parameters()), None, None,
                        {"global_step": step})
    model.save_pretrained(folder)
    (folder / "args.json").write_text(json.dumps({"run_id": run_id}))
    (folder / "metrics.jsonl").write_text('{"step": 4, "loss": 1.0}\n')
    (folder / "train.log").write_text("grows after the last upload\n")
    return folder


def uploaded(s3, bucket, prefix):
    return sorted(o["Key"][len(prefix):] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for o in page.get("Contents", []))


def test_a_refused_connection_is_retried_with_backoff():
    """Before: "(not retried: a retry cannot fix this)" after one attempt (the builtin ConnectionRefusedError
    under botocore's EndpointConnectionError was taken for a local file error)."""
    client, lines = client_at(f"http://127.0.0.1:{closed_port()}"), []
    with pytest.raises(sync.SyncError, match="failed after 3 attempt"):
        sync.with_retries("list s3://b/p", lambda: client.list_objects_v2(Bucket="bucket-x"), lines.append, 3, 0.01)
    assert [line.split("(attempt ")[1][:6] for line in lines] == ["1 of 3", "2 of 3"]
    assert all("EndpointConnectionError" in line and "retrying in" in line for line in lines)
    waits = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in lines]
    assert waits == [0.01, 0.02]  # doubled each time
    assert sync.BACKOFF_MAX_S * 1 < sum(sync.BACKOFF_S * 2**i for i in range(sync.ATTEMPTS - 1))  # capped: bounded


def test_what_failed_is_listed_exactly_when_s3_answers_but_uploads_fail(s3, bucket, tmp_path):
    from test_sync import Recorder

    run = finished_run(tmp_path / "run")
    recorder, lines = Recorder(fail={"PutObject": 10**6}), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(run / "checkpoint-4")
    checkpoint_sync.submit_final_model(str(run))
    missing = sync.finish_run(checkpoint_sync, str(run), lines.append)
    assert missing == ["checkpoint-2/", "checkpoint-4/", "args.json", "config.json", "metrics.jsonl",
                       "model.safetensors"]  # not train.log: it grows after its last upload
    report = lines[-1]
    assert report.startswith("sync: NOT IN S3: 6 thing(s)") and f"python -m qa.sync {run} s3://{bucket}/p/" in report
    assert "exit status 4" in report


def test_an_outage_at_the_end_is_listed_and_make_sync_uploads_it_later(s3, bucket, moto_server, tmp_path):
    run = finished_run(tmp_path / "run")
    lines = []
    down = client_at(f"http://127.0.0.1:{closed_port()}")
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=down, **FAST)
    checkpoint_sync.submit_checkpoint(run / "checkpoint-4")
    checkpoint_sync.submit_final_model(str(run))
    missing = sync.finish_run(checkpoint_sync, str(run), lines.append)
    assert missing[0].startswith("(S3 cannot be listed")  # then every upload that failed
    assert any("checkpoint-4" in line for line in missing) and any("config.json" in line for line in missing)
    assert "NOT IN S3" in lines[-1] and "make sync" in lines[-1]
    assert uploaded(s3, bucket, "p/") == []

    # S3 is back: the catch-up command, through make
    def make_sync():
        return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "sync", f"OUTPUT_DIR={run}",
                               f"SYNC=s3://{bucket}/p"], env=env(), capture_output=True, text=True, timeout=300)

    done = make_sync()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [name for _, name in sync.list_remote_checkpoints(f"s3://{bucket}/p", s3)] == ["checkpoint-2", "checkpoint-4"]
    keys = uploaded(s3, bucket, "p/")
    assert {"config.json", "model.safetensors", "args.json", "metrics.jsonl", sync.OWNER_FILE} <= set(keys)
    assert sync.read_owner(f"s3://{bucket}/p", s3)["run_id"] == "run-a"
    assert sync.missing_in_s3(str(run), f"s3://{bucket}/p", s3) == []
    again = make_sync()
    assert again.returncode == 0 and "everything of" in again.stdout + again.stderr


def test_the_catch_up_refuses_another_runs_prefix(s3, bucket, tmp_path):
    run = finished_run(tmp_path / "run", run_id="run-b")
    sync.claim_prefix(f"s3://{bucket}/p", "run-a", "/elsewhere/run-a", s3)
    done = subprocess.run([sys.executable, "-m", "qa.sync", str(run), f"s3://{bucket}/p"], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "belongs to another run: run run-a" in done.stderr
    assert "/elsewhere/run-a" in done.stderr and "Traceback" not in done.stderr
    assert uploaded(s3, bucket, "p/") == [sync.OWNER_FILE]


def test_a_prefix_is_owned_by_one_run(s3, bucket):
    prefix = f"s3://{bucket}/runs/x"
    owner = sync.claim_prefix(prefix, "run-a", "outputs/a", s3)
    assert owner["run_id"] == "run-a" and owner["output_dir"] == os.path.abspath("outputs/a")
    assert sync.claim_prefix(prefix, "run-a", "outputs/a", s3)["since"] == owner["since"]  # a resume: the same run
    sync.check_owner(prefix, "run-a", s3)
    with pytest.raises(sync.SyncError, match="belongs to another run: run run-a"):
        sync.claim_prefix(prefix, "run-b", "outputs/b", s3)
    with pytest.raises(sync.SyncError, match="belongs to another run"):
        sync.check_owner(prefix, None, s3)  # a new run (no id yet) is another run too
    sync.check_owner(f"s3://{bucket}/runs/y", None, s3)  # an unclaimed prefix is free


def test_two_runs_claiming_at_once_one_wins(s3, bucket):
    prefix = f"s3://{bucket}/race"
    results, barrier = {}, threading.Barrier(2)

    def claim(run_id):
        barrier.wait()
        try:
            results[run_id] = sync.claim_prefix(prefix, run_id, f"outputs/{run_id}", storage.s3_client())["run_id"]
        except sync.SyncError as exc:
            results[run_id] = exc

    threads = [threading.Thread(target=claim, args=(name,)) for name in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [name for name, value in results.items() if value == name]
    assert len(winners) == 1
    loser = ({"run-a", "run-b"} - set(winners)).pop()
    assert isinstance(results[loser], sync.SyncError) and winners[0] in str(results[loser])


def train_argv(model_dir, out, prefix, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train",
            "--train_file", str(shared_file(*TRAIN)), "--max_train_samples", "8", "--version_2_with_negative",
            "--max_seq_length", "128", "--doc_stride", "64", "--per_gpu_train_batch_size", "4",
            "--features_cache_dir", str(out.parent / "cache"), "--report_to", "none", "--threads", "1",
            "--sync_checkpoints", prefix, *extra]


def run_squad(argv, **extra_env):
    done = subprocess.run([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env(**extra_env),
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_another_run_is_refused_at_a_synced_prefix_before_training_and_a_resume_is_not(tiny_model_dir, s3, bucket,
                                                                                       tmp_path):
    prefix = f"s3://{bucket}/runs/shared"
    code, output = run_squad(train_argv(tiny_model_dir, tmp_path / "a", prefix, "--max_steps", "2", "--save_steps", "2"))
    assert code == 0, output[-3000:]
    run_id = json.loads((tmp_path / "a" / "args.json").read_text())["run_id"]
    assert sync.read_owner(prefix, s3)["run_id"] == run_id
    # Another run (another machine, another folder) syncing to the same prefix: refused before anything is written.
    code, output = run_squad(train_argv(tiny_model_dir, tmp_path / "b", prefix, "--max_steps", "2", "--save_steps", "2"))
    assert code == 2 and f"belongs to another run: run {run_id}" in output and "Traceback" not in output
    assert not (tmp_path / "b" / "checkpoint-2").exists()
    # The same run resumed on a fresh machine (an empty folder, its record pulled from S3): not another run.
    code, output = run_squad(["--output_dir", str(tmp_path / "fresh"), "--do_train", "--resume_from_checkpoint", "auto",
                              "--sync_checkpoints", prefix, "--max_steps", "4", "--features_cache_dir",
                              str(tmp_path / "cache")])
    assert code == 0, output[-3000:]
    assert json.loads((tmp_path / "fresh" / "args.json").read_text())["run_id"] == run_id


class Switch:
    """A TCP proxy on 127.0.0.1 to the moto server that can be cut (new connections refused, open ones closed)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.server.close()
        for sock in self.conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_an_outage_during_training_exits_4_and_make_sync_catches_up(tiny_model_dir, s3, bucket, moto_server, tmp_path):
    """Before: every upload during the outage was skipped, and the run exited 0 after one "upload(s) failed" line."""
    from urllib.parse import urlparse

    switch = Switch(urlparse(moto_server).port)
    prefix = f"s3://{bucket}/runs/outage"
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, prefix, "--max_steps", "4", "--save_steps", "2")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT,
                            env=env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{switch.port}", QA_TEST_SYNC_RETRY="2,0.05",
                                    QA_TEST_SYNC_DELAY_S="0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The outage starts once training is under way: when the first checkpoint is complete here.
    for line in proc.stdout:
        if "checkpoint-2" in line or "step 2" in line:
            break
    switch.cut()
    output = proc.stdout.read()
    assert proc.wait(timeout=300) == sync.INCOMPLETE_EXIT, output[-3000:]
    assert "NOT IN S3" in output and "make sync" in output and "checkpoint-4/" in output
    assert "not retried" not in output and "retrying in" in output
    assert sync.missing_in_s3(str(out), prefix, s3)  # something really is missing
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "sync", f"OUTPUT_DIR={out}",
                           f"SYNC={prefix}"], env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sync.missing_in_s3(str(out), prefix, s3) == []
    assert sync.latest_remote_checkpoint(prefix, s3) == "checkpoint-4"
    assert run_dir.has_final_model(out) and "config.json" in uploaded(s3, bucket, "runs/outage/")
