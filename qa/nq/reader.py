"""Reading Natural Questions records: streamed lines of local or s3:// files, gzip or plain, and the
full format's lines parsed without their big token array.

    for line_number, line in iter_lines("data/nq/raw/dev/nq-dev-00.jsonl.gz"):   # or s3://bucket/key
        record = parse_line(line)          # full format: document_tokens left as raw JSON (RAW_TOKENS)

Standard library only, so that scripts/nq_to_squad.py runs from a bare python3 (DESIGN: a user
converts data on a laptop), with two optional speedups pinned in requirements.txt and guarded here.
Measured on 60 real full-format records (nq-dev-10 x 6, 44 MB, one core): convert 0.125 s with isal
vs 0.172 s with zlib (reading lines alone 730 vs 406 MB/s); orjson vs json 0.131 vs 0.145 s (only
~10 %: parse_line leaves the big token array unparsed, so little JSON is parsed at all).
"""

import contextlib
import json
import re
import zlib

from qa.nq.annotation import as_span
from qa.storage import GZIP_MAGIC, open_raw

try:
    from isal import isal_zlib as inflate_zlib
except ImportError:  # pragma: no cover - isal is in requirements.txt
    inflate_zlib = zlib

try:
    import orjson

    loads = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError

    def dumps(obj):
        """Compact JSON bytes, non-ASCII kept."""
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - orjson is in requirements.txt
    loads = json.loads
    JSONDecodeError = json.JSONDecodeError

    def dumps(obj):
        """Compact JSON bytes, non-ASCII kept."""
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


READ_CHUNK = 1 << 20  # 1 MiB reads: NQ full lines average ~740 KB (up to tens of MB)
INFLATE_CHUNK = 8 << 20  # at most this much inflated at once: 1 MiB of a gzip bomb would be ~1 GB in one piece
# A line longer than this is refused before it is held whole (a 3 GB line took 6.3 GB of memory): real full-format
# NQ records average 0.74 MB (the 10 real dev records in ../shared/data are all under 2 MB), so 128 MB is
# far above any record, and a line of it costs a few hundred MB at most.
MAX_LINE_BYTES = 128 << 20


class BadRecord(ValueError):
    """A record that cannot be read or converted; the caller adds the file and line."""


class InputError(ValueError):
    """Inputs that cannot be NQ data (a directory, no records, a damaged line): the message names the
    file (and line) and says what to do; the scripts exit 2."""


def unparsable(line, exc):
    """Why a line does not parse: invalid UTF-8 (named by its byte) or malformed JSON."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad_bytes:
        return (f"not valid UTF-8 at byte {bad_bytes.start} of the line ({bad_bytes.reason}: "
                f"{bad_bytes.object[bad_bytes.start : bad_bytes.end]!r}); the file is damaged: re-download it")
    return f"malformed JSON ({exc})"


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
                record = loads(line[: key.start()] + b'"_document_tokens_cut":0' + line[end:])
            except JSONDecodeError:
                record = None  # reported by the full parse below, with its real position
            if isinstance(record, dict):
                record[RAW_TOKENS] = line[key.end() - 1 : end]
                return record
    return loads(line)


class LazyTokens:
    """The tokens of one long answer (or candidate), parsed from the raw token array.

    Found by their byte offsets (a long answer's start_byte/end_byte are its first and last
    token's); the parsed slice is checked (count, first start, last end) and any surprise falls
    back to parsing the whole array, so the result is always that of a full parse."""

    def __init__(self, raw, long_answer):
        self.raw, self.long_answer = raw, as_span(long_answer)
        self.offset, self.items, self.all = self.long_answer.start_token, None, None
        self._load()

    def _load(self):
        la = self.long_answer
        # A span without byte offsets (a hand-made dict) cannot be found: the whole array is parsed.
        start = _find_number_field(self.raw, b"start_byte", la.start_byte) if la.start_byte >= 0 else -1
        if start >= 0 and la.end_byte >= 0:
            first = self.raw.rfind(b"{", 0, start)
            last = _find_number_field(self.raw, b"end_byte", la.end_byte, max(first, 0))
            close = OBJECT_GAP_RE.search(self.raw, last) if last >= 0 else None
            if first >= 0 and close:
                try:
                    items = loads(b"[" + self.raw[first : close.start() + 1] + b"]")
                except JSONDecodeError:
                    items = None
                if (items and len(items) == la.end_token - la.start_token and items[0]["start_byte"] == la.start_byte
                        and items[-1]["end_byte"] == la.end_byte):
                    self.items = items
                    return
        self.all = loads(self.raw)

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
class LineTooLong(Exception):
    """A line longer than MAX_LINE_BYTES; args[0], when given, is how many complete lines before it in its chunk."""


class TruncatedInput(Exception):
    """The compressed stream ended early; `line` is the first line that could not be read."""


def _split_lines(chunks):
    """bytes chunks -> complete lines (without b"\\n"); a final unterminated line is yielded last. Raises
    LineTooLong when a line grows past MAX_LINE_BYTES (it is never held whole)."""
    pending, pending_bytes = [], 0
    for chunk in chunks:
        if b"\n" not in chunk:
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes > MAX_LINE_BYTES:
                raise LineTooLong()
            continue
        lines = chunk.split(b"\n")
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending, pending_bytes = [], 0
        tail = lines.pop()
        if tail:
            pending.append(tail)
            pending_bytes = len(tail)
        if max(map(len, lines)) > MAX_LINE_BYTES or pending_bytes > MAX_LINE_BYTES:
            raise LineTooLong(next((i for i, line in enumerate(lines) if len(line) > MAX_LINE_BYTES), len(lines)))
        yield from lines
    if pending:
        yield b"".join(pending)


def _inflate(decompressor, data):
    """The inflated bytes of `data`, in pieces of at most INFLATE_CHUNK (a gzip bomb never inflates at once)."""
    while True:
        out = decompressor.decompress(data, INFLATE_CHUNK)
        if out:
            yield out
        data = decompressor.unconsumed_tail
        if not data and (len(out) < INFLATE_CHUNK or decompressor.eof):
            return


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
            yield from _inflate(decompressor, data)
        except (zlib.error, inflate_zlib.error) as exc:
            raise TruncatedInput(f"corrupt gzip data ({exc})") from exc
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


def iter_lines(uri, fields=None):
    """Yield (line_number, line bytes) of the non-blank lines of a local or s3:// file, gzip
    detected by magic bytes. A parquet file (the hub's, by its magic bytes) is read by qa.nq.parquet
    (pyarrow needed): one JSON line a row, numbered from 1; `fields` (record keys, e.g. ("example_id",
    "annotations")) limits the columns it reads. A jsonl line is always whole.

    Raises TruncatedInput(message) after the last complete line of a truncated gzip; a partial
    last line of a truncated file is never yielded. Raises InputError, naming the file and line, for a
    line longer than MAX_LINE_BYTES (no NQ record is: a damaged or hostile file), before holding it."""
    with contextlib.closing(open_raw(uri)) as raw:
        first = raw.read(READ_CHUNK)
        if first[:4] == b"PAR1":  # parquet's magic: the hub's Natural Questions files
            raw.close()
            from qa.nq import parquet

            yield from parquet.iter_lines(uri, fields)
            return
        chunks = _gzip_chunks(raw, first) if first[:2] == GZIP_MAGIC else _plain_chunks(raw, first)
        line_number = 0
        try:
            for line in _split_lines(_complete_or_truncated(chunks)):
                line_number += 1
                if line.strip():
                    yield line_number, line
        except LineTooLong as exc:
            line_number += 1 + (exc.args[0] if exc.args else 0)
            raise InputError(f"{uri} line {line_number}: longer than {MAX_LINE_BYTES >> 20} MB (the limit for one NQ "
                             "record, MAX_LINE_BYTES in qa/nq/reader.py): not an NQ record (a damaged or hostile file?)") from None
