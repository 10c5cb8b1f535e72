"""The hub's Natural Questions parquet files read as NQ jsonl lines.

`google-research-datasets/natural_questions` (configs `default` and `dev`: `dev/validation-0000N-of-00007.parquet`)
holds one row per question: `id` (a string), `document{html, title, url, tokens{token, is_html, start_byte,
end_byte}}`, `question{text, tokens}`, `long_answer_candidates{start_token, end_token, start_byte, end_byte,
top_level}` and `annotations{id, long_answer{start_token, end_token, start_byte, end_byte, candidate_index},
short_answers{start_token, end_token, start_byte, end_byte, text}, yes_no_answer}` (a class label: 0 = NO,
1 = YES, -1 = NONE). A sequence of dicts is stored as a struct of parallel lists. Each row becomes the dict
its record in the original full-format jsonl parses to (the same keys, sorted as there; the short answers'
`text`, which the hub adds, is left out), so the converter, predict_nq and the official evaluation give the
same results on either file:

    for row_number, line in iter_lines("dev/validation-00000-of-00007.parquet"):   # or s3://bucket/key
        record = parse_line(line)                    # qa.nq.reader, as for a jsonl line

qa.nq.reader.iter_lines hands a parquet file (found by its magic bytes) to this module; a row's number
(from 1) is its "line". pyarrow is imported only here, when a parquet file is read (the package stays
standard-library only for the jsonl.gz shards). Memory stays bounded: rows are read BATCH_ROWS at a time
through a READ_BUFFER stream, never a whole row group at once (a row is ~465 KB). s3:// objects are read
with ranged GETs through boto3 (the client and endpoint of qa.storage).

Files written by the original loading script (older `datasets` caches and their parquet exports) have no
token byte offsets, no long-answer candidates and no candidate_index: they are refused, naming the file
and the missing columns, since neither the converter nor the official evaluation can work without them.
"""

import argparse
import contextlib
import glob
import io
import os
import sys

from qa.nq.reader import InputError, dumps
from qa.storage import expand_inputs, is_s3, s3_client, split_s3

PARQUET_MAGIC = b"PAR1"  # the first (and last) 4 bytes of every parquet file
BATCH_ROWS = 16  # rows decoded at once: ~7 MB of Python objects at ~465 KB a row
READ_BUFFER = 1 << 20  # column data is read through a buffered stream of this size, not a whole row group at once
YES_NO = {0: "NO", 1: "YES", -1: "NONE"}
# Every leaf column the full NQ format needs, as dotted paths through structs and lists.
SPAN = ("start_token", "end_token", "start_byte", "end_byte")
REQUIRED_COLUMNS = (
    "id", "document.html", "document.title", "document.url",
    *(f"document.tokens.{name}" for name in ("token", "is_html", "start_byte", "end_byte")),
    "question.text", "question.tokens",
    *(f"long_answer_candidates.{name}" for name in (*SPAN, "top_level")),
    "annotations.id", *(f"annotations.long_answer.{name}" for name in (*SPAN, "candidate_index")),
    *(f"annotations.short_answers.{name}" for name in SPAN), "annotations.yes_no_answer",
)
# The jsonl record keys a reader may ask for -> the top-level parquet columns that hold them.
COLUMNS_OF_FIELD = {"example_id": "id", "annotations": "annotations", "document_html": "document",
                    "document_title": "document", "document_url": "document", "document_tokens": "document",
                    "question_text": "question", "question_tokens": "question",
                    "long_answer_candidates": "long_answer_candidates"}


def is_parquet(head):
    return head[:4] == PARQUET_MAGIC


def _pyarrow(uri):
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InputError(f"{uri} is a parquet file, and reading parquet needs pyarrow: pip install -r requirements.txt "
                         "(or make setup); the jsonl.gz shards need nothing beyond python3") from None
    return pyarrow, pyarrow.parquet


class S3RangeFile(io.RawIOBase):
    """A seekable read-only view of an s3:// object, each read one ranged GET (parquet reads its footer first)."""

    def __init__(self, uri):
        super().__init__()
        self.uri = uri
        self.bucket, self.key = split_s3(uri)
        self.client = s3_client()
        self.size = self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"]
        self.position = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer):
        count = min(len(buffer), self.size - self.position)
        if count <= 0:
            return 0
        byte_range = f"bytes={self.position}-{self.position + count - 1}"
        data = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=byte_range)["Body"].read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def leaf_columns(schema, pyarrow):
    """The dotted paths of a schema's leaf columns, through structs and lists (document.tokens.start_byte)."""
    paths = []

    def walk(prefix, data_type):
        while pyarrow.types.is_list(data_type) or pyarrow.types.is_large_list(data_type):
            data_type = data_type.value_type
        if pyarrow.types.is_struct(data_type):
            for index in range(data_type.num_fields):
                child = data_type.field(index)
                walk(f"{prefix}.{child.name}", child.type)
        else:
            paths.append(prefix)

    for field in schema:
        walk(field.name, field.type)
    return paths


def check_schema(uri, schema, pyarrow):
    """InputError naming the file and every full-format column it lacks (an older cache: no byte offsets or candidates)."""
    present = set(leaf_columns(schema, pyarrow))
    missing = []
    for column in REQUIRED_COLUMNS:  # a whole missing top-level column is named once (long_answer_candidates)
        name = column if column.split(".")[0] in schema.names else column.split(".")[0]
        if column not in present and name not in missing:
            missing.append(name)
    if missing:
        raise InputError(
            f"{uri}: not the hub's Natural Questions parquet: it lacks {', '.join(missing)}. Files written by the "
            "original loading script (older `datasets` caches) have no token byte offsets or long-answer candidates; "
            "download the current google-research-datasets/natural_questions parquet files or the jsonl.gz shards (make data)")


def _rows(value):
    """A sequence of dicts, stored as a struct of parallel lists ({name: [..]}) or as a list of dicts -> list of dicts."""
    if isinstance(value, dict):
        names = list(value)
        return [dict(zip(names, items)) for items in zip(*(value[name] for name in names))]
    return value


def _span(span, extra=()):
    return {name: span[name] for name in sorted((*SPAN, *extra))}


def _annotation(annotation):
    yes_no = annotation["yes_no_answer"]
    if yes_no not in YES_NO:
        raise ValueError(f"yes_no_answer {yes_no!r} is not a class label of NQ (0 = NO, 1 = YES, -1 = NONE)")
    return {"annotation_id": int(annotation["id"]), "long_answer": _span(annotation["long_answer"], ("candidate_index",)),
            "short_answers": [_span(short) for short in _rows(annotation["short_answers"])], "yes_no_answer": YES_NO[yes_no]}


def _document_fields(document):
    tokens = document["tokens"]  # ~10k a page: zipped straight from the parallel lists (twice as fast as via _rows)
    columns = (tokens["end_byte"], tokens["is_html"], tokens["start_byte"], tokens["token"]) if isinstance(tokens, dict) else \
        zip(*((token["end_byte"], token["is_html"], token["start_byte"], token["token"]) for token in tokens))
    tokens = [{"end_byte": end, "html_token": is_html, "start_byte": start, "token": token}
              for end, is_html, start, token in zip(*columns)]
    return {"document_html": document["html"], "document_title": document["title"], "document_tokens": tokens,
            "document_url": document["url"]}


def record_from_row(row):
    """One hub row (as pyarrow's to_pylist gives it; any subset of its top-level columns) -> the NQ record dict."""
    record = {}
    if "annotations" in row:
        record["annotations"] = [_annotation(annotation) for annotation in _rows(row["annotations"])]
    if "document" in row:
        record.update(_document_fields(row["document"]))
    if "id" in row:
        record["example_id"] = int(row["id"])
    if "long_answer_candidates" in row:
        record["long_answer_candidates"] = [_span(candidate, ("top_level",)) for candidate in _rows(row["long_answer_candidates"])]
    if "question" in row:
        record["question_text"] = row["question"]["text"]
        record["question_tokens"] = row["question"]["tokens"]
    return record


def open_parquet(uri):
    """A pyarrow ParquetFile of a local path or s3:// URI, read through a READ_BUFFER stream; InputError if unreadable."""
    pyarrow, parquet = _pyarrow(uri)
    source = io.BufferedReader(S3RangeFile(uri), READ_BUFFER) if is_s3(uri) else uri
    try:
        return parquet.ParquetFile(source, buffer_size=READ_BUFFER, pre_buffer=False)
    except (pyarrow.ArrowException, OSError) as exc:
        raise InputError(f"{uri}: not a readable parquet file ({exc}); is it complete? Download it again") from None


def iter_records(uri, fields=None):
    """(row number from 1, record dict) of every row; `fields`: only these record keys (and the columns holding them)."""
    pyarrow, _ = _pyarrow(uri)
    columns = None if fields is None else sorted({COLUMNS_OF_FIELD[field] for field in fields})
    with contextlib.closing(open_parquet(uri)) as parquet:
        check_schema(uri, parquet.schema_arrow, pyarrow)
        row_number = 0
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except (pyarrow.ArrowException, OSError) as exc:
                raise InputError(f"{uri}: cannot be read after row {row_number} ({exc}); download it again") from None
            if batch is None:
                return
            for row in batch.to_pylist():
                row_number += 1
                try:
                    record = record_from_row(row)
                except (TypeError, ValueError, KeyError, AttributeError) as exc:
                    raise InputError(f"{uri} row {row_number}: not an NQ record ({type(exc).__name__}: {exc})") from None
                yield row_number, record


def iter_lines(uri, fields=None):
    """(row number from 1, the record as one compact JSON line) of every row, as qa.nq.reader.iter_lines yields them."""
    for row_number, record in iter_records(uri, fields):
        yield row_number, dumps(record)


# ---------------------------------------------------------------------------------------------
# The files of a split in a copy of the hub's dataset (make data NQ_PARQUET=...)
# ---------------------------------------------------------------------------------------------
SPLIT_FILES = {"train": "train-", "dev": "validation-"}


def split_files(source, split):
    """The sorted parquet files of `split` (train-*.parquet / validation-*.parquet) anywhere under a local folder or an
    s3:// prefix. The validation split is in both configs (default/ and dev/): when it is in several folders, the
    one named dev is taken (the same records twice would be duplicates), else they are refused by name."""
    if is_s3(source):
        found = [uri for uri in expand_inputs([source.rstrip("/") + "/"]) if uri.endswith(".parquet")]
    else:
        if not os.path.isdir(source):
            raise InputError(f"{source}: not a folder; give the folder of the hub's natural_questions parquet files "
                             "(the one holding default/ and dev/)")
        found = glob.glob(os.path.join(glob.escape(source), "**", "*.parquet"), recursive=True)
    files = sorted(path for path in found if os.path.basename(path).startswith(SPLIT_FILES[split]))
    folders = sorted({os.path.dirname(path) for path in files})
    if len(folders) > 1:
        named_dev = [folder for folder in folders if os.path.basename(folder) == "dev"]
        if not named_dev:
            raise InputError(f"{source}: {SPLIT_FILES[split]}*.parquet files in several folders ({', '.join(folders)}); give one of them")
        files = [path for path in files if os.path.dirname(path) == named_dev[0]]
    if not files:
        raise InputError(f"{source}: no {SPLIT_FILES[split]}*.parquet file under it; give the folder of the hub's "
                         "google-research-datasets/natural_questions (its default/train-*.parquet, dev/validation-*.parquet)")
    return files


def main(argv=None):
    """python -m qa.nq.parquet --source DIR --split train --list-file data/nq/nq_train.inputs: what `make data` converts."""
    parser = argparse.ArgumentParser(prog="python -m qa.nq.parquet", description=main.__doc__)
    parser.add_argument("--source", required=True, help="a folder or s3:// prefix holding the hub's natural_questions parquet files")
    parser.add_argument("--split", choices=tuple(SPLIT_FILES), required=True)
    parser.add_argument("--list-file", required=True, help="write the split's files here, one a line (kept when unchanged)")
    args = parser.parse_args(argv)
    from qa.nq.download import write_list_file

    try:
        write_list_file(args.list_file, split_files(args.source, args.split))
    except (InputError, FileNotFoundError) as exc:
        print(f"nq parquet: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
