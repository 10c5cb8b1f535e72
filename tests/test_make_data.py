"""`make data` end to end against a Range-capable HTTP server on 127.0.0.1 serving generated NQ shards:
download, convert, and a re-run that does no work twice (no GET, no conversion, outputs untouched).

    .venv/bin/pytest tests/test_make_data.py -q
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from qa.nq import sample as nq_sample
from servers import RangeServer

STAMP = ROOT / ".venv" / ".installed"


def sample_shard(tmp_path, split, seed, n):
    path = tmp_path / f"{split}-{seed}.jsonl.gz"
    nq_sample.write_sample(str(path), nq_sample.generate(n, seed=seed, split=split))
    return path.read_bytes()


@pytest.fixture(scope="module")
def nq_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("shards")
    files = {f"/v1.0/train/nq-train-{shard:02d}.jsonl.gz": sample_shard(tmp_path, "train", shard, 25) for shard in range(3)}
    files["/v1.0/dev/nq-dev-00.jsonl.gz"] = sample_shard(tmp_path, "dev", 0, 15)
    with RangeServer(files) as server:
        yield server


def make_data(server, data_dir, train_shards, *variables):
    # PY: the interpreter running the tests (the project's venv); -o STAMP: never (re)create the venv here.
    command = ["make", "--no-print-directory", "-o", str(STAMP), "data", f"PY={sys.executable}", f"DATA_DIR={data_dir}",
               f"NQ_BASE_URL={server.url}/v1.0", f"NQ_TRAIN_SHARDS={train_shards}", "NQ_DEV_SHARDS=0", "WORKERS=2", *variables]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def gets(server):
    return [request.path for request in server.requests if request.method == "GET"]


def test_make_data_twice_does_no_work_twice(tmp_path, nq_server):
    out = make_data(nq_server, tmp_path, "0-1")
    train, dev = tmp_path / "nq" / "nq_train.json", tmp_path / "nq" / "nq_dev.json"
    assert sorted(gets(nq_server)) == ["/v1.0/dev/nq-dev-00.jsonl.gz", "/v1.0/train/nq-train-00.jsonl.gz",
                                       "/v1.0/train/nq-train-01.jsonl.gz"]
    assert out.count("scripts/nq_to_squad.py") == 2
    stats = json.loads((tmp_path / "nq" / "nq_train.json.stats.json").read_text())
    assert [path.rsplit("/", 1)[1] for path in stats["inputs"]] == ["nq-train-00.jsonl.gz", "nq-train-01.jsonl.gz"]
    assert stats["counts"]["records_read"] == 50 and stats["counts"]["kept"] > 30
    converted = json.loads(train.read_text())
    assert converted["version"] == "v2.0" and sum(len(a["paragraphs"]) for a in converted["data"]) == stats["counts"]["kept"]
    assert json.loads(dev.read_text())["data"]
    mtimes = {path: path.stat().st_mtime_ns for path in (train, dev)}

    # The same command again: no shard fetched (one HEAD each), nothing converted, outputs untouched.
    requests_before = len(nq_server.requests)
    out = make_data(nq_server, tmp_path, "0-1")
    again = nq_server.requests[requests_before:]
    assert sorted((request.method, request.path) for request in again) == [
        ("HEAD", "/v1.0/dev/nq-dev-00.jsonl.gz"), ("HEAD", "/v1.0/train/nq-train-00.jsonl.gz"),
        ("HEAD", "/v1.0/train/nq-train-01.jsonl.gz")]
    assert out.count("already complete") == 3
    assert "scripts/nq_to_squad.py" not in out
    assert f"'{train}' is up to date" in out and f"'{dev}' is up to date" in out
    assert {path: path.stat().st_mtime_ns for path in (train, dev)} == mtimes


def test_make_data_converts_exactly_the_selected_shards(tmp_path, nq_server):
    make_data(nq_server, tmp_path, "0-1")
    dev = tmp_path / "nq" / "nq_dev.json"
    dev_mtime = dev.stat().st_mtime_ns

    def train_inputs():
        stats = json.loads((tmp_path / "nq" / "nq_train.json.stats.json").read_text())
        return [path.rsplit("/", 1)[1] for path in stats["inputs"]]

    # Fewer shards than are on disk: train is converted again from shard 0 alone, nothing downloaded.
    gets_before = len(gets(nq_server))
    out = make_data(nq_server, tmp_path, "0")
    assert gets(nq_server)[gets_before:] == []
    assert train_inputs() == ["nq-train-00.jsonl.gz"]
    assert out.count("scripts/nq_to_squad.py") == 1 and dev.stat().st_mtime_ns == dev_mtime
    # More shards: only the new one is downloaded, and train is converted from all three.
    out = make_data(nq_server, tmp_path, "0-2")
    assert gets(nq_server)[gets_before:] == ["/v1.0/train/nq-train-02.jsonl.gz"]
    assert train_inputs() == ["nq-train-00.jsonl.gz", "nq-train-01.jsonl.gz", "nq-train-02.jsonl.gz"]
    assert dev.stat().st_mtime_ns == dev_mtime


def test_make_data_candidate_mode_has_its_own_training_file(tmp_path, nq_server):
    make_data(nq_server, tmp_path, "0")
    guide = tmp_path / "nq" / "nq_train.json"
    guide_bytes, dev_mtime = guide.read_bytes(), (tmp_path / "nq" / "nq_dev.json").stat().st_mtime_ns
    out = make_data(nq_server, tmp_path, "0", "NQ_CONTEXT=candidates")
    assert out.count("scripts/nq_to_squad.py") == 1 and "--context candidates" in out  # train only, dev as it was
    candidates = tmp_path / "nq" / "nq_train.candidates.json"
    stats = json.loads((tmp_path / "nq" / "nq_train.candidates.json.stats.json").read_text())
    assert stats["options"]["context"] == "candidates" and stats["options"]["keep_negatives"] == 0.3
    assert stats["counts"]["positives"] > 0 and stats["counts"]["negatives_kept"] > 0
    ids = [qa["id"] for article in json.loads(candidates.read_text())["data"] for p in article["paragraphs"] for qa in p["qas"]]
    assert len(ids) == stats["counts"]["questions"] and all(":" in qas_id for qas_id in ids)
    assert guide.read_bytes() == guide_bytes and (tmp_path / "nq" / "nq_dev.json").stat().st_mtime_ns == dev_mtime
    assert "scripts/nq_to_squad.py" not in make_data(nq_server, tmp_path, "0", "NQ_CONTEXT=candidates")  # up to date
    done = subprocess.run(["make", "--no-print-directory", "-o", str(STAMP), "print-TRAIN_FILE", f"DATA_DIR={tmp_path}",
                           "NQ_CONTEXT=candidates"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(candidates)  # make train NQ_CONTEXT=candidates trains on it
    done = subprocess.run(["make", "--no-print-directory", "print-TRAIN_FILE", "NQ_CONTEXT=pages"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "NQ_CONTEXT must be guide or candidates, got 'pages'" in done.stderr


def test_converting_without_make_data_says_what_to_do(tmp_path):
    done = subprocess.run(["make", "--no-print-directory", "-o", str(STAMP), f"DATA_DIR={tmp_path}",
                           f"{tmp_path}/nq/nq_train.json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "nq_train.inputs is missing: run `make data`" in done.stderr
