"""Download verification cost: crc32c and md5, and end-to-end throughput over loopback.

    .venv/bin/python benchmarks/bench_download.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_download.py --out /tmp/bench --megabytes 256 --workers 1 2 4

Why it matters: every byte of NQ (about 41 GB) is hashed with md5 and crc32c to check GCS's
x-goog-hash. A plain table-driven crc32c in Python runs at about 8 MB/s, which would make the
hash, not the network, the bottleneck (about 85 min of CPU for NQ); scripts/download_nq.py
uses the google-crc32c wheel (C, several GB/s).

Reported:
- MB/s of crc32c (google-crc32c) and of hashlib.md5,
  on random bytes fed in 1 MiB chunks, as the downloader does;
- end-to-end MB/s of download_nq.py (HTTP GET from a server on 127.0.0.1 serving N shards,
  write to a temporary folder, md5 + crc32c verification, rename) for each --workers value.
  Loopback has no network limit, so this is the downloader's own ceiling on this machine.
Writes OUT/download.json.
"""

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import pathlib
import platform
import random
import runpy
import sys
import tempfile
import time

from qa.nq import download as download_nq

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from servers import RangeServer  # noqa: E402

DOWNLOAD_MAIN = runpy.run_path(str(ROOT / "scripts" / "download_nq.py"))["main"]  # the command line, in-process


def throughput(function, data, chunk=download_nq.CHUNK_BYTES):
    view = memoryview(data)
    start = time.perf_counter()
    for offset in range(0, len(data), chunk):
        function(view[offset:offset + chunk])
    return len(data) / (time.perf_counter() - start) / 1e6


def bench_hashes(megabytes):
    data = random.Random(0).randbytes(megabytes << 20)
    rows = [("crc32c google-crc32c", throughput(download_nq.crc32c, data))]
    md5 = hashlib.md5()
    rows.append(("md5 (hashlib)", throughput(md5.update, data)))
    return rows


def bench_end_to_end(megabytes, shards, workers_list):
    rng = random.Random(1)
    size = (megabytes << 20) // shards
    files = {f"/v1.0/dev/nq-dev-{shard:02d}.jsonl.gz": rng.randbytes(size) for shard in range(shards)}
    rows = []
    with RangeServer(files, goog_hash=False, chunk_size=1 << 20) as server:
        for path, data in files.items():  # real GCS-style headers, hashed with the library under test for speed
            server.hash_headers[path] = [
                "crc32c=" + base64.b64encode(download_nq.crc32c(data).to_bytes(4, "big")).decode(),
                "md5=" + base64.b64encode(hashlib.md5(data).digest()).decode()]
        for workers in workers_list:
            with tempfile.TemporaryDirectory() as out:
                argv = ["--split", "dev", "--shards", f"0-{shards - 1}", "--out", out,
                        "--base-url", f"{server.url}/v1.0", "--workers", str(workers)]
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    rc = DOWNLOAD_MAIN(argv)
                seconds = time.perf_counter() - start
                if rc != 0:
                    raise SystemExit(f"download_nq.py failed with --workers {workers}")
                rows.append((workers, seconds, shards * size / seconds / 1e6))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for download.json")
    parser.add_argument("--megabytes", type=int, default=64, help="data hashed and downloaded")
    parser.add_argument("--shards", type=int, default=4, help="files the data is split into for the download")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--workers values to time")
    args = parser.parse_args()
    if args.megabytes < 8 or not 1 <= args.shards <= 5:
        parser.error("--megabytes must be at least 8 and --shards between 1 and 5 (the dev split's shard count)")

    hash_rows = bench_hashes(args.megabytes)
    print(f"crc32c backend chosen by download_nq.py: {download_nq.crc32c_backend()}")
    print(f"{'hash':<24} {'MB/s':>8}")
    for name, rate in hash_rows:
        print(f"{name:<24} {rate:>8.1f}")
    e2e_rows = bench_end_to_end(args.megabytes, args.shards, args.workers)
    print(f"\nend to end over loopback: {args.megabytes} MiB in {args.shards} files, verified")
    print(f"{'workers':>7} {'seconds':>8} {'MB/s':>8}")
    for workers, seconds, rate in e2e_rows:
        print(f"{workers:>7} {seconds:>8.2f} {rate:>8.1f}")

    os.makedirs(args.out, exist_ok=True)
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "crc32c_backend": download_nq.crc32c_backend(),
        "hash_mb_per_s": {name: round(rate, 1) for name, rate in hash_rows},
        "end_to_end": [{"workers": w, "seconds": round(s, 3), "mb_per_s": round(r, 1)} for w, s, r in e2e_rows],
        "megabytes": args.megabytes,
        "shards": args.shards,
    }
    path = os.path.join(args.out, "download.json")
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
