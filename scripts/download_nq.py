"""Download Google Natural Questions v1.0 and SQuAD 2.0: resumable, parallel, retried, verified.

    python scripts/download_nq.py --split dev --shards all --out data/nq/raw            # 5 files, about 1 GB
    python scripts/download_nq.py --split train --shards 0-4 --out data/nq/raw --workers 4   # the guide's 1/10
    python scripts/download_nq.py --split train --shards 0,3,7-9 --out data/nq/raw
    python scripts/download_nq.py --split train --shards all --out data/nq/raw          # 50 files, about 40 GB
    python scripts/download_nq.py --simplified --out data/nq/raw                        # simplified-nq-train.jsonl.gz
    python scripts/download_nq.py --squad --out data/squad                              # train-v2.0.json + dev-v2.0.json
    python scripts/download_nq.py --squad --split dev --out data/squad
    python scripts/download_nq.py --split dev --shards all --dest s3://my-bucket/nq/raw   # straight into S3
    python scripts/download_nq.py --split dev --shards 0 --out /tmp/nq --base-url http://mirror.example/nq/v1.0
    python scripts/download_nq.py --split train --shards 0-4 --out data/nq/raw --list-file data/nq/nq_train.inputs

Where files go, how a file is made (NAME.part, Range requests to continue, size and hash checks
before the rename, S3 multipart uploads checked before completion) and what --list-file does:
qa/nq/download.py, which does the work. Needs only the standard library, plus google-crc32c to check
the crc32c that Google's bucket sends (pinned in requirements.txt), tqdm for progress bars (optional)
and boto3 (only for --dest s3://). It runs from a bare python3 without the venv: the package beside
this script is found then.
"""

import argparse
import os
import sys

try:
    import qa  # noqa: F401  (installed into the venv by `make setup`)
except ImportError:  # a bare python3 without the venv: the package is beside this script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qa import storage  # noqa: E402
from qa.nq.download import (  # noqa: E402
    DEFAULT_RETRIES,
    DEFAULT_RETRY_WAIT,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    NQ_BASE_URL,
    NQ_SIMPLIFIED_FILE,
    SHARD_COUNTS,
    SQUAD_BASE_URL,
    crc32c_backend,
    destination,
    download_all,
    nq_jobs,
    parse_shards,
    say,
    simplified_base_url,
    simplified_jobs,
    squad_jobs,
    summary_table,
    write_list_file,
)


# --- Command line ------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to download (NQ shards by default)")
    what.add_argument("--split", choices=sorted(SHARD_COUNTS), help="NQ split; with --squad, only that SQuAD file")
    what.add_argument("--shards", help="NQ shards: 0-4, 0,3,7-9 or all (the default): train has 0-49, dev 0-4")
    what.add_argument("--simplified", action="store_true", help=f"the simplified NQ train set ({NQ_SIMPLIFIED_FILE})")
    what.add_argument("--squad", action="store_true", help="SQuAD 2.0 train-v2.0.json and dev-v2.0.json")
    where = parser.add_argument_group("where from, where to")
    where.add_argument("--out", help="local folder (NQ shards go to OUT/train, OUT/dev; SQuAD files to OUT)")
    where.add_argument("--dest", help="s3://bucket/prefix instead of --out: stream into S3")
    where.add_argument("--base-url", default=NQ_BASE_URL, help="NQ v1.0 base URL (a mirror, or a test server)")
    where.add_argument("--simplified-base-url",
                       help="base URL of the simplified set (default: BASE_URL-simplified when BASE_URL ends in "
                            "/v1.0, else BASE_URL)")
    where.add_argument("--squad-base-url", default=SQUAD_BASE_URL, help="base URL of the SQuAD 2.0 files")
    where.add_argument("--list-file",
                       help="after every file is complete, write their paths here, one per line; the file is "
                            "rewritten only when the list changes (make uses its mtime)")
    how = parser.add_argument_group("how")
    how.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="files downloaded at once")
    how.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries per file after a network error")
    how.add_argument("--retry-wait", type=float, default=DEFAULT_RETRY_WAIT,
                     help="seconds before the first retry; doubled after each")
    how.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds of silence before a retry")
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def check_args(args):
    """Every argument check, in one place; the messages say what to do. Fills in derived values."""
    _check_what(args)
    _check_where(args)
    _check_how(args)
    if args.simplified_base_url is None:
        args.simplified_base_url = simplified_base_url(args.base_url)
    if not (args.squad or args.simplified):
        args.shard_list = parse_shards(args.shards or "all", SHARD_COUNTS[args.split])


def _check_what(args):
    if args.squad and args.simplified:
        raise ValueError("--squad and --simplified download different datasets: run them one at a time")
    if args.squad or args.simplified:
        if args.shards is not None:
            raise ValueError("--shards applies to NQ v1.0 shards only; drop it with --squad or --simplified")
    elif args.split is None:
        raise ValueError("say what to download: --split train|dev (NQ shards), --simplified, or --squad")
    if args.simplified and args.split == "dev":
        raise ValueError("there is no simplified dev set; the dev set is the full format: --split dev without --simplified")


def _check_where(args):
    if bool(args.out) == bool(args.dest):
        raise ValueError("give exactly one of --out DIR (local) or --dest s3://bucket/prefix")
    if args.dest and not storage.is_s3(args.dest):
        raise ValueError(f"--dest must be an s3:// URI (got {args.dest!r}); for a local folder use --out")
    if args.dest:
        storage.split_s3(args.dest)
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise ValueError("--dest s3:// needs boto3: pip install boto3 (or download with --out and upload later)") from None
    if args.list_file and (storage.is_s3(args.list_file) or os.path.isdir(args.list_file)):
        raise ValueError(f"--list-file must be a local file name, e.g. data/nq/nq_train.inputs (got {args.list_file!r})")
    for flag in ("base_url", "simplified_base_url", "squad_base_url"):
        value = getattr(args, flag)
        if value is not None:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"--{flag.replace('_', '-')} must start with http:// or https:// (got {value!r})")
            setattr(args, flag, value.rstrip("/"))


def _check_how(args):
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    if args.retries < 0:
        raise ValueError(f"--retries must be 0 or more (got {args.retries})")
    if args.retry_wait < 0 or args.timeout <= 0:
        raise ValueError("--retry-wait must be >= 0 and --timeout > 0 seconds")


def plan(args):
    if args.squad:
        return squad_jobs([args.split] if args.split else ["train", "dev"], args.squad_base_url)
    if args.simplified:
        return simplified_jobs(args.simplified_base_url)
    return nq_jobs(args.split, args.shard_list, args.base_url)


def main(argv=None):
    args = parse_args(argv)
    jobs = plan(args)
    where = args.dest or args.out
    say(f"{len(jobs)} file(s) -> {where} with {min(args.workers, len(jobs))} worker(s); crc32c: {crc32c_backend()}")
    results = download_all(jobs, args)
    print(summary_table(results), flush=True)
    failed = [result for result in results if result.status == "FAILED"]
    for result in failed:
        print(f"FAILED {result.name}: {result.message}", file=sys.stderr, flush=True)
    if failed:
        return 1
    if args.list_file:
        write_list_file(args.list_file, [destination(args, job) for job in jobs])
    return 0


if __name__ == "__main__":
    sys.exit(main())
