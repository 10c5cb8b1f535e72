"""Generate a deterministic, learnable sample in the FULL Natural Questions format (for `make demo`).

    python scripts/make_nq_sample.py --out data/demo/raw/nq-train-sample.jsonl.gz --num-examples 2000 --split train
    python scripts/make_nq_sample.py --out data/demo/raw/nq-dev-sample.jsonl.gz --num-examples 300 --split dev
    python scripts/make_nq_sample.py --out /tmp/nq.jsonl.gz --num-examples 50 --seed 7

What the records hold (pages, candidates, the mix of answer kinds) is described in qa/nq/sample.py,
which generates them. Same arguments, same bytes (gzip mtime 0).
"""

import argparse
import sys

from qa.nq.sample import SPLIT_SEED_OFFSET, generate, write_sample


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="file to write (.jsonl.gz)")
    parser.add_argument("--num-examples", type=int, default=2000, help="records to generate (default 2000, about 3 s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed and split = same bytes")
    parser.add_argument("--split", choices=sorted(SPLIT_SEED_OFFSET), default="train",
                        help="train: one annotation per record; dev: five, and entities from a different stream")
    args = parser.parse_args(argv)
    if args.num_examples < 1:
        parser.error(f"--num-examples must be at least 1, got {args.num_examples}")
    if not args.out.endswith(".jsonl.gz"):
        parser.error(f"--out should end in .jsonl.gz like the NQ shards, got {args.out}")
    return args


def main(argv=None):
    args = parse_args(argv)
    records = generate(args.num_examples, args.seed, args.split)
    write_sample(args.out, records)
    print(f"wrote {len(records)} {args.split} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
