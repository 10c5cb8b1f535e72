"""Convert Google Natural Questions (full or simplified jsonl, plain or gzip) into SQuAD 2.0 JSON.

    python scripts/nq_to_squad.py data/nq/raw/dev/nq-dev-*.jsonl.gz --output data/nq/nq_dev.json --workers 4 \
        --all-answers --fail-on-empty
    python scripts/nq_to_squad.py 'data/nq/raw/train/nq-train-0[0-4].jsonl.gz' --output data/nq/nq_train.json \
        --workers 5 --stats-json data/nq/nq_train.json.stats.json --fail-on-empty
    python scripts/nq_to_squad.py s3://my-bucket/nq/dev/ --output nq_dev.json          # streamed from S3
    python scripts/nq_to_squad.py nq-train-00.jsonl.gz --output small.json --fraction 0.1 --max-examples 5000
    python scripts/nq_to_squad.py simplified-nq-train.jsonl.gz --output train.json \
        --yes-no keep --multi-span span --long-answer-types paragraph --annotation first

Defaults follow the guide: the long answer is the context, the first short answer is the
answer, a long answer without a short answer is `is_impossible`, an example without a long
answer is skipped. Every other choice is a flag, and its count is in the statistics table
printed at the end (and written by --stats-json). `--all-answers` is for evaluation files:
the SQuAD metric scores the best match over all gold answers, so every distinct short
answer the annotators gave inside the chosen long answer is kept (training files: leave it off,
one answer per question).

Context text is rebuilt from the UTF-8 bytes of `document_html` between the tokens' byte
offsets (tags dropped, entities decoded, one space where the HTML has whitespace or a
block-level tag between two words, nothing where it has neither): "Röntgen</A>, of" reads
"Röntgen, of", not the token-joined "Röntgen , of". Every answer is verified as
`context[answer_start:answer_start + len(text)] == text`.

This is the command line; the conversion is qa.nq.convert, the candidates and their text
qa.nq.document (whole-document prediction, scripts/predict_nq.py, reads them the same way).
Standard library only, with optional speedups (measured in qa/nq/reader.py): orjson parses
lines, python-isal inflates gzip; boto3 only for s3:// inputs. It runs from a bare python3
without the venv: the package beside this script is found then.
"""

import argparse
import os
import sys

try:
    import qa  # noqa: F401  (installed into the venv by `make setup`)
except ImportError:  # a bare python3 without the venv: the package is beside this script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qa.nq.convert import ConversionError, Options, convert, format_stats  # noqa: E402
from qa.nq.reader import InputError  # noqa: E402
from qa.storage import is_s3  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="NQ jsonl(.gz) files, globs or s3:// URIs (a prefix ending in / is listed)")
    parser.add_argument("--output", required=True, help="SQuAD 2.0 JSON file to write (atomically)")
    parser.add_argument("--workers", type=int, default=1, help="files converted in parallel (one process each)")
    parser.add_argument("--stats-json", help="also write the statistics table as JSON here")
    parser.add_argument("--yes-no", choices=("impossible", "skip", "keep"), default=Options.yes_no,
                        help="yes/no answers: unanswerable (default), dropped, or kept as unanswerable with a yes_no_answer field")
    parser.add_argument("--multi-span", choices=("first", "skip", "span"), default=Options.multi_span,
                        help="several short answers: the first (default), drop the example, or one span from first start to last end")
    parser.add_argument("--long-answer-types", choices=("all", "paragraph"), default=Options.long_answer_types,
                        help="all (default): paragraphs, tables and lists as contexts; paragraph: <P> long answers only")
    parser.add_argument("--annotation", choices=("majority", "first", "first-long"), default=Options.annotation,
                        help="which annotation of the 5-way annotated dev set: majority (official gold, default), "
                             "first, or the first with a long answer; train records have one, where all agree")
    parser.add_argument("--all-answers", action="store_true",
                        help="for evaluation files: keep every distinct short answer the annotators gave inside the chosen "
                             "long answer (each --multi-span'd and verified), not only the chosen one; the SQuAD metric "
                             "scores the best match. Leave it off for training files (one answer per question)")
    parser.add_argument("--fraction", type=float, default=Options.fraction,
                        help="keep this fraction of examples, chosen by hashing example_id (the guide trained on 0.1)")
    parser.add_argument("--max-examples", type=int, default=Options.max_examples, help="stop after this many kept examples (0 = all)")
    parser.add_argument("--skip-bad-records", action="store_true",
                        help="count and skip malformed lines, records missing fields and truncated gzip ends instead of failing")
    parser.add_argument("--fail-on-empty", action="store_true",
                        help="an input file without a single record is an error (exit 2, nothing written) instead of a warning")
    return parser, parser.parse_args(argv)


def validate_args(parser, args):
    """Every argument check in one place, each saying what to do."""
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if not 0.0 < args.fraction <= 1.0:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction} (e.g. 0.1 keeps one example in ten)")
    if args.max_examples < 0:
        parser.error(f"--max-examples must be 0 (no limit) or positive, got {args.max_examples}")
    if is_s3(args.output):
        parser.error("--output must be a local file; upload it afterwards (make upload)")
    if os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a directory; give a file name such as {os.path.join(args.output, 'nq_dev.json')}")


def main(argv=None):
    parser, args = parse_args(argv)
    validate_args(parser, args)
    options = Options(yes_no=args.yes_no, multi_span=args.multi_span, long_answer_types=args.long_answer_types,
                      annotation=args.annotation, fraction=args.fraction, max_examples=args.max_examples,
                      skip_bad_records=args.skip_bad_records, all_answers=args.all_answers, fail_on_empty=args.fail_on_empty)
    try:
        summary = convert(args.inputs, args.output, options, workers=args.workers, stats_json=args.stats_json)
    except InputError as exc:
        print(f"nq_to_squad: error: {exc}", file=sys.stderr)
        return 2
    except (ConversionError, FileNotFoundError) as exc:
        print(f"nq_to_squad: error: {exc}", file=sys.stderr)
        return 1
    print(format_stats(summary))
    print(f"wrote {summary['kept']:,} examples to {args.output}" + (f" (statistics: {args.stats_json})" if args.stats_json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
