"""Natural Questions records -> SQuAD 2.0: one record (convert_record), one file (convert_file), a run (convert).

    options = Options(yes_no="keep", annotation="majority")
    article, counts = convert_record(parse_line(line), options)     # SQuAD article (or None) + statistics keys
    summary = convert(["data/nq/raw/dev/nq-dev-*.jsonl.gz"], "data/nq/nq_dev.json", options, workers=4)

Defaults follow the guide: the long answer is the context, the first short answer is the answer, a
long answer without a short answer is `is_impossible`, an example without a long answer is skipped.
Every other choice is an option whose count is in the statistics (COUNT_KEYS). Every answer is
verified as `context[answer_start:answer_start + len(text)] == text`. The command line is
scripts/nq_to_squad.py. Standard library only (qa.nq.reader guards the optional speedups).
"""

import collections
import contextlib
import dataclasses
import errno
import glob
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile

from qa.nq.annotation import as_span, choose_annotation
from qa.nq.document import (
    build_text,
    candidate_context,
    document_tokens,
    list_candidates,
    span_context,
    text_words,
    title,
    token_span_to_chars,
)
from qa.nq.reader import BadRecord, InputError, JSONDecodeError, TruncatedInput, dumps, iter_lines, parse_line, unparsable
from qa.storage import _pid_alive, atomic_write, expand_inputs, folder_bytes, is_s3, no_space_message

MAX_WARNINGS = 20  # bad records reported one by one with --skip-bad-records, then only counted
FRACTION_BUCKETS = 1_000_000  # --fraction resolution: 1e-6
PARTS_PREFIX = ".nq_to_squad-"  # + PID + "-": the folder of a run's part files, beside the output
# Candidate mode keeps this share of the negative candidates (those not holding the gold long answer). BERT-joint
# keeps 2 % of its null windows; a study on the demo's sample (issue 17) found 30 % of candidates better than
# 100 %. A real page has about 40 top-level candidates and one gold, so 0.3 writes about 12 questions a record.
KEEP_NEGATIVES = 0.3

# Statistics keys in the order the table prints them.
COUNT_KEYS = (
    "files",
    "records_read",
    "kept",
    "answerable",
    "impossible",
    "skipped_fraction",
    "skipped_no_long_answer",
    "skipped_long_answer_type",
    "skipped_yes_no",
    "skipped_multi_span",
    "bad_records",
    "yes_no_as_impossible",
    "yes_no_kept",
    "multi_span_first",
    "multi_span_span",
    "multi_answer_questions",  # --all-answers: questions with more than one gold answer
    "extra_answers",  # --all-answers: answers kept beyond the first
)
# Candidate mode (--context candidates) adds these, in this order; "kept" then counts records written (one
# article each) and answerable / impossible count questions, one per top-level candidate.
CANDIDATE_COUNT_KEYS = (
    "questions",
    "positives",  # gold candidates (answerable, or impossible when long-only / yes/no with --long-answers impossible)
    "negatives_kept",
    "negatives_dropped",  # by --keep-negatives
    "records_without_long_answer",  # every candidate a negative
    "short_answer_targets",
    "long_as_whole",  # a long answer without a short one: the whole candidate is the answer (answer_type long)
    "long_as_impossible",
    "yes_no_as_whole",  # yes/no: the whole candidate, answer_type yes / no
    "skipped_empty_candidate",  # only HTML tokens: no text to read
    "skipped_gold_parent",  # a top-level candidate holding a nested gold candidate: neither gold nor a negative
)


class ConversionError(RuntimeError):
    """A fatal problem; the message names the file, line and example, and says what to do (exit 1)."""


class DiskFullError(RuntimeError):
    """The output's disk filled up (ENOSPC/EDQUOT): one line naming the folder and the space needed (exit 2).
    Nothing half-written is left: no output temporary file, no part folder; a previous output is untouched."""


def is_disk_full(exc):
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclasses.dataclass(frozen=True)
class Options:
    yes_no: str = "impossible"  # the guide's converter: a yes/no question has no span -> unanswerable
    multi_span: str = "first"  # the guide: the first short answer
    long_answer_types: str = "all"  # the guide keeps tables and lists too
    annotation: str = "majority"  # the official NQ evaluation's gold (same as "first" on 1-annotation train)
    fraction: float = 1.0
    max_examples: int = 0  # 0 = no limit
    skip_bad_records: bool = False
    all_answers: bool = False  # evaluation files: every annotator's distinct short answer in the long answer
    fail_on_empty: bool = False  # an input file without a single record is an error (exit 2), not a warning
    context: str = "guide"  # guide: the gold long answer is the one context; candidates: one question per candidate
    keep_negatives: float = KEEP_NEGATIVES  # candidates: the share of negative candidates written (by hash)
    negative_seed: int = 0  # candidates: which negatives the hash keeps
    # candidates: a long answer without a short one, and a yes/no: "impossible" (as the guide) or "whole" (the whole
    # candidate is the answer, answer_type long / yes / no). Measured on the demo (tiny ALBERT, 4 epochs, keep 0.3, no
    # answer-type head, seeds 42 and 2): impossible 77.9 / 76.2 and 78.8 / 56.5 whole-page long / short F1 (oracle F1
    # 90.4, 77.4), whole 100 / 29.7 and 100 / 52.4 (oracle 31.6, 49.5): without a head that says "long, no short
    # answer" every page gets a short span. Re-measure with the answer-type head: its gate is what whole targets
    # need (issue 17's study: 100 / 72.4).
    long_answers: str = "impossible"


def keep_by_fraction(example_id, fraction):
    """Deterministic subset: the same ids are kept on every machine, run and worker count."""
    return _keep(str(example_id), fraction)


def keep_negative(example_id, candidate_index, rate, seed=0):
    """Whether candidate mode writes this negative: a hash of (example id, candidate index, seed) below `rate`,
    so the same input, rate and seed give the same file on every machine and worker count."""
    return _keep(f"{example_id}:{candidate_index}:{seed}", rate)


def _keep(key, fraction):
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(key.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % FRACTION_BUCKETS < round(fraction * FRACTION_BUCKETS)


# ---------------------------------------------------------------------------------------------
# One record -> one SQuAD article
# ---------------------------------------------------------------------------------------------
def short_answer_span(short_answers, multi_span):
    """(start_token, end_token) of one annotator's short answers (Spans or NQ dicts), as --multi-span
    says; None for several spans with "skip"."""
    first, last = as_span(short_answers[0]), as_span(short_answers[-1])
    if len(short_answers) > 1:
        if multi_span == "skip":
            return None
        return first.start_token, (last if multi_span == "span" else first).end_token
    return first.start_token, first.end_token


def _verified_answer(record, tokens, context, start, end):
    """The SQuAD answer of short answer tokens [start, end), built from its own tokens and checked
    against the context at the place the context puts those tokens."""
    example_id = record["example_id"]
    if not context.start_token <= start < end <= context.end_token:
        raise BadRecord(f"example {example_id}: short answer tokens [{start}, {end}) outside the long answer "
                        f"[{context.start_token}, {context.end_token})")
    answer_words = text_words(record, tokens, start, end)
    if not answer_words:
        raise BadRecord(f"example {example_id}: short answer tokens [{start}, {end}) have no text")
    text, _ = build_text(answer_words)
    answer_start, answer_end = token_span_to_chars(context, start, end)
    if context.text[answer_start:answer_end] != text:
        raise BadRecord(f"example {example_id}: answer {text!r} does not match its context at {answer_start} "
                        f"({context.text[answer_start:answer_end]!r})")
    return {"text": text, "answer_start": answer_start}


def _other_annotators_spans(annotations, context, multi_span):
    """Short answer spans (one per annotator, as --multi-span says) that lie inside the context's tokens."""
    spans = []
    for annotation in annotations:
        if not annotation.get("short_answers"):
            continue
        span = short_answer_span(annotation["short_answers"], multi_span)
        if span and context.start_token <= span[0] < span[1] <= context.end_token:
            spans.append(span)
    return spans


def _answers(record, tokens, context, gold, options):
    """(SQuAD answers, statistics keys) of a gold short answer; (None, keys) when --multi-span skips it."""
    span = short_answer_span(gold.short_answers, options.multi_span)
    if span is None:
        return None, ["skipped_multi_span"]
    counts = [f"multi_span_{options.multi_span}"] if len(gold.short_answers) > 1 else []
    answers = [_verified_answer(record, tokens, context, *span)]
    if options.all_answers:
        for other in _other_annotators_spans(record["annotations"], context, options.multi_span):
            answer = _verified_answer(record, tokens, context, *other)
            if answer not in answers:
                answers.append(answer)
        if len(answers) > 1:
            counts += ["multi_answer_questions"] + ["extra_answers"] * (len(answers) - 1)
    return answers, counts


def _question(record, tokens, context, gold, options):
    """(SQuAD question or None when skipped, statistics keys) of the gold annotation in its context."""
    qa = {"id": str(record["example_id"]), "question": record["question_text"], "answers": [], "is_impossible": True}
    counts = []
    if gold.yes_no_answer != "none":
        if options.yes_no == "skip":
            return None, ["skipped_yes_no"]
        if options.yes_no == "keep":
            qa["yes_no_answer"] = gold.yes_no_answer.upper()
            counts.append("yes_no_kept")
        else:
            counts.append("yes_no_as_impossible")
    elif gold.short_answers:
        answers, answer_counts = _answers(record, tokens, context, gold, options)
        if answers is None:
            return None, answer_counts
        counts += answer_counts
        qa["answers"], qa["is_impossible"] = answers, False
    return qa, counts


def convert_record(record, options):
    """One NQ record -> (SQuAD article or None, [statistics keys]). Raises BadRecord.

    Guide mode: the article holds one paragraph (the long answer) with one question. Candidate mode:
    candidate_questions."""
    if options.context == "candidates":
        return candidate_questions(record, options)
    gold = choose_annotation(record["annotations"], options.annotation)
    if gold.long_answer.is_null():
        return None, ["skipped_no_long_answer"]
    long_answer = gold.long_answer
    tokens = document_tokens(record, long_answer)
    context = span_context(record, tokens, long_answer.start_token, long_answer.end_token, "long answer")
    if options.long_answer_types == "paragraph" and context.context_type != "<P>":
        return None, ["skipped_long_answer_type"]
    if not context.text:
        raise BadRecord(f"example {record['example_id']}: long answer [{context.start_token}, {context.end_token}) has no text")
    qa, counts = _question(record, tokens, context, gold, options)
    if qa is None:
        return None, counts
    counts = [f"context_type {context.context_type}", *counts, "impossible" if qa["is_impossible"] else "answerable", "kept"]
    article = {"title": title(record), "paragraphs": [{"context": context.text, "qas": [qa]}]}
    return article, counts


# ---------------------------------------------------------------------------------------------
# Candidate mode: one record -> one question per top-level long-answer candidate
# ---------------------------------------------------------------------------------------------
def _gold_candidate(record, gold):
    """The index of the gold long answer in long_answer_candidates (-1: no long answer). Raises BadRecord
    when a non-null long answer is no candidate."""
    if gold.long_answer.is_null():
        return -1
    candidates = record["long_answer_candidates"]
    index = gold.long_answer_candidate
    if not 0 <= index < len(candidates) or as_span(candidates[index])[2:] != gold.long_answer[2:]:
        span = gold.long_answer.start_token, gold.long_answer.end_token
        index = next((i for i, c in enumerate(candidates) if (c["start_token"], c["end_token"]) == span), -1)
    if index < 0:
        raise BadRecord(f"example {record['example_id']}: the long answer [{gold.long_answer.start_token}, "
                        f"{gold.long_answer.end_token}) is not one of its long_answer_candidates")
    return index


def _whole_candidate(context, answer_type):
    """The whole candidate's text as the answer (BERT-joint's LONG target; yes/no the same, typed)."""
    return {"answers": [{"text": context.text, "answer_start": 0}], "is_impossible": False, "answer_type": answer_type}


def _positive(record, context, gold, options):
    """(question fields of the gold candidate, statistics keys); (None, keys) when --multi-span skips it."""
    if gold.yes_no_answer != "none" or not gold.short_answers:
        kind = "yes_no" if gold.yes_no_answer != "none" else "long"
        if options.long_answers == "whole":
            return _whole_candidate(context, gold.yes_no_answer if kind == "yes_no" else "long"), [f"{kind}_as_whole"]
        return {"answers": [], "is_impossible": True, "answer_type": "none"}, [f"{kind}_as_impossible"]
    tokens = document_tokens(record, gold.long_answer)
    answers, counts = _answers(record, tokens, context, gold, options)
    if answers is None:
        return None, counts
    return {"answers": answers, "is_impossible": False, "answer_type": "short"}, counts + ["short_answer_targets"]


def _candidate_plan(record, gold_index):
    """[(candidate index, "gold" | "negative")] of the top-level candidates, the gold added where it is nested;
    the statistics keys of the top-level candidates left out (those holding a nested gold)."""
    candidates = record["long_answer_candidates"]
    gold = as_span(candidates[gold_index]) if gold_index >= 0 else None
    plan, counts = [], []
    for index, candidate in list_candidates(record):
        span = as_span(candidate)
        if index == gold_index:
            plan.append((index, "gold"))
        elif gold is not None and span.start_token <= gold.start_token and gold.end_token <= span.end_token:
            counts.append("skipped_gold_parent")
            plan.append((gold_index, "gold"))
        else:
            plan.append((index, "negative"))
    if gold_index >= 0 and (gold_index, "gold") not in plan:  # a nested gold outside every top-level candidate
        plan.append((gold_index, "gold"))
    return plan, counts


def candidate_questions(record, options):
    """Candidate mode: one NQ record -> (SQuAD article or None, [statistics keys]). Raises BadRecord.

    One paragraph per top-level candidate (its text as candidate_context builds it, the same as a guide-mode
    context), with one question, id "<example_id>:<candidate_index>" (predict_nq's id). The gold candidate
    carries the short answer ("answer_type": "short"); a long answer without a short one and a yes/no are
    impossible ("none", the default) or, with --long-answers whole, the whole candidate ("long", "yes", "no").
    Every other candidate, and every candidate of a page without a long answer, is impossible ("none"), written
    at the rate --keep-negatives."""
    gold = choose_annotation(record["annotations"], options.annotation)
    gold_index = _gold_candidate(record, gold)
    plan, counts = _candidate_plan(record, gold_index)
    counts += [] if gold_index >= 0 else ["records_without_long_answer"]
    paragraphs = []
    for index, role in plan:
        if role == "negative" and not keep_negative(record["example_id"], index, options.keep_negatives, options.negative_seed):
            counts.append("negatives_dropped")
            continue
        context = candidate_context(record, index)
        if not context.text:
            counts.append("skipped_empty_candidate")
            continue
        fields, more = ({"answers": [], "is_impossible": True, "answer_type": "none"}, ["negatives_kept"]) if role == "negative" \
            else _positive(record, context, gold, options)
        counts += more
        if fields is None:
            return None, more  # --multi-span skip: the record is left out, as in guide mode
        counts += ["positives"] if role == "gold" else []
        qa = {"id": f"{record['example_id']}:{index}", "question": record["question_text"], **fields}
        counts += ["questions", "impossible" if qa["is_impossible"] else "answerable"]
        paragraphs.append({"context": context.text, "qas": [qa]})
    if not paragraphs:
        return None, counts
    return {"title": title(record), "paragraphs": paragraphs}, counts + ["kept"]


# ---------------------------------------------------------------------------------------------
# One file -> one part (a worker's job)
# ---------------------------------------------------------------------------------------------
class _Problems:
    """A file's bad records: fatal (ConversionError) unless --skip-bad-records, then counted and the
    first MAX_WARNINGS kept as warnings."""

    def __init__(self, uri, options, stats):
        self.uri, self.options, self.stats, self.warnings = uri, options, stats, []

    def report(self, line_number, problem):
        message = f"{self.uri}:{line_number}: {problem}"
        if not self.options.skip_bad_records:
            raise ConversionError(f"{message}; use --skip-bad-records to skip and count such records")
        self.stats["bad_records"] += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)


def _convert_line(line, options, stats):
    """(article or None, problem or None) of one line, counting into stats."""
    try:
        record = parse_line(line)
    except (JSONDecodeError, UnicodeDecodeError) as exc:  # json.loads (no orjson) raises the latter
        return None, unparsable(line, exc)
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    example = f"example {record.get('example_id', '?')}"
    try:
        if not keep_by_fraction(record["example_id"], options.fraction):
            stats["skipped_fraction"] += 1
            return None, None
        article, counts = convert_record(record, options)
    except KeyError as exc:
        return None, f"{example}: missing field {exc}"
    except JSONDecodeError as exc:  # the long answer's tokens, parsed only now (LazyTokens)
        return None, f"{example}: {unparsable(line, exc)}"
    except BadRecord as exc:
        return None, str(exc)
    except (TypeError, IndexError, AttributeError, ValueError) as exc:
        return None, f"{example}: invalid record ({type(exc).__name__}: {exc})"
    stats.update(counts)
    return article, None


def _numbered_lines(uri, problems):
    """iter_lines(uri), a truncated end reported as a bad record on the line after the last one."""
    line_number = 0
    try:
        for line_number, line in iter_lines(uri):
            yield line_number, line
    except TruncatedInput as exc:
        problems.report(line_number + 1, str(exc))


def convert_file(uri, options, part_path, stop_after=0):
    """Convert one input file into `part_path` (one JSON article per line).

    Returns (statistics Counter, warnings, snapshots): with stop_after > 0 it stops after that
    many kept examples and `snapshots[k]` is the statistics after the (k+1)-th kept example, so
    the caller can cut the concatenation at any global --max-examples exactly."""
    stats = collections.Counter(files=1)
    problems = _Problems(uri, options, stats)
    snapshots = []
    lines = _numbered_lines(uri, problems)
    with open(part_path, "wb") as part, contextlib.closing(lines):
        for line_number, line in lines:
            stats["records_read"] += 1
            article, problem = _convert_line(line, options, stats)
            if problem:
                problems.report(line_number, problem)
            if article is None:
                continue
            part.write(dumps(article) + b"\n")
            if stop_after:
                snapshots.append(dict(stats))
                if stats["kept"] >= stop_after:
                    break
    return stats, problems.warnings, snapshots


def _convert_file_job(job):
    return convert_file(*job)


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------
def remove_leftovers(output, stats_json=None):
    """Delete what killed runs of this converter left beside `output`: part folders
    (`.nq_to_squad-PID-*/`) and unfinished `OUTPUT.tmp-PID` / `STATS.tmp-PID` files whose PID is no
    longer running. Another converter still running (make -j: train and dev at once) keeps its own.
    Returns the removed paths."""
    out_dir = os.path.dirname(os.path.abspath(output))
    candidates = [(path, r"\.nq_to_squad-(\d+)-[^/]*") for path in glob.glob(os.path.join(glob.escape(out_dir), PARTS_PREFIX + "*"))]
    for target in (output, stats_json):
        if target:
            candidates += [(path, re.escape(os.path.basename(target)) + r"\.tmp-(\d+)")
                           for path in glob.glob(glob.escape(os.path.abspath(target)) + ".tmp-*")]
    removed = []
    for path, pattern in candidates:
        match = re.fullmatch(pattern, os.path.basename(path))
        if not match or int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1))):
            continue
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        removed.append(path)
    return removed


def check_inputs(uris):
    """Raise InputError for an input that cannot be an NQ file (a directory), naming it."""
    for uri in uris:
        if not is_s3(uri) and os.path.isdir(uri):
            raise InputError(f"{uri} is a directory, not an NQ file: give the files in it, "
                             f"e.g. '{os.path.join(uri, '*.jsonl.gz')}'")


def _check_not_empty(uri, stats, options):
    if stats["records_read"] or stats["bad_records"]:
        return
    empty = f"{uri} holds no NQ record (an empty file)"
    if options.fail_on_empty:
        raise InputError(f"{empty}; nothing was written: download it again or leave it out")
    print(f"warning: {empty}; converted the other inputs (--fail-on-empty makes this an error)", file=sys.stderr)


def _append_part(out, part_path, limit, written, progress):
    """Copy a part's articles (at most `limit`; None: all) into the output array; returns the new count.
    progress["output"] counts the bytes handed to the output (the disk-full estimate)."""
    with open(part_path, "rb") as part:
        for count, line in enumerate(part):
            if limit is not None and count >= limit:
                break
            data = (b",\n" if written else b"") + line.rstrip(b"\n")
            out.write(data)
            progress["output"] += len(data)
            written += 1
    os.remove(part_path)
    return written


def _concatenate(jobs, results, output, options, progress):
    """Write the parts into `output` in input order, cut at --max-examples; returns the total statistics.
    progress["inputs_done"]: the bytes of the (local) inputs whose articles are all in the output, and
    progress["output_done"] the output bytes written for them."""
    total = collections.Counter()
    with atomic_write(output, "wb") as out:
        out.write(b'{"version": "v2.0", "data": [\n')
        written = 0
        for (uri, _, part_path, _), (stats, warnings, snapshots) in zip(jobs, results):
            for message in warnings:
                print(f"warning: {message} (skipped)", file=sys.stderr)
            _check_not_empty(uri, stats, options)
            limit = options.max_examples - total["kept"] if options.max_examples else None
            if limit is not None and stats["kept"] >= limit:
                stats = collections.Counter(snapshots[limit - 1]) if limit else collections.Counter()
            total.update(stats)
            written = _append_part(out, part_path, limit, written, progress)
            progress["inputs_done"] += _input_bytes([uri]) or 0
            progress["output_done"] = progress["output"]
            if options.max_examples and total["kept"] >= options.max_examples:
                break
        out.write(b"\n]}\n")
    return total


def convert(inputs, output, options, workers=1, stats_json=None):
    """Convert `inputs` (paths, globs, s3:// URIs) into the SQuAD 2.0 file `output`; returns statistics.

    Output is identical for any number of workers: parts are concatenated in input order. A full disk raises
    DiskFullError (one line) with nothing half-written left beside `output`."""
    uris = expand_inputs(inputs)
    check_inputs(uris)
    for path in remove_leftovers(output, stats_json):
        print(f"removed {path}, left by an interrupted run", file=sys.stderr)
    out_dir = os.path.dirname(os.path.abspath(output))
    progress = collections.Counter()
    full = None
    try:
        os.makedirs(out_dir, exist_ok=True)
        parts_dir = tempfile.mkdtemp(prefix=f"{PARTS_PREFIX}{os.getpid()}-", dir=out_dir)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(_no_space(output, uris, options, progress)) from exc
    try:
        total = _convert_parts(uris, output, options, workers, parts_dir, progress)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        progress["parts"] = folder_bytes(parts_dir)
        full = exc
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    if full is not None:  # the message after the clean-up: the free space it names is what the user has now
        raise DiskFullError(_no_space(output, uris, options, progress)) from full
    summary = _summary(total, options)
    if stats_json:
        _write_stats(stats_json, {"inputs": uris, "output": output, "options": dataclasses.asdict(options),
                                  "counts": summary})
    return summary


def _convert_parts(uris, output, options, workers, parts_dir, progress):
    """Each input into a part (in `workers` processes), then the parts into `output`; the total statistics."""
    workers = max(1, min(workers, len(uris)))
    jobs = [(uri, options, os.path.join(parts_dir, f"part-{i:05d}.jsonl"), options.max_examples) for i, uri in enumerate(uris)]
    with contextlib.ExitStack() as stack:
        if workers > 1:
            results = stack.enter_context(multiprocessing.Pool(workers)).imap(_convert_file_job, jobs)
        else:
            results = map(_convert_file_job, jobs)
        return _concatenate(jobs, results, output, options, progress)


def _summary(total, options):
    keys = COUNT_KEYS + (CANDIDATE_COUNT_KEYS if options.context == "candidates" else ())
    summary = {key: total.get(key, 0) for key in keys}
    summary.update(sorted((key, value) for key, value in total.items() if key.startswith("context_type ")))
    return summary


def _write_stats(stats_json, content):
    text = json.dumps(content, indent=2)
    try:
        with atomic_write(stats_json, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        folder = os.path.dirname(stats_json) or "."
        raise DiskFullError(no_space_message(folder, len(text.encode()), f"the statistics file {os.path.basename(stats_json)}",
                                             "free space there, or give --stats-json on a bigger disk "
                                             "(the converted file itself was written)", at_least=True)) from exc


def _input_bytes(uris):
    """The summed size of local inputs; None when one is an s3:// URI (not measured)."""
    if any(is_s3(uri) for uri in uris):
        return None
    return sum(os.path.getsize(uri) for uri in uris)


def _no_space(output, uris, options, progress):
    """The one line for a full disk while converting. The space needed is estimated as the output bytes written
    for the inputs fully written scaled by input bytes (all inputs / those inputs); before a whole input is written, or
    with --max-examples, or s3:// inputs, it is a lower bound: the bytes this run had on disk when it filled up."""
    on_disk = progress["output"] + progress["parts"]
    total_in = _input_bytes(uris)
    estimate = progress["inputs_done"] and total_in and not options.max_examples
    needed = round(progress["output_done"] * total_in / progress["inputs_done"]) if estimate else on_disk
    return no_space_message(os.path.dirname(output) or ".", max(needed, on_disk), f"the converted file {os.path.basename(output)}",
                            "free space there, or give --output on a bigger disk", at_least=not estimate)


def format_stats(summary):
    """The statistics table the converter prints."""
    width = max(len(key) for key in summary)
    lines = [f"{'statistic':<{width}}  {'count':>10}", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{key:<{width}}  {value:>10,}" for key, value in summary.items()]
    return "\n".join(lines)
