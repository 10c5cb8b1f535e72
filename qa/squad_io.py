"""Read, validate and write SQuAD data: nested JSON (data/paragraphs/qas) or JSON Lines.

    from qa.squad_io import read_squad, write_squad
    examples = read_squad("data/nq/nq_dev.json")                 # SQuAD 1.1 / 2.0 nested JSON
    examples = read_squad("data/squad/dev.jsonl")                # one question a line
    stats = {}
    examples = read_squad("data/nq/nq_train.json", skip_bad=True, stats=stats)
    print(stats)    # {'format': 'squad-json', 'questions': ..., 'examples': ..., 'skipped': ..., ...}
    write_squad(examples, "out/dev-subset.json")                 # atomic; .jsonl writes JSON Lines

    examples = read_squad("squad_v2/validation-00000-of-00001.parquet")   # the hub's squad_v2 parquet

The format is detected from the content (gzip too, and s3:// paths, through qa.storage):
- nested: {"version": ..., "data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}
- JSON Lines: one {"id", "question", "context", "answers", "is_impossible"?, "title"?} a line,
  where "answers" is a list of {"text", "answer_start"} or, as HuggingFace `datasets` writes
  it, {"text": [...], "answer_start": [...]}.
- parquet (pyarrow needed, imported only then): the hub's squad_v2 layout, one row a question with
  columns id, title, context, question, answers{text[], answer_start[]}; rows read in batches of
  PARQUET_BATCH_ROWS and checked like JSON Lines records (places are "row N", counted from 0 as
  `datasets` indexes them).
- either layout: a question may carry "answer_type" (none, short, long, yes, no: qa/answer_type.py), read into
  SquadExample.answer_type ("short", or "none" when impossible, without it) and written back when read

Validation happens while reading. A question with a missing field, a malformed answer, or an
`answer_start` that does not point at its answer text raises SquadFormatError naming the file,
the place in it and the question id; with `skip_bad=True` such questions are skipped and
counted in `stats` (the error's `skippable` attribute is True for exactly these, so that a caller
offers skip_bad only where it helps). A duplicate id always raises (which copy is right cannot be
guessed), and so does a malformed file structure (no "data", a paragraph without "context").

Each question becomes one `SquadExample`. Equal contexts are one shared string object, so a
paragraph with many questions is stored (and tokenised by qa.features) once.
"""

import dataclasses
import io
import json
import os
import re

import orjson

from qa.answer_type import KEY as ANSWER_TYPE_KEY
from qa.answer_type import check_type, default_type
from qa.storage import InputTooLarge, atomic_write, read_bytes, size_text


@dataclasses.dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset of the answer in the context


@dataclasses.dataclass(frozen=True)
class SquadExample:
    qas_id: str
    title: str
    question: str
    context: str
    answers: tuple  # of Answer; empty for an unanswerable question
    is_impossible: bool
    # qa.answer_type.TYPES: none, short, long, yes, no; None given -> "none" if impossible else "short"
    answer_type: str = None
    typed: bool = False  # the record carried "answer_type" (candidate-mode NQ data): the answer-type head's default

    def __post_init__(self):
        if self.answer_type is None:
            object.__setattr__(self, "answer_type", default_type(self.is_impossible))

    @property
    def has_answer(self):
        """True when the question has gold answers (the official HasAns/NoAns split)."""
        return bool(self.answers)


class SquadFormatError(ValueError):
    """Bad input data; the message names the file and the example.

    skippable: True when the problem is one question's (a missing field, a bad answer: SKIP_KINDS), so that
    reading with skip_bad=True (run_squad.py --skip_bad_examples) gets past it; False for the file's own
    problems (not UTF-8, not JSON, no 'data', a duplicate id, empty), which only fixing the file cures."""

    def __init__(self, message, skippable=False):
        super().__init__(message)
        self.skippable = skippable


class _BadExample(Exception):
    """One question is unusable; `kind` is the stats counter it goes to."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


SKIP_KINDS = ("missing_field", "bad_answer")
PARQUET_MAGIC = b"PAR1"  # the first (and last) 4 bytes of every parquet file
# Rows turned into Python dicts at a time: a SQuAD row is ~1 KB, so about 1 MB of objects beside the file's bytes.
PARQUET_BATCH_ROWS = 1000
PARQUET_COLUMNS = ("id", "context", "question")  # plus "answers" (not needed for questions to answer) and "title"
_WHITESPACE = re.compile(rb"\s*")
# Files are read whole, and a file is parsed in about twice its size: beyond this many (decompressed) bytes a file
# is refused as soon as they have been read (a gzip bomb's 3 GB line took 6.3 GB). SQuAD 2.0 train is 40 MB; NQ's
# train set converted with the guide's defaults is well under 1 GB. QA_MAX_INPUT_GB raises it for a bigger one.
MAX_INPUT_BYTES = 2 << 30
MAX_INPUT_ENV = "QA_MAX_INPUT_GB"
# One JSON Lines record (a question and its context): NQ's longest documents are ~7 MB of HTML, their contexts less.
MAX_LINE_BYTES = 64 << 20
# Only for SKIP_KINDS: skipping cures nothing else (a duplicate id, invalid JSON, not UTF-8).
FIX_HINT = "fix the data, or read it with skip_bad=True (run_squad.py --skip_bad_examples) to skip and count such questions"


# ---------------------------------------------------------------------------------------------
# Pure per-record conversion
# ---------------------------------------------------------------------------------------------
def _field(record, name, types, kind_if_missing="missing_field"):
    if not isinstance(record, dict):
        raise _BadExample("missing_field", f"expected a JSON object, got {type(record).__name__}")
    if name not in record or record[name] is None:
        raise _BadExample(kind_if_missing, f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        raise _BadExample("missing_field", f"field {name!r} should be {_type_names(types)}, got {type(value).__name__} {value!r:.60}")
    return value


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _type_names(types):
    return " or ".join(t.__name__ for t in _as_tuple(types))


def _qas_id(record):
    value = _field(record, "id", (str, int))
    return str(value)


def parse_answers(raw):
    """A list of (text, answer_start) from either answer layout; raises _BadExample."""
    if isinstance(raw, dict):  # HuggingFace datasets: {"text": [...], "answer_start": [...]}
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list):
            raise _BadExample("missing_field", "answers as a dict needs lists 'text' and 'answer_start'")
        if len(texts) != len(starts):
            raise _BadExample("bad_answer", f"answers has {len(texts)} texts but {len(starts)} answer_start values")
        pairs = list(zip(texts, starts))
    elif isinstance(raw, list):
        pairs = []
        for i, answer in enumerate(raw):
            if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
                raise _BadExample("missing_field", f"answer {i} needs fields 'text' and 'answer_start', got {answer!r:.80}")
            pairs.append((answer["text"], answer["answer_start"]))
    else:
        raise _BadExample("missing_field", f"field 'answers' should be a list or a dict of lists, got {type(raw).__name__}")
    for i, (text, start) in enumerate(pairs):
        if not isinstance(text, str):
            raise _BadExample("bad_answer", f"answer {i} text should be a string, got {text!r:.60}")
        if not isinstance(start, int) or isinstance(start, bool):
            raise _BadExample("bad_answer", f"answer {i} answer_start should be an integer, got {start!r:.60}")
    return pairs


def make_example(qa, context, title, check_answers=True, questions_only=False):
    """One question record (+ its paragraph's context and title) -> SquadExample.

    questions_only: the record may have no 'answers' (questions to answer, not gold data).
    Raises _BadExample with a message (without the file/place, which the caller adds)."""
    qas_id = _qas_id(qa)
    try:
        question = _field(qa, "question", str)
        if questions_only and qa.get("answers") is None:
            pairs = []
        else:
            pairs = parse_answers(_field(qa, "answers", (list, dict)))
        impossible = qa.get("is_impossible")
        if impossible is None:
            impossible = not pairs  # SQuAD 1.1 and HF datasets have no is_impossible field
        elif impossible not in (True, False):  # also accepts 0 and 1
            raise _BadExample("missing_field", f"field 'is_impossible' should be true or false, got {impossible!r:.40}")
        impossible = bool(impossible)
        if impossible and pairs:
            raise _BadExample("bad_answer", f"is_impossible is true but it has {len(pairs)} answer(s); SQuAD 2.0 keeps those under 'plausible_answers'")
        answers = []
        for i, (text, start) in enumerate(pairs):
            if check_answers and context[start : start + len(text)] != text:
                found = context[start : start + len(text)] if 0 <= start < len(context) else "<outside the context>"
                raise _BadExample(
                    "bad_answer",
                    f"answer {i} {text!r:.80} is not at answer_start {start} (the context there reads {found!r:.80}, "
                    f"context length {len(context)})",
                )
            answers.append(Answer(text, start))
        kind = _answer_type(qa, impossible)
    except _BadExample as exc:
        raise _BadExample(exc.kind, f"question id {qas_id!r}: {exc}") from None
    return SquadExample(qas_id, title, question, context, tuple(answers), impossible, kind, qa.get(ANSWER_TYPE_KEY) is not None)


def _answer_type(qa, impossible):
    """The question's "answer_type" (qa.answer_type), checked against is_impossible; its default when absent."""
    kind = qa.get(ANSWER_TYPE_KEY)
    if kind is None:
        return default_type(impossible)
    try:
        check_type(kind, impossible)
    except ValueError as exc:
        raise _BadExample("bad_answer", str(exc)) from None
    return kind


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def _loads(data, where):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            raise SquadFormatError(f"{where}: not UTF-8 text ({exc}); convert the file to UTF-8 "
                                   "(e.g. iconv -f latin1 -t utf-8)") from None
        raise SquadFormatError(f"{where}: not valid JSON ({exc}); is the file complete?") from None


def _detect(path, data):
    """('squad-json', parsed document) or ('jsonl', None), from the content."""
    # Offsets instead of slices and splits: a nested file written on one line (json.dump) is one
    # big "first line", and every copy of it would add the file's size to the peak memory.
    start = _WHITESPACE.match(data).end()
    if start == len(data):
        shown = "0 bytes" if not data else f"{len(data)} bytes of whitespace"
        raise SquadFormatError(f"{path}: the file is empty ({shown}): no questions in it; write it again (was it "
                               "cut short?) or give another file")
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    try:
        first = orjson.loads(memoryview(data)[start:end])
    except orjson.JSONDecodeError:
        first = None
    only_line = _WHITESPACE.fullmatch(data, end) is not None  # nothing but whitespace after the first line
    if isinstance(first, dict) and "data" not in first:
        if only_line and "question" not in first:  # one object that is neither a question nor a SQuAD document
            raise SquadFormatError(f"{path}: a JSON object without a 'data' list (keys: {', '.join(list(first)[:6])}): "
                                   "SQuAD JSON needs {\"data\": [...]}, JSON Lines one question object a line")
        return "jsonl", None
    document = first if isinstance(first, dict) and only_line else _loads(data, path)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise SquadFormatError(
            f"{path}: neither SQuAD JSON (an object with a 'data' list) nor JSON Lines (one question object a line)"
        )
    return "squad-json", document


def _iter_nested(path, document):
    """(place, qa record, context, title) for every question of a nested SQuAD document."""
    for a, article in enumerate(document["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise SquadFormatError(f"{path}: data[{a}] has no 'paragraphs' list; each article needs one")
        title = article.get("title") or ""
        for p, paragraph in enumerate(article["paragraphs"]):
            place = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise SquadFormatError(f"{path}: {place} has no 'context' string; each paragraph needs one")
            if not isinstance(paragraph.get("qas"), list):
                raise SquadFormatError(f"{path}: {place} has no 'qas' list; each paragraph needs one")
            for q, qa in enumerate(paragraph["qas"]):
                yield f"{place}.qas[{q}]", qa, paragraph["context"], title


def _iter_jsonl(path, data):
    # Line by line from a view of the bytes, not data.split(): that would copy the whole file.
    for lineno, line in enumerate(io.BytesIO(data), start=1):
        if len(line) > MAX_LINE_BYTES:
            raise SquadFormatError(f"{path}: line {lineno}: longer than {size_text(MAX_LINE_BYTES)} (the limit for one "
                                   "question and its context, MAX_LINE_BYTES in qa/squad_io.py): not a SQuAD record")
        if not line.strip():
            continue
        record = _loads(line, f"{path}: line {lineno}")
        if not isinstance(record, dict):
            raise SquadFormatError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}")
        context = record.get("context")
        if not isinstance(context, str):
            context = None  # reported as a missing field of this question below
        yield f"line {lineno}", record, context, record.get("title") or ""


def _iter_parquet(path, data):
    """(place, record, context, title) for every row of a parquet file in the hub's squad_v2 layout."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SquadFormatError(f"{path}: a parquet file, and reading parquet needs pyarrow: "
                               "pip install -r requirements.txt (or convert it to JSON Lines)") from None
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        names = parquet.schema_arrow.names
        missing = [name for name in PARQUET_COLUMNS if name not in names]
        if missing:
            raise SquadFormatError(f"{path}: a parquet file without column(s) {', '.join(missing)} (it has "
                                   f"{', '.join(names[:8])}): expected the hub's squad_v2 layout, id, title, context, "
                                   "question, answers{text[], answer_start[]}")
        index = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                context = record.get("context")
                yield f"row {index}", record, context if isinstance(context, str) else None, record.get("title") or ""
                index += 1
    except (pa.ArrowException, OSError) as exc:
        raise SquadFormatError(f"{path}: not a readable parquet file ({exc}); is it complete? Download it again") from None


def read_squad(path, skip_bad=False, stats=None, check_answers=True, questions_only=False):
    """Read a SQuAD file (nested JSON, JSON Lines or the hub's parquet; gzip and s3:// work) into SquadExamples.

    skip_bad: skip questions with a missing field or a bad answer instead of raising; the
        counts go to `stats`.
    stats: a dict filled with 'format', 'questions' (seen), 'examples' (kept), 'answerable',
        'unanswerable', 'skipped', and per reason 'missing_field' and 'bad_answer'.
    check_answers: verify context[answer_start:answer_start+len(text)] == text (the metrics
        CLI turns this off: the official evaluation never looks at answer_start).
    questions_only: questions may come without 'answers' (scripts/ask.py: questions to answer).
    """
    path = os.fspath(path)
    counts = {"format": None, "questions": 0, "examples": 0, "answerable": 0, "unanswerable": 0, "skipped": 0}
    counts.update({kind: 0 for kind in SKIP_KINDS})
    data = read_input(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark
    if data.startswith(PARQUET_MAGIC):
        fmt, records = "parquet", _iter_parquet(path, data)
    else:
        fmt, document = _detect(path, data)
        records = _iter_nested(path, document) if fmt == "squad-json" else _iter_jsonl(path, data)
    counts["format"] = fmt

    examples, seen, contexts, titles = [], {}, {}, {}
    for place, qa, context, title in records:
        counts["questions"] += 1
        try:
            if context is None:
                raise _BadExample("missing_field", f"question id {qa.get('id')!r}: missing field 'context'")
            example = make_example(qa, context, title, check_answers=check_answers, questions_only=questions_only)
        except _BadExample as exc:
            if not skip_bad:
                raise SquadFormatError(f"{path}: {place}: {exc}; {FIX_HINT}", skippable=True) from None
            counts[exc.kind] += 1
            counts["skipped"] += 1
            continue
        if example.qas_id in seen:
            raise SquadFormatError(
                f"{path}: {place}: duplicate question id {example.qas_id!r} (first seen at {seen[example.qas_id]}); ids must be unique"
            )
        seen[example.qas_id] = place
        # Intern: every question of a paragraph (and every repeat of a paragraph) shares one string.
        shared_context = contexts.setdefault(example.context, example.context)
        shared_title = titles.setdefault(example.title, example.title)
        if shared_context is not example.context or shared_title is not example.title:
            example = dataclasses.replace(example, context=shared_context, title=shared_title)
        examples.append(example)
        counts["answerable" if example.has_answer else "unanswerable"] += 1
    counts["examples"] = len(examples)
    if stats is not None:
        stats.update(counts)
    return examples


def read_input(path):
    """The bytes of a data file, within MAX_INPUT_BYTES (or $QA_MAX_INPUT_GB GiB); SquadFormatError beyond it, or at
    once when its first block shows it is no text (a NUL byte: a sparse or zero-filled file, UTF-16, a binary)."""
    limit, name = MAX_INPUT_BYTES, "a data file read whole, MAX_INPUT_BYTES in qa/squad_io.py"
    if os.environ.get(MAX_INPUT_ENV):
        try:
            gib = float(os.environ[MAX_INPUT_ENV])
            if not 0 < gib < 2**33:  # also nan and inf (int() of them raises ValueError, OverflowError)
                raise ValueError(gib)
            limit, name = int(gib * 2**30), f"{MAX_INPUT_ENV}={os.environ[MAX_INPUT_ENV]}"
        except ValueError:
            raise SquadFormatError(f"{MAX_INPUT_ENV}={os.environ[MAX_INPUT_ENV]!r}: expected a positive, finite number "
                                   "of GiB, e.g. 8") from None
    try:
        return read_bytes(path, limit, f"{name}; {MAX_INPUT_ENV}=N raises it to N GiB",
                          check_start=lambda head: _check_text(path, head))
    except InputTooLarge as exc:
        raise SquadFormatError(str(exc)) from None


def _check_text(path, head):
    if head.startswith(PARQUET_MAGIC):
        return
    nul = head.find(b"\x00")
    if nul >= 0:
        raise SquadFormatError(f"{path}: byte {nul} is a NUL (0x00): not UTF-8 JSON text (a sparse or zero-filled file, "
                               "UTF-16, or a binary file?); give the SQuAD JSON, JSON Lines or parquet file")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _answers_json(example):
    return [{"text": a.text, "answer_start": a.start} for a in example.answers]


def _typed_json(example):
    """{"answer_type": ...} for a question read with one (read -> write keeps it), else {}."""
    return {ANSWER_TYPE_KEY: example.answer_type} if example.typed else {}


def to_squad_json(examples, version="v2.0"):
    """Nested SQuAD JSON (a dict); consecutive questions with the same title and context share
    an article and a paragraph, so read -> write keeps the original grouping."""
    data = []
    for ex in examples:
        if not data or data[-1]["title"] != ex.title:
            data.append({"title": ex.title, "paragraphs": []})
        paragraphs = data[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != ex.context:
            paragraphs.append({"context": ex.context, "qas": []})
        paragraphs[-1]["qas"].append(
            {"id": ex.qas_id, "question": ex.question, "answers": _answers_json(ex), "is_impossible": ex.is_impossible,
             **_typed_json(ex)}
        )
    return {"version": version, "data": data}


def write_squad(examples, path, version="v2.0"):
    """Write examples atomically: JSON Lines when `path` ends in .jsonl, nested SQuAD JSON otherwise."""
    path = os.fspath(path)
    with atomic_write(path, "wb") as f:
        if path.endswith(".jsonl"):
            for ex in examples:
                record = {
                    "id": ex.qas_id,
                    "title": ex.title,
                    "context": ex.context,
                    "question": ex.question,
                    "answers": _answers_json(ex),
                    "is_impossible": ex.is_impossible,
                    **_typed_json(ex),
                }
                f.write(orjson.dumps(record) + b"\n")
        else:
            f.write(orjson.dumps(to_squad_json(examples, version)))


def read_json(path):
    """Any JSON file (predictions, null odds), with an error that names the file."""
    data = read_input(os.fspath(path))
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SquadFormatError(f"{path}: not valid JSON ({exc})") from None
