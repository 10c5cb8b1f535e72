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

Whole-document prediction (scripts/predict_nq.py) reads candidates the same way, from this module:

    import nq_to_squad
    for index, candidate in nq_to_squad.list_candidates(record):          # top-level ones; top_level_only=False: all
        context = nq_to_squad.candidate_context(record, index)             # .text is exactly a converted context
        span = nq_to_squad.char_span_to_tokens(context, char_start, char_end)
        # -> {"start_token", "end_token" (exclusive), "start_byte", "end_byte"} (bytes -1 in the simplified format)

Standard library only, with optional speedups (measured in the comments below): orjson parses
lines, python-isal inflates gzip; boto3 only for s3:// inputs.
"""

import argparse
import collections
import contextlib
import dataclasses
import glob
import hashlib
import html
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qa.storage import GZIP_MAGIC, atomic_write, expand_inputs, is_s3, open_raw  # noqa: E402

# Both speedups are pinned in requirements.txt; the fallbacks keep the converter running on a bare
# python3 (DESIGN: a user converts data on a laptop). Measured on 60 real full-format records
# (nq-dev-10 x 6, 44 MB, one core): convert 0.125 s with isal vs 0.172 s with zlib (reading lines
# alone 730 vs 406 MB/s); orjson vs json 0.131 vs 0.145 s (only ~10 %: parse_line leaves the big
# token array unparsed, so little JSON is parsed at all).
try:
    from isal import isal_zlib as inflate_zlib
except ImportError:  # pragma: no cover - isal is in requirements.txt
    inflate_zlib = zlib

try:
    import orjson

    _loads = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError

    def _dumps(obj):
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - orjson is in requirements.txt
    _loads = json.loads
    JSONDecodeError = json.JSONDecodeError

    def _dumps(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


READ_CHUNK = 1 << 20  # 1 MiB reads: NQ full lines average ~740 KB (up to tens of MB)
MAX_WARNINGS = 20  # bad records reported one by one with --skip-bad-records, then only counted
FRACTION_BUCKETS = 1_000_000  # --fraction resolution: 1e-6
PARTS_PREFIX = ".nq_to_squad-"  # + PID + "-": the folder of a run's part files, beside the output

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

# Tags that separate words even when the HTML has no whitespace around them: on the real dev
# records 458 word pairs are joined only by `</A></LI><LI><A>` (navigation lists); inline tags
# (`</A>,`, `<I>`, `<SPAN>`, ...) join words as the browser would.
BLOCK_TAGS = frozenset(
    b"p br hr div li ul ol dl dt dd table thead tbody tfoot tr td th caption h1 h2 h3 h4 h5 h6 "
    b"blockquote pre section center figure figcaption".split()
)
TAG_RE = re.compile(rb"<!--.*?-->|<\s*/?\s*([A-Za-z][A-Za-z0-9]*)?[^>]*>", re.DOTALL)
# An HTML token of the simplified format: `<P>`, `</Td>`, and with attributes, whose spaces the
# simplified format turns into `_`: `<Td_colspan="4">` (117 such tokens in the 10 real dev records;
# this pattern flags exactly the tokens the full format marks html_token, on all 55,966 of them).
SIMPLIFIED_HTML_TOKEN_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:_[^<>]*)?>")
TAG_NAME_RE = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)")


class BadRecord(ValueError):
    """A record that cannot be converted; the caller adds the file and line."""


class ConversionError(RuntimeError):
    """A fatal problem; the message names the file, line and example, and says what to do."""


class InputError(ConversionError):
    """Inputs that cannot be NQ data (a directory, no records at all): nothing is written, exit 2."""


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


@dataclasses.dataclass(frozen=True)
class Annotation:
    long_answer: dict  # None when there is no long answer
    short_answers: list
    yes_no: str  # "YES", "NO" or "NONE"


@dataclasses.dataclass(frozen=True)
class CandidateContext:
    """A long-answer candidate's text exactly as the converter writes it as a SQuAD context, and
    where each of the candidate's NQ tokens lies in it."""

    text: str
    start_token: int  # the candidate's first NQ token: token_spans[i] is about token start_token + i
    token_spans: tuple  # (char_start, char_end) of each token in text; None for an HTML token
    token_bytes: tuple  # full format: (start_byte, end_byte) of each token in document_html; None when simplified
    context_type: str  # the tag the candidate starts with ("<P>", "<Table>", "<Ul>", ...) or "text"

    @property
    def end_token(self):
        return self.start_token + len(self.token_spans)


# ---------------------------------------------------------------------------------------------
# Pure per-example functions
# ---------------------------------------------------------------------------------------------
def keep_by_fraction(example_id, fraction):
    """Deterministic subset: the same ids are kept on every machine, run and worker count."""
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(str(example_id).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % FRACTION_BUCKETS < round(fraction * FRACTION_BUCKETS)


def _has_long(annotation):
    return annotation["long_answer"]["start_token"] >= 0


def _has_short(annotation):
    return bool(annotation["short_answers"]) or annotation.get("yes_no_answer", "NONE") != "NONE"


def _long_span(annotation):
    la = annotation["long_answer"]
    return la["start_token"], la["end_token"]


def _short_key(annotation):
    spans = tuple((s["start_token"], s["end_token"]) for s in annotation["short_answers"])
    return spans, annotation.get("yes_no_answer", "NONE")


def _as_annotation(annotation, with_short=True):
    if annotation is None or not _has_long(annotation):
        return Annotation(None, [], "NONE")
    if not with_short:
        return Annotation(annotation["long_answer"], [], "NONE")
    return Annotation(annotation["long_answer"], list(annotation["short_answers"]), annotation.get("yes_no_answer", "NONE"))


def choose_annotation(annotations, mode):
    """Pick the gold long/short answer of a record ("first", "first-long" or "majority").

    majority, our reading of the official NQ evaluation (nq_eval.py / eval_utils.py): a long
    answer is gold-present when at least 2 annotators gave a non-null long answer
    (long_non_null_threshold=2), a short answer when at least 2 gave a non-null short answer
    or a yes/no answer (short_non_null_threshold=2). The official script then accepts a
    prediction matching ANY annotator; a converter needs one span, so we take the most
    common non-null long answer span (ties: the earliest annotator), and the most common short
    answer (spans + yes/no) among the annotators who gave that long answer (ties: earliest).
    If no annotator of that long answer gave a short answer, the example is long-only.
    Records with fewer annotators (train has 1) use min(2, n) as the threshold.
    """
    if not annotations:
        return Annotation(None, [], "NONE")
    if mode == "first":
        return _as_annotation(annotations[0])
    if mode == "first-long":
        return _as_annotation(next((a for a in annotations if _has_long(a)), None))
    threshold = min(2, len(annotations))
    with_long = [a for a in annotations if _has_long(a)]
    if len(with_long) < threshold:
        return Annotation(None, [], "NONE")
    long_votes = collections.Counter(_long_span(a) for a in with_long)
    best_long = max(long_votes, key=lambda span: (long_votes[span], -[_long_span(a) for a in with_long].index(span)))
    agreeing = [a for a in with_long if _long_span(a) == best_long]
    if sum(_has_short(a) for a in annotations) < threshold:
        return _as_annotation(agreeing[0], with_short=False)
    with_short = [a for a in agreeing if _has_short(a)]
    if not with_short:
        return _as_annotation(agreeing[0], with_short=False)
    short_keys = [_short_key(a) for a in with_short]
    short_votes = collections.Counter(short_keys)
    best_short = max(short_votes, key=lambda key: (short_votes[key], -short_keys.index(key)))
    return _as_annotation(with_short[short_keys.index(best_short)])


def _gap_separates(gap):
    """Whether the HTML bytes between two text tokens put a space between them."""
    if not gap:
        return False
    text = gap
    if b"<" in gap:
        for match in TAG_RE.finditer(gap):
            name = match.group(1)
            if name and name.lower() in BLOCK_TAGS:
                return True
        text = TAG_RE.sub(b"", gap)
    if not text:
        return False
    if b"&" in text:  # &nbsp; and friends
        return any(ch.isspace() for ch in html.unescape(text.decode("utf-8", "replace")))
    return any(ch.isspace() for ch in text.decode("utf-8", "replace"))


def full_format_words(record, tokens, start, end):
    """(token_index, text, space_before) of the text tokens in [start, end) of a full-format record.

    Token text is the token's own bytes of document_html, tags removed, entity-decoded (the `token`
    field is normalised: `&quot;` becomes `` or '', `[` becomes `(`). Text the NQ tokenizer left
    out (citation marks like `[1]`) stays out, as in the simplified format."""
    doc = record["_html_bytes"]
    words, previous_end = [], None
    for index in range(start, end):
        token = tokens[index]
        if token["html_token"]:
            continue
        raw = doc[token["start_byte"] : token["end_byte"]]
        if b"<" in raw:  # a token's span can hold markup: "'s" is `'</I>s` in "USA Today</I>'s" (real dev record)
            raw = TAG_RE.sub(b"", raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRecord(f"token {index} is not valid UTF-8 at bytes {token['start_byte']}-{token['end_byte']} ({exc})") from exc
        if "&" in text:
            text = html.unescape(text)
        space = previous_end is not None and _gap_separates(doc[previous_end : token["start_byte"]])
        words.append((index, text, space))
        previous_end = token["end_byte"]
    return words


def simplified_words(tokens, start, end):
    """(token_index, text, space_before) of the text tokens in [start, end) of simplified document_text.

    The simplified format is `" ".join(tokens)` with spaces inside tokens replaced by `_`, so its
    only separator is a single space and the original HTML spacing is lost ("Röntgen , of")."""
    words = []
    for index in range(start, end):
        token = tokens[index]
        if SIMPLIFIED_HTML_TOKEN_RE.fullmatch(token):
            continue
        words.append((index, token, bool(words)))
    return words


def build_text(words):
    """Join words; returns (text, {token_index: char offset})."""
    pieces, offsets, length = [], {}, 0
    for index, text, space in words:
        if space and pieces:
            pieces.append(" ")
            length += 1
        offsets[index] = length
        pieces.append(text)
        length += len(text)
    return "".join(pieces), offsets


def _title(record):
    title = record.get("document_title")
    if title:
        return title
    query = urllib.parse.urlparse(html.unescape(record.get("document_url", ""))).query
    return urllib.parse.parse_qs(query).get("title", [""])[0].replace("_", " ")


# ---------------------------------------------------------------------------------------------
# Candidates and their text: one code path for the converter and for whole-document prediction
# ---------------------------------------------------------------------------------------------
def _is_full_format(record):
    return "document_tokens" in record or RAW_TOKENS in record


def _document_tokens(record, span):
    """Tokens of `record` indexable over `span` (a candidate or long answer: start/end token and byte).

    Full format: the `document_tokens` dicts (from a record that parse_line left raw, only the
    span's own tokens are parsed); simplified: the token strings of `document_text`. The HTML
    bytes and the simplified split are cached in the record (a document is read once per candidate)."""
    if _is_full_format(record):
        if "_html_bytes" not in record:
            record["_html_bytes"] = record["document_html"].encode("utf-8")
        if "document_tokens" in record:
            return record["document_tokens"]
        return LazyTokens(record[RAW_TOKENS], span)
    if "_simplified_tokens" not in record:
        record["_simplified_tokens"] = record["document_text"].split(" ")
    return record["_simplified_tokens"]


def _words(record, tokens, start, end):
    if _is_full_format(record):
        return full_format_words(record, tokens, start, end)
    return simplified_words(tokens, start, end)


def _context_type(record, token):
    """'<P>', '<Table>', ... for a candidate starting with that tag (attributes dropped), else 'text'."""
    if _is_full_format(record):
        text = token["token"] if token["html_token"] else ""
    else:
        text = token if SIMPLIFIED_HTML_TOKEN_RE.fullmatch(token) else ""
    match = TAG_NAME_RE.match(text)
    return f"<{match.group(1)}>" if match else "text"


def _context(record, tokens, start, end, what="candidate"):
    """The CandidateContext of tokens [start, end); raises BadRecord when they lie outside the document."""
    if not 0 <= start < end <= len(tokens):
        raise BadRecord(f"example {record.get('example_id', '?')}: {what} tokens [{start}, {end}) outside the document "
                        f"({len(tokens)} tokens)")
    words = _words(record, tokens, start, end)
    text, offsets = build_text(words)
    spans = [None] * (end - start)
    for index, word, _ in words:
        spans[index - start] = (offsets[index], offsets[index] + len(word))
    token_bytes = None
    if _is_full_format(record):
        token_bytes = tuple((tokens[i]["start_byte"], tokens[i]["end_byte"]) for i in range(start, end))
    return CandidateContext(text, start, tuple(spans), token_bytes, _context_type(record, tokens[start]))


def list_candidates(record, top_level_only=True):
    """[(candidate_index, candidate)] of a record's long-answer candidates, in document order:
    the top-level ones (NQ's `top_level`: not nested in another candidate) by default, all of them
    with top_level_only=False (table rows, list items inside a top-level table or list)."""
    return [(index, candidate) for index, candidate in enumerate(record["long_answer_candidates"])
            if candidate.get("top_level", True) or not top_level_only]


def candidate_context(record, candidate):
    """The CandidateContext of a candidate: its index in `long_answer_candidates`, or a dict with
    start_token/end_token (a candidate, or an annotation's long_answer; with start_byte/end_byte in
    the full format). Its text is exactly the context the converter writes for that long answer.

    Works on full-format records (from json.loads, or from parse_line, which parses only this
    candidate's tokens) and on simplified ones."""
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        candidates = record["long_answer_candidates"]
        if not 0 <= candidate < len(candidates):
            raise BadRecord(f"example {record.get('example_id', '?')}: no candidate {candidate} "
                            f"(the record has {len(candidates)})")
        candidate = candidates[candidate]
    tokens = _document_tokens(record, candidate)
    return _context(record, tokens, candidate["start_token"], candidate["end_token"])


def token_span_to_chars(context, start_token, end_token):
    """(char_start, char_end) in context.text of the text tokens among NQ tokens [start_token,
    end_token), or None when the span is outside the candidate or holds only HTML tokens."""
    if not context.start_token <= start_token < end_token <= context.end_token:
        return None
    spans = [s for s in context.token_spans[start_token - context.start_token : end_token - context.start_token] if s]
    return (spans[0][0], spans[-1][1]) if spans else None


def char_span_to_tokens(context, char_start, char_end):
    """A character span of context.text (a prediction) -> its NQ span, as the official prediction
    format writes it: {"start_token", "end_token" (exclusive), "start_byte", "end_byte"}.

    The span covers every token whose characters overlap [char_start, char_end), so a prediction
    cut inside a word ("Röntgen" of "Röntgen,") maps to the whole token. Bytes are those of
    document_html (full format), -1 in the simplified format, which has none. Raises ValueError
    when no token overlaps (an empty span, or one holding only a space)."""
    inside = [i for i, span in enumerate(context.token_spans) if span and span[0] < char_end and span[1] > char_start]
    if char_start >= char_end or not inside:
        raise ValueError(f"characters [{char_start}, {char_end}) of the candidate at token {context.start_token} "
                         f"cover no token")
    first, last = inside[0], inside[-1]
    start_byte, end_byte = -1, -1
    if context.token_bytes is not None:
        start_byte, end_byte = context.token_bytes[first][0], context.token_bytes[last][1]
    return {"start_token": context.start_token + first, "end_token": context.start_token + last + 1,
            "start_byte": start_byte, "end_byte": end_byte}


# ---------------------------------------------------------------------------------------------
# One record -> one SQuAD article
# ---------------------------------------------------------------------------------------------
def short_answer_span(short_answers, multi_span):
    """(start_token, end_token) of one annotator's short answers, as --multi-span says; None for
    several spans with "skip"."""
    if len(short_answers) > 1:
        if multi_span == "skip":
            return None
        last = short_answers[-1] if multi_span == "span" else short_answers[0]
        return short_answers[0]["start_token"], last["end_token"]
    return short_answers[0]["start_token"], short_answers[0]["end_token"]


def _verified_answer(record, tokens, context, start, end):
    """The SQuAD answer of short answer tokens [start, end), built from its own tokens and checked
    against the context at the place the context puts those tokens."""
    example_id = record["example_id"]
    if not context.start_token <= start < end <= context.end_token:
        raise BadRecord(f"example {example_id}: short answer tokens [{start}, {end}) outside the long answer "
                        f"[{context.start_token}, {context.end_token})")
    answer_words = _words(record, tokens, start, end)
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


def convert_record(record, options):
    """One NQ record -> (SQuAD article or None, [statistics keys]). Raises BadRecord.

    The article holds one paragraph (the long answer) with one question."""
    gold = choose_annotation(record["annotations"], options.annotation)
    if gold.long_answer is None:
        return None, ["skipped_no_long_answer"]
    tokens = _document_tokens(record, gold.long_answer)
    context = _context(record, tokens, gold.long_answer["start_token"], gold.long_answer["end_token"], "long answer")
    if options.long_answer_types == "paragraph" and context.context_type != "<P>":
        return None, ["skipped_long_answer_type"]
    if not context.text:
        raise BadRecord(f"example {record['example_id']}: long answer [{context.start_token}, {context.end_token}) has no text")

    counts = [f"context_type {context.context_type}"]
    qa = {"id": str(record["example_id"]), "question": record["question_text"], "answers": [], "is_impossible": True}
    if gold.yes_no != "NONE":
        if options.yes_no == "skip":
            return None, ["skipped_yes_no"]
        if options.yes_no == "keep":
            qa["yes_no_answer"] = gold.yes_no
            counts.append("yes_no_kept")
        else:
            counts.append("yes_no_as_impossible")
    elif gold.short_answers:
        span = short_answer_span(gold.short_answers, options.multi_span)
        if span is None:
            return None, ["skipped_multi_span"]
        if len(gold.short_answers) > 1:
            counts.append(f"multi_span_{options.multi_span}")
        answers = [_verified_answer(record, tokens, context, *span)]
        if options.all_answers:
            for other in _other_annotators_spans(record["annotations"], context, options.multi_span):
                answer = _verified_answer(record, tokens, context, *other)
                if answer not in answers:
                    answers.append(answer)
            if len(answers) > 1:
                counts += ["multi_answer_questions"] + ["extra_answers"] * (len(answers) - 1)
        qa["answers"] = answers
        qa["is_impossible"] = False
    counts.append("impossible" if qa["is_impossible"] else "answerable")
    counts.append("kept")
    article = {"title": _title(record), "paragraphs": [{"context": context.text, "qas": [qa]}]}
    return article, counts


# ---------------------------------------------------------------------------------------------
# Parsing: a full-format line is ~740 KB, 60 % of it `document_tokens` (~10k small dicts). Only
# the long answer's tokens are needed, so the token array is cut out as raw JSON and just that
# range is parsed (orjson: 0.8 ms a record instead of 2.1 ms on the real dev records).
# ---------------------------------------------------------------------------------------------
RAW_TOKENS = "_document_tokens_json"
TOKENS_KEY_RE = re.compile(rb'"document_tokens"\s*:\s*\[')
OBJECT_GAP_RE = re.compile(rb"\}\s*[,\]]")


def _find_array_end(line, pos):
    """Index just past the `}]` that closes the token array: `}]` followed by `,` or `}` (bytes.find is
    ~10x faster than a regex over 400 KB). A token string cannot hold it: tokens have no spaces
    and a `"` inside a string is escaped, so `}],` or `}]}` only occurs as JSON structure."""
    while True:
        index = line.find(b"}]", pos)
        if index < 0:
            return -1
        after = line[index + 2 : index + 10].lstrip()[:1]
        if after in (b",", b"}"):
            return index + 2
        pos = index + 1


def _find_number_field(raw, key, value, pos=0):
    """Position of `"key":value` (compact, or with json.dumps' `": "`) ending at `,`, `}` or a space; -1 if absent."""
    spaced = raw[:400].find(b'": ') >= 0  # one array is written one way: search only that spelling
    needle = b'"%s"%s%d' % (key, b": " if spaced else b":", value)
    index = raw.find(needle, pos)
    while index >= 0:
        if raw[index + len(needle) : index + len(needle) + 1] in (b",", b"}", b" "):
            return index
        index = raw.find(needle, index + 1)  # 92 also matches the start of 920
    return -1


def parse_line(line):
    """A JSON line -> record; full-format records keep `document_tokens` as raw JSON bytes."""
    key = TOKENS_KEY_RE.search(line)
    if key:
        end = _find_array_end(line, key.end())
        if end > 0 and line[key.end() : key.end() + 64].lstrip()[:1] == b"{":
            try:
                record = _loads(line[: key.start()] + b'"_document_tokens_cut":0' + line[end:])
            except JSONDecodeError:
                record = None  # reported by the full parse below, with its real position
            if isinstance(record, dict):
                record[RAW_TOKENS] = line[key.end() - 1 : end]
                return record
    return _loads(line)


class LazyTokens:
    """The tokens of one long answer (or candidate), parsed from the raw token array.

    Found by their byte offsets (a long answer's start_byte/end_byte are its first and last
    token's); the parsed slice is checked (count, first start, last end) and any surprise falls
    back to parsing the whole array, so the result is always that of a full parse."""

    def __init__(self, raw, long_answer):
        self.raw, self.long_answer = raw, long_answer
        self.offset, self.items, self.all = long_answer["start_token"], None, None
        self._load()

    def _load(self):
        la = self.long_answer
        # A span without byte offsets (a hand-made dict) cannot be found: the whole array is parsed.
        start = _find_number_field(self.raw, b"start_byte", la["start_byte"]) if la.get("start_byte", -1) >= 0 else -1
        if start >= 0 and la.get("end_byte", -1) >= 0:
            first = self.raw.rfind(b"{", 0, start)
            last = _find_number_field(self.raw, b"end_byte", la["end_byte"], max(first, 0))
            close = OBJECT_GAP_RE.search(self.raw, last) if last >= 0 else None
            if first >= 0 and close:
                try:
                    items = _loads(b"[" + self.raw[first : close.start() + 1] + b"]")
                except JSONDecodeError:
                    items = None
                if (items and len(items) == la["end_token"] - la["start_token"] and items[0]["start_byte"] == la["start_byte"]
                        and items[-1]["end_byte"] == la["end_byte"]):
                    self.items = items
                    return
        self.all = _loads(self.raw)

    def __len__(self):
        # Only called for the bounds check of the long answer: a verified slice proves it lies inside.
        return len(self.all) if self.all is not None else self.offset + len(self.items)

    def __getitem__(self, index):
        if self.all is not None:
            return self.all[index]
        if not self.offset <= index < self.offset + len(self.items):
            raise BadRecord(f"token {index} is outside the long answer [{self.offset}, {self.offset + len(self.items)})")
        return self.items[index - self.offset]


# ---------------------------------------------------------------------------------------------
# Reading: streamed lines from local files or S3, gzip or plain. Inflated in this process with
# isal (zlib without it). A `gzip -dc` child process on another core was measured and removed: on
# the same 44 MB of real records it read lines at 215 MB/s and converted in 0.278 s, slower than
# inline zlib (406 MB/s, 0.172 s) and twice as slow as isal (730 MB/s, 0.125 s), even with a spare core.
# ---------------------------------------------------------------------------------------------
class TruncatedInput(Exception):
    """The compressed stream ended early; `line` is the first line that could not be read."""


def _split_lines(chunks):
    """bytes chunks -> complete lines (without b"\\n"); a final unterminated line is yielded last."""
    pending = []
    for chunk in chunks:
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        tail = lines.pop()
        if tail:
            pending.append(tail)
        yield from lines
    if pending:
        yield b"".join(pending)


def _gzip_chunks(raw, first):
    """Decompress gzip (multi-member too) from a binary stream, in large reads."""
    decompressor = inflate_zlib.decompressobj(31)
    data = first
    while True:
        if not data:
            data = raw.read(READ_CHUNK)
            if not data:
                break
        try:
            out = decompressor.decompress(data)
        except (zlib.error, inflate_zlib.error) as exc:
            raise TruncatedInput(f"corrupt gzip data ({exc})") from exc
        if out:
            yield out
        data = b""
        if decompressor.eof:
            data = decompressor.unused_data
            if not data:
                data = raw.read(READ_CHUNK)
                if not data:
                    return
            decompressor = inflate_zlib.decompressobj(31)
    tail = decompressor.flush()
    if tail:
        yield tail
    raise TruncatedInput("truncated gzip: the file ended before the end of its compressed stream (re-download it)")


def _plain_chunks(raw, first):
    data = first
    while data:
        yield data
        data = raw.read(READ_CHUNK)


def _complete_or_truncated(chunks):
    """Pass chunks through; on truncation drop the unterminated tail before re-raising."""
    held = b""
    try:
        for chunk in chunks:
            if held:
                yield held
            held = chunk
    except TruncatedInput:
        cut = held.rfind(b"\n")
        if cut >= 0:
            yield held[: cut + 1]
        raise
    if held:
        yield held


def iter_lines(uri):
    """Yield (line_number, line bytes) of the non-blank lines of a local or s3:// file, gzip
    detected by magic bytes.

    Raises TruncatedInput(message) after the last complete line of a truncated gzip; a partial
    last line of a truncated file is never yielded."""
    with contextlib.closing(open_raw(uri)) as raw:
        first = raw.read(READ_CHUNK)
        chunks = _gzip_chunks(raw, first) if first[:2] == GZIP_MAGIC else _plain_chunks(raw, first)
        line_number = 0
        for line in _split_lines(_complete_or_truncated(chunks)):
            line_number += 1
            if line.strip():
                yield line_number, line


# ---------------------------------------------------------------------------------------------
# One file -> one part (a worker's job)
# ---------------------------------------------------------------------------------------------
def _bad(uri, line_number, problem):
    return f"{uri}:{line_number}: {problem}; use --skip-bad-records to skip and count such records"


def _unparsable(line, exc):
    """Why a line does not parse: invalid UTF-8 (named by its byte) or malformed JSON."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad_bytes:
        return (f"not valid UTF-8 at byte {bad_bytes.start} of the line ({bad_bytes.reason}: "
                f"{bad_bytes.object[bad_bytes.start : bad_bytes.end]!r}); the file is damaged: re-download it")
    return f"malformed JSON ({exc})"


def convert_file(uri, options, part_path, stop_after=0):
    """Convert one input file into `part_path` (one JSON article per line).

    Returns (statistics Counter, warnings, snapshots): with stop_after > 0 it stops after that
    many kept examples and `snapshots[k]` is the statistics after the (k+1)-th kept example, so
    the caller can cut the concatenation at any global --max-examples exactly."""
    stats = collections.Counter(files=1)
    warnings, snapshots = [], []
    line_number = 0

    def bad_record(problem):
        message = _bad(uri, line_number, problem)
        if not options.skip_bad_records:
            raise ConversionError(message)
        stats["bad_records"] += 1
        if len(warnings) < MAX_WARNINGS:
            warnings.append(message.split("; use --skip-bad-records")[0])

    lines = iter_lines(uri)
    with open(part_path, "wb") as part, contextlib.closing(lines):
        while True:
            try:
                line_number, line = next(lines)
            except StopIteration:
                break
            except TruncatedInput as exc:
                line_number += 1
                bad_record(str(exc))
                break
            stats["records_read"] += 1
            try:
                record = parse_line(line)
            except (JSONDecodeError, UnicodeDecodeError) as exc:  # json.loads (no orjson) raises the latter
                bad_record(_unparsable(line, exc))
                continue
            if not isinstance(record, dict):
                bad_record(f"expected a JSON object, got {type(record).__name__}")
                continue
            try:
                if not keep_by_fraction(record["example_id"], options.fraction):
                    stats["skipped_fraction"] += 1
                    continue
                article, counts = convert_record(record, options)
            except KeyError as exc:
                bad_record(f"example {record.get('example_id', '?')}: missing field {exc}")
                continue
            except JSONDecodeError as exc:  # the long answer's tokens, parsed only now (LazyTokens)
                bad_record(f"example {record.get('example_id', '?')}: {_unparsable(line, exc)}")
                continue
            except BadRecord as exc:
                bad_record(str(exc))
                continue
            except (TypeError, IndexError, AttributeError, ValueError) as exc:
                bad_record(f"example {record.get('example_id', '?')}: invalid record ({type(exc).__name__}: {exc})")
                continue
            stats.update(counts)
            if article is not None:
                part.write(_dumps(article) + b"\n")
                if stop_after:
                    snapshots.append(dict(stats))
                    if stats["kept"] >= stop_after:
                        break
    return stats, warnings, snapshots


def _convert_file_job(job):
    return convert_file(*job)


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------
def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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


def convert(inputs, output, options, workers=1, stats_json=None):
    """Convert `inputs` (paths, globs, s3:// URIs) into the SQuAD 2.0 file `output`; returns statistics.

    Output is identical for any number of workers: parts are concatenated in input order."""
    uris = expand_inputs(inputs)
    check_inputs(uris)
    for path in remove_leftovers(output, stats_json):
        print(f"removed {path}, left by an interrupted run", file=sys.stderr)
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    parts_dir = tempfile.mkdtemp(prefix=f"{PARTS_PREFIX}{os.getpid()}-", dir=out_dir)
    total = collections.Counter()
    try:
        workers = max(1, min(workers, len(uris)))
        jobs = [(uri, options, os.path.join(parts_dir, f"part-{i:05d}.jsonl"), options.max_examples) for i, uri in enumerate(uris)]
        with contextlib.ExitStack() as stack:
            if workers > 1:
                pool = stack.enter_context(multiprocessing.Pool(workers))
                results = pool.imap(_convert_file_job, jobs)
            else:
                results = map(_convert_file_job, jobs)
            with atomic_write(output, "wb") as out:
                out.write(b'{"version": "v2.0", "data": [\n')
                written = 0
                for (uri, _, part_path, _), (stats, warnings, snapshots) in zip(jobs, results):
                    for message in warnings:
                        print(f"warning: {message} (skipped)", file=sys.stderr)
                    if not stats["records_read"] and not stats["bad_records"]:
                        empty = f"{uri} holds no NQ record (an empty file)"
                        if options.fail_on_empty:
                            raise InputError(f"{empty}; nothing was written: download it again or leave it out")
                        print(f"warning: {empty}; converted the other inputs "
                              f"(--fail-on-empty makes this an error)", file=sys.stderr)
                    limit = options.max_examples - total["kept"] if options.max_examples else None
                    if limit is not None and stats["kept"] >= limit:
                        stats = collections.Counter(snapshots[limit - 1]) if limit else collections.Counter()
                    total.update(stats)
                    with open(part_path, "rb") as part:
                        for count, line in enumerate(part):
                            if limit is not None and count >= limit:
                                break
                            out.write(b",\n" if written else b"")
                            out.write(line.rstrip(b"\n"))
                            written += 1
                    os.remove(part_path)
                    if options.max_examples and total["kept"] >= options.max_examples:
                        break
                out.write(b"\n]}\n")
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    summary = {key: total.get(key, 0) for key in COUNT_KEYS}
    summary.update(sorted((key, value) for key, value in total.items() if key.startswith("context_type ")))
    if stats_json:
        with atomic_write(stats_json, "w", encoding="utf-8") as f:
            json.dump({"inputs": uris, "output": output, "options": dataclasses.asdict(options), "counts": summary}, f, indent=2)
    return summary


def format_stats(summary):
    width = max(len(key) for key in summary)
    lines = [f"{'statistic':<{width}}  {'count':>10}", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{key:<{width}}  {value:>10,}" for key, value in summary.items()]
    return "\n".join(lines)


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
