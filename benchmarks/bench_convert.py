"""NQ -> SQuAD conversion throughput: the gunzip limit, the common baseline, and ours.

    python benchmarks/bench_convert.py --out benchmarks/results
    python benchmarks/bench_convert.py --out /tmp/bench --repeat 40 --shards 4

Builds shards by repeating the real records of ../shared/data/nq/nq-dev-10.full.jsonl.gz
(`--repeat` times each, ~740 KB a record uncompressed) into temporary gzip files, then measures
on one shard:
  gunzip only   gzip.open(...).read() in this process: MB/s and records/s (the limit of a
                single-threaded in-process reader)
  baseline      gzip.open + json.loads per line + the same conversion, single thread (what the
                legacy converters do)
  ours          scripts/nq_to_squad.py --workers 1 (pigz/gzip -dc on another core when present,
                orjson), end to end including writing the output
and the scaling of ours over `--shards` files with --workers 1 and 2. Prints a table and writes
DIR/convert.json.
"""

import argparse
import gzip
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import nq_to_squad  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "nq" / "nq-dev-10.full.jsonl.gz"


def build_shards(folder, repeat, shards):
    lines = [line.rstrip(b"\n") for line in gzip.open(REAL)]
    paths = []
    for shard in range(shards):
        path = os.path.join(folder, f"nq-dev-{shard:02d}.jsonl.gz")
        with gzip.open(path, "wb", compresslevel=6) as out:
            for _ in range(repeat):
                out.write(b"\n".join(lines) + b"\n")
        paths.append(path)
    return paths, len(lines) * repeat


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def gunzip_only(path):
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total


def baseline(path, output):
    """The common approach: gzip.open line by line, json.loads, convert, json.dump at the end."""
    options = nq_to_squad.Options()
    articles = []
    with gzip.open(path, "rb") as f:
        for line in f:
            record = json.loads(line)
            article, _ = nq_to_squad.convert_record(record, options)
            if article is not None:
                articles.append(article)
    with open(output, "w", encoding="utf-8") as f:
        json.dump({"version": "v2.0", "data": articles}, f, ensure_ascii=False)
    return len(articles)


def best_of(runs, function):
    return min(timed(function)[0] for _ in range(runs))


def main(argv=None):
    parser = argparse.ArgumentParser(description="NQ conversion throughput")
    parser.add_argument("--out", required=True, help="folder for convert.json")
    parser.add_argument("--repeat", type=int, default=20, help="copies of the 10 real records per shard (default 20 = 200 records)")
    parser.add_argument("--shards", type=int, default=2, help="shards for the workers scaling rows")
    parser.add_argument("--runs", type=int, default=2, help="best of this many runs per row")
    args = parser.parse_args(argv)
    if not REAL.exists():
        raise SystemExit(f"{REAL} is missing: the benchmark needs the real NQ records in ../shared/data")

    folder = tempfile.mkdtemp(prefix="bench-convert-")
    try:
        paths, records = build_shards(folder, args.repeat, args.shards)
        megabytes = gunzip_only(paths[0]) / 1e6
        out = os.path.join(folder, "out.json")
        rows = []

        seconds = best_of(args.runs, lambda: gunzip_only(paths[0]))
        rows.append(("gunzip only (gzip module, 1 shard)", seconds, records, megabytes / seconds))
        seconds = best_of(args.runs, lambda: baseline(paths[0], out))
        baseline_rate = records / seconds
        rows.append(("baseline: gzip.open + json.loads + convert", seconds, records, megabytes / seconds))
        options = nq_to_squad.Options()
        seconds = best_of(args.runs, lambda: nq_to_squad.convert(paths[:1], out, options, workers=1))
        ours_rate = records / seconds
        rows.append(("ours --workers 1 (1 shard)", seconds, records, megabytes / seconds))
        scaling = {}
        for workers in (1, 2):
            seconds = best_of(args.runs, lambda: nq_to_squad.convert(paths, out, options, workers=workers))
            scaling[workers] = records * len(paths) / seconds
            rows.append((f"ours --workers {workers} ({len(paths)} shards)", seconds, records * len(paths), megabytes * len(paths) / seconds))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{'measure':<44} {'seconds':>8} {'records':>8} {'records/s':>10} {'MB/s':>8}")
    for name, seconds, count, rate in rows:
        print(f"{name:<44} {seconds:>8.2f} {count:>8} {count / seconds:>10.1f} {rate:>8.1f}")
    ratio = ours_rate / baseline_rate
    print(f"ours / baseline (1 worker): {ratio:.2f}x;  workers 2 / workers 1: {scaling[2] / scaling[1]:.2f}x  "
          f"(cores: {os.cpu_count()}, gunzip child: {nq_to_squad._gunzip_command() or 'none, in-process zlib'})")
    result = {
        "records_per_shard": records, "uncompressed_mb_per_shard": round(megabytes, 1), "cpu_count": os.cpu_count(),
        "gunzip_command": nq_to_squad._gunzip_command(),
        "rows": [{"measure": n, "seconds": round(s, 3), "records": c, "records_per_s": round(c / s, 1), "mb_per_s": round(r, 1)}
                 for n, s, c, r in rows],
        "ours_over_baseline": round(ratio, 2),
        "workers_2_over_1": round(scaling[2] / scaling[1], 2),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "convert.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'convert.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
