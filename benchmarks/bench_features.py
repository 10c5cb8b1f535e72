"""Feature building speed and memory: qa.features against the raw tokenizer and a legacy-style loop.

    .venv/bin/python benchmarks/bench_features.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_features.py --out /tmp/bench --scales 1 10 30 --legacy-examples 200

The data: the two real SQuAD 2.0 dev subsets in ../shared/data/squad (Normans, Rhine, Computational
complexity theory: 1,204 distinct questions) replicated
N times with distinct ids and contexts (" [copy k]" appended to each context, so every copy is a new
paragraph to tokenise and answers stay where they were). The tokenizer: a BERT-style WordPiece
trained here on that text (vocab up to 30,000; the text is small, so it ends up smaller and splits
words into more pieces than bert-base would). Every measurement runs in a fresh subprocess with
TOKENIZERS_PARALLELISM=false, so `--threads` is the only parallelism; the machine's other load
shows in the numbers.

Reported:
- features/s of load_or_build_features (cache build: tokenise, assemble, write to disk) with
  --threads 1 and 2, at the largest scale;
- the raw tokenizer alone on the same work (each distinct context with offsets, every question);
- legacy-style: the per-example, per-word reference loop of tests/test_features.py on a subset
  (a fast tokenizer called word by word; the real legacy converter used slow Python tokenizers
  and the issue measured about 190 features/s per core with a BERT tokenizer);
- peak RSS of the whole process, and the growth during the build: the peak RSS of the build
  alone (Linux: the peak is reset through /proc/self/clear_refs once the data is read, because
  reading the JSON has a larger transient peak that grows with the data) minus the RSS before it, at
  each scale, for the cached build (chunks go to disk) and for the in-memory build_features.
  The cached build holds about one chunk of examples at a time, so its growth stops rising once
  the data is a few chunks long: 1x (1,124 examples) is less than one default chunk (2,000
  examples), so it is also measured with --chunk-examples (default 250) to show the plateau
  from 1x on.
Writes OUT/features.json.
"""

import argparse
import gc
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_SQUAD = ROOT.parent / "shared" / "data" / "squad"
SOURCES = ("squad2-dev-normans-rhine.json", "squad2-dev-normans-complexity.json")
LEGACY_ISSUE_FEATURES_PER_S_PER_CORE = 190  # the issue's figure for the legacy converter on SQuAD
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]


def replicated_squad(copies):
    """The real SQuAD subsets, `copies` times, with distinct ids and contexts."""
    articles = {}  # by title: both files hold the Normans article
    for name in SOURCES:
        with open(SHARED_SQUAD / name, encoding="utf-8") as f:
            articles.update((article["title"], article) for article in json.load(f)["data"])
    data = []
    for copy in range(copies):
        for article in articles.values():
            paragraphs = [
                {
                    "context": paragraph["context"] + f" [copy {copy}]",
                    "qas": [{**qa, "id": f"{qa['id']}-{copy}"} for qa in paragraph["qas"]],
                }
                for paragraph in article["paragraphs"]
            ]
            data.append({"title": article["title"], "paragraphs": paragraphs})
    return {"version": "v2.0", "data": data}


# ---------------------------------------------------------------------------------------------
# Workers: one measurement in a fresh process, printed as one JSON line
# ---------------------------------------------------------------------------------------------
def reset_peak_rss():
    """Start a new peak-RSS count (Linux VmHWM); False where the kernel does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset():
    """Bytes: VmHWM from /proc/self/status (the peak since reset_peak_rss)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def worker(job):
    import psutil
    from transformers import AutoTokenizer

    from qa import features as F
    from qa.squad_io import read_squad

    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    examples = read_squad(job["data"])
    params = F.FeatureParams(job["max_seq_length"], job["doc_stride"], job["max_query_length"])
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    # Without this, the peak would be read_squad's (whole file + parsed JSON), not the build's.
    peak_was_reset = reset_peak_rss()
    t0 = time.perf_counter()
    if job["kind"] == "cached":
        with tempfile.TemporaryDirectory(dir=job["tmp"]) as cache_dir:
            features = F.load_or_build_features(job["data"], examples, tokenizer, params, True, cache_dir=cache_dir,
                                                threads=job["threads"], log=lambda m: None,
                                                chunk_examples=job.get("chunk_examples") or F.CHUNK_EXAMPLES)
            count = len(features)
            seconds = time.perf_counter() - t0
            del features
    elif job["kind"] == "memory":
        count = len(F.build_features(examples, tokenizer, params, True, threads=job["threads"]))
        seconds = time.perf_counter() - t0
    elif job["kind"] == "raw":
        backend = F._backend(tokenizer)
        contexts = list(dict.fromkeys(ex.context for ex in examples))
        t0 = time.perf_counter()
        backend.encode_batch(contexts, add_special_tokens=False)
        backend.encode_batch_fast([ex.question for ex in examples], add_special_tokens=False)
        seconds, count = time.perf_counter() - t0, len(examples)
    elif job["kind"] == "legacy":
        from test_features import legacy_features

        subset = examples[: job["legacy_examples"]]
        t0 = time.perf_counter()
        # A new word cache per example: the legacy converter tokenised each example's context anew.
        count = sum(len(legacy_features(ex, tokenizer, params, True, {})) for ex in subset)
        seconds = time.perf_counter() - t0
        examples = subset
    else:
        raise ValueError(f"unknown job kind {job['kind']}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the whole process, reading included
    build_peak = peak_rss_since_reset() if peak_was_reset else peak
    print(json.dumps({
        "examples": len(examples), "count": count, "seconds": seconds,
        "peak_rss_mb": peak / 2**20, "build_growth_mb": max(build_peak - rss_before, 0) / 2**20,
        "build_peak_measured_alone": peak_was_reset,
    }))


def run_worker(job):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"benchmark worker {job['kind']} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for features.json")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10], help="copies of the real data (default 1 10)")
    p.add_argument("--legacy-examples", type=int, default=300, help="examples timed with the legacy-style loop")
    p.add_argument("--chunk-examples", type=int, default=250,
                   help="a small chunk for the memory table, so that 1x is several chunks (default 250)")
    p.add_argument("--max_seq_length", type=int, default=384)
    p.add_argument("--doc_stride", type=int, default=128)
    p.add_argument("--max_query_length", type=int, default=64)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return args
    if not args.out:
        p.error("--out DIR is required")
    if any(s < 1 for s in args.scales) or args.legacy_examples < 1 or args.chunk_examples < 1:
        p.error("--scales, --legacy-examples and --chunk-examples must be at least 1")
    missing = [name for name in SOURCES if not (SHARED_SQUAD / name).exists()]
    if missing:
        p.error(f"real SQuAD subsets missing from {SHARED_SQUAD}: {', '.join(missing)} (../shared/ beside the checkout)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    import make_tiny_model
    from qa.features import CHUNK_EXAMPLES
    from qa.storage import atomic_write

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = os.path.join(tmp, "tokenizer")
        texts = make_tiny_model.squad_texts(SHARED_SQUAD / SOURCES[0])
        texts = [*texts, *make_tiny_model.squad_texts(SHARED_SQUAD / SOURCES[1])]
        make_tiny_model.train_tokenizer(texts, vocab_size=30000).save_pretrained(tokenizer_dir)
        base = {"tokenizer": tokenizer_dir, "tmp": tmp, "max_seq_length": args.max_seq_length,
                "doc_stride": args.doc_stride, "max_query_length": args.max_query_length,
                "legacy_examples": args.legacy_examples, "threads": 1}
        data = {}
        for scale in sorted(set(args.scales)):
            data[scale] = os.path.join(tmp, f"squad-x{scale}.json")
            with open(data[scale], "w", encoding="utf-8") as f:
                json.dump(replicated_squad(scale), f)

        rows = []
        biggest = max(data)
        for kind, threads in (("cached", 1), ("cached", 2), ("raw", 1)):
            r = run_worker({**base, "data": data[biggest], "kind": kind, "threads": threads})
            rows.append({"what": f"{kind} x{biggest}", "threads": threads, **r, "per_s": r["count"] / r["seconds"]})
        r = run_worker({**base, "data": data[min(data)], "kind": "legacy"})
        rows.append({"what": "legacy-style loop", "threads": 1, **r, "per_s": r["count"] / r["seconds"]})
        memory = []
        for scale in sorted(data):
            for kind, chunk in (("cached", CHUNK_EXAMPLES), ("cached", args.chunk_examples), ("memory", None)):
                r = run_worker({**base, "data": data[scale], "kind": kind, "chunk_examples": chunk})
                memory.append({"scale": scale, "kind": kind, "chunk_examples": chunk, **r})

    cached1 = rows[0]["per_s"]
    print(f"{'measure':<22}{'threads':>8}{'examples':>10}{'count':>9}{'seconds':>9}{'per s':>10}")
    for row in rows:
        unit = "examples" if row["what"].startswith("raw") else "features"
        print(f"{row['what']:<22}{row['threads']:>8}{row['examples']:>10}{row['count']:>9}{row['seconds']:>9.2f}"
              f"{row['per_s']:>10.0f}  {unit}/s")
    print(f"legacy converter (issue's figure): {LEGACY_ISSUE_FEATURES_PER_S_PER_CORE} features/s per core; "
          f"qa.features 1 thread: {cached1 / LEGACY_ISSUE_FEATURES_PER_S_PER_CORE:.0f}x that, "
          f"{cached1 / rows[3]['per_s']:.0f}x the legacy-style loop")
    print(f"\n{'scale':>6} {'build':<8}{'chunk':>7}{'examples':>10}{'features':>10}{'peak RSS MB':>13}{'growth in build MB':>20}")
    for m in memory:
        chunk = m["chunk_examples"] or "-"
        print(f"{m['scale']:>5}x {m['kind']:<8}{chunk:>7}{m['examples']:>10}{m['count']:>10}{m['peak_rss_mb']:>13.0f}"
              f"{m['build_growth_mb']:>20.1f}")
    result = {
        "params": {"max_seq_length": args.max_seq_length, "doc_stride": args.doc_stride,
                   "max_query_length": args.max_query_length},
        "throughput": rows, "memory": memory,
        "legacy_issue_features_per_s_per_core": LEGACY_ISSUE_FEATURES_PER_S_PER_CORE,
        "speedup_vs_issue_legacy": cached1 / LEGACY_ISSUE_FEATURES_PER_S_PER_CORE,
        "speedup_vs_legacy_style_loop": cached1 / rows[3]["per_s"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    with atomic_write(os.path.join(args.out, "features.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {os.path.join(args.out, 'features.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
