"""qa.sync against a real moto S3 server on 127.0.0.1 (tests/servers.py), with real checkpoints of a tiny ALBERT.

The order of S3 requests is recorded with botocore's event hooks on a real client (Recorder), which also
injects connection failures and holds uploads at a gate (to see what training sees meanwhile).
"""

import json
import os
import random
import shutil
import threading
import uuid

import pytest
from botocore.exceptions import ConnectionClosedError

import make_tiny_model
import servers
from qa import run_dir, storage, sync
from qa.checkpoints import save_checkpoint, verify_checkpoint
from qa.retention import record_best, rotate_checkpoints
from qa.run_dir import CheckpointError

torch = pytest.importorskip("torch")
# The moto S3 fixtures (s3: a boto3 client on a moto server, with AWS_* set for the code under test), bound
# as module attributes so that pytest finds them and the tests' `s3` parameter shadows no import.
moto_server, s3 = servers.moto_server, servers.s3

FAST = {"attempts": 3, "backoff_s": 0.01}  # retries without the 2-4-8 s waits of real training


class Recorder:
    """A client from qa.storage.s3_client() (so from the test's AWS_* settings) that records its S3 calls in order.

    events: ("start" | "done", operation, [keys]); fail: {operation: n} makes the first n calls of it raise a
    connection error before they are sent; with gate=True uploads wait until `gate` is set."""

    UPLOADS = ("PutObject", "CreateMultipartUpload")

    def __init__(self, fail=None, gate=False):
        self.client = storage.s3_client()
        self.events = []
        self.fail = dict(fail or {})
        self.gate = threading.Event()
        if not gate:
            self.gate.set()
        self.upload_started = threading.Event()
        self._lock = threading.Lock()
        self.client.meta.events.register("before-parameter-build.s3", self._before)
        self.client.meta.events.register("after-call.s3", self._after)

    def _before(self, params, model, context, **_):
        keys = [o["Key"] for o in params.get("Delete", {}).get("Objects", [])] or [params.get("Key")]
        context["recorded_keys"] = keys
        with self._lock:
            self.events.append(("start", model.name, keys))
            inject = self.fail.get(model.name, 0) > 0
            if inject:
                self.fail[model.name] -= 1
        if model.name in self.UPLOADS:
            self.upload_started.set()
            self.gate.wait(30)
        if inject:
            raise ConnectionClosedError(endpoint_url="http://127.0.0.1/injected-failure")

    def _after(self, http_response, model, context, **_):
        if http_response.status_code < 300:
            with self._lock:
                self.events.append(("done", model.name, context["recorded_keys"]))

    def index(self, phase, operation, key, start=0):
        """Position of the first matching event at or after `start`."""
        for i in range(start, len(self.events)):
            if self.events[i][:2] == (phase, operation) and key in self.events[i][2]:
                return i
        raise AssertionError(f"no {phase} {operation} {key} in {self.events[start:]}")

    def uploaded(self, start=0):
        """Keys whose upload finished (single PUT or multipart), in order."""
        return [keys[0] for phase, op, keys in self.events[start:]
                if phase == "done" and op in ("PutObject", "CompleteMultipartUpload")]


@pytest.fixture(scope="module")
def model():
    return make_tiny_model.make_tiny_albert(vocab_size=100)


@pytest.fixture
def bucket(s3):
    name = f"sync-{uuid.uuid4().hex[:12]}"  # one moto server for the session: a bucket per test
    s3.create_bucket(Bucket=name)
    return name


def save(output_dir, model, step):
    """A real checkpoint (qa.checkpoints.save_checkpoint) whose weights differ from step to step."""
    with torch.no_grad():
        next(model.parameters()).add_(0.001 * step)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return save_checkpoint(str(output_dir), model, None, optimizer, None, None, {"global_step": step})


def local_files(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def remote(s3, bucket, prefix=""):
    """{key: bytes} of every object under prefix."""
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def remote_checkpoint_names(s3, bucket, prefix):
    return sorted({key[len(prefix):].split("/")[0] for key in remote(s3, bucket, prefix) if "/" in key[len(prefix):]})


def copy_remote(s3, bucket, source, dest, skip=()):
    for key, data in remote(s3, bucket, source).items():
        if key[len(source):] not in skip:
            s3.put_object(Bucket=bucket, Key=dest + key[len(source):], Body=data)


# ---------------------------------------------------------------------------------------------
# Uploading
# ---------------------------------------------------------------------------------------------
def test_checkpoint_uploads_in_the_background_with_complete_last(s3, bucket, model, tmp_path):
    path = save(tmp_path / "run", model, 3)
    recorder, lines = Recorder(gate=True), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/runs/a/", log=lines.append, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(path)
    # submit returned while the worker is held at its first PUT: training does not wait for S3
    assert recorder.upload_started.wait(10)
    assert remote(s3, bucket) == {}
    recorder.gate.set()
    assert checkpoint_sync.close(timeout=60) == []

    expected = {f"runs/a/checkpoint-3/{name}": data for name, data in local_files(path).items()}
    assert len(expected) >= 7 and "runs/a/checkpoint-3/COMPLETE" in expected
    assert remote(s3, bucket) == expected
    uploaded = recorder.uploaded()
    assert sorted(uploaded) == sorted(expected) and uploaded[-1] == "runs/a/checkpoint-3/COMPLETE"
    # and COMPLETE's PUT began only after every other PUT had finished
    marker_start = recorder.index("start", "PutObject", "runs/a/checkpoint-3/COMPLETE")
    assert all(recorder.index("done", "PutObject", key) < marker_start for key in expected if key != uploaded[-1])
    assert any(f"checkpoint-3 -> s3://{bucket}/runs/a/checkpoint-3/ ({len(expected)} files" in line for line in lines)
    assert lines[-1] == f"sync: everything is in s3://{bucket}/runs/a/"


def test_big_file_goes_up_in_parts_before_the_marker(s3, bucket, tmp_path):
    from boto3.s3.transfer import TransferConfig

    folder = tmp_path / "run" / "checkpoint-7"
    folder.mkdir(parents=True)
    big = random.Random(0).randbytes(6 * 2**20 + 123)  # two 5 MiB parts (S3's smallest part size)
    (folder / "model.safetensors").write_bytes(big)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 7}))
    storage.write_marker(str(folder), "COMPLETE", {"global_step": 7})  # the marker as save_checkpoint writes it
    recorder = Recorder()
    parts = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20, max_concurrency=2)
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/r", log=lambda line: None, client=recorder.client,
                                          transfer_config=parts, **FAST)
    checkpoint_sync.submit_checkpoint(folder)
    assert checkpoint_sync.close(timeout=60) == []

    assert remote(s3, bucket)["r/checkpoint-7/model.safetensors"] == big
    part_uploads = [e for e in recorder.events if e[:2] == ("done", "UploadPart")]
    assert len(part_uploads) == 2
    assert recorder.index("done", "CompleteMultipartUpload", "r/checkpoint-7/model.safetensors") < \
        recorder.index("start", "PutObject", "r/checkpoint-7/COMPLETE")
    assert recorder.uploaded()[-1] == "r/checkpoint-7/COMPLETE"


def test_injected_failures_are_retried(s3, bucket, model, tmp_path):
    path = save(tmp_path / "run", model, 4)
    recorder, lines = Recorder(fail={"PutObject": 2}), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(path)
    assert checkpoint_sync.close(timeout=60) == []

    first = sorted(n for n in local_files(path) if n != "COMPLETE")[0]  # failed twice, then went up
    retries = [line for line in lines if "retrying" in line]
    assert len(retries) == 2
    assert all(f"checkpoint-4/{first}" in line and "ConnectionClosedError" in line for line in retries)
    assert "attempt 1 of 3" in retries[0] and "attempt 2 of 3" in retries[1]
    assert remote(s3, bucket) == {f"p/checkpoint-4/{n}": data for n, data in local_files(path).items()}
    starts = [e for e in recorder.events if e[:2] == ("start", "PutObject")]
    assert len(starts) == len(local_files(path)) + 2


def test_failures_are_reported_not_raised_and_leave_no_marker(s3, bucket, model, tmp_path):
    path = save(tmp_path / "run", model, 5)
    (tmp_path / "run" / "training_summary.json").write_text('{"global_step": 5}')
    recorder, lines = Recorder(fail={"PutObject": 100}), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(path)                                       # no exception here
    checkpoint_sync.submit_files([tmp_path / "run" / "training_summary.json"])   # nor here
    failures = checkpoint_sync.close(timeout=60)

    assert len(failures) == 2
    assert failures[0].startswith(f"checkpoint-5 -> s3://{bucket}/p/checkpoint-5/: ")
    assert "failed after 3 attempt(s): ConnectionClosedError" in failures[0]
    assert "training_summary.json" in failures[1] and "failed after 3 attempt(s)" in failures[1]
    assert remote(s3, bucket) == {}
    # the checkpoint stopped at its first file (3 attempts): nothing more, and never the marker
    checkpoint_puts = [e for e in recorder.events if e[:2] == ("start", "PutObject") and "checkpoint-5" in e[2][0]]
    assert len(checkpoint_puts) == 3
    assert lines[-1].startswith(f"sync: 2 thing(s) did not reach s3://{bucket}/p/")
    assert sum("FAILED" in line for line in lines) == 2


def test_unreachable_bucket_is_reported_without_pointless_retries(s3, model, tmp_path):
    path = save(tmp_path / "run", model, 6)
    lines = []
    checkpoint_sync = sync.CheckpointSync("s3://no-such-bucket-for-sync/p", log=lines.append, **FAST)
    with pytest.raises(sync.SyncError, match=r"cannot list the bucket .*NoSuchBucket.*aws s3 ls s3://no-such-bucket"):
        checkpoint_sync.check_bucket()
    checkpoint_sync.submit_checkpoint(path)
    (failure,) = checkpoint_sync.close(timeout=60)
    assert "NoSuchBucket" in failure and "not retried" in failure
    assert not any("retrying" in line for line in lines)


def test_incomplete_local_folder_is_not_uploaded(s3, bucket, tmp_path):
    folder = tmp_path / "run" / "checkpoint-8"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half written")
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lambda line: None, **FAST)
    checkpoint_sync.submit_checkpoint(folder)
    (failure,) = checkpoint_sync.close(timeout=60)
    assert "is not a complete checkpoint" in failure
    assert remote(s3, bucket) == {}


def test_same_step_uploaded_again_loses_its_marker_first(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    first = save(run, model, 9)
    (run / "checkpoint-9" / "notes.txt").write_text("only in the first save")
    storage.write_marker(first, "COMPLETE", {"global_step": 9})
    recorder = Recorder()
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lambda line: None, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(first)
    assert checkpoint_sync.wait(60)
    assert "p/checkpoint-9/notes.txt" in remote(s3, bucket)

    second = save(run, model, 9)  # SIGTERM right after --save_steps: the same step saved again, other weights
    mark = len(recorder.events)
    checkpoint_sync.submit_checkpoint(second)
    assert checkpoint_sync.close(timeout=60) == []

    assert remote(s3, bucket) == {f"p/checkpoint-9/{n}": data for n, data in local_files(second).items()}
    unmarked = recorder.index("done", "DeleteObject", "p/checkpoint-9/COMPLETE", start=mark)
    first_put = next(i for i in range(mark, len(recorder.events)) if recorder.events[i][:2] == ("start", "PutObject"))
    assert unmarked < first_put
    assert recorder.index("done", "DeleteObjects", "p/checkpoint-9/notes.txt", start=mark) < \
        recorder.index("start", "PutObject", "p/checkpoint-9/COMPLETE", start=mark)


def test_rotation_is_mirrored_never_deleting_the_best(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.json").write_text('{"save_total_limit": 2}')
    recorder = Recorder()
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lambda line: None, client=recorder.client, **FAST)
    checkpoint_sync.submit_files(run / "args.json")  # one path, not a list, is fine too
    # checkpoint-50 is in S3 only (written by another machine): rotation here did not delete it, so it stays
    for step in (100, 200, 300):
        path = save(run, model, step)
        if step == 100:
            record_best(str(run), path, "f1", 80.0)
        checkpoint_sync.submit_checkpoint(path)
    assert checkpoint_sync.wait(60)
    copy_remote(s3, bucket, "p/checkpoint-300/", "p/checkpoint-50/")
    path = save(run, model, 400)
    deleted = rotate_checkpoints(str(run), 2)  # keeps the best (100) and the newest (400)
    assert sorted(map(os.path.basename, deleted)) == ["checkpoint-200", "checkpoint-300"]
    checkpoint_sync.submit_checkpoint(path)
    checkpoint_sync.mirror_rotation(deleted + [str(run / ".trash-checkpoint-7-123")], "checkpoint-100")
    assert checkpoint_sync.wait(60)
    assert remote_checkpoint_names(s3, bucket, "p/") == ["checkpoint-100", "checkpoint-400", "checkpoint-50"]
    assert "p/args.json" in remote(s3, bucket)  # only checkpoint-* prefixes are ever deleted
    for name in ("checkpoint-200", "checkpoint-300"):  # each lost its marker before anything else, after 400 was up
        assert recorder.index("done", "PutObject", "p/checkpoint-400/COMPLETE") < \
            recorder.index("done", "DeleteObject", f"p/{name}/COMPLETE") < \
            recorder.index("start", "DeleteObjects", f"p/{name}/model.safetensors")

    mark = len(recorder.events)
    checkpoint_sync.submit_checkpoint(path)
    checkpoint_sync.mirror_rotation([run / "checkpoint-100"], "checkpoint-100")  # the best is never deleted
    checkpoint_sync.mirror_rotation([], None)  # rotation deleted nothing: nothing is deleted, nothing queued
    failures = checkpoint_sync.close(timeout=60)
    assert remote_checkpoint_names(s3, bucket, "p/") == ["checkpoint-100", "checkpoint-400", "checkpoint-50"]
    assert not [e for e in recorder.events[mark:] if e[1] in ("DeleteObject", "DeleteObjects") and "checkpoint-400" not in e[2][0]]
    assert len(failures) == 1 and "rotation not mirrored: checkpoint-100 kept in" in failures[0]
    assert remote(s3, bucket, "p/checkpoint-100/") == {
        f"p/checkpoint-100/{n}": data for n, data in local_files(run / "checkpoint-100").items()}


def test_failed_upload_keeps_the_last_complete_remote_checkpoint(s3, bucket, model, tmp_path):
    # --save_total_limit 1: checkpoint-1000 is in S3; checkpoint-1100's upload fails (its first file, 3 attempts).
    run = tmp_path / "run"
    recorder, lines = Recorder(), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(save(run, model, 1000))
    assert checkpoint_sync.wait(60)
    recorder.fail["PutObject"] = 3
    path = save(run, model, 1100)
    deleted = rotate_checkpoints(str(run), 1)
    assert [os.path.basename(p) for p in deleted] == ["checkpoint-1000"]
    checkpoint_sync.submit_checkpoint(path)
    checkpoint_sync.mirror_rotation(deleted)
    assert checkpoint_sync.wait(60)
    assert sync.list_remote_checkpoints(f"s3://{bucket}/p", client=s3) == [(1000, "checkpoint-1000")]
    assert not [e for e in recorder.events if e[1] in ("DeleteObject", "DeleteObjects")]
    assert any("rotation not mirrored yet: checkpoint-1100 is not complete" in line for line in lines)

    # the next checkpoint that reaches S3 carries the deletion that waited, and its own
    path = save(run, model, 1200)
    deleted = rotate_checkpoints(str(run), 1)
    checkpoint_sync.submit_checkpoint(path)
    checkpoint_sync.mirror_rotation(deleted)
    failures = checkpoint_sync.close(timeout=60)
    assert len(failures) == 1 and failures[0].startswith(f"checkpoint-1100 -> s3://{bucket}/p/checkpoint-1100/")
    assert remote_checkpoint_names(s3, bucket, "p/") == ["checkpoint-1200"]
    assert sync.list_remote_checkpoints(f"s3://{bucket}/p", client=s3) == [(1200, "checkpoint-1200")]

    # a deletion with no upload before it is refused; the newest complete checkpoint in S3 is never deleted
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, **FAST)
    checkpoint_sync.mirror_rotation(["checkpoint-1200"])
    older = save(tmp_path / "older", model, 900)
    checkpoint_sync.submit_checkpoint(older)
    checkpoint_sync.mirror_rotation(["checkpoint-1200"])
    failures = checkpoint_sync.close(timeout=60)
    assert "no checkpoint upload was submitted before it" in failures[0]
    assert "rotation not mirrored: checkpoint-1200 kept in" in failures[1] and len(failures) == 2
    assert [name for _, name in sync.list_remote_checkpoints(f"s3://{bucket}/p", client=s3)] == \
        ["checkpoint-900", "checkpoint-1200"]


def test_mirror_checkpoint_deletes_only_what_rotation_deleted(s3, bucket, model, tmp_path):
    from qa.trainer import mirror_checkpoint

    # A fresh machine resuming run p: S3 holds checkpoint-1000 and checkpoint-2000, this disk neither.
    source = tmp_path / "source"
    upload_run(bucket, source, [save(source, model, 1000), save(source, model, 2000)], prefix="p")
    run = tmp_path / "run"
    (run / "wandb_run_id.txt").parent.mkdir()
    (run / "wandb_run_id.txt").write_text("abc12345")
    (run / "metrics.jsonl").write_text('{"step": 1100}\n')
    recorder = Recorder()
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lambda line: None, client=recorder.client, **FAST)
    mirror_checkpoint(checkpoint_sync, str(run), save(run, model, 1100), deleted=[])
    mirror_checkpoint(checkpoint_sync, str(run), save(run, model, 1200), deleted=[])
    assert checkpoint_sync.close(timeout=60) == []
    assert remote_checkpoint_names(s3, bucket, "p/") == ["checkpoint-1000", "checkpoint-1100", "checkpoint-1200",
                                                         "checkpoint-2000"]
    assert not [e for e in recorder.events if e[1] in ("DeleteObject", "DeleteObjects")]
    assert remote(s3, bucket, "p/wandb_run_id.txt") == {"p/wandb_run_id.txt": b"abc12345"}
    # records unchanged since the first save are not uploaded again
    assert recorder.uploaded().count("p/wandb_run_id.txt") == 1 and recorder.uploaded().count("p/metrics.jsonl") == 1


def test_final_model_goes_up_config_last_and_only_after_its_weights(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    model.save_pretrained(run)
    for name, text in (("tokenizer.json", "{}"), ("README.md", "card"), ("train.log", "log"), ("args.json", "{}"),
                       ("eval_results_5.json", "{}"), ("predictions_5.json", "{}"), ("metrics.jsonl", "")):
        (run / name).write_text(text)
    assert sync.final_model_names(sorted(os.listdir(run))) == ["README.md", "model.safetensors", "tokenizer.json",
                                                               "config.json"]
    assert sync.final_model_names(["model.safetensors", "train.log"]) == []
    recorder = Recorder()
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lambda line: None, client=recorder.client, **FAST)
    queued = checkpoint_sync.submit_final_model(str(run))
    assert [os.path.basename(p) for p in queued] == ["README.md", "model.safetensors", "tokenizer.json", "config.json"]
    (run / "README.md").write_text("card with the scores")  # rewritten after the evaluation
    root = sorted(str(run / n) for n in os.listdir(run))
    checkpoint_sync.submit_files(root, only_changed=True, marker="config.json")  # what finish_sync does
    assert checkpoint_sync.close(timeout=60) == []
    uploaded = recorder.uploaded()
    assert uploaded[:4] == ["p/README.md", "p/model.safetensors", "p/tokenizer.json", "p/config.json"]
    assert uploaded.count("p/model.safetensors") == 1 and uploaded.count("p/config.json") == 1  # not again
    assert sorted(uploaded[4:]) == ["p/README.md", "p/args.json", "p/eval_results_5.json", "p/metrics.jsonl",
                                    "p/predictions_5.json", "p/train.log"]
    assert remote(s3, bucket, "p/README.md") == {"p/README.md": b"card with the scores"}

    # the weights fail: config.json stays local, so the copy in S3 never looks like a model
    recorder = Recorder(fail={"PutObject": 3})  # README.md's 3 attempts
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/q", log=lambda line: None, client=recorder.client, **FAST)
    checkpoint_sync.submit_final_model(str(run))
    failures = checkpoint_sync.close(timeout=60)
    assert len(failures) == 2 and "README.md" in failures[0]
    assert "config.json: not uploaded, as README.md did not reach S3" in failures[1]
    assert sorted(remote(s3, bucket, "q/")) == ["q/model.safetensors", "q/tokenizer.json"]


def test_reading_s3_fails_in_one_line_or_is_retried(s3, bucket, model, tmp_path):
    with pytest.raises(sync.SyncError) as raised:
        sync.latest_remote_checkpoint("s3://no-such-bucket-for-sync/p")
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("list s3://no-such-bucket-for-sync/p/: NoSuchBucket: ")
    assert "NoSuchBucket" in str(raised.value) and "not retried" in str(raised.value)
    with pytest.raises(sync.SyncError, match=r"^list s3://no-such-bucket-for-sync/p/: .*NoSuchBucket"):
        sync.fetch_checkpoint("s3://no-such-bucket-for-sync/p", str(tmp_path / "fresh"), log=lambda line: None, **FAST)
    with pytest.raises(sync.SyncError, match=r"cannot list the bucket .*NoSuchBucket.*aws s3 ls"):
        sync.check_bucket("s3://no-such-bucket-for-sync/p")

    run = tmp_path / "run"
    upload_run(bucket, run, [save(run, model, 10)])
    recorder = Recorder(fail={"ListObjectsV2": 2, "GetObject": 1})  # a flaky network: retried, then answered
    lines = []
    assert sync.latest_remote_checkpoint(f"s3://{bucket}/runs/a", client=recorder.client,
                                         retry=sync.reading_retry(lines.append, **FAST)) == "checkpoint-10"
    assert len(lines) == 3 and all("retrying" in line and "ConnectionClosedError" in line for line in lines)
    recorder = Recorder(fail={"ListObjectsV2": 5})
    with pytest.raises(sync.SyncError, match=r"^list s3://.*/runs/a/: failed after 3 attempt\(s\): ConnectionClosedError"):
        sync.list_remote_checkpoints(f"s3://{bucket}/runs/a", client=recorder.client,
                                     retry=sync.reading_retry(lambda line: None, **FAST))


def test_start_sync_with_a_mistyped_bucket_exits_2_in_one_line(s3, tmp_path, capsys):
    import argparse

    import run_squad

    lines = []
    log = argparse.Namespace(info=lines.append)
    args = argparse.Namespace(sync_checkpoints="s3://no-such-bucket-for-sync/run", output_dir=str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        run_squad.start_sync(args, log)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("run_squad.py: error: --sync_checkpoints s3://no-such-bucket-for-sync/")
    assert "NoSuchBucket" in err and "aws s3 ls" in err and lines[0].startswith("error: --sync_checkpoints")


def test_checkpoint_rotated_away_before_its_upload_is_skipped(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    kept, rotated = save(run, model, 12), save(run, model, 13)
    recorder, lines = Recorder(gate=True), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(kept)
    checkpoint_sync.submit_checkpoint(rotated)
    assert recorder.upload_started.wait(10)
    storage.remove_tree(rotated)  # a slow uplink: rotation deleted it while the worker was busy with the other
    recorder.gate.set()
    assert checkpoint_sync.close(timeout=60) == []  # superseded, not failed
    assert remote_checkpoint_names(s3, bucket, "p/") == ["checkpoint-12"]
    assert "sync: checkpoint-13 skipped: removed locally (rotated away) before its upload started" in lines


def test_checkpoint_rotated_away_just_before_its_marker_is_abandoned_not_failed(s3, bucket, model, tmp_path,
                                                                                 monkeypatch):
    """Rotation can delete a checkpoint after its last file went up and before its COMPLETE marker (a loaded machine:
    the resumed run of test_sync_resume saved two newer ones meanwhile). Before: "No such file or directory:
    .../COMPLETE" counted as a failure (exit 4); now its partial copy is left without a marker, as when rotation
    catches it earlier."""
    run = tmp_path / "run"
    kept, rotated = save(run, model, 12), save(run, model, 13)
    put_file, lines = sync.CheckpointSync._put_file, []

    def rotate_first(self, local, key):
        if key.endswith("checkpoint-13/" + sync.COMPLETE):
            storage.remove_tree(rotated)
        return put_file(self, local, key)

    monkeypatch.setattr(sync.CheckpointSync, "_put_file", rotate_first)
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=storage.s3_client(), **FAST)
    checkpoint_sync.submit_checkpoint(kept)
    checkpoint_sync.submit_checkpoint(rotated)
    assert checkpoint_sync.close(timeout=60) == []
    assert remote_checkpoint_names(s3, bucket, "p/") == ["checkpoint-12", "checkpoint-13"]  # 13's files went up,
    assert f"p/checkpoint-13/{sync.COMPLETE}" not in remote(s3, bucket, "p/")                # but not its marker:
    assert [name for _, name in sync.list_remote_checkpoints(f"s3://{bucket}/p", client=s3)] == ["checkpoint-12"]
    assert "sync: checkpoint-13 abandoned: removed locally (rotated away) while it was uploading; its partial copy " \
           "has no COMPLETE marker" in lines


def test_files_are_snapshotted_when_submitted(s3, bucket, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 100, "train/loss": 2.5}\n')
    (run / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (run / "best_checkpoint.json").write_text('{"checkpoint": "checkpoint-100"}')
    monkeypatch.setattr(sync, "SNAPSHOT_MAX_BYTES", 10_000)  # so model.safetensors (16 KB) goes up from disk
    recorder, lines = Recorder(gate=True), []
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lines.append, client=recorder.client, **FAST)
    with pytest.raises(ValueError, match="dest_subprefix"):
        checkpoint_sync.submit_files([run / "metrics.jsonl"], dest_subprefix="../elsewhere")
    checkpoint_sync.submit_files([run / "metrics.jsonl", run / "eval_results_9.json", run / "model.safetensors",
                                  run / "best_checkpoint.json"], dest_subprefix="/final/")
    assert recorder.upload_started.wait(10)
    with open(run / "metrics.jsonl", "a") as f:  # training goes on while the worker is held
        f.write('{"step": 200, "train/loss": 2.1}\n')
    (run / "best_checkpoint.json").write_text('{"checkpoint": "checkpoint-200"}')
    recorder.gate.set()
    failures = checkpoint_sync.close(timeout=60)

    assert remote(s3, bucket) == {
        "p/final/metrics.jsonl": b'{"step": 100, "train/loss": 2.5}\n',
        "p/final/model.safetensors": bytes(range(256)) * 64,
        "p/final/best_checkpoint.json": b'{"checkpoint": "checkpoint-100"}',
    }
    assert len(failures) == 1 and str(run / "eval_results_9.json") in failures[0] and "FileNotFoundError" in failures[0]
    with pytest.raises(RuntimeError, match="is closed"):
        checkpoint_sync.submit_files([run / "metrics.jsonl"])


def test_close_timeout_reports_what_is_pending(s3, bucket, model, tmp_path):
    path = save(tmp_path / "run", model, 11)
    recorder = Recorder(gate=True)
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/p", log=lambda line: None, client=recorder.client, **FAST)
    checkpoint_sync.submit_checkpoint(path)
    checkpoint_sync.submit_files([os.path.join(path, "config.json")])
    assert recorder.upload_started.wait(10)
    failures = checkpoint_sync.close(timeout=0.2)
    assert len(failures) == 2 and all("close timed out after 0.2 s" in f for f in failures)
    assert failures[0].startswith("checkpoint-11 ") and failures[1].startswith("config.json ")
    recorder.gate.set()
    checkpoint_sync._thread.join(30)
    assert not checkpoint_sync._thread.is_alive()
    stored = remote(s3, bucket)
    assert len(stored) <= 1 and "p/checkpoint-11/COMPLETE" not in stored  # it stopped; nothing complete-looking


def test_bad_prefix_is_refused():
    with pytest.raises(ValueError, match=r"'my-bucket/runs' is not an s3:// URI; give s3://bucket/prefix"):
        sync.CheckpointSync("my-bucket/runs")


# ---------------------------------------------------------------------------------------------
# Reading back
# ---------------------------------------------------------------------------------------------
def upload_run(bucket, run, paths, files=(), prefix="runs/a"):
    checkpoint_sync = sync.CheckpointSync(f"s3://{bucket}/{prefix}", log=lambda line: None, **FAST)
    for path in paths:
        checkpoint_sync.submit_checkpoint(path)
    checkpoint_sync.submit_files([run / name for name in files])
    assert checkpoint_sync.close(timeout=60) == []


def test_latest_remote_checkpoint_goes_by_global_step_and_completeness(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    upload_run(bucket, run, [save(run, model, 900), save(run, model, 1000)])
    prefix = f"s3://{bucket}/runs/a"
    assert max(["checkpoint-900", "checkpoint-1000"]) == "checkpoint-900"  # what sorting names as strings picks
    assert sync.latest_remote_checkpoint(prefix) == "checkpoint-1000"
    # half uploaded (no COMPLETE), and complete-looking but with a short file: neither is ever picked
    copy_remote(s3, bucket, "runs/a/checkpoint-1000/", "runs/a/checkpoint-1100/", skip=("COMPLETE",))
    copy_remote(s3, bucket, "runs/a/checkpoint-1000/", "runs/a/checkpoint-1200/")
    s3.put_object(Bucket=bucket, Key="runs/a/checkpoint-1200/model.safetensors", Body=b"truncated")
    for name, step in (("checkpoint-1100", 1100), ("checkpoint-1200", 1200)):
        s3.put_object(Bucket=bucket, Key=f"runs/a/{name}/trainer_state.json", Body=json.dumps({"global_step": step}))
    assert sync.latest_remote_checkpoint(prefix) == "checkpoint-1000"
    assert sync.list_remote_checkpoints(prefix + "/") == [(900, "checkpoint-900"), (1000, "checkpoint-1000")]
    assert sync.latest_remote_checkpoint(f"s3://{bucket}/runs/nothing-here") is None

    # the step comes from trainer_state.json, not the name: a renamed copy at step 1500 is the newest
    renamed = run / "checkpoint-800"
    shutil.copytree(run / "checkpoint-1000", renamed)
    state = json.loads((renamed / "trainer_state.json").read_text())
    (renamed / "trainer_state.json").write_text(json.dumps({**state, "global_step": 1500}))
    os.remove(renamed / "COMPLETE")
    storage.write_marker(str(renamed), "COMPLETE", {"global_step": 1500})
    upload_run(bucket, run, [renamed])
    assert sync.latest_remote_checkpoint(prefix) == "checkpoint-800"


def test_fetch_into_an_empty_folder_gives_the_same_complete_checkpoint(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    older, newest = save(run, model, 10), save(run, model, 20)
    record_best(str(run), newest, "f1", 71.5)
    (run / "args.json").write_text('{"learning_rate": 3e-05, "save_steps": 10}')
    (run / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n')
    (run / "wandb_run_id.txt").write_text("k3x9q2ab")
    upload_run(bucket, run, [older, newest], files=["args.json", "best_checkpoint.json", "metrics.jsonl", "wandb_run_id.txt"])

    fresh, lines = tmp_path / "fresh-machine" / "run", []
    path = sync.fetch_checkpoint(f"s3://{bucket}/runs/a", str(fresh), log=lines.append)
    assert path == str(fresh / "checkpoint-20")
    verify_checkpoint(path)
    assert local_files(path) == local_files(newest)
    assert run_dir.resolve_checkpoint("auto", str(fresh)) == path
    assert sorted(os.listdir(fresh)) == ["args.json", "best_checkpoint.json", "checkpoint-20", "metrics.jsonl",
                                         "wandb_run_id.txt"]
    for name in ("args.json", "best_checkpoint.json", "metrics.jsonl", "wandb_run_id.txt"):  # the same wandb run goes on
        assert (fresh / name).read_bytes() == (run / name).read_bytes()
    assert any(f"runs/a/checkpoint-20/ -> {path}" in line for line in lines)

    # a named checkpoint; a half-written local copy of it is replaced, the local run files are kept
    (fresh / "checkpoint-10").mkdir()
    (fresh / "checkpoint-10" / "model.safetensors").write_bytes(b"half")
    (fresh / "args.json").write_text('{"learning_rate": 1e-05}')
    path = sync.fetch_checkpoint(f"s3://{bucket}/runs/a/checkpoint-10/", str(fresh), log=lines.append)
    assert local_files(path) == local_files(older)
    assert (fresh / "args.json").read_text() == '{"learning_rate": 1e-05}'
    assert not [n for n in os.listdir(fresh) if n.startswith((".tmp-", ".trash-"))]


def test_fetch_also_brings_the_best_checkpoint(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    best, newest = save(run, model, 10), save(run, model, 20)
    record_best(str(run), best, "f1", 75.0)
    upload_run(bucket, run, [best, newest], files=["best_checkpoint.json"])

    fresh = tmp_path / "fresh"
    path = sync.fetch_checkpoint(f"s3://{bucket}/runs/a", str(fresh), log=lambda line: None)
    assert path == str(fresh / "checkpoint-20")
    assert [os.path.basename(p) for _, p in run_dir.list_checkpoints(str(fresh))] == ["checkpoint-10", "checkpoint-20"]
    assert local_files(fresh / "checkpoint-10") == local_files(best)
    assert run_dir.best_checkpoint(str(fresh))["checkpoint"] == "checkpoint-10"

    without = tmp_path / "without-best"
    sync.fetch_checkpoint(f"s3://{bucket}/runs/a", str(without), log=lambda line: None, with_best=False)
    assert [os.path.basename(p) for _, p in run_dir.list_checkpoints(str(without))] == ["checkpoint-20"]


def test_fetch_refuses_what_is_not_complete_in_s3(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    upload_run(bucket, run, [save(run, model, 10)])
    copy_remote(s3, bucket, "runs/a/checkpoint-10/", "runs/a/checkpoint-30/", skip=("COMPLETE",))
    copy_remote(s3, bucket, "runs/a/checkpoint-10/", "half/checkpoint-30/", skip=("COMPLETE",))
    fresh = tmp_path / "fresh"

    with pytest.raises(CheckpointError, match=r"checkpoint-30/: no COMPLETE marker .*in S3: checkpoint-10\)"):
        sync.fetch_checkpoint(f"s3://{bucket}/runs/a/checkpoint-30", str(fresh), log=lambda line: None)
    with pytest.raises(CheckpointError, match=r"checkpoint-99/: no such checkpoint in S3"):
        sync.fetch_checkpoint(f"s3://{bucket}/runs/a/checkpoint-99", str(fresh), log=lambda line: None)
    with pytest.raises(CheckpointError, match=r"s3://.*/half/: no complete checkpoint there"):
        sync.fetch_checkpoint(f"s3://{bucket}/half", str(fresh), log=lambda line: None)
    # the newest complete one is still what a prefix means
    assert sync.fetch_checkpoint(f"s3://{bucket}/runs/a", str(fresh), log=lambda line: None).endswith("checkpoint-10")
    assert sorted(os.listdir(fresh)) == ["checkpoint-10"]


def test_fetch_refuses_a_damaged_remote_copy(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    path = save(run, model, 10)
    upload_run(bucket, run, [path])
    weights = (run / "checkpoint-10" / "model.safetensors").read_bytes()
    fresh = tmp_path / "fresh"

    # same size, other bytes: only the hashes in COMPLETE catch it, after the download
    s3.put_object(Bucket=bucket, Key="runs/a/checkpoint-10/model.safetensors", Body=bytes(len(weights)))
    with pytest.raises(CheckpointError, match=r"was downloaded but does not verify .*model.safetensors does not match"):
        sync.fetch_checkpoint(f"s3://{bucket}/runs/a/checkpoint-10", str(fresh), log=lambda line: None)
    assert os.listdir(fresh) == []  # no checkpoint-10, no temporary folder

    s3.put_object(Bucket=bucket, Key="runs/a/checkpoint-10/model.safetensors", Body=weights[:1000])
    short = rf"model.safetensors has 1000 bytes in S3, {len(weights)} in its COMPLETE"  # refused before downloading
    with pytest.raises(CheckpointError, match=short):
        sync.fetch_checkpoint(f"s3://{bucket}/runs/a/checkpoint-10", str(fresh), log=lambda line: None)
    assert os.listdir(fresh) == []


def test_fetch_with_the_final_model_as_best_fetches_no_checkpoint_named_final(s3, bucket, model, tmp_path):
    run = tmp_path / "run"
    newest = save(run, model, 20)
    (run / "best_checkpoint.json").write_text('{"checkpoint": "final", "step": 25, "metric": "f1", "value": 76.0}')
    upload_run(bucket, run, [newest], files=["best_checkpoint.json"])

    fresh, lines = tmp_path / "fresh", []
    assert sync.fetch_checkpoint(f"s3://{bucket}/runs/a", str(fresh), log=lines.append) == str(fresh / "checkpoint-20")
    assert not [line for line in lines if "final" in line and "could not be fetched" in line], lines
    assert sorted(os.listdir(fresh)) == ["best_checkpoint.json", "checkpoint-20"]


def test_the_run_lock_never_goes_to_s3(s3, bucket, model, tmp_path):
    from qa import run_lock

    run = tmp_path / "run"
    save(run, model, 10)
    (run / "args.json").write_text('{"run_id": "0123456789ab"}')
    lock = run_lock.hold(str(run))
    try:
        assert (run / run_dir.LOCK_FILE).exists()
        assert run_dir.LOCK_FILE not in sync.missing_in_s3(str(run), f"s3://{bucket}/runs/l")
        assert sync.upload_missing(str(run), f"s3://{bucket}/runs/l", log=lambda line: None, **FAST) == []
    finally:
        lock.release()
    assert not [key for key in remote(s3, bucket, "runs/l/") if key.endswith(run_dir.LOCK_FILE)]
