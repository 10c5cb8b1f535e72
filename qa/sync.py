"""Checkpoints that outlive the machine: complete checkpoints mirrored to S3 as they are written, and pulled back.

The trainer (rank 0 only; `--sync_checkpoints s3://my-bucket/runs/nq-albert`):

    check_bucket("s3://my-bucket/runs/nq-albert")         # SyncError now for a mistyped bucket, not at step 1500
    sync = CheckpointSync("s3://my-bucket/runs/nq-albert", log=run_log.info)
    sync.submit_files([os.path.join(out, "args.json")])
    ...                                                   # every --save_steps:
    path = save_checkpoint(out, ...); record_best(out, path, "f1", f1); deleted = rotate_checkpoints(out, limit)
    sync.submit_checkpoint(path)                          # returns at once; a worker thread uploads
    sync.mirror_rotation(deleted, (run_dir.best_checkpoint(out) or {}).get("checkpoint"))  # after that upload
    sync.submit_files([os.path.join(out, "best_checkpoint.json"), os.path.join(out, "metrics.jsonl")],
                      only_changed=True)
    ...                                                   # right after the final model is written:
    sync.submit_final_model(out)                          # weights and tokenizer, config.json last
    ...                                                   # at the end (or on SIGTERM, after the last save):
    sync.submit_files(root_files, only_changed=True)      # summary, eval results, logs; not the weights again
    failures = sync.close(timeout=600)                    # [] when everything reached S3

A fresh machine:

    latest_remote_checkpoint("s3://my-bucket/runs/nq-albert")          # "checkpoint-1500", or None
    path = fetch_checkpoint("s3://my-bucket/runs/nq-albert", "outputs/nq-albert")   # newest complete one
    path = fetch_checkpoint("s3://my-bucket/runs/nq-albert/checkpoint-900", "outputs/nq-albert")

What lands in S3 (the same layout as the run folder):

    s3://bucket/prefix/checkpoint-N/...       every file of the checkpoint, its COMPLETE marker uploaded last
    s3://bucket/prefix/<file>                 args.json, best_checkpoint.json, metrics.jsonl, wandb_run_id.txt,
                                              the final model (config.json last), training_summary.json,
                                              eval_results_*.json (submit_files, submit_final_model)

How it stays safe:
- A remote checkpoint is complete when its COMPLETE object exists and every file it lists is there with
  its size. COMPLETE goes up last and, when the same step is uploaded again, comes down first; a
  deletion (rotation mirrored) removes COMPLETE before the rest. So an upload or deletion cut short
  (spot instance reclaimed) leaves a prefix that nothing takes as a checkpoint. The final model's
  config.json likewise goes up last, and only when its weights and tokenizer files did.
- Rotation is mirrored only for what `rotate_checkpoints` deleted here, and only once the checkpoint
  uploaded just before the deletion is complete in S3: with --save_total_limit 1, a failed upload of
  checkpoint-1100 keeps checkpoint-1000 in S3 (its deletion waits for the next upload that succeeds).
  The best checkpoint and the newest complete one in S3 are never deleted.
- One worker thread does everything in submission order, one object at a time (big files go up in
  64 MiB parts, 4 at once: boto3's TransferConfig). Order is what makes "COMPLETE last" and "delete
  after the newer checkpoint is up" hold without locks.
- A failed request is retried with exponential backoff (8 attempts: waits of 2, 4, 8, 16, 32, 60, 60 s, on top of
  botocore's own retries: an S3 outage of ~3 minutes is ridden out), then reported through `log` and kept for
  `close()`'s report; never raised into training. A refused, reset or timed-out connection is always retried;
  errors that a retry cannot fix (no such bucket, access denied, a local file gone) are not. A checkpoint with a
  file that failed does not get its COMPLETE marker.
- At the end of the run (`finish_run`) S3 is compared with the run folder: what is missing there (checkpoints not
  complete, root files absent or of another size) is logged with the command that uploads it later,
  `python -m qa.sync RUN_DIR s3://...` (`make sync`), and run_squad.py exits with INCOMPLETE_EXIT (4).
- One run per prefix: RUN_OWNER.json (run id, host, folder) is written at the run's first upload (`claim_prefix`,
  a conditional write), and another run (another run id, or a new run) is refused there before training
  (`check_owner`); a resume keeps its run id (args.json, fetched from S3 on a fresh machine), so it is the same run.
- Small files (under 16 MiB: metrics.jsonl, best_checkpoint.json) are read when submitted, so the copy
  in S3 is what they held at that moment, not what the next evaluation wrote meanwhile.
- A download goes to `.tmp-checkpoint-N-PID/` (COMPLETE last), is verified, then renamed: a folder
  named checkpoint-N is complete or absent. The step is read from trainer_state.json, never the name.
- Reading S3 (listing, COMPLETE markers, trainer_state.json) is retried like writing; what still fails
  raises SyncError with one line naming the object and the cause (NoSuchBucket, AccessDenied, ...).

Test hook: QA_TEST_SYNC_DELAY_S=S makes the worker sleep S seconds before each object it uploads (a slow
uplink; tests/test_sync_resume.py drains a SIGTERM checkpoint under torchrun that way).

Credentials, region and endpoint come from the usual AWS settings (AWS_* variables, ~/.aws, an instance
role; AWS_ENDPOINT_URL for MinIO and the tests' moto server), through `qa.storage.s3_client()`.
"""

import collections
import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time

from qa import run_dir, storage
from qa.checkpoints import verify_checkpoint
from qa.run_dir import (
    ARGS_FILE,
    BEST_FILE,
    CHECKPOINT_PREFIX,
    COMMAND_FILE,
    COMPLETE,
    DETACHED_LOG,
    EVAL_KINDS,
    METRICS_FILE,
    MODEL_CONFIG,
    PLAN_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    TRAIN_LOG,
    WANDB_ID_FILE,
    CheckpointError,
)
from qa.storage import is_s3, s3_client, split_s3

# Run-level files a resume on a fresh machine needs beside the checkpoint: the run's own arguments
# (a resume takes every setting from them), which checkpoint is best, the logged curve, and the wandb
# run id (without it the resumed run starts a second wandb run instead of continuing the curve).
RESUME_FILES = (ARGS_FILE, BEST_FILE, METRICS_FILE, WANDB_ID_FILE)
# The run's record at the root of the run folder: beside the final model, but not part of it.
RECORD_FILES = frozenset({ARGS_FILE, COMMAND_FILE, PLAN_FILE, TRAIN_LOG, METRICS_FILE, BEST_FILE, SUMMARY_FILE,
                          WANDB_ID_FILE, DETACHED_LOG})
DELAY_ENV = "QA_TEST_SYNC_DELAY_S"  # test hook: seconds slept before each uploaded object
ATTEMPTS = 8                        # per request; botocore retries each one a few times on its own too
BACKOFF_S = 2.0                     # first wait; doubled each time, up to BACKOFF_MAX_S:
BACKOFF_MAX_S = 60.0                # 2 + 4 + 8 + 16 + 32 + 60 + 60 = ~3 min of outage ridden out per object
RETRY_ENV = "QA_TEST_SYNC_RETRY"    # test hook: "ATTEMPTS,BACKOFF_S" replaces the two above (tests: "2,0.05")
if os.environ.get(RETRY_ENV):
    ATTEMPTS, BACKOFF_S = int(os.environ[RETRY_ENV].split(",")[0]), float(os.environ[RETRY_ENV].split(",")[1])
OWNER_FILE = "RUN_OWNER.json"       # at the prefix root: {"run_id", "host", "output_dir", "since"} of the run owning it
INCOMPLETE_EXIT = 4                 # exit status of run_squad.py / python -m qa.sync when something is not in S3
# Files at the root of a run folder that keep growing after their last upload (the log says how the sync ended):
# never counted as missing in S3.
GROWING_FILES = frozenset({TRAIN_LOG, DETACHED_LOG})
SNAPSHOT_MAX_BYTES = 16 * 2**20     # read at submit time below this; metrics.jsonl of a 7-epoch run is ~1 MB
MULTIPART_BYTES = 64 * 2**20        # an albert-xlarge model.safetensors (~236 MB) goes up in 4 parts
MULTIPART_CONCURRENCY = 4
DELETE_BATCH = 1000                 # S3's limit for one DeleteObjects call

logger = logging.getLogger(__name__)


class SyncError(RuntimeError):
    """An S3 operation failed for good (after its retries); the message names the object and the cause."""


# ---------------------------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------------------------
def split_prefix(s3_prefix):
    """'s3://bucket/runs/nq/' -> ('bucket', 'runs/nq/'); the key prefix is '' or ends in '/'."""
    if not is_s3(s3_prefix):
        raise ValueError(f"{s3_prefix!r} is not an s3:// URI; give s3://bucket/prefix, "
                         "e.g. s3://my-bucket/runs/nq-albert")
    bucket, key = split_s3(s3_prefix)
    key = key.strip("/")
    return bucket, f"{key}/" if key else ""


def marker_sizes(marker):
    """{relative path: size} from a COMPLETE marker's content: {"files": {name: size}} (first format) or
    {"files": {name: {"size": ..., "blake2b": ...}}}; None when it is not a marker."""
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):
        return None
    return {name: (value.get("size") if isinstance(value, dict) else value) for name, value in files.items()}


def remote_problem(objects, ckpt_key, marker):
    """None when the remote checkpoint at `ckpt_key` ('runs/nq/checkpoint-9/') is complete, else why not.

    objects: {key: size} listed under ckpt_key; marker: the parsed COMPLETE object, or None if absent."""
    if ckpt_key + COMPLETE not in objects:
        return "no COMPLETE marker (its upload was interrupted, or it is being uploaded now)"
    sizes = marker_sizes(marker)
    if sizes is None:
        return "its COMPLETE marker is not valid"
    for name, size in sorted(sizes.items()):
        remote = objects.get(ckpt_key + name.replace(os.sep, "/"))
        if remote is None:
            return f"{name} is missing"
        if remote != size:
            return f"{name} has {remote} bytes in S3, {size} in its COMPLETE marker"
    return None


def local_key_path(root, relative_key):
    """`root/relative_key` for an object inside a checkpoint prefix; refuses keys that climb out of root."""
    parts = relative_key.split("/")
    if not relative_key or relative_key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise CheckpointError(f"refusing to download the object {relative_key!r}: its key is not a plain relative path")
    return os.path.join(root, *parts)


def final_model_names(names):
    """The final model's files among the names at the root of a run folder, in upload order: config.json last
    (what makes a folder a model for from_pretrained), after the weights, tokenizer files, card and qa_config.json.

    [] when there is no config.json. Not the model: the run's record (RECORD_FILES), evaluation files
    (predictions_*.json, eval_results_*.json, ...), hidden files and atomic writes in progress (*.tmp-PID).
    A deny-list, not run_dir.FINAL_MODEL_FILES (what upload.sh sends): the mirror of a live run folder keeps any file
    a tokenizer writes, also one that list does not name yet (DeBERTa-v3's spm.model)."""
    if MODEL_CONFIG not in names:
        return []
    evaluation = tuple(f"{kind}_" for kind in EVAL_KINDS)
    model = [name for name in names if name not in RECORD_FILES and name != MODEL_CONFIG and not name.startswith(".")
             and ".tmp-" not in name and not (name.startswith(evaluation) and name.endswith(".json"))]
    return sorted(model) + [MODEL_CONFIG]


def _signature(path):
    """What tells a file rewritten since it was submitted: (inode, size, mtime in ns); None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _is_transient(exc):
    """True for a connection refused, reset or timed out (an S3 outage, a network blip): retried with backoff,
    although the chain also holds the builtin ConnectionRefusedError (an OSError) underneath botocore's error."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_permanent(exc):
    """True for errors a retry cannot fix: a local file gone or unreadable, or an S3 4xx (no such bucket,
    access denied, bad credentials), except 408 (timeout) and 429 (slow down)."""
    seen = set()
    while exc is not None and id(exc) not in seen:  # boto3's S3UploadFailedError wraps the ClientError
        seen.add(id(exc))
        if isinstance(exc, OSError) and not type(exc).__module__.startswith(("botocore", "urllib3")):
            return True
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError", "ParamValidationError"):
            return True  # botocore's: no retry finds credentials that are not configured
        response = getattr(exc, "response", None)  # botocore's ClientError carries the HTTP status
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
        if status is not None:
            return 400 <= status < 500 and status not in (408, 429)
        exc = exc.__cause__ or exc.__context__
    return False


def with_retries(what, operation, log, attempts=ATTEMPTS, backoff_s=BACKOFF_S, stop=None, max_backoff_s=BACKOFF_MAX_S):
    """operation() retried with exponential backoff (capped at max_backoff_s); SyncError naming `what` when every
    attempt failed. Connection errors (refused, reset, timed out) are always retried.

    Local file errors (FileNotFoundError...) are raised as they are: the caller decides what they mean.
    stop: a threading.Event that ends the waiting early (close() timed out)."""
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as exc:
            transient = _is_transient(exc)
            if not transient and isinstance(exc, OSError) and _is_permanent(exc):
                raise
            if not transient and _is_permanent(exc):
                raise SyncError(f"{what}: {_one_line(exc)} (not retried: a retry cannot fix this)") from exc
            if attempt == attempts or (stop is not None and stop.is_set()):
                raise SyncError(f"{what}: failed after {attempt} attempt(s): {_one_line(exc)}") from exc
            log(f"sync: {what} failed (attempt {attempt} of {attempts}: {_one_line(exc)}); retrying in {delay:g} s")
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
    raise AssertionError("unreachable")  # pragma: no cover


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES,
                          max_concurrency=MULTIPART_CONCURRENCY)


# ---------------------------------------------------------------------------------------------
# Reading what is in S3
# ---------------------------------------------------------------------------------------------
def _list_objects(client, bucket, key_prefix):
    """{key: size} of every object under key_prefix."""
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        for obj in page.get("Contents", []):
            objects[obj["Key"]] = obj["Size"]
    return objects


def _checkpoint_names(client, bucket, key_prefix):
    """Names of the checkpoint-* 'folders' directly under key_prefix, complete or not."""
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(key_prefix):].rstrip("/")
            if name.startswith(CHECKPOINT_PREFIX):
                names.append(name)
    return sorted(names)


def _read_json_object(client, bucket, key):
    """The parsed JSON object at key, or None when it is missing or not JSON."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def reading_retry(log=None, attempts=ATTEMPTS, backoff_s=BACKOFF_S):
    """retry(what, operation) for reading S3: with_retries with these settings (retries logged through `log`,
    default this module's logger), so that a read that keeps failing raises SyncError with one line."""
    log = log or (lambda line: logger.warning("%s", line))
    return lambda what, operation: with_retries(what, operation, log, attempts, backoff_s)


def _inspect_remote(client, bucket, ckpt_key, retry=None):
    """(objects, marker, problem) of the remote checkpoint at ckpt_key; SyncError when S3 cannot be read."""
    retry = retry or reading_retry()
    uri = f"s3://{bucket}/{ckpt_key}"
    objects = retry(f"list {uri}", lambda: _list_objects(client, bucket, ckpt_key))
    marker = None
    if ckpt_key + COMPLETE in objects:
        marker = retry(f"read {uri}{COMPLETE}", lambda: _read_json_object(client, bucket, ckpt_key + COMPLETE))
    return objects, marker, remote_problem(objects, ckpt_key, marker)


def _remote_step(client, bucket, ckpt_key, retry=None):
    retry = retry or reading_retry()
    state = retry(f"read s3://{bucket}/{ckpt_key}{STATE_FILE}",
                  lambda: _read_json_object(client, bucket, ckpt_key + STATE_FILE))
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def list_remote_checkpoints(s3_prefix, client=None, retry=None):
    """[(global_step, name)] of the complete checkpoints under s3_prefix, oldest step first.

    Complete: COMPLETE exists and every file it lists is there with its size. The step is the uploaded
    trainer_state.json's global_step, never parsed from the name. retry: see reading_retry (the default
    retries 5 times). Raises SyncError (one line: the object and the cause) when S3 cannot be read."""
    client = client or s3_client()
    retry = retry or reading_retry()
    bucket, key_prefix = split_prefix(s3_prefix)
    found = []
    names = retry(f"list s3://{bucket}/{key_prefix}", lambda: _checkpoint_names(client, bucket, key_prefix))
    for name in names:
        ckpt_key = f"{key_prefix}{name}/"
        _, _, problem = _inspect_remote(client, bucket, ckpt_key, retry)
        if problem is not None:
            logger.info("s3://%s/%s is not a complete checkpoint: %s", bucket, ckpt_key, problem)
            continue
        step = _remote_step(client, bucket, ckpt_key, retry)
        if step is None:
            logger.warning("ignoring s3://%s/%s: its %s has no integer global_step", bucket, ckpt_key, STATE_FILE)
            continue
        found.append((step, name))
    return sorted(found)


def latest_remote_checkpoint(s3_prefix, client=None, retry=None):
    """Name ("checkpoint-1500") of the complete checkpoint with the highest global step under s3_prefix, or None.

    Raises SyncError when S3 cannot be read (no such bucket, access denied, no network after the retries)."""
    found = list_remote_checkpoints(s3_prefix, client, retry)
    return found[-1][1] if found else None


def check_bucket(s3_prefix, client=None):
    """Raise SyncError (one line, saying what to check) now if the bucket of s3_prefix cannot be listed: a
    mistyped bucket, a wrong region or missing credentials fail before training, not at step 1500."""
    bucket, key_prefix = split_prefix(s3_prefix)
    uri = f"s3://{bucket}/{key_prefix}"
    try:
        (client or s3_client()).list_objects_v2(Bucket=bucket, Prefix=key_prefix, MaxKeys=1)
    except Exception as exc:
        raise SyncError(f"--sync_checkpoints {uri}: cannot list the bucket ({_one_line(exc)}); check the "
                        f"bucket name and the AWS credentials and region (try: aws s3 ls {uri})") from exc


# ---------------------------------------------------------------------------------------------
# One run per prefix: RUN_OWNER.json names the run that owns it
# ---------------------------------------------------------------------------------------------
def read_owner(s3_prefix, client=None, retry=None):
    """The RUN_OWNER.json record at the root of s3_prefix ({"run_id", "host", "output_dir", "since"}), or None."""
    client = client or s3_client()
    bucket, key_prefix = split_prefix(s3_prefix)
    record = (retry or reading_retry())(f"read s3://{bucket}/{key_prefix}{OWNER_FILE}",
                                        lambda: _read_json_object(client, bucket, key_prefix + OWNER_FILE))
    return record if isinstance(record, dict) else None


def _refuse_other_run(s3_prefix, owner, run_id):
    if owner is not None and owner.get("run_id") not in (None, run_id):
        raise SyncError(f"{s3_prefix.rstrip('/')}/ belongs to another run: run {owner.get('run_id')} (from "
                        f"{owner.get('output_dir')} on {owner.get('host')}, since {owner.get('since')}; this run is "
                        f"{run_id}). Sync to another prefix, or resume that run from its own folder (a resume keeps "
                        f"its run id); if that run is gone for good, delete {s3_prefix.rstrip('/')}/{OWNER_FILE}")


def check_owner(s3_prefix, run_id, client=None, retry=None):
    """SyncError when another run owns s3_prefix (another run id; for run_id None, a new run: any owner); nothing
    is written."""
    _refuse_other_run(s3_prefix, read_owner(s3_prefix, client, retry), run_id)


def claim_prefix(s3_prefix, run_id, output_dir, client=None, retry=None):
    """Write RUN_OWNER.json for run_id unless it is there (a conditional write: of two runs starting at once, one
    wins); SyncError when another run owns the prefix. Returns the owner record."""
    import socket

    from botocore.exceptions import ClientError

    client = client or s3_client()
    retry = retry or reading_retry()
    bucket, key_prefix = split_prefix(s3_prefix)
    owner = read_owner(s3_prefix, client, retry)
    if owner is None and run_id is not None:
        owner = {"run_id": run_id, "host": socket.gethostname(), "output_dir": os.path.abspath(output_dir),
                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        body = json.dumps(owner, indent=1).encode()
        try:
            retry(f"write s3://{bucket}/{key_prefix}{OWNER_FILE}",
                  lambda: client.put_object(Bucket=bucket, Key=key_prefix + OWNER_FILE, Body=body, IfNoneMatch="*"))
        except SyncError as exc:
            cause = exc.__cause__
            code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
            if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            owner = read_owner(s3_prefix, client, retry)  # another run wrote it first
    _refuse_other_run(s3_prefix, owner, run_id)
    return owner


# ---------------------------------------------------------------------------------------------
# Pulling a checkpoint back
# ---------------------------------------------------------------------------------------------
def run_prefix(s3_uri):
    """The run's prefix of a checkpoint URI (s3://b/run/checkpoint-9 -> s3://b/run/), or the prefix itself."""
    trimmed = str(s3_uri).rstrip("/")
    name = trimmed.rsplit("/", 1)[-1]
    return (trimmed.rsplit("/", 1)[0] if name.startswith(CHECKPOINT_PREFIX) else trimmed) + "/"


def fetch_run_record(s3_uri, local_output_dir, client=None):
    """Download the run's args.json from S3 into local_output_dir when it is missing here (a fresh machine), so a
    resume can take its settings from the record before anything else. Returns the local path or None."""
    local = os.path.join(local_output_dir, ARGS_FILE)
    if os.path.exists(local):
        return local
    client = client or s3_client()
    bucket, key_prefix = split_prefix(run_prefix(s3_uri))
    record = reading_retry()(f"read s3://{bucket}/{key_prefix}{ARGS_FILE}",
                             lambda: _read_json_object(client, bucket, key_prefix + ARGS_FILE))
    if not isinstance(record, dict):
        return None
    with storage.atomic_write(local, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    return local


def _download(client, bucket, key, path, log, attempts, backoff_s, config):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with_retries(f"download s3://{bucket}/{key}", lambda: client.download_file(bucket, key, path, Config=config),
                 log, attempts, backoff_s)
    storage.fsync_path(path)  # before the folder is renamed: a crash must not leave checkpoint-N with empty files


def _fetch_one(client, bucket, run_key, name, local_output_dir, log, attempts, backoff_s):
    """Download the remote checkpoint `name` into local_output_dir/name atomically; return its path."""
    ckpt_key = f"{run_key}{name}/"
    uri = f"s3://{bucket}/{ckpt_key}"
    retry = reading_retry(log, attempts, backoff_s)
    objects, marker, problem = _inspect_remote(client, bucket, ckpt_key, retry)
    if not objects:
        problem = "no such checkpoint in S3"
    if problem is not None:
        complete = ", ".join(n for _, n in list_remote_checkpoints(f"s3://{bucket}/{run_key}", client, retry)) or "none"
        raise CheckpointError(f"{uri}: {problem}; use a complete one (in S3: {complete})")
    final = os.path.join(local_output_dir, name)
    if os.path.isdir(final):
        with contextlib.suppress(CheckpointError):
            verify_checkpoint(final)
            log(f"sync: {final} is already here and complete: not downloaded again")
            return final
    tmp = storage.tmp_sibling(final)  # .tmp-checkpoint-N-PID: reaped at the next start if this process dies
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    started, total = time.monotonic(), 0
    config = _transfer_config()
    try:
        keys = sorted(k for k in objects if k != ckpt_key + COMPLETE) + [ckpt_key + COMPLETE]  # the marker last
        for key in keys:
            _download(client, bucket, key, local_key_path(tmp, key[len(ckpt_key):]), log, attempts, backoff_s, config)
            total += objects[key]
        try:
            verify_checkpoint(tmp)  # every file's size and hash against the downloaded COMPLETE
        except CheckpointError as exc:
            raise CheckpointError(f"{uri} was downloaded but does not verify ({exc}): the copy in S3 is damaged; "
                                  "use another checkpoint") from exc
        if os.path.exists(final):  # an incomplete local copy: replaced only now that the new one verified
            storage.remove_tree(final)
        os.replace(tmp, final)
        storage.fsync_path(local_output_dir, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"sync: {uri} -> {final} ({len(keys)} files, {storage.human_size(total)}, {time.monotonic() - started:.0f} s)")
    return final


def fetch_checkpoint(s3_uri, local_output_dir, client=None, log=print, with_best=True,
                     attempts=ATTEMPTS, backoff_s=BACKOFF_S):
    """Download a checkpoint into local_output_dir/checkpoint-N and return that path.

    s3_uri: s3://bucket/prefix/checkpoint-N, or s3://bucket/prefix (its newest complete checkpoint).
    Also downloads the run's args.json, best_checkpoint.json, metrics.jsonl and wandb_run_id.txt where S3 has them and
    local_output_dir does not (local ones are never overwritten), and with with_best the checkpoint
    best_checkpoint.json names when it is not here (without it the next evaluation would replace a
    best it cannot compare with, and rotation mirrored to S3 would then delete the best there).
    Raises CheckpointError when the checkpoint is incomplete in S3, absent, or does not verify after
    download, SyncError when S3 keeps failing; either way local_output_dir/checkpoint-N is as it was."""
    client = client or s3_client()
    retry = reading_retry(log, attempts, backoff_s)
    bucket, key = split_prefix(s3_uri)
    parent, _, last = key.rstrip("/").rpartition("/")
    if last.startswith(CHECKPOINT_PREFIX):
        run_key, name = (f"{parent}/" if parent else ""), last
    else:
        run_key = key
        name = latest_remote_checkpoint(f"s3://{bucket}/{run_key}", client, retry)
        if name is None:
            raise CheckpointError(f"s3://{bucket}/{run_key}: no complete checkpoint there (none has its COMPLETE "
                                  "marker and every file); check the URI, or train from the start")
    os.makedirs(local_output_dir, exist_ok=True)
    path = _fetch_one(client, bucket, run_key, name, local_output_dir, log, attempts, backoff_s)
    run_objects = retry(f"list s3://{bucket}/{run_key}", lambda: _list_objects(client, bucket, run_key))
    config = _transfer_config()
    for run_file in RESUME_FILES:
        local = os.path.join(local_output_dir, run_file)
        if run_key + run_file not in run_objects or os.path.exists(local):
            continue
        tmp = f"{local}.tmp-{os.getpid()}"
        try:
            _download(client, bucket, run_key + run_file, tmp, log, attempts, backoff_s, config)
            os.replace(tmp, local)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        log(f"sync: s3://{bucket}/{run_key}{run_file} -> {local}")
    if with_best:
        _fetch_best(client, bucket, run_key, name, local_output_dir, log, attempts, backoff_s)
    return path


def _fetch_best(client, bucket, run_key, fetched_name, local_output_dir, log, attempts, backoff_s):
    try:
        best = run_dir.best_checkpoint(local_output_dir)
    except CheckpointError as exc:
        log(f"sync: best checkpoint not fetched: {exc}")
        return
    best_name = best.get("checkpoint") if isinstance(best, dict) else None
    # "final": the final model's evaluation scored best; it is no checkpoint to fetch (the model is the run's root files)
    if not best_name or best_name in (fetched_name, run_dir.FINAL) or \
            run_dir.is_complete(os.path.join(local_output_dir, best_name)):
        return
    try:
        _fetch_one(client, bucket, run_key, best_name, local_output_dir, log, attempts, backoff_s)
    except CheckpointError as exc:
        log(f"sync: the best checkpoint {best_name} could not be fetched ({exc}); the next evaluation will "
            f"replace the best record in {os.path.join(local_output_dir, BEST_FILE)}")


# ---------------------------------------------------------------------------------------------
# Pushing: one worker thread, in submission order
# ---------------------------------------------------------------------------------------------
Task = collections.namedtuple("Task", "what run")


class CheckpointSync:
    """Uploads checkpoints and files to s3_prefix in a background thread; see the module docstring.

    log: a callable taking one line (print, RunLogger.info). client: a boto3 S3 client (default
    qa.storage.s3_client(), from the usual AWS settings). attempts/backoff_s: retries per request.
    transfer_config: a boto3 TransferConfig (default: 64 MiB parts, 4 at once)."""

    def __init__(self, s3_prefix, log=print, client=None, attempts=ATTEMPTS, backoff_s=BACKOFF_S,
                 transfer_config=None):
        self.bucket, self.key_prefix = split_prefix(s3_prefix)
        self.uri = f"s3://{self.bucket}/{self.key_prefix}"
        self.log = log
        self.client = client or s3_client()
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.transfer_config = transfer_config or _transfer_config()
        self.failures = []             # one line per thing that did not reach S3 (or was not deleted)
        self._submitted = {}           # path -> _signature(path) when it was last submitted (only_changed)
        self._last_upload = None       # the ticket of the checkpoint submitted last: mirror_rotation waits on it
        self._deferred = set()         # names rotation deleted here whose deletion in S3 waits for an upload
        self._lock = threading.Condition()
        self._queue = collections.deque()
        self._running = None           # the Task being done now
        self._closed = False
        self._abandon = threading.Event()  # set when close() timed out: no new task starts
        self._thread = threading.Thread(target=self._work, name="checkpoint-sync", daemon=True)
        self._thread.start()

    # -- what the trainer calls -------------------------------------------------------------------
    def check_bucket(self):
        """Raise SyncError now if the bucket cannot be reached (wrong name, region, credentials)."""
        check_bucket(self.uri, self.client)

    def submit_checkpoint(self, path):
        """Queue the upload of the complete checkpoint folder `path` to s3_prefix/<its name>/, COMPLETE last."""
        path = os.fspath(path)
        name = os.path.basename(os.path.normpath(path))
        ticket = {"name": name, "uploaded": False}  # set by the worker once COMPLETE is in S3
        self._submit(Task(f"{name} -> {self.uri}{name}/", lambda: self._upload_checkpoint(path, name, ticket)))
        self._last_upload = ticket

    def submit_files(self, paths, dest_subprefix="", only_changed=False, marker=None):
        """Queue the upload of files to s3_prefix/[dest_subprefix/]<basename>. Small files are read now (their
        content at this moment is what goes up); a missing one is reported, the others still go.

        only_changed: skip a file submitted before and not rewritten since (same inode, size and mtime), e.g.
        the final model's weights at the end of the run. marker: the basename of one of the files (config.json)
        that goes up last, and only if every other file of this call reached S3."""
        sub = str(dest_subprefix).strip("/")
        if sub and any(part in ("", ".", "..") for part in sub.split("/")):
            raise ValueError(f"dest_subprefix {dest_subprefix!r}: give a plain relative prefix such as 'final'")
        key_root = f"{self.key_prefix}{sub}/" if sub else self.key_prefix
        if isinstance(paths, (str, os.PathLike)):  # one path, not a string to iterate over
            paths = [paths]
        paths = sorted(map(os.fspath, paths), key=lambda path: marker is not None and os.path.basename(path) == marker)
        items = []
        for path in paths:
            key = key_root + os.path.basename(path)
            signature = _signature(path)
            if only_changed and signature is not None and self._submitted.get(os.path.abspath(path)) == signature:
                continue
            try:
                self._submitted[os.path.abspath(path)] = signature  # before reading: a rewrite meanwhile goes again
                size = os.path.getsize(path)
                if size < SNAPSHOT_MAX_BYTES:
                    with open(path, "rb") as f:
                        items.append((path, key, f.read()))
                else:
                    items.append((path, key, None))
            except OSError as exc:
                self._fail(f"{path} -> s3://{self.bucket}/{key}: not uploaded ({_one_line(exc)})")
        if items:
            names = ", ".join(os.path.basename(p) for p, _, _ in items)
            self._submit(Task(f"{names} -> s3://{self.bucket}/{key_root}", lambda: self._upload_files(items, marker)))

    def submit_final_model(self, output_dir):
        """Queue the final model at the root of output_dir (final_model_names: weights, tokenizer, card, then
        config.json, which goes up only when all of them did: a cut upload never looks like a model in S3).
        Returns the paths queued ([] when output_dir holds no config.json)."""
        names = final_model_names([n for n in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, n))])
        paths = [os.path.join(output_dir, name) for name in names]
        if paths:
            self.submit_files(paths, marker=MODEL_CONFIG)
        return paths

    def mirror_rotation(self, deleted, best_name=None):
        """Queue the deletion in S3 of the checkpoints rotation deleted here (`deleted`: what
        qa.retention.rotate_checkpoints returned; its .tmp-/.trash- folders are ignored), each COMPLETE first.

        It runs only once the checkpoint submitted just before this call is complete in S3; when that upload
        failed or was skipped, the deletion waits for the next one that succeeds (so S3 always keeps a complete
        checkpoint). best_name and the newest complete checkpoint in S3 are never deleted."""
        names = {os.path.basename(os.path.normpath(os.fspath(p))) for p in deleted}
        names = {name for name in names if name.startswith(CHECKPOINT_PREFIX)}
        if not names:
            return
        ticket = self._last_upload
        if ticket is None:
            self._fail(f"rotation not mirrored to {self.uri} ({', '.join(sorted(names))} kept there): no checkpoint "
                       "upload was submitted before it; call submit_checkpoint first")
            return
        best = os.path.basename(os.path.normpath(os.fspath(best_name))) if best_name else None
        self._submit(Task(f"rotation mirrored to {self.uri}", lambda: self._rotate(names, best, ticket)))

    def wait(self, timeout=None):
        """Block until everything submitted so far is done; False if `timeout` seconds passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._queue and self._running is None, timeout)

    def close(self, timeout=None):
        """Wait up to `timeout` seconds for pending work, stop the worker and return the failures (one line
        each; [] when everything reached S3). Work still pending at the timeout is abandoned and reported."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()  # the running task stops after its current object; nothing new starts
            with self._lock:
                pending = ([self._running] if self._running else []) + list(self._queue)
                self._queue.clear()
            for task in pending:
                self._fail(f"{task.what}: not finished when training ended (close timed out after {timeout:g} s)")
        if self._deferred:
            self._fail(f"rotation not mirrored: {', '.join(sorted(self._deferred))} kept in {self.uri}, as no later "
                       "checkpoint reached S3 after rotation deleted them here (delete them with aws s3 rm --recursive)")
        if self.failures:
            self.log(f"sync: {len(self.failures)} thing(s) did not reach {self.uri}: " + "; ".join(self.failures))
        else:
            self.log(f"sync: everything is in {self.uri}")
        return list(self.failures)

    # -- the worker -----------------------------------------------------------------------------
    def _submit(self, task):
        with self._lock:
            if self._closed:
                raise RuntimeError(f"CheckpointSync for {self.uri} is closed: submit before close()")
            self._queue.append(task)
            self._lock.notify_all()

    def _fail(self, line):
        with self._lock:
            self.failures.append(line)
        self.log(f"sync: FAILED {line}")

    def _work(self):
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed)
                if not self._queue or self._abandon.is_set():
                    self._lock.notify_all()
                    return
                self._running = self._queue.popleft()
            task = self._running
            try:
                task.run()
            except Exception as exc:  # reported, never raised into training
                if not self._abandon.is_set():  # else close() has reported it as not finished
                    self._fail(f"{task.what}: {exc}")
            finally:
                with self._lock:
                    self._running = None
                    self._lock.notify_all()

    def _retry(self, what, operation):
        if self._abandon.is_set():  # close() timed out: the task stops before its next object (COMPLETE is last)
            raise SyncError(f"{what}: not started, close() timed out")
        return with_retries(what, operation, self.log, self.attempts, self.backoff_s, stop=self._abandon)

    def _slow_uplink(self):
        delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        if delay > 0:
            self._abandon.wait(delay)

    def _put_file(self, path, key):
        self._slow_uplink()
        self._retry(f"upload {path} -> s3://{self.bucket}/{key}",
                    lambda: self.client.upload_file(path, self.bucket, key, Config=self.transfer_config))

    def _put_bytes(self, data, key, source):
        self._slow_uplink()
        self._retry(f"upload {source} -> s3://{self.bucket}/{key}",
                    lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def _delete_keys(self, keys):
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]

            def delete(batch=batch):
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                errors = response.get("Errors") or []
                if errors:
                    raise SyncError(f"{len(errors)} object(s) not deleted, e.g. {errors[0].get('Key')}: "
                                    f"{errors[0].get('Message')}")

            self._retry(f"delete {len(batch)} object(s) under {self.uri}", delete)

    def _delete_marker(self, ckpt_key):
        self._retry(f"delete s3://{self.bucket}/{ckpt_key}{COMPLETE}",
                    lambda: self.client.delete_object(Bucket=self.bucket, Key=ckpt_key + COMPLETE))

    def _upload_checkpoint(self, path, name, ticket=None):
        if not self._still_complete(path, name):
            return
        ckpt_key = f"{self.key_prefix}{name}/"
        started = time.monotonic()
        remote = self._retry(f"list {self.uri}{name}/", lambda: _list_objects(self.client, self.bucket, ckpt_key))
        if ckpt_key + COMPLETE in remote:  # uploaded before (same step saved twice): not complete while replaced
            self._delete_marker(ckpt_key)
        relative = []
        for root, _, names in os.walk(path):
            relative.extend(os.path.relpath(os.path.join(root, n), path) for n in names)
        relative = sorted(r for r in relative if r != COMPLETE)
        total = 0
        for rel in relative:
            size = self._put_unless_rotated(path, name, rel, ckpt_key)
            if size is None:
                return
            total += size
        uploaded = {ckpt_key + rel.replace(os.sep, "/") for rel in relative}
        stale = sorted(set(remote) - uploaded - {ckpt_key + COMPLETE})
        if stale:  # files of an earlier upload of this step that the new one does not have
            self._delete_keys(stale)
        if self._put_unless_rotated(path, name, COMPLETE, ckpt_key) is None:  # rotated away just before its marker
            return
        if ticket is not None:
            ticket["uploaded"] = True
        self._deferred.discard(name)  # uploaded again (the same step saved after a resume): not to be deleted
        self.log(f"sync: {name} -> {self.uri}{name}/ ({len(relative) + 1} files, {storage.human_size(total)}, "
                 f"{time.monotonic() - started:.0f} s)")

    def _still_complete(self, path, name):
        """True when the checkpoint folder can be uploaded; False (logged) when rotation removed it before its upload
        started. Raises SyncError for a folder that is there but not complete."""
        if os.path.isdir(path) and run_dir.is_complete(path):
            return True
        if not os.path.isdir(path):  # (also: removed while its marker was read)
            self.log(f"sync: {name} skipped: removed locally (rotated away) before its upload started")
            return False
        raise SyncError(f"{path} is not a complete checkpoint (no COMPLETE marker, or its files do not match it)")

    def _put_unless_rotated(self, path, name, rel, ckpt_key):
        """Upload the checkpoint's file `rel` and return its size; None (logged) when rotation removed the folder
        meanwhile: its partial copy in S3 has no COMPLETE marker, so it is never taken for a checkpoint. Other local
        errors are raised."""
        local = os.path.join(path, rel)
        try:
            size = os.path.getsize(local)
            self._put_file(local, ckpt_key + rel.replace(os.sep, "/"))
            return size
        except FileNotFoundError:
            if os.path.isdir(path):
                raise
            self.log(f"sync: {name} abandoned: removed locally (rotated away) while it was uploading; "
                     "its partial copy has no COMPLETE marker")
            return None

    def _upload_files(self, items, marker=None):
        failed = []
        for path, key, data in items:
            if marker is not None and os.path.basename(path) == marker and failed:
                self._fail(f"{path} -> s3://{self.bucket}/{key}: not uploaded, as {', '.join(failed)} did not reach "
                           f"S3 (with {marker} the copy there would look like a complete model)")
                continue
            try:
                if data is not None:
                    self._put_bytes(data, key, path)
                else:
                    self._put_file(path, key)
            except Exception as exc:  # the other files are independent of this one: they still go
                failed.append(os.path.basename(path))
                self._fail(f"{path} -> s3://{self.bucket}/{key}: {exc}")
        self.log(f"sync: {len(items) - len(failed)} file(s) -> {self.uri}")

    def _rotate(self, names, best, ticket):
        self._deferred.update(names)
        if not ticket["uploaded"]:
            self.log(f"sync: rotation not mirrored yet: {ticket['name']} is not complete in {self.uri}, so "
                     f"{', '.join(sorted(self._deferred))} stay(s) there until a later checkpoint is")
            return
        complete = list_remote_checkpoints(self.uri, self.client, retry=self._retry)
        protected = {best, complete[-1][1] if complete else None} - {None}
        remote_names = set(self._retry(f"list {self.uri}",
                                       lambda: _checkpoint_names(self.client, self.bucket, self.key_prefix)))
        for name in sorted(self._deferred):
            if name in protected:
                self.log(f"sync: {self.uri}{name}/ kept: it is the best or the newest complete checkpoint there")
                continue
            if name in remote_names:
                ckpt_key = f"{self.key_prefix}{name}/"
                self._delete_marker(ckpt_key)  # first: a deletion cut short leaves no complete-looking checkpoint
                rest = self._retry(f"list {self.uri}{name}/",
                                   lambda k=ckpt_key: _list_objects(self.client, self.bucket, k))
                self._delete_keys(sorted(rest))
                self.log(f"sync: deleted {self.uri}{name}/ (rotated away locally)")
            self._deferred.discard(name)


# ---------------------------------------------------------------------------------------------
# What did not reach S3, and the upload that catches up (python -m qa.sync RUN_DIR s3://...)
# ---------------------------------------------------------------------------------------------
def _root_files(output_dir):
    """The files at the root of a run folder that belong in S3: not hidden (.run.lock), not being written, not logs
    that keep growing after their last upload."""
    return sorted(name for name in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, name))
                  and not name.startswith(".") and ".tmp-" not in name and name not in GROWING_FILES)


def missing_in_s3(output_dir, s3_prefix, client=None, retry=None):
    """What the run folder has that s3_prefix lacks: "checkpoint-N/" for each complete checkpoint here that is not
    complete there, and each root file (final model, record, evaluation files) absent there or of another size.
    Raises SyncError when S3 cannot be read."""
    client = client or s3_client()
    retry = retry or reading_retry()
    bucket, key_prefix = split_prefix(s3_prefix)
    remote = {name for _, name in list_remote_checkpoints(s3_prefix, client, retry)}
    missing = [f"{os.path.basename(path)}/" for _, path in run_dir.list_checkpoints(output_dir)
               if os.path.basename(path) not in remote]
    objects = retry(f"list s3://{bucket}/{key_prefix}",
                    lambda: _list_objects(client, bucket, key_prefix))
    for name in _root_files(output_dir):
        if objects.get(key_prefix + name) != os.path.getsize(os.path.join(output_dir, name)):
            missing.append(name)
    return missing


def _missing_report(uri, output_dir, missing):
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return (f"NOT IN S3: {len(missing)} thing(s) of {output_dir} are missing in {uri}: {shown}. Upload them when S3 "
            f"is reachable: python -m qa.sync {output_dir} {uri} (make sync OUTPUT_DIR={output_dir} SYNC={uri}); "
            f"exit status {INCOMPLETE_EXIT}")


def finish_run(sync, output_dir, log, timeout=3600):
    """The end of a synced run (rank 0): the root files as they are now (summary, eval results, the card with its
    scores; only those changed since they were submitted), every upload drained, then S3 compared with the run
    folder. Returns [] when everything is there, else what is missing (logged with the command that uploads it);
    the caller exits with INCOMPLETE_EXIT then."""
    sync.submit_files([os.path.join(output_dir, name) for name in _root_files(output_dir)], only_changed=True,
                      marker=MODEL_CONFIG)
    failures = sync.close(timeout=timeout)
    try:
        missing = missing_in_s3(output_dir, sync.uri, sync.client, reading_retry(sync.log, 2, sync.backoff_s))
    except SyncError as exc:  # S3 still down: what failed is all that can be said
        missing = [f"(S3 cannot be listed: {exc})"] + failures
    if missing:
        sync.log(f"sync: {_missing_report(sync.uri, output_dir, missing)}")
    return missing


def upload_missing(output_dir, s3_prefix, log=print, client=None, attempts=ATTEMPTS, backoff_s=BACKOFF_S):
    """Upload what missing_in_s3 lists (checkpoints COMPLETE last, the final model config.json last), checking that
    the prefix is this run's (RUN_OWNER.json against args.json's run_id) first; returns what is still missing."""
    client = client or s3_client()
    retry = reading_retry(log, attempts, backoff_s)
    check_bucket(s3_prefix, client)
    run_id = (run_dir.read_args(output_dir) or {}).get("run_id")
    claim_prefix(s3_prefix, run_id, output_dir, client, retry)
    missing = missing_in_s3(output_dir, s3_prefix, client, retry)
    if not missing:
        log(f"sync: everything of {output_dir} is in {s3_prefix}")
        return []
    log(f"sync: uploading {len(missing)} thing(s) missing in {s3_prefix}: {', '.join(missing)}")
    sync = CheckpointSync(s3_prefix, log=log, client=client, attempts=attempts, backoff_s=backoff_s)
    for name in missing:
        if name.endswith("/"):
            sync.submit_checkpoint(os.path.join(output_dir, name.rstrip("/")))
    files = [os.path.join(output_dir, name) for name in missing if not name.endswith("/")]
    if files:
        sync.submit_files(files, marker=MODEL_CONFIG)
    sync.close()
    still = missing_in_s3(output_dir, s3_prefix, client, retry)
    if still:
        log(f"sync: {_missing_report(sync.uri, output_dir, still)}")
    return still


def main(argv=None):
    """python -m qa.sync RUN_DIR s3://bucket/prefix: upload what a run left out of S3 (an outage at its end).
    Exit status 0 when everything is there now, INCOMPLETE_EXIT (4) when something is still missing, 2 when the
    prefix belongs to another run or cannot be reached."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qa.sync", description=main.__doc__)
    parser.add_argument("run_dir", help="the run's --output_dir")
    parser.add_argument("s3_prefix", help="the run's --sync_checkpoints, s3://bucket/prefix")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        parser.error(f"{args.run_dir}: no such run folder")
    try:
        split_prefix(args.s3_prefix)
        still = upload_missing(args.run_dir, args.s3_prefix)
    except (SyncError, ValueError, CheckpointError) as exc:
        print(f"qa.sync: {exc}", file=sys.stderr)
        return 2
    return INCOMPLETE_EXIT if still else 0


if __name__ == "__main__":
    sys.exit(main())
