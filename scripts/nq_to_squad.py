"""Convert Google Natural Questions (full or simplified jsonl, plain or gzip) into SQuAD 2.0 JSON.

    python scripts/nq_to_squad.py data/nq/raw/dev/nq-dev-*.jsonl.gz --output data/nq/nq_dev.json --workers 4 \
        --all-answers --fail-on-empty
    python scripts/nq_to_squad.py 'data/nq/raw/train/nq-train-0[0-4].jsonl.gz' --output data/nq/nq_train.json \
        --workers 5 --stats-json data/nq/nq_train.json.stats.json --fail-on-empty
    python scripts/nq_to_squad.py s3://my-bucket/nq/dev/ --output nq_dev.json          # streamed from S3
    python scripts/nq_to_squad.py 'natural_questions/dev/validation-*.parquet' --output nq_dev.json --all-answers
                                                      # the hub's parquet (qa/nq/parquet.py; needs pyarrow)
    python scripts/nq_to_squad.py nq-train-00.jsonl.gz --output small.json --fraction 0.1 --max-examples 5000
    python scripts/nq_to_squad.py simplified-nq-train.jsonl.gz --output train.json \
        --yes-no keep --multi-span span --long-answer-types paragraph --annotation first
    python scripts/nq_to_squad.py 'data/nq/raw/train/nq-train-0[0-4].jsonl.gz' --output data/nq/nq_train.candidates.json \
        --context candidates --keep-negatives 0.3 --workers 5          # one question per candidate (whole pages)

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

from qa.nq.convert import KEEP_NEGATIVES, ConversionError, DiskFullError, Options, convert, format_stats  # noqa: E402
from qa.nq.reader import InputError  # noqa: E402
from qa.storage import is_s3  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="NQ jsonl(.gz) files or the hub's parquet files (pyarrow needed for those), globs or s3:// URIs (a prefix ending in / is listed)")
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
    candidates = parser.add_argument_group("candidate mode (--context candidates)")
    candidates.add_argument("--context", choices=("guide", "candidates"), default=Options.context,
                            help="guide (default): one question per record, its gold long answer as the context; candidates: "
                                 "one question per top-level long-answer candidate (id EXAMPLE_ID:CANDIDATE_INDEX), the gold "
                                 "one answerable, every other one (and every candidate of a page without a long answer) "
                                 "impossible; records without a long answer are kept; --max-examples counts records")
    candidates.add_argument("--keep-negatives", type=float, default=None, metavar="RATE",
                            help=f"share of the impossible candidates written, chosen by a hash of (example id, candidate "
                                 f"index, --negative-seed): the same input gives the same file (default {KEEP_NEGATIVES})")
    candidates.add_argument("--negative-seed", type=int, default=None,
                            help="another seed keeps another subset of the negatives at the same rate (default 0)")
    candidates.add_argument("--long-answers", choices=("whole", "impossible"), default=None,
                            help="a gold long answer without a short answer, and a yes/no answer: impossible (default) = "
                                 "unanswerable, as in the guide; whole = the whole candidate is the answer, with answer_type "
                                 "long / yes / no (BERT-joint's LONG target; for a model with an answer-type head)")
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
    validate_context_args(parser, args)


def validate_context_args(parser, args):
    """The flags of one --context are refused with the other (none is parsed and then ignored)."""
    candidate_flags = [f"--{name.replace('_', '-')}" for name in ("keep_negatives", "negative_seed", "long_answers")
                       if getattr(args, name) is not None]
    if args.context == "guide" and candidate_flags:
        parser.error(f"{', '.join(candidate_flags)} only apply with --context candidates")
    guide_flags = [flag for flag, value, default in (("--yes-no", args.yes_no, Options.yes_no),
                                                     ("--long-answer-types", args.long_answer_types, Options.long_answer_types))
                   if value != default]
    if args.context == "candidates" and guide_flags:
        parser.error(f"{', '.join(guide_flags)} only apply with --context guide (candidate mode: yes/no answers follow "
                     "--long-answers, and every kind of candidate is a context)")
    if args.keep_negatives is not None and not 0.0 <= args.keep_negatives <= 1.0:
        parser.error(f"--keep-negatives must be in [0, 1], got {args.keep_negatives} (e.g. 0.3 keeps about 3 negatives in 10)")


def candidate_options(args):
    """The candidate-mode Options fields the command line sets (the rest keep Options' defaults)."""
    names = ("keep_negatives", "negative_seed", "long_answers")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def main(argv=None):
    parser, args = parse_args(argv)
    validate_args(parser, args)
    options = Options(yes_no=args.yes_no, multi_span=args.multi_span, long_answer_types=args.long_answer_types,
                      annotation=args.annotation, fraction=args.fraction, max_examples=args.max_examples,
                      skip_bad_records=args.skip_bad_records, all_answers=args.all_answers, fail_on_empty=args.fail_on_empty,
                      context=args.context, **candidate_options(args))
    try:
        summary = convert(args.inputs, args.output, options, workers=args.workers, stats_json=args.stats_json)
    except (InputError, DiskFullError) as exc:  # DiskFullError: one line naming the folder and the space needed
        print(f"nq_to_squad: error: {exc}", file=sys.stderr)
        return 2
    except (ConversionError, FileNotFoundError) as exc:
        print(f"nq_to_squad: error: {exc}", file=sys.stderr)
        return 1
    print(format_stats(summary))
    written = f"{summary['questions']:,} questions of {summary['kept']:,} records" if args.context == "candidates" \
        else f"{summary['kept']:,} examples"
    print(f"wrote {written} to {args.output}" + (f" (statistics: {args.stats_json})" if args.stats_json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
