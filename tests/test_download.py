"""scripts/download_nq.py (qa.nq.download) against real servers on 127.0.0.1: a Range-capable HTTP server and moto S3."""

import base64
import gzip
import hashlib
import os
import random
import runpy
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from qa.nq import download
from servers import RangeServer, moto_server, reference_crc32c, s3  # noqa: F401  (fixtures)

SCRIPT = str(ROOT / "scripts" / "download_nq.py")
CLI = runpy.run_path(SCRIPT)  # the command line's functions (parse_args, plan, main), in-process


def make_shard(seed, n_lines):
    """A gzip 'NQ shard' of JSON lines; random words so it stays large after compression."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)]
    lines = [f'{{"example_id": {seed * 10**6 + i}, "question_text": "{" ".join(rng.choices(words, k=40))}"}}\n'
             for i in range(n_lines)]
    return gzip.compress("".join(lines).encode(), mtime=0)


def nq_path(split, shard):
    return f"/v1.0/{split}/nq-{split}-{shard:02d}.jsonl.gz"


@pytest.fixture(scope="module")
def dev_shards():
    return {nq_path("dev", shard): make_shard(shard, 400) for shard in range(3)}


def run_main(*argv):
    return CLI["main"]([str(arg) for arg in argv])


# --- pure pieces ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("0-4", [0, 1, 2, 3, 4]),
    ("0,3,7-9", [0, 3, 7, 8, 9]),
    ("all", list(range(50))),
    ("ALL", list(range(50))),
    ("49", [49]),
    ("3,1,1-2", [1, 2, 3]),
])
def test_parse_shards(spec, expected):
    assert download.parse_shards(spec, 50) == expected


@pytest.mark.parametrize("spec, count, message", [
    ("0-5", 5, "this split has 5 shards, 0-4"),
    ("50", 50, "shard 50 does not exist"),
    ("4-1", 50, "runs backwards"),
    ("a", 50, "not a number or a range"),
    ("", 50, "not a number or a range"),
    ("1,,2", 50, "not a number or a range"),
    ("-3", 50, "not a number or a range"),
])
def test_parse_shards_rejects(spec, count, message):
    with pytest.raises(ValueError, match=message):
        download.parse_shards(spec, count)


def test_bad_shard_spec_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main("--split", "dev", "--shards", "0-7", "--out", tmp_path)
    assert exit_info.value.code == 2
    assert "this split has 5 shards, 0-4" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--out", "x"], "--split train|dev"),
    (["--split", "dev"], "exactly one of --out"),
    (["--split", "dev", "--out", "x", "--dest", "s3://b/p"], "exactly one of --out"),
    (["--split", "dev", "--dest", "/tmp/x"], "must be an s3:// URI"),
    (["--squad", "--shards", "0", "--out", "x"], "--shards applies to NQ"),
    (["--simplified", "--split", "dev", "--out", "x"], "no simplified dev set"),
    (["--split", "dev", "--out", "x", "--workers", "0"], "--workers must be at least 1"),
    (["--split", "dev", "--out", "x", "--base-url", "storage.googleapis.com/x"], "must start with http"),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        CLI["parse_args"](argv)
    assert message in capsys.readouterr().err


def test_urls_follow_the_bucket_layout():
    args = CLI["parse_args"](["--split", "train", "--shards", "0,49", "--out", "d"])
    assert [job.url for job in CLI["plan"](args)] == [
        "https://storage.googleapis.com/natural_questions/v1.0/train/nq-train-00.jsonl.gz",
        "https://storage.googleapis.com/natural_questions/v1.0/train/nq-train-49.jsonl.gz",
    ]
    args = CLI["parse_args"](["--simplified", "--out", "d"])
    assert [job.url for job in CLI["plan"](args)] == [
        "https://storage.googleapis.com/natural_questions/v1.0-simplified/simplified-nq-train.jsonl.gz"]
    args = CLI["parse_args"](["--squad", "--out", "d"])
    assert [job.url for job in CLI["plan"](args)] == [
        "https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v2.0.json",
        "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json",
    ]


def test_crc32c_known_values_and_continuation():
    # RFC 3720 (iSCSI) appendix B.4 test vectors, plus the classic "123456789" check value.
    vectors = {b"123456789": 0xE3069283, bytes(32): 0x8A9136AA, b"\xff" * 32: 0x62A8AB43,
               bytes(range(32)): 0x46DD794E}
    for data, expected in vectors.items():
        assert download.crc32c(data) == expected
    assert download.crc32c_backend() == "google-crc32c (C)"  # the wheel pinned in requirements.txt
    data = random.Random(1).randbytes(300_007)
    whole = reference_crc32c(data)
    assert download.crc32c(data) == whole
    # Continuing from an earlier value, split at arbitrary points (and from a memoryview), gives the same as all at once.
    crc = 0
    for start, end in [(0, 5), (5, 70_000), (70_000, 70_001), (70_001, len(data))]:
        crc = download.crc32c(memoryview(data)[start:end], crc)
    assert crc == whole
    digests = download.Digests(len(data), want_blob=False, want_crc32c=True)
    for start in range(0, len(data), 65_536):  # network-sized reads
        digests.update(data[start : start + 65_536])
    assert digests.crc == whole and digests.problems({"crc32c": whole.to_bytes(4, "big")}, None) == []


def test_without_google_crc32c_a_crc32c_check_says_what_to_install(tmp_path, dev_shards, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google_crc32c", None)  # a bare python3: import google_crc32c fails
    assert "google-crc32c missing" in download.crc32c_backend()
    path = nq_path("dev", 0)
    with RangeServer(dev_shards) as server:  # GCS-style: crc32c and md5
        rc = run_main("--split", "dev", "--shards", "0", "--out", tmp_path, "--base-url", f"{server.url}/v1.0")
        assert [request.method for request in server.requests_for(path)] == ["GET"]  # no retry: retrying cannot help
    assert rc == 1
    err = capsys.readouterr().err
    assert "the server sends a crc32c hash (x-goog-hash) and checking it needs google-crc32c: pip install google-crc32c" in err
    assert not (tmp_path / "dev" / "nq-dev-00.jsonl.gz").exists()
    # A server without a crc32c (md5 only, or nothing): the download needs no crc32c and is verified as usual.
    md5 = base64.b64encode(hashlib.md5(dev_shards[path]).digest()).decode()
    with RangeServer(dev_shards, goog_hash=False) as server:
        server.hash_headers[path] = [f"md5={md5}"]
        assert run_main("--split", "dev", "--shards", "0", "--out", tmp_path, "--base-url", f"{server.url}/v1.0") == 0
    assert (tmp_path / "dev" / "nq-dev-00.jsonl.gz").read_bytes() == dev_shards[path]


def test_git_blob_id():
    assert download.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_parse_goog_hash():
    assert download.parse_goog_hash(["crc32c=n03x6A==", "md5=Ojk9c3dhfxgoKVVHYwFbHQ=="]) == {
        "crc32c": base64.b64decode("n03x6A=="), "md5": base64.b64decode("Ojk9c3dhfxgoKVVHYwFbHQ==")}
    assert download.parse_goog_hash(["crc32c=n03x6A==,md5=Ojk9c3dhfxgoKVVHYwFbHQ=="])["crc32c"] == \
        base64.b64decode("n03x6A==")
    assert download.parse_goog_hash(None) == {}


# --- downloads to local disk ---------------------------------------------------------------------
def test_download_verify_and_skip_on_rerun(tmp_path, dev_shards, capsys):
    with RangeServer(dev_shards) as server:
        rc = run_main("--split", "dev", "--shards", "0-2", "--out", tmp_path, "--base-url", f"{server.url}/v1.0",
                      "--workers", "2")
        assert rc == 0
        for shard in range(3):
            assert (tmp_path / "dev" / f"nq-dev-{shard:02d}.jsonl.gz").read_bytes() == dev_shards[nq_path("dev", shard)]
        assert not list(tmp_path.rglob("*.part"))
        out = capsys.readouterr().out
        assert "3 files: 3 ok, 0 failed" in out
        assert out.count("verified") == 3

        gets_before = len([request for request in server.requests if request.method == "GET"])
        assert run_main("--split", "dev", "--shards", "all", "--out", tmp_path,
                        "--base-url", f"{server.url}/v1.0") == 1  # shards 3 and 4 are not on this server
        out = capsys.readouterr().out
        for shard in range(3):
            assert f"nq-dev-{shard:02d}.jsonl.gz: already complete ({len(dev_shards[nq_path('dev', shard)])} bytes), skipping" in out
        gets = [request.path for request in server.requests if request.method == "GET"][gets_before:]
        assert sorted(gets) == [nq_path("dev", 3), nq_path("dev", 4)]  # no shard fetched twice


def test_rerun_downloads_again_when_server_size_differs(tmp_path, dev_shards, capsys):
    target = tmp_path / "dev" / "nq-dev-00.jsonl.gz"
    target.parent.mkdir()
    target.write_bytes(b"an older, shorter file")
    with RangeServer(dev_shards) as server:
        assert run_main("--split", "dev", "--shards", "0", "--out", tmp_path, "--base-url", f"{server.url}/v1.0") == 0
    assert target.read_bytes() == dev_shards[nq_path("dev", 0)]
    assert "downloading it again" in capsys.readouterr().out


def test_resume_after_dropped_connection(tmp_path, dev_shards):
    path = nq_path("dev", 1)
    cut = 20_000
    with RangeServer(dev_shards) as server:
        server.drop_after[path] = cut
        rc = run_main("--split", "dev", "--shards", "1", "--out", tmp_path, "--base-url", f"{server.url}/v1.0",
                      "--retries", "2", "--retry-wait", "0.01")
        assert rc == 0
        assert (tmp_path / "dev" / "nq-dev-01.jsonl.gz").read_bytes() == dev_shards[path]
        assert [request.range for request in server.requests_for(path)] == [None, f"bytes={cut}-"]


def test_resume_from_part_left_by_killed_process(tmp_path):
    data = make_shard(7, 6000)  # about 1.5 MB
    path = nq_path("train", 7)
    part = tmp_path / "train" / "nq-train-07.jsonl.gz.part"
    argv = [sys.executable, SCRIPT, "--split", "train", "--shards", "7", "--out", str(tmp_path), "--retry-wait", "0"]
    with RangeServer({path: data}, chunk_size=16 * 1024, delay=0.05) as server:  # about 320 KB/s
        argv += ["--base-url", f"{server.url}/v1.0"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size >= 64 * 1024):
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the .part file never grew"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        killed_at = part.stat().st_size
        assert 0 < killed_at < len(data)
        assert not (tmp_path / "train" / "nq-train-07.jsonl.gz").exists()

        server.delay = 0
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"resuming at byte {killed_at}" in second.stdout
        assert server.requests_for(path)[-1].range == f"bytes={killed_at}-"
    assert (tmp_path / "train" / "nq-train-07.jsonl.gz").read_bytes() == data
    assert not part.exists()


def test_part_longer_than_the_file_starts_again(tmp_path, dev_shards, capsys):
    path = nq_path("dev", 0)
    part = tmp_path / "dev" / "nq-dev-00.jsonl.gz.part"
    part.parent.mkdir()
    part.write_bytes(b"x" * (len(dev_shards[path]) + 10))
    with RangeServer(dev_shards) as server:
        assert run_main("--split", "dev", "--shards", "0", "--out", tmp_path, "--base-url", f"{server.url}/v1.0",
                        "--retry-wait", "0") == 0
        assert [request.range for request in server.requests_for(path)] == [f"bytes={len(dev_shards[path]) + 10}-", None]
    assert (tmp_path / "dev" / "nq-dev-00.jsonl.gz").read_bytes() == dev_shards[path]
    assert "(HTTP 416); starting it again" in capsys.readouterr().out


def test_server_ignoring_range_gets_a_fresh_file(tmp_path, dev_shards, capsys):
    path = nq_path("dev", 1)
    part = tmp_path / "dev" / "nq-dev-01.jsonl.gz.part"
    part.parent.mkdir()
    part.write_bytes(b"garbage that must not survive")
    with RangeServer(dev_shards) as server:
        server.ignore_range = True
        assert run_main("--split", "dev", "--shards", "1", "--out", tmp_path, "--base-url", f"{server.url}/v1.0") == 0
        assert server.requests_for(path)[0].range == f"bytes={len(b'garbage that must not survive')}-"
    assert (tmp_path / "dev" / "nq-dev-01.jsonl.gz").read_bytes() == dev_shards[path]
    assert "ignored the Range request" in capsys.readouterr().out


@pytest.mark.parametrize("bad_headers, message", [
    (["crc32c=AAAAAA==", "md5={md5}"], "crc32c mismatch"),
    (["crc32c={crc}", "md5=AAAAAAAAAAAAAAAAAAAAAA=="], "md5 mismatch"),
    (["md5=AAAAAAAAAAAAAAAAAAAAAA=="], "md5 mismatch"),
])
def test_hash_mismatch_fails_and_leaves_no_file(tmp_path, dev_shards, capsys, bad_headers, message):
    path = nq_path("dev", 2)
    data = dev_shards[path]
    values = {"md5": base64.b64encode(hashlib.md5(data).digest()).decode(),
              "crc": base64.b64encode(reference_crc32c(data).to_bytes(4, "big")).decode()}
    with RangeServer(dev_shards) as server:
        server.hash_headers[path] = [header.format(**values) for header in bad_headers]
        rc = run_main("--split", "dev", "--shards", "2", "--out", tmp_path, "--base-url", f"{server.url}/v1.0")
    assert rc == 1
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Deleted" in captured.err and "next run starts this file from scratch" in captured.err
    assert "FAILED" in captured.out  # the summary table
    assert not (tmp_path / "dev" / "nq-dev-02.jsonl.gz").exists()
    assert not (tmp_path / "dev" / "nq-dev-02.jsonl.gz.part").exists()


def test_404_names_the_url_and_the_others_still_download(tmp_path, dev_shards, capsys):
    with RangeServer({nq_path("train", 0): dev_shards[nq_path("dev", 0)]}) as server:
        rc = run_main("--split", "train", "--shards", "0-1", "--out", tmp_path, "--base-url", f"{server.url}/v1.0",
                      "--retry-wait", "0")
        assert len(server.requests_for(nq_path("train", 1))) == 1  # a 404 is not retried
    assert rc == 1
    captured = capsys.readouterr()
    assert f"HTTP 404 Not Found: {server.url}/v1.0/train/nq-train-01.jsonl.gz" in captured.err
    assert "check --base-url" in captured.err and "shards 00-49" in captured.err
    assert (tmp_path / "train" / "nq-train-00.jsonl.gz").exists()
    assert "2 files: 1 ok, 1 failed" in captured.out


def test_gives_up_after_retries(tmp_path, dev_shards, capsys):
    path = nq_path("dev", 0)
    with RangeServer(dev_shards) as server:
        server.drop_after[path] = 1000
        rc = run_main("--split", "dev", "--shards", "0", "--out", tmp_path, "--base-url", f"{server.url}/v1.0",
                      "--retries", "0")
    assert rc == 1
    err = capsys.readouterr().err
    assert "gave up after 0 retries: connection closed after 1000 of" in err
    assert "run the same command again later (finished files are skipped, a partial one continues)" in err
    assert (tmp_path / "dev" / "nq-dev-00.jsonl.gz.part").stat().st_size == 1000  # kept for the next run


# --- SQuAD: verified by git blob id ------------------------------------------------------------
def squad_files():
    return {f"/dataset/{name}": f'{{"version": "v2.0", "data": [], "name": "{name}"}}'.encode() * 50
            for name in ("train-v2.0.json", "dev-v2.0.json")}


def blob_id(content):
    return hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()


def test_squad_checked_by_git_blob_id(tmp_path, monkeypatch, capsys):
    files = squad_files()
    monkeypatch.setattr(download, "SQUAD_BLOB_IDS",
                        {path.rsplit("/", 1)[1]: blob_id(content) for path, content in files.items()})
    with RangeServer(files, goog_hash=False) as server:
        assert run_main("--squad", "--out", tmp_path, "--squad-base-url", f"{server.url}/dataset") == 0
        assert (tmp_path / "dev-v2.0.json").read_bytes() == files["/dataset/dev-v2.0.json"]
        assert (tmp_path / "train-v2.0.json").read_bytes() == files["/dataset/train-v2.0.json"]
        assert run_main("--squad", "--out", tmp_path, "--squad-base-url", f"{server.url}/dataset") == 0
    assert "dev-v2.0.json: already complete" in capsys.readouterr().out


def test_squad_blob_id_mismatch(tmp_path, capsys):
    # The real ids: a file that is not the official dev set must be refused.
    with RangeServer(squad_files(), goog_hash=False) as server:
        rc = run_main("--squad", "--split", "dev", "--out", tmp_path, "--squad-base-url", f"{server.url}/dataset")
    assert rc == 1
    assert "git blob id mismatch: expected c6fa1a89a12c90b7fbfa8f6fb437cfff27af41ca" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- S3 destination -------------------------------------------------------------------------------
def test_stream_into_s3_multipart_and_skip(s3, monkeypatch, capsys):
    monkeypatch.setattr(download, "S3_PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part: 2 parts below
    big = random.Random(3).randbytes(6 * 1024 * 1024)
    files = {nq_path("dev", 0): make_shard(0, 50), nq_path("dev", 1): big}
    s3.create_bucket(Bucket="nq-bucket")
    with RangeServer(files) as server:
        argv = ["--split", "dev", "--shards", "0-1", "--dest", "s3://nq-bucket/nq/raw", "--base-url",
                f"{server.url}/v1.0"]
        assert run_main(*argv) == 0
        for shard in range(2):
            stored = s3.get_object(Bucket="nq-bucket", Key=f"nq/raw/dev/nq-dev-{shard:02d}.jsonl.gz")["Body"].read()
            assert stored == files[nq_path("dev", shard)]
        gets_before = len(server.requests_for(nq_path("dev", 1)))
        assert run_main(*argv) == 0
        assert len(server.requests_for(nq_path("dev", 1))) == gets_before
    assert "nq-dev-01.jsonl.gz: already in s3://nq-bucket/nq/raw/dev/nq-dev-01.jsonl.gz" in capsys.readouterr().out


def test_s3_hash_mismatch_writes_no_object(s3, monkeypatch, capsys):
    monkeypatch.setattr(download, "S3_PART_BYTES", 5 * 1024 * 1024)
    big = random.Random(4).randbytes(6 * 1024 * 1024)
    small = make_shard(1, 50)
    files = {nq_path("dev", 0): small, nq_path("dev", 1): big}
    s3.create_bucket(Bucket="bad-bucket")
    with RangeServer(files, goog_hash=False) as server:
        for path in files:
            server.hash_headers[path] = ["md5=AAAAAAAAAAAAAAAAAAAAAA=="]
        rc = run_main("--split", "dev", "--shards", "0-1", "--dest", "s3://bad-bucket/p", "--base-url",
                      f"{server.url}/v1.0")
    assert rc == 1
    assert capsys.readouterr().err.count("md5 mismatch") == 2
    assert s3.list_objects_v2(Bucket="bad-bucket").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket="bad-bucket").get("Uploads", []) == []


# --- --list-file: what `make data` converts ------------------------------------------------------
def test_list_file_written_when_complete_and_only_when_changed(tmp_path, dev_shards, capsys):
    listing = tmp_path / "nq_dev.inputs"
    with RangeServer(dev_shards) as server:
        argv = ["--out", tmp_path / "raw", "--base-url", f"{server.url}/v1.0", "--list-file", listing, "--retry-wait", "0"]
        assert run_main("--split", "dev", "--shards", "0-1", *argv) == 0
        expected = "".join(f"{tmp_path / 'raw' / 'dev' / f'nq-dev-{shard:02d}.jsonl.gz'}\n" for shard in range(2))
        assert listing.read_text() == expected
        os.utime(listing, ns=(1, 1))  # an old mtime: a rewrite would show
        assert run_main("--split", "dev", "--shards", "1,0", *argv) == 0
        assert listing.stat().st_mtime_ns == 1 and "the same 2 file(s) as before" in capsys.readouterr().out
        assert run_main("--split", "dev", "--shards", "1", *argv) == 0
        assert listing.read_text() == f"{tmp_path / 'raw' / 'dev' / 'nq-dev-01.jsonl.gz'}\n"
        before = listing.read_text()
        assert run_main("--split", "dev", "--shards", "0-3", *argv) == 1  # shard 3 is not on this server
    assert listing.read_text() == before  # a failed download never lists files


@pytest.mark.parametrize("corrupt", [False, True])
def test_complete_part_left_before_the_rename_is_verified_not_fetched(tmp_path, dev_shards, capsys, corrupt):
    # A run killed between the last byte and the rename leaves a full-size .part: the next run verifies it.
    path = nq_path("dev", 0)
    data = bytearray(dev_shards[path])
    if corrupt:
        data[100] ^= 0xFF
    part = tmp_path / "dev" / "nq-dev-00.jsonl.gz.part"
    part.parent.mkdir()
    part.write_bytes(bytes(data))
    with RangeServer(dev_shards) as server:
        rc = run_main("--split", "dev", "--shards", "0", "--out", tmp_path, "--base-url", f"{server.url}/v1.0")
        got = [(request.method, request.range) for request in server.requests if request.path == path]
    captured = capsys.readouterr()
    assert f"already holds all {len(data)} bytes; verifying it" in captured.out
    assert got == [("GET", f"bytes={len(data)}-"), ("HEAD", None)]  # the 416, then the hashes: no body fetched
    if corrupt:
        assert rc == 1 and "md5 mismatch" in captured.err and not part.exists()
        assert not (tmp_path / "dev" / "nq-dev-00.jsonl.gz").exists()
    else:
        assert rc == 0 and (tmp_path / "dev" / "nq-dev-00.jsonl.gz").read_bytes() == dev_shards[path]
        assert not part.exists()
