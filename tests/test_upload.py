"""scripts/upload.sh against a real moto S3 server on 127.0.0.1 (tests/servers.py)."""

import fnmatch
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

import make_tiny_model
from qa import model_check, storage
from qa import run_dir as qa_run_dir
from qa.model_card import load_qa_config
from servers import moto_server, s3  # noqa: F401  (fixtures)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "upload.sh"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def upload(*args, env=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture
def run_dir(tmp_path):
    """A finished run: final model files at the top, plus what must NOT be uploaded."""
    run = tmp_path / "outputs" / "nq albert"  # a space in the path on purpose
    files = {
        "config.json": b'{"model_type": "albert"}',
        "model.safetensors": bytes(range(256)) * 40,
        "tokenizer.json": b'{"version": "1.0"}',
        "tokenizer_config.json": b"{}",
        "README.md": b"# model card\n",
        "qa_config.json": b'{"null_score_diff_threshold": -1.25, "max_seq_length": 384}',
        "training_summary.json": b'{"global_step": 3000}',
        "predictions_1500.json": b"{}",
        "eval_results.json": b'{"f1": 71.2}',
        "eval_results_1500.json": b'{"f1": 70.1}',
        "best_checkpoint.json": b'{"step": 1500}',
        "train.log": b"not uploaded\n",
        "metrics.jsonl": b'{"step": 1}\n',
        "checkpoint-1500/model.safetensors": b"ckpt weights",
        "checkpoint-1500/optimizer.pt": b"adam state",
        "checkpoint-1500/eval_results.json": b"{}",
        "checkpoint-1500/COMPLETE": b"",
        "checkpoint-3000/model.safetensors": b"half written",
        ".features_cache/features-abc/part-0.npy": b"cache",
        ".run.lock": b'{"pid": 1}',  # the training run's lock (qa/run_lock.py): never uploaded
    }
    for name, data in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    # Real weights, config and tokenizer, and a real COMPLETE marker: upload.sh refuses a folder that is not what it
    # says (qa/model_check.py, tests/test_model_check.py).
    make_tiny_model.build(str(run), ["the model card says what the model is"] * 4, vocab_size=60, hidden_size=32)
    storage.write_marker(str(run / "checkpoint-1500"), "COMPLETE")
    return run


def objects(s3, bucket):
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def acl_grantees(s3, bucket, key):
    return {(g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"])
            for g in s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]}


# The model card (README.md) and qa_config.json (the tuned null threshold scripts/ask.py reads) travel
# with the weights; predictions, logs, checkpoints and caches do not.
FINAL = ["README.md", "best_checkpoint.json", "config.json", "eval_results.json", "eval_results_1500.json",
         "model.safetensors", "qa_config.json", "tokenizer.json", "tokenizer_config.json", "training_summary.json"]


def test_final_model_uploads_only_model_files_privately(s3, run_dir):
    s3.create_bucket(Bucket="models-private")
    result = upload(run_dir, "s3://models-private/albert/v1/")
    assert result.returncode == 0, result.stderr
    stored = objects(s3, "models-private")
    assert sorted(stored) == [f"albert/v1/{name}" for name in FINAL]
    for name in FINAL:
        assert stored[f"albert/v1/{name}"] == (run_dir / name).read_bytes()
    printed = [line for line in result.stdout.splitlines() if line.startswith("s3://")]
    assert sorted(printed) == [f"s3://models-private/albert/v1/{name}" for name in FINAL]
    grants = acl_grantees(s3, "models-private", "albert/v1/model.safetensors")
    assert all(uri != ALL_USERS for uri, _ in grants)
    assert {permission for _, permission in grants} == {"FULL_CONTROL"}


def test_public_checkpoint_upload_with_endpoint_flag(s3, run_dir, moto_server, monkeypatch):
    s3.create_bucket(Bucket="models-public")
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only --endpoint-url can reach moto now
    result = upload(run_dir, "s3://models-public/runs", "--checkpoint", "checkpoint-1500", "--public",
                    "--endpoint-url", moto_server)
    assert result.returncode == 0, result.stderr
    stored = objects(s3, "models-public")
    names = ["COMPLETE", "eval_results.json", "model.safetensors", "optimizer.pt"]
    assert sorted(stored) == [f"runs/checkpoint-1500/{name}" for name in names]
    for name in names:
        assert stored[f"runs/checkpoint-1500/{name}"] == (run_dir / "checkpoint-1500" / name).read_bytes()
    assert (ALL_USERS, "READ") in acl_grantees(s3, "models-public", "runs/checkpoint-1500/optimizer.pt")


def test_refusals_upload_nothing(s3, run_dir, tmp_path):
    s3.create_bucket(Bucket="models-refused")
    incomplete = upload(run_dir, "s3://models-refused/x", "--checkpoint", "checkpoint-3000")
    assert incomplete.returncode == 1
    assert "no COMPLETE marker" in incomplete.stderr
    missing = upload(run_dir, "s3://models-refused/x", "--checkpoint", "checkpoint-9")
    assert missing.returncode == 2 and "checkpoint 'checkpoint-9' not found" in missing.stderr
    no_model = tmp_path / "running"
    (no_model / "checkpoint-5").mkdir(parents=True)
    (no_model / "train.log").write_text("training...\n")
    result = upload(no_model, "s3://models-refused/x")
    assert result.returncode == 1
    assert "no complete checkpoint" in result.stderr and "--checkpoint checkpoint-N" in result.stderr
    assert sorted(p.name for p in no_model.iterdir()) == ["checkpoint-5", "train.log"]  # no staging folder left
    bad_uri = upload(run_dir, "models-refused/x")
    assert bad_uri.returncode == 2 and "is not an s3://bucket[/prefix] URI" in bad_uri.stderr
    assert objects(s3, "models-refused") == {}


def test_dry_run_lists_objects_without_uploading(s3, run_dir):
    s3.create_bucket(Bucket="models-dry")
    result = upload(run_dir, "s3://models-dry/p", "--dry-run", "--public")
    assert result.returncode == 0, result.stderr
    assert "--acl public-read" in result.stdout
    assert "  s3://models-dry/p/model.safetensors" in result.stdout
    assert "train.log" not in result.stdout
    assert objects(s3, "models-dry") == {}


def test_failed_upload_is_reported(s3, run_dir):
    result = upload(run_dir, "s3://no-such-bucket-here/p")
    assert result.returncode == 1
    assert "aws s3 cp failed" in result.stderr


def best_checkpoint_run(run_dir, step=1500):
    """run_dir whose best is a real checkpoint-<step> (model, tokenizer, optimizer, trainer_state, hashed COMPLETE)
    with the threshold tuned at its step in eval/."""
    checkpoint = run_dir / f"checkpoint-{step}"
    shutil.rmtree(checkpoint)
    make_tiny_model.build(str(checkpoint), ["a checkpoint of the run"] * 4, vocab_size=60, hidden_size=32, seed=1)
    (checkpoint / "optimizer.pt").write_bytes(b"adam state")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "args": {
        "max_seq_length": 128, "doc_stride": 64, "max_query_length": 32}}))
    storage.write_marker(str(checkpoint), "COMPLETE")
    results = pathlib.Path(qa_run_dir.eval_file(str(run_dir), "eval_results", step))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"f1": 74.7, "best_f1_thresh": -2.5}))
    (run_dir / "best_checkpoint.json").write_text(json.dumps({"checkpoint": f"checkpoint-{step}", "step": step,
                                                              "metric": "f1", "value": 74.7}))
    return checkpoint


def test_the_runs_model_is_uploaded_when_the_best_is_a_checkpoint(s3, run_dir, tmp_path):
    """As make eval / ask / eval-nq take it: the best checkpoint's model files, loadable as a final model."""
    checkpoint = best_checkpoint_run(run_dir)
    s3.create_bucket(Bucket="models-best")
    result = upload(run_dir, "s3://models-best/m")
    assert result.returncode == 0, result.stderr
    assert f"the run's model: checkpoint-1500 (step 1500) of {run_dir}: the best by f1 (74.70)" in result.stderr
    stored = objects(s3, "models-best")
    names = sorted(key.removeprefix("m/") for key in stored)
    assert names == sorted(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "qa_config.json",
                            "MODEL_COMPLETE"] + [n for n in ("special_tokens_map.json", "vocab.txt", "added_tokens.json")
                                                 if (checkpoint / n).exists()])
    assert not {"optimizer.pt", "trainer_state.json", "COMPLETE"} & set(names)  # no training state
    assert stored["m/model.safetensors"] == (checkpoint / "model.safetensors").read_bytes()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-upload")]  # the staging folder is gone
    # What was uploaded is a model folder that verifies and answers with the checkpoint's windows and threshold.
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    for key, data in stored.items():
        (fetched / key.removeprefix("m/")).write_bytes(data)
    model_check.verify_model_folder(str(fetched), warn=pytest.fail)
    config = load_qa_config(str(fetched))
    assert (config["null_score_diff_threshold"], config["max_seq_length"], config["doc_stride"]) == (-2.5, 128, 64)


def test_the_final_model_is_uploaded_when_it_is_the_best(s3, run_dir):
    best_checkpoint_run(run_dir)
    (run_dir / "best_checkpoint.json").write_text('{"checkpoint": "final", "step": 3000, "metric": "f1", "value": 76.1}')
    s3.create_bucket(Bucket="models-final-best")
    result = upload(run_dir, "s3://models-final-best/m", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"the run's model: the final model (step 3000) of {run_dir}: the best by f1 (76.10)" in result.stderr
    assert f"would upload {len(FINAL)} file(s) from {run_dir} to" in result.stdout
    assert "  s3://models-final-best/m/eval_results_1500.json" in result.stdout and ".run.lock" not in result.stdout


def test_refusal_hints_run_as_printed_with_spaces_in_the_path(tmp_path):
    # Review #6: `ls` of an unquoted path with a space; `(make upload CKPT=checkpoint-N)` without OUTPUT_DIR and BUCKET.
    run = tmp_path / "my runs" / "run x"
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "train.log").write_text("training...\n")
    missing = upload("--checkpoint", "checkpoint-9", "--", run, "s3://models-refused/x")
    listing = missing.stderr.strip().split("list them with: ", 1)[1]
    shown = subprocess.run(["bash", "-c", listing], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.split() == ["checkpoint-5", "train.log"], shown.stderr
    script = upload(run, "s3://models-refused/x")
    hint = script.stderr.strip().split("name a checkpoint: ", 1)[1]
    assert hint.startswith("bash scripts/upload.sh --checkpoint checkpoint-N -- ")
    words = subprocess.run(["bash", "-c", f"printf '%s\\n' {hint.split(' -- ', 1)[1]}"], capture_output=True,
                           text=True).stdout.splitlines()
    assert words == [str(run), "s3://models-refused/x"]
    made = subprocess.run(["make", "-s", "--no-print-directory", "upload", f"OUTPUT_DIR={run}",
                           "BUCKET=s3://models-refused/x", "DRY_RUN=1"], cwd=ROOT, capture_output=True, text=True)
    assert made.returncode != 0
    hint = made.stderr.split("name a checkpoint: ", 1)[1].splitlines()[0]
    assert hint.startswith("make upload OUTPUT_DIR=") and "--checkpoint" not in hint
    planned = subprocess.run(["bash", "-c", hint.replace("make upload", "make -n -s --no-print-directory upload", 1)
                              .replace("checkpoint-N", "checkpoint-5")], cwd=ROOT, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stderr
    words = subprocess.run(["bash", "-c", f"printf '%s\\n' {planned.stdout.strip().splitlines()[-1]}"],
                           capture_output=True, text=True).stdout.splitlines()
    assert words[-3:] == ["--", str(run), "s3://models-refused/x"]
    assert words[words.index("--checkpoint") + 1] == "checkpoint-5"


def test_upload_takes_the_final_model_files_from_run_dir():
    """upload.sh reads qa.run_dir's list: every final model file is covered by exactly one pattern of it."""
    listed = subprocess.run([sys.executable, "-m", "qa.run_dir", "final-model-files"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert listed == qa_run_dir.final_model_patterns()
    for name in (*qa_run_dir.FINAL_MODEL_FILES, "model-00001-of-00002.safetensors", "eval_results_900.json"):
        assert sum(fnmatch.fnmatchcase(name, pattern) for pattern in listed) == 1, name
    assert "FINAL_FILES=" not in (ROOT / "scripts" / "upload.sh").read_text()
