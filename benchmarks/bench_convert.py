"""NQ -> SQuAD conversion throughput: the gunzip limit, the common baseline, and ours.

    python benchmarks/bench_convert.py --out benchmarks/results
    python benchmarks/bench_convert.py --out /tmp/bench --repeat 40 --shards 4

Builds shards by repeating the real records of ../shared/data/nq/nq-dev-10.full.jsonl.gz
(`--repeat` times each, ~740 KB a record uncompressed) into temporary gzip files, then measures
on one shard:
  gunzip only   gzip.open(...).read() (and isal, what ours uses inline): MB/s and records/s,
                the limit of a single-threaded reader
  baseline      gzip.open + json.loads per line + the same conversion, single thread (what the
                legacy converters do)
  ours          qa.nq.convert (scripts/nq_to_squad.py) --workers 1, end to end including writing the output,
                on one core
and the scaling of ours over `--shards` files with --workers 1 and 2. Also the peak memory of one converter process on 1 and on all shards (it streams: equal). Wall time and CPU time
(this process plus finished children) are both reported: on a shared machine other jobs inflate
wall time, CPU time is the fair single-core comparison. Prints a table and writes DIR/convert.json.
"""

import argparse
import gzip
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

from qa.nq import convert as nq_convert
from qa.nq import reader as nq_reader

ROOT = pathlib.Path(__file__).resolve().parent.parent
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
    """(wall seconds, CPU seconds of this process and of its finished children: pool workers, gzip)."""
    def cpu():
        me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    wall, cpu_start = time.perf_counter(), cpu()
    function()
    return time.perf_counter() - wall, cpu() - cpu_start


def gunzip_only(path):
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total


def baseline(path, output):
    """The common approach: gzip.open line by line, json.loads, convert, json.dump at the end."""
    options = nq_convert.Options()
    articles = []
    with gzip.open(path, "rb") as f:
        for line in f:
            record = json.loads(line)
            article, _ = nq_convert.convert_record(record, options)
            if article is not None:
                articles.append(article)
    with open(output, "w", encoding="utf-8") as f:
        json.dump({"version": "v2.0", "data": articles}, f, ensure_ascii=False)
    return len(articles)


def peak_rss_mb(inputs, output):
    """Peak resident memory of a fresh `nq_to_squad.py --workers 1` process converting `inputs`."""
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "nq_to_squad.py"), *inputs, "--output", output,
                                "--workers", "1"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not the largest of all children so far
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"nq_to_squad.py failed (exit {process.returncode})")
    return usage.ru_maxrss / 1024


def best_of(runs, function):
    """Best wall and best CPU time over `runs` (other jobs on a shared machine only ever add time)."""
    times = [timed(function) for _ in range(runs)]
    return min(t[0] for t in times), min(t[1] for t in times)


def isal_gunzip_only(path):
    from isal import isal_zlib

    total, decompressor = 0, isal_zlib.decompressobj(31)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(decompressor.decompress(chunk))
    return total


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
        rows = []  # (measure, wall s, CPU s, records)

        rows.append(("gunzip only: gzip module", *best_of(args.runs, lambda: gunzip_only(paths[0])), records))
        if nq_reader.inflate_zlib is not zlib:
            rows.append(("gunzip only: isal (ours inline)", *best_of(args.runs, lambda: isal_gunzip_only(paths[0])), records))
        baseline_row = ("baseline: gzip.open + json.loads + convert", *best_of(args.runs, lambda: baseline(paths[0], out)), records)
        rows.append(baseline_row)
        options = nq_convert.Options()  # as the Makefile runs it
        ours = ("ours --workers 1", *best_of(args.runs, lambda: nq_convert.convert(paths[:1], out, options, workers=1)),
                records)
        rows.append(ours)
        scaling = {}
        for workers in (1, 2):
            row = (f"ours --workers {workers}, {len(paths)} shards",
                   *best_of(args.runs, lambda: nq_convert.convert(paths, out, options, workers=workers)), records * len(paths))
            scaling[workers] = row[3] / row[1]
            rows.append(row)
        memory = {f"{n} shard(s)": round(peak_rss_mb(paths[:n], out), 1) for n in (1, len(paths))}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{'measure':<44} {'wall s':>7} {'CPU s':>7} {'records':>8} {'rec/s wall':>10} {'rec/s CPU':>10} {'MB/s wall':>9}")
    for name, wall, cpu, count in rows:
        mb = megabytes * count / records
        print(f"{name:<44} {wall:>7.2f} {cpu:>7.2f} {count:>8} {count / wall:>10.1f} {count / cpu:>10.1f} {mb / wall:>9.1f}")
    cpu_ratio = baseline_row[2] / ours[2]
    wall_ratio = baseline_row[1] / ours[1]
    print(f"ours (one core) / baseline: {cpu_ratio:.2f}x in CPU time, {wall_ratio:.2f}x in wall time; workers 2 / workers 1: "
          f"{scaling[2] / scaling[1]:.2f}x wall (cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
    print("peak RSS of one converter process (memory must not grow with input size): "
          + ", ".join(f"{k}: {v} MB" for k, v in memory.items()))
    result = {
        "records_per_shard": records, "uncompressed_mb_per_shard": round(megabytes, 1), "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2), "isal": nq_reader.inflate_zlib is not zlib,
        "rows": [{"measure": n, "wall_s": round(w, 3), "cpu_s": round(c, 3), "records": k,
                  "records_per_s_wall": round(k / w, 1), "records_per_s_cpu": round(k / c, 1)} for n, w, c, k in rows],
        "ours_over_baseline_cpu": round(cpu_ratio, 2),
        "ours_over_baseline_wall": round(wall_ratio, 2),
        "workers_2_over_1_wall": round(scaling[2] / scaling[1], 2),
        "peak_rss_mb": memory,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "convert.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'convert.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
