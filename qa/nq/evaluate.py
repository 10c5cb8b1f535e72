"""The official Natural Questions evaluation (long / short answer P, R, F1 at the best threshold, R@P).

    python -m qa.nq_eval --gold_path 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --predictions_path predictions.json
    python -m qa.nq_eval --gold_path 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --predictions_path predictions.json \
        --pretty_print
    python -m qa.nq_eval --gold_path s3://my-bucket/nq/dev/ --predictions_path predictions.json --num_threads 5
    python -m qa.nq_eval --gold_path data/nq/raw/dev/ --predictions_path predictions.json    # a folder: its *.jsonl.gz
    python -m qa.nq_eval --gold_path 'natural_questions/dev/validation-*.parquet' --predictions_path predictions.json
    python -m qa.nq_eval --gold_path 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --predictions_path predictions.json \
        --cache_gold_data --long_non_null_threshold 2 --short_non_null_threshold 2

    from qa.nq.evaluate import evaluate
    metrics = evaluate("data/nq/raw/dev/nq-dev-*.jsonl.gz", "predictions.json")
    metrics["long-best-threshold-f1"], metrics["short-best-threshold-f1"]

Source of the rules: `nq_eval.py` and `eval_utils.py` of github.com/google-research-datasets/
natural-questions (Apache 2.0), reimplemented here from their reading, in Python 3, without absl.
The flags are theirs: --gold_path, --predictions_path, --pretty_print, --num_threads (10; also
spelled --gold_num_threads), --cache_gold_data, --long_non_null_threshold (2),
--short_non_null_threshold (2). Boolean flags take the absl spellings too: `--pretty_print=false`,
`--nopretty_print`. The official script has no min_threshold or optimal_threshold flag: the best
threshold is always searched. Without --pretty_print one JSON line is printed, with the official
keys (`long-best-threshold-f1`, `long-best-threshold-precision`, `long-best-threshold-recall`,
`long-best-threshold`, `long-recall-at-precision>=0.5`, `long-precision-at-precision>=0.5`, the
same at 0.75 and 0.9, and the same twelve with `short-`); with it, the R@P tables and the F1 / P
/ R "ignoring scores", formatted as the official script prints them.

Prediction format (the official one; one entry for every gold example, no more, no fewer):

    {"predictions": [
      {"example_id": -2226525965842375672,
       "long_answer": {"start_byte": 62657, "end_byte": 64776, "start_token": 391, "end_token": 604},
       "long_answer_score": 13.5,
       "short_answers": [{"start_byte": 64206, "end_byte": 64280, "start_token": 555, "end_token": 560}],
       "short_answers_score": 26.4,
       "yes_no_answer": "NONE"}]}

A span needs all four offsets; set the ones you do not give to -1. `long_answer`, `short_answers`
and `yes_no_answer` may be left out (a null long answer, no short answers, "NONE"); the two scores
and `example_id` (a JSON integer) may not. Offsets are end-exclusive, as in the gold.

The rules, as the official code applies them:
- A span is null when all four offsets are < 0. A start < 0 with an end >= 0 (bytes or tokens) is
  an error, and so is start >= end.
- Two non-null spans are equal if both have byte offsets and these are equal, OR both have token
  offsets and these are equal (a byte mismatch still falls through to the token comparison).
- Gold has a long answer when at least --long_non_null_threshold (2) of the annotators (5 on dev)
  gave a non-null long answer; a non-null predicted long answer is correct when it equals any
  annotator's non-null long answer.
- Gold has a short answer when at least --short_non_null_threshold (2) annotators gave a non-null
  short answer span or a yes/no answer. A prediction has a short answer when it has a non-null span
  or yes/no is not "none"; with yes/no it is correct when some annotator gave the same yes/no,
  otherwise when its set of non-null spans equals some annotator's set exactly. A yes/no answer
  together with a non-null short span is an error.
- Every example is ranked by its score (descending). A threshold is each distinct score: the
  predictions scored at or above it count as answers. Ties share one point of the curve, the one
  with all the tied examples counted. The best threshold is the highest one reaching the maximal F1
  (F1 0 everywhere gives threshold 0.0); R@P >= t is the largest recall among the thresholds with
  precision >= t, at the highest threshold reaching it (0 and no threshold, printed "None" as the
  official script did under Python 2, when none has a recall above 0).

Where this differs, on purpose, from the official code (only on input it mishandles): a duplicate
example_id in the predictions or the gold is an error (the official script keeps the last one
silently); non-integer offsets or ids, non-numeric or NaN scores are errors; --cache_gold_data
keys the cache on the gold files' paths, sizes and mtimes (the official one reuses `cache` beside
the files even when they changed); integer thresholds are printed as floats by --pretty_print
(the official formatting raises on them).

Reading the gold is fast: of each full-format line (about 0.74 MB on average, 7.4 MB for the first
10 dev records) only the `"annotations":` and `"example_id":` values are parsed, found in the raw
bytes (`annotations` is the first key of the full format, `example_id` the sixth, after the 97-99.7%
of the line that is HTML and tokens, so it is searched from the end). Lines where that cannot be
done with certainty fall back to a full parse. The simplified format (token offsets only) is read
the same way. On the 10 real dev records (7.4 MB inflated), records/s of parsing: 13,400 this way,
312 with orjson and 246 with json on whole lines; with gunzip (zlib) about 500 records/s, which is
then nearly all inflating (benchmarks/bench_nq_eval.py). Lines are read by qa.nq.reader, as the
converter reads them. Standard library only (orjson, when installed, parses prediction files).
"""

import argparse
import concurrent.futures
import glob
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import re
import sys
from typing import NamedTuple

from qa.nq.annotation import LONG_NON_NULL_THRESHOLD, NULL_SPAN, SHORT_NON_NULL_THRESHOLD, Annotation, Span
from qa.nq.reader import InputError, JSONDecodeError, TruncatedInput, iter_lines, loads
from qa.storage import atomic_write, expand_inputs, is_s3, open_input

# Defaults of the official flags (nq_eval.py, eval_utils.py); the two thresholds are in qa.nq.annotation.
NUM_THREADS = 10  # processes reading gold shards (the dev set has 5 shards, train 50)
TARGET_PRECISIONS = (0.5, 0.75, 0.9)  # the R@P points of the official report
YES_NO_VALUES = ("yes", "no", "none")
GOLD_CACHE_VERSION = 2  # bump when the cached gold structure changes (2: Annotation.long_answer_candidate)


class NQEvalError(ValueError):
    """Gold or predictions the official evaluation cannot score; the message names where and why."""


class Prediction(NamedTuple):
    long_answer: Span
    short_answers: tuple
    yes_no_answer: str
    long_answer_score: float
    short_answers_score: float


class AnswerStat(NamedTuple):
    """One example's outcome for long or short answers; the official code's 4-tuple."""

    gold_has_answer: bool
    pred_has_answer: bool
    is_correct: bool
    score: float


# ---------------------------------------------------------------------------------------------
# Spans
# ---------------------------------------------------------------------------------------------
def span_problem(span):
    """Why the official Span() would refuse these offsets (its checks, in its order), or None."""
    if (span.start_byte < 0) != (span.end_byte < 0):
        return (
            f"inconsistent null byte span (start_byte {span.start_byte}, end_byte {span.end_byte}): set both to -1 or both >= 0"
        )
    if (span.start_token < 0) != (span.end_token < 0):
        return (
            f"inconsistent null token span (start_token {span.start_token}, end_token {span.end_token}): "
            "set both to -1 or both >= 0"
        )
    if span.has_bytes() and span.start_byte >= span.end_byte:
        return f"invalid byte span: start_byte {span.start_byte} >= end_byte {span.end_byte} (offsets are end-exclusive)"
    if span.has_tokens() and span.start_token >= span.end_token:
        return f"invalid token span: start_token {span.start_token} >= end_token {span.end_token} (offsets are end-exclusive)"
    return None


def nonnull_spans_equal(span_a, span_b):
    """Official rule: equal byte offsets (when both have them) or equal token offsets (when both have them)."""
    if span_a.has_bytes() and span_b.has_bytes():
        if span_a.start_byte == span_b.start_byte and span_a.end_byte == span_b.end_byte:
            return True
    # Not `elif`: the official code compares tokens even when both byte spans exist and differ.
    if span_a.has_tokens() and span_b.has_tokens():
        if span_a.start_token == span_b.start_token and span_a.end_token == span_b.end_token:
            return True
    return False


def is_null_span_list(spans):
    return all(span.is_null() for span in spans)


def span_sets_equal(gold_spans, pred_spans):
    """Every non-null predicted span is in the gold set and every non-null gold span in the predicted one."""
    gold_spans = [span for span in gold_spans if not span.is_null()]
    pred_spans = [span for span in pred_spans if not span.is_null()]
    return all(any(nonnull_spans_equal(p, g) for g in gold_spans) for p in pred_spans) and all(
        any(nonnull_spans_equal(p, g) for p in pred_spans) for g in gold_spans
    )


# ---------------------------------------------------------------------------------------------
# Scoring (pure functions of gold and predictions)
# ---------------------------------------------------------------------------------------------
def gold_has_long_answer(annotations, threshold=LONG_NON_NULL_THRESHOLD):
    return bool(annotations) and sum(not a.long_answer.is_null() for a in annotations) >= threshold


def gold_has_short_answer(annotations, threshold=SHORT_NON_NULL_THRESHOLD):
    votes = sum((not is_null_span_list(a.short_answers)) or a.yes_no_answer != "none" for a in annotations)
    return bool(annotations) and votes >= threshold


def score_long_answer(annotations, prediction, threshold=LONG_NON_NULL_THRESHOLD):
    gold_has_answer = gold_has_long_answer(annotations, threshold)
    pred_has_answer = not prediction.long_answer.is_null()
    is_correct = (
        gold_has_answer
        and pred_has_answer
        # An annotator may still have said "no long answer" while the vote says there is one.
        and any(not a.long_answer.is_null() and nonnull_spans_equal(a.long_answer, prediction.long_answer) for a in annotations)
    )
    return AnswerStat(gold_has_answer, pred_has_answer, bool(is_correct), prediction.long_answer_score)


def score_short_answer(annotations, prediction, threshold=SHORT_NON_NULL_THRESHOLD):
    gold_has_answer = gold_has_short_answer(annotations, threshold)
    pred_has_answer = (not is_null_span_list(prediction.short_answers)) or prediction.yes_no_answer != "none"
    is_correct = False
    if gold_has_answer and pred_has_answer:
        if prediction.yes_no_answer != "none":
            is_correct = any(prediction.yes_no_answer == a.yes_no_answer for a in annotations)
        else:
            is_correct = any(span_sets_equal(a.short_answers, prediction.short_answers) for a in annotations)
    return AnswerStat(gold_has_answer, pred_has_answer, is_correct, prediction.short_answers_score)


def check_same_example_ids(gold_ids, prediction_ids, source="predictions"):
    """The official script refuses unless the prediction ids are exactly the gold ids."""
    gold_ids, prediction_ids = set(gold_ids), set(prediction_ids)
    missing = gold_ids - prediction_ids
    extra = prediction_ids - gold_ids
    if not (missing or extra):
        return
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} gold example(s) have no prediction (e.g. example_id {', '.join(map(str, sorted(missing)[:3]))})"
        )
    if extra:
        parts.append(f"{len(extra)} prediction(s) are not in the gold (e.g. example_id {', '.join(map(str, sorted(extra)[:3]))})")
    raise NQEvalError(
        f"{source}: the example ids of the predictions and of the gold are not equal: {'; '.join(parts)}. "
        "The official evaluation needs exactly one prediction per gold example (is --gold_path the right split?)"
    )


def score(gold, predictions, long_non_null_threshold=LONG_NON_NULL_THRESHOLD, short_non_null_threshold=SHORT_NON_NULL_THRESHOLD):
    """(long_stats, short_stats): one AnswerStat per gold example, sorted by score, highest first.

    gold: {example_id: [Annotation, ...]}; predictions: {example_id: Prediction}."""
    check_same_example_ids(gold, predictions)
    long_stats = []
    short_stats = []
    for example_id, annotations in gold.items():
        prediction = predictions[example_id]
        long_stats.append(score_long_answer(annotations, prediction, long_non_null_threshold))
        short_stats.append(score_short_answer(annotations, prediction, short_non_null_threshold))
    # Stable, as the official list.sort(reverse=True): the order within a tie does not change any metric.
    long_stats.sort(key=lambda stat: stat.score, reverse=True)
    short_stats.sort(key=lambda stat: stat.score, reverse=True)
    return long_stats, short_stats


def safe_divide(numerator, denominator):
    # The integer 0, as the official one (seen only in precision_recall_f1's values when nothing is predicted).
    return 0 if denominator == 0 else numerator / denominator


def precision_recall_f1(answer_stats, prefix=""):
    """NQ's F1 / P / R over answer stats, taking every prediction as given (scores ignored); not metrics.compute_f1
    (the SQuAD token F1 of one answer)."""
    correct = sum(stat.is_correct for stat in answer_stats)
    precision = safe_divide(correct, sum(stat.pred_has_answer for stat in answer_stats))
    recall = safe_divide(correct, sum(stat.gold_has_answer for stat in answer_stats))
    f1 = safe_divide(2 * precision * recall, precision + recall)
    return {prefix + "n": len(answer_stats), prefix + "f1": f1, prefix + "precision": precision, prefix + "recall": recall}


def compute_final_f1(long_stats, short_stats):
    scores = precision_recall_f1(long_stats, prefix="long-answer-")
    scores.update(precision_recall_f1(short_stats, prefix="short-answer-"))
    return scores


def compute_pr_curves(answer_stats, targets=TARGET_PRECISIONS):
    """((best_f1, precision, recall, threshold), [(target, max_recall, its_precision, its_threshold), ...]).

    answer_stats must be sorted by score, highest first (as score() returns them)."""
    total_has_gold = sum(stat.gold_has_answer for stat in answer_stats)
    correct = 0
    has_pred = 0
    # One (precision, recall) per distinct score, in descending order of score; a later example with
    # the same score overwrites the point, so a tie is counted as a whole (the official OrderedDict).
    points = {}
    for stat in answer_stats:
        correct += stat.is_correct
        has_pred += stat.pred_has_answer
        points[stat.score] = (safe_divide(correct, has_pred), safe_divide(correct, total_has_gold))

    # Integers, as the official ones: an R@P no threshold reaches is printed as 0, not 0.0.
    max_recall = [0] * len(targets)
    max_precision = [0] * len(targets)
    max_threshold = [None] * len(targets)
    best = (0.0, 0.0, 0.0, 0.0)
    for threshold, (precision, recall) in points.items():
        for i, target in enumerate(targets):
            if precision >= target and recall > max_recall[i]:
                max_recall[i], max_precision[i], max_threshold[i] = recall, precision, threshold
        f1 = safe_divide(2 * precision * recall, precision + recall)
        if f1 > best[0]:  # strict: the highest threshold wins among equal F1s
            best = (f1, precision, recall, threshold)
    return best, list(zip(targets, max_recall, max_precision, max_threshold))


def compute_metrics(long_stats, short_stats):
    """The dict the official script prints as its JSON line, keys in a fixed order."""
    metrics = {}
    for prefix, answer_stats in (("long-", long_stats), ("short-", short_stats)):
        (f1, precision, recall, threshold), table = compute_pr_curves(answer_stats)
        metrics[prefix + "best-threshold-f1"] = f1
        metrics[prefix + "best-threshold-precision"] = precision
        metrics[prefix + "best-threshold-recall"] = recall
        metrics[prefix + "best-threshold"] = threshold
        for target, target_recall, target_precision, _ in table:
            metrics[f"{prefix}recall-at-precision>={target:.2}"] = target_recall
            metrics[f"{prefix}precision-at-precision>={target:.2}"] = target_precision
    return metrics


def _format_threshold(value, precision):
    # The official '{:.5}'.format(None) printed 'None' under Python 2; an int score cannot take a precision.
    return "None" if value is None else format(float(value), f".{precision}")


def format_r_at_p_table(answer_stats):
    (f1, precision, recall, threshold), table = compute_pr_curves(answer_stats)
    lines = [
        f"Optimal threshold: {_format_threshold(threshold, 5)}",
        " F1     /  P      /  R",
        f"{f1: >7.2%} / {precision: >7.2%} / {recall: >7.2%}",
    ]
    for target, target_recall, target_precision, target_threshold in table:
        lines.append(
            f"R@P={target}: {target_recall:.2%} (actual p={target_precision:.2%}, "
            f"score threshold={_format_threshold(target_threshold, 4)})"
        )
    return lines


def format_pretty(long_stats, short_stats):
    """The text of the official --pretty_print output."""
    scores = compute_final_f1(long_stats, short_stats)
    lines = ["*" * 20, "LONG ANSWER R@P TABLE:", *format_r_at_p_table(long_stats)]
    lines += ["*" * 20, "SHORT ANSWER R@P TABLE:", *format_r_at_p_table(short_stats)]
    lines += [
        "*" * 20,
        f"METRICS IGNORING SCORES (n={scores['long-answer-n']}):",
        "              F1     /  P      /  R",
        f"Long answer  {scores['long-answer-f1']: >7.2%} / {scores['long-answer-precision']: >7.2%} / "
        f"{scores['long-answer-recall']: >7.2%}",
        f"Short answer {scores['short-answer-f1']: >7.2%} / {scores['short-answer-precision']: >7.2%} / "
        f"{scores['short-answer-recall']: >7.2%}",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Reading spans, gold and predictions
# ---------------------------------------------------------------------------------------------
def _is_int(value):
    return type(value) is int  # bool is an int subclass and a float like 3.0 is not an offset


def parse_span(record, where, offsets_optional=False):
    """A Span from {"start_byte", "end_byte", "start_token", "end_token"}, checked as the official Span().

    offsets_optional: missing offsets are -1 (the simplified gold has no byte offsets)."""
    if not isinstance(record, dict):
        raise NQEvalError(
            f"{where}: a span must be an object with start_byte, end_byte, start_token, end_token; got {record!r:.80}"
        )
    values = []
    for key in Span._fields:
        value = record.get(key, -1) if offsets_optional else record.get(key)
        if value is None and key not in record:
            raise NQEvalError(f"{where}: the span has no {key!r} (give all four offsets; -1 for the ones you do not use)")
        if not _is_int(value):
            raise NQEvalError(f"{where}: {key} must be an integer, got {value!r:.40}")
        values.append(value)
    span = Span(*values)
    problem = span_problem(span)
    if problem:
        raise NQEvalError(f"{where}: {problem}")
    return span


def parse_annotation(record, where, offsets_optional=False):
    """An Annotation; offsets_optional only for simplified records (token offsets only): in the full
    format a span without its four offsets is damaged data, which the official reader refuses too."""
    if not isinstance(record, dict):
        raise NQEvalError(f"{where}: an annotation must be an object, got {record!r:.80}")
    for key in ("long_answer", "short_answers", "yes_no_answer"):
        if key not in record:
            raise NQEvalError(f"{where}: the annotation has no {key!r}; is this a Natural Questions file?")
    short_answers = record["short_answers"]
    if not isinstance(short_answers, list):
        raise NQEvalError(f"{where}: short_answers must be a list, got {short_answers!r:.80}")
    yes_no = record["yes_no_answer"]
    if not isinstance(yes_no, str):
        raise NQEvalError(f"{where}: yes_no_answer must be a string, got {yes_no!r:.40}")
    long_answer = parse_span(record["long_answer"], f"{where} long_answer", offsets_optional)
    candidate = record["long_answer"].get("candidate_index", -1)
    return Annotation(
        long_answer,
        tuple(parse_span(s, f"{where} short_answers[{i}]", offsets_optional) for i, s in enumerate(short_answers)),
        yes_no.lower(),
        candidate if _is_int(candidate) and not long_answer.is_null() else -1,
    )


_EXAMPLE_ID_KEY = b'"example_id":'
_ANNOTATIONS_KEY = b'"annotations":'
# Keys only the full format has (the simplified one has document_text instead).
FULL_FORMAT_KEYS = ("document_tokens", "document_html")
_FULL_FORMAT_KEYS = tuple(f'"{key}":'.encode() for key in FULL_FORMAT_KEYS)
_INTEGER_VALUE = re.compile(rb"[ \t\r\n]*(-?[0-9]+)[ \t\r\n]*[,}]")
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


def _key_position(line, key, from_end):
    """Offset just after `key` where it is surely an object key, or -1.

    In JSON text the bytes `"example_id":` can only be a key named example_id (a quote inside a
    string is escaped), unless the key's own text ends in `"example_id`, which leaves a backslash
    before the match: then give up. No nested object of either NQ format has these two keys."""
    at = line.rfind(key) if from_end else line.find(key)
    if at <= 0 or line[at - 1] == 0x5C:  # 0x5C = backslash
        return -1
    return at + len(key)


def _json_value_at(line, start):
    """The JSON value starting at byte `start`, decoding a window of the line only, or raise ValueError."""
    size = 1 << 14  # 5 full-format annotations are about 1.3 KB; the window grows 8x when short
    while True:
        text = line[start : start + size].decode("utf-8", "replace")
        begin = _WHITESPACE.match(text).end()
        try:
            value, end = _DECODER.raw_decode(text, begin)
        except json.JSONDecodeError:
            if start + size >= len(line):
                raise ValueError("no complete JSON value") from None
            size *= 8
            continue
        if "\ufffd" in text[begin:end]:  # invalid UTF-8 inside the value, or a cut character
            raise ValueError("not valid UTF-8")
        return value


def _has_full_format_key(line):
    """True / False when the line surely has / has not a full-format key, None when it cannot be sure.

    document_html follows annotations, the first key, so on a full-format line it is found within the
    first ~2 KB; a simplified line (no such key) is searched to its end, which memchr does at GB/s."""
    for key in _FULL_FORMAT_KEYS:
        at = line.find(key)
        if at > 0 and line[at - 1] == 0x5C:  # inside a key that has an escaped quote: let json decide
            return None
        if at > 0:
            return True
    return False


def extract_gold_fields(line):
    """(example_id, raw annotations list, is_full_format) of one NQ jsonl line (bytes), parsing only
    those two values.

    Returns None when the fast way cannot be sure; the caller then parses the whole line."""
    stripped = line.rstrip()
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        return None  # also a line cut short: the full parse names the problem
    # The full format puts example_id after 97-99.7% of the line (HTML and tokens): search from the end.
    id_end = _key_position(line, _EXAMPLE_ID_KEY, from_end=True)
    annotations_end = _key_position(line, _ANNOTATIONS_KEY, from_end=False)
    if id_end < 0 or annotations_end < 0:
        return None
    match = _INTEGER_VALUE.match(line, id_end)
    if not match:
        return None  # a float, a string, a null: the full parse reports it
    is_full = _has_full_format_key(line)
    if is_full is None:
        return None
    try:
        annotations = _json_value_at(line, annotations_end)
    except ValueError:
        return None
    return int(match.group(1)), annotations, is_full


def parse_gold_line(line, where):
    """(example_id, tuple of Annotation) from one full-format or simplified NQ line.

    Offsets missing from a span are -1 only in a simplified record (it has no byte offsets); in a
    full-format one (document_tokens / document_html) they are an error naming the span."""
    fields = extract_gold_fields(line)
    if fields is None:
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise NQEvalError(f"{where}: not valid JSON ({exc}); is the file complete?") from None
        if not isinstance(record, dict) or "example_id" not in record or "annotations" not in record:
            raise NQEvalError(f"{where}: a Natural Questions record needs 'example_id' and 'annotations'")
        fields = record["example_id"], record["annotations"], any(key in record for key in FULL_FORMAT_KEYS)
    example_id, annotations, is_full = fields
    if not _is_int(example_id):
        raise NQEvalError(f"{where}: example_id must be an integer, got {example_id!r:.40}")
    where = f"{where} (example_id {example_id})"
    if not isinstance(annotations, list):
        raise NQEvalError(f"{where}: annotations must be a list, got {annotations!r:.80}")
    return example_id, tuple(
        parse_annotation(a, f"{where} annotation {i}", offsets_optional=not is_full) for i, a in enumerate(annotations)
    )


GOLD_FIELDS = ("example_id", "annotations")  # all the gold needs of a record


def read_gold_file(path):
    """[(example_id, line_number, annotations), ...] of one shard, streamed (.jsonl.gz, .jsonl, the hub's .parquet
    (its row numbers as line numbers), s3://)."""
    out = []
    line_number = 0
    try:
        for line_number, line in iter_lines(path, fields=GOLD_FIELDS):  # a parquet file: only these columns are read
            example_id, annotations = parse_gold_line(line, f"{path} line {line_number}")
            out.append((example_id, line_number, annotations))
    except (TruncatedInput, OSError) as exc:  # a truncated or corrupt gzip, an unreadable file
        raise NQEvalError(f"{path}: cannot be read after line {line_number} ({exc}); download it again") from None
    except InputError as exc:  # a line longer than any NQ record
        raise NQEvalError(str(exc)) from None
    return out


def expand_gold_paths(paths):
    """The gold files of paths, globs, s3:// URIs and local folders (a folder: its *.jsonl.gz, *.jsonl and *.parquet
    files, sorted, e.g. data/nq/raw/dev/ -> its 5 nq-dev-NN.jsonl.gz); raises NQEvalError / FileNotFoundError."""
    patterns = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    out = []
    for pattern in map(str, patterns):
        if is_s3(pattern) or not os.path.isdir(pattern):
            out.extend(expand_inputs([pattern]))
            continue
        folder = glob.escape(pattern)
        files = sorted(glob.glob(os.path.join(folder, "*.jsonl.gz")) + glob.glob(os.path.join(folder, "*.jsonl"))
                       + glob.glob(os.path.join(folder, "*.parquet")))
        if not files:
            raise NQEvalError(
                f"{pattern}: a folder without *.jsonl.gz, *.jsonl or *.parquet files; give the gold files or a glob such as "
                f"'{os.path.join(pattern, 'nq-dev-*.jsonl.gz')}'"
            )
        out.extend(files)
    return out


def read_gold(paths, num_threads=NUM_THREADS):
    """{example_id: (Annotation, ...)} from NQ files: paths, globs, folders, s3:// URIs (full or simplified).

    Shards are read by up to num_threads processes, as the official script does. They are spawned, not
    forked: the caller may hold CUDA or torch's thread pools (scripts/predict_nq.py scores right after its
    model ran), and a fork copies their locks half-held, so a child can hang. Spawning costs about 0.35 s
    for 2 readers (2 busy cores, 2 small shards: 0.04 s serial), against minutes for a 1 GB dev shard. As
    with any spawn pool, a calling script needs `if __name__ == "__main__":` (code piped to `python -`
    cannot spawn: give num_threads=1 there)."""
    paths = expand_gold_paths(paths)
    workers = max(1, min(num_threads, len(paths)))
    if workers == 1:
        per_file = [read_gold_file(path) for path in paths]
    else:
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            per_file = list(pool.map(read_gold_file, paths))
    gold = {}
    seen_at = {}
    for path, records in zip(paths, per_file):
        for example_id, line_number, annotations in records:
            if example_id in gold:
                raise NQEvalError(
                    f"{path} line {line_number}: example_id {example_id} is already at {seen_at[example_id]}; "
                    "is a shard given twice?"
                )
            gold[example_id] = annotations
            seen_at[example_id] = f"{path} line {line_number}"
    if not gold:
        raise NQEvalError(f"{', '.join(map(str, paths))}: no gold examples")
    return gold


def gold_cache_path(paths):
    """Where --cache_gold_data keeps the parsed gold: beside the first shard, named by what it was read from."""
    if any(is_s3(path) for path in paths):
        raise NQEvalError(
            "--cache_gold_data needs local gold files (the cache is keyed on their sizes and mtimes); drop the flag for s3://"
        )
    key = [GOLD_CACHE_VERSION]
    for path in paths:
        stat = os.stat(path)
        key.append((os.path.abspath(path), stat.st_size, stat.st_mtime_ns))
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    return os.path.join(os.path.dirname(os.path.abspath(paths[0])), f"nq_eval_gold_cache-{digest}.pkl")


def read_gold_cached(paths, num_threads=NUM_THREADS):
    """read_gold, through a pickle that is reused only for the very same files (path, size, mtime)."""
    paths = expand_gold_paths(paths)
    cache = gold_cache_path(paths)
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    gold = read_gold(paths, num_threads)
    with atomic_write(cache, "wb") as f:
        pickle.dump(gold, f, protocol=pickle.HIGHEST_PROTOCOL)
    return gold


def _score_value(entry, key, where):
    if key not in entry:
        raise NQEvalError(f"{where}: no {key!r} (a number; the official evaluation requires both scores)")
    value = entry[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (isinstance(value, float) and math.isnan(value)):
        raise NQEvalError(f"{where}: {key} must be a number, got {value!r:.40}")
    return value


def parse_prediction(entry, where):
    """(example_id, Prediction) from one entry of the official prediction format."""
    if not isinstance(entry, dict):
        raise NQEvalError(f"{where}: a prediction must be an object, got {entry!r:.80}")
    if "example_id" not in entry:
        raise NQEvalError(f"{where}: no 'example_id'")
    example_id = entry["example_id"]
    if not _is_int(example_id):
        raise NQEvalError(f"{where}: example_id must be a JSON integer (64-bit, never a float or string), got {example_id!r:.40}")
    where = f"{where} (example_id {example_id})"
    long_answer = parse_span(entry["long_answer"], f"{where} long_answer") if "long_answer" in entry else NULL_SPAN
    short_records = entry.get("short_answers", [])
    if not isinstance(short_records, list):
        raise NQEvalError(f"{where}: short_answers must be a list of spans, got {short_records!r:.80}")
    short_answers = tuple(parse_span(s, f"{where} short_answers[{i}]") for i, s in enumerate(short_records))
    yes_no = entry.get("yes_no_answer", "none")
    if not isinstance(yes_no, str) or yes_no.lower() not in YES_NO_VALUES:
        raise NQEvalError(f"{where}: invalid yes_no_answer {yes_no!r:.40}: use 'YES', 'NO' or 'NONE'")
    yes_no = yes_no.lower()
    if yes_no != "none" and not is_null_span_list(short_answers):
        raise NQEvalError(
            f"{where}: yes/no prediction and short answers cannot coexist (yes_no_answer {entry['yes_no_answer']!r} "
            f"with {len(short_answers)} short span(s)); set yes_no_answer to 'NONE' or drop the spans"
        )
    return example_id, Prediction(
        long_answer,
        short_answers,
        yes_no,
        _score_value(entry, "long_answer_score", where),
        _score_value(entry, "short_answers_score", where),
    )


def parse_predictions(document, source="predictions"):
    """{example_id: Prediction} from the parsed official JSON document."""
    if not isinstance(document, dict) or not isinstance(document.get("predictions"), list):
        raise NQEvalError(f'{source}: expected the official format {{"predictions": [{{"example_id": ..., ...}}, ...]}}')
    predictions = {}
    index_of = {}
    for index, entry in enumerate(document["predictions"]):
        example_id, prediction = parse_prediction(entry, f"{source}: prediction {index}")
        if example_id in predictions:
            raise NQEvalError(
                f"{source}: prediction {index}: example_id {example_id} is also prediction {index_of[example_id]}; "
                "give one prediction per example"
            )
        predictions[example_id] = prediction
        index_of[example_id] = index
    return predictions


def read_predictions(path, gold=None):
    """{example_id: Prediction} from an official prediction file (local, .gz, or s3://).

    With gold, the ids are checked against it now (the official script checks them when scoring)."""
    with open_input(path) as stream:
        data = stream.read()
    try:
        document = loads(data)
    except (JSONDecodeError, UnicodeDecodeError) as exc:
        raise NQEvalError(f"{path}: not valid JSON ({exc}); is the file complete?") from None
    predictions = parse_predictions(document, str(path))
    if gold is not None:
        check_same_example_ids(gold, predictions, str(path))
    return predictions


def evaluate(
    gold_path,
    predictions_path,
    long_non_null_threshold=LONG_NON_NULL_THRESHOLD,
    short_non_null_threshold=SHORT_NON_NULL_THRESHOLD,
    num_threads=NUM_THREADS,
    cache_gold_data=False,
):
    """The official metrics dict (the JSON line) for a gold path/glob/URI and a prediction file."""
    gold = (read_gold_cached if cache_gold_data else read_gold)(gold_path, num_threads)
    predictions = read_predictions(predictions_path, gold)
    return compute_metrics(*score(gold, predictions, long_non_null_threshold, short_non_null_threshold))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _parse_bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "t", "yes", "y"):
        return True
    if value in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_bool_flag(parser, name, help_text):
    # absl spellings: --name, --name=true|false, --noname.
    parser.add_argument(f"--{name}", nargs="?", const=True, default=False, type=_parse_bool, metavar="BOOL", help=help_text)
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m qa.nq_eval",
        description="The official Natural Questions evaluation (nq_eval.py), same flags, same output.",
    )
    parser.add_argument(
        "--gold_path",
        required=True,
        help="Gold NQ data: a path, a glob ('data/nq/raw/dev/nq-dev-*.jsonl.gz'), a folder (its *.jsonl.gz, *.jsonl and "
        "*.parquet) or s3:// URI; the hub's parquet files (google-research-datasets/natural_questions) too.",
    )
    parser.add_argument("--predictions_path", required=True, help="Prediction JSON in the official format.")
    _add_bool_flag(parser, "cache_gold_data", "Keep the parsed gold beside the shards to speed up later evaluations.")
    parser.add_argument(
        "--num_threads", "--gold_num_threads", type=int, default=NUM_THREADS, help="Processes reading gold shards (default 10)."
    )
    _add_bool_flag(parser, "pretty_print", "Print the R@P tables and F1/P/R instead of one JSON line.")
    parser.add_argument(
        "--long_non_null_threshold",
        type=int,
        default=LONG_NON_NULL_THRESHOLD,
        help="Non-null long answer annotations needed for gold to contain a long answer (default 2).",
    )
    parser.add_argument(
        "--short_non_null_threshold",
        type=int,
        default=SHORT_NON_NULL_THRESHOLD,
        help="Non-null short answer annotations needed for gold to contain a short answer (default 2).",
    )
    return parser


def check_args(args):
    """Every argument problem in one place, in words that say what to do."""
    if args.num_threads < 1:
        return f"--num_threads must be at least 1, got {args.num_threads}"
    for name in ("long_non_null_threshold", "short_non_null_threshold"):
        if getattr(args, name) < 0:
            return f"--{name} must be >= 0 (annotators out of 5 on dev), got {getattr(args, name)}"
    return None


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem:
        parser.error(problem)
    try:
        gold = (read_gold_cached if args.cache_gold_data else read_gold)(args.gold_path, args.num_threads)
        predictions = read_predictions(args.predictions_path, gold)
        long_stats, short_stats = score(gold, predictions, args.long_non_null_threshold, args.short_non_null_threshold)
    except (NQEvalError, OSError) as exc:  # OSError: a missing, unreadable or directory path
        parser.exit(2, f"nq_eval: error: {exc}\n")
    if args.pretty_print:
        sys.stdout.write(format_pretty(long_stats, short_stats))
    else:
        print(json.dumps(compute_metrics(long_stats, short_stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
