"""Where bytes come from and go to: local files written atomically, and s3:// URIs.

Standard library only; boto3 is imported lazily, when an s3:// URI is used. The S3 endpoint
can be overridden for S3-compatible stores (and for tests, a moto server on 127.0.0.1) with
the standard `AWS_ENDPOINT_URL` environment variable, which boto3 reads itself.

    with atomic_write("out.json", "w") as f:   # writes out.json.tmp-PID, renames on success
        f.write(text)
    with open_input("s3://bucket/nq-dev-00.jsonl.gz") as raw:   # streamed, not downloaded
        ...
"""

import contextlib
import glob
import gzip
import os

GZIP_MAGIC = b"\x1f\x8b"


def is_s3(uri):
    return str(uri).startswith("s3://")


def split_s3(uri):
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = str(uri)[5:].partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket name (expected s3://bucket/key)")
    return bucket, key


def s3_client():
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise SystemExit("s3:// paths need boto3: pip install boto3") from exc
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Open `path.tmp-PID` for writing; rename it to `path` only if the block succeeds.

    A crash or an exception leaves `path` as it was (absent, or the previous complete file)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def expand_inputs(patterns):
    """Paths, globs and s3:// URIs (an s3 prefix ending in '/' or containing '*' is listed)."""
    out = []
    for pattern in patterns:
        pattern = str(pattern)
        if is_s3(pattern):
            out.extend(_expand_s3(pattern))
        elif glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"{pattern}: no file matches this pattern")
            out.extend(matches)
        else:
            if not os.path.exists(pattern):
                raise FileNotFoundError(f"{pattern}: no such file")
            out.append(pattern)
    return out


def _expand_s3(uri):
    import fnmatch

    bucket, key = split_s3(uri)
    if not (key.endswith("/") or glob.has_magic(key) or key == ""):
        return [uri]
    prefix = key.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
    client = s3_client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if key.endswith("/") or key == "" or fnmatch.fnmatchcase(obj["Key"], key):
                keys.append(obj["Key"])
    if not keys:
        raise FileNotFoundError(f"{uri}: no object matches")
    return [f"s3://{bucket}/{k}" for k in sorted(keys)]


def open_raw(uri):
    """A binary stream of the stored bytes (no decompression); s3 objects are streamed."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    return open(uri, "rb")


class _Peekable:
    """Wraps a binary stream so its first bytes can be inspected without consuming them."""

    def __init__(self, raw):
        self.raw = raw
        self.head = b""

    def peek(self, n):
        while len(self.head) < n:
            chunk = self.raw.read(n - len(self.head))
            if not chunk:
                break
            self.head += chunk
        return self.head[:n]

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)

    def readable(self):
        return True

    def close(self):
        self.raw.close()


@contextlib.contextmanager
def open_input(uri):
    """A binary stream of the decompressed content; gzip is detected by its magic bytes."""
    raw = _Peekable(open_raw(uri))
    try:
        if raw.peek(2) == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream
        else:
            yield raw
    finally:
        raw.close()
