"""Where bytes come from and go to: local files written atomically, and s3:// URIs.

Standard library only (scripts/nq_to_squad.py imports it from a bare python3); boto3 is imported
lazily, when an s3:// URI is used. The S3 endpoint
can be overridden for S3-compatible stores (and for tests, a moto server on 127.0.0.1) with
the standard `AWS_ENDPOINT_URL` environment variable, which boto3 reads itself.

    with atomic_write("out.json", "w") as f:   # writes out.json.tmp-PID, renames on success
        f.write(text)
    with open_input("s3://bucket/nq-dev-00.jsonl.gz") as raw:   # streamed, not downloaded
        ...
    with atomic_folder("out/checkpoint-9", tmp="out/.tmp-checkpoint-9-PID") as tmp:   # a whole folder
        write_files_into(tmp)          # then COMPLETE (every file's size and blake2b) is written, and renamed
    folder_problem("out/checkpoint-9", "COMPLETE", check_hashes=True)   # None, or why it is not to be trusted
"""

import contextlib
import errno
import glob
import gzip
import hashlib
import json
import logging
import os
import shutil

GZIP_MAGIC = b"\x1f\x8b"
logger = logging.getLogger(__name__)


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


class InputTooLarge(ValueError):
    """A file larger than its reader accepts (read_bytes); the message names the file and the limit."""


READ_BLOCK = 1 << 24  # read_bytes reads 16 MiB at a time: a file over the limit costs the limit, not its size


def read_bytes(uri, limit, limit_name, check_start=None):
    """The (decompressed) bytes of `uri`, a block at a time, refused beyond `limit` bytes.

    InputTooLarge names the file and `limit_name` (where the limit is set) as soon as more than `limit` bytes
    came out: a gzip bomb (one 3 GB line) stops there instead of taking 6 GB. check_start(first block) may raise
    to refuse the content before the rest is read (a 2 GB sparse file of zeros: at once, not after 4.5 GB)."""
    blocks, total = [], 0
    with open_input(uri) as stream:
        while True:
            block = stream.read(READ_BLOCK)
            if not block:
                break
            if not blocks and check_start is not None:
                check_start(block)
            total += len(block)
            if total > limit:
                what = " once decompressed" if isinstance(stream, gzip.GzipFile) else ""
                raise InputTooLarge(f"{uri}: more than {size_text(limit)}{what} (the limit of {limit_name}): is it the "
                                    "right file (not a damaged or hostile one)?")
            blocks.append(block)
    return b"".join(blocks)


def size_text(n):
    """Bytes in binary units: '2 GiB', '64 MiB', '1000 bytes'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def human_size(n):
    """Bytes in decimal units for logs and disk messages: '1.23 GB' from 100 MB up, else '12.3 MB'."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------
# Folders that are complete or absent: checkpoints and feature caches
# ---------------------------------------------------------------------------------------------
# blake2b over 64 KiB blocks: about 1 GB/s on one core (as fast as 1 MiB blocks), so the ~0.7 GB of an
# albert-xlarge checkpoint (weights + AdamW state) adds under a second to its save and to its verification; the small block keeps
# the feature cache build's peak memory at one chunk of arrays (tests/test_features.py).
HASH_BLOCK = 1 << 16
MARKER = "COMPLETE"       # written last into a folder that is complete (a checkpoint, a feature cache)
TMP_PREFIX = ".tmp-"      # .tmp-<name>-<pid>: being written by process <pid>
TRASH_PREFIX = ".trash-"  # .trash-<name>-<pid>: being deleted by process <pid>


def file_digest(path):
    """blake2b (hex) of a local file's bytes."""
    digest = hashlib.blake2b()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path, directory=False):
    """fsync a file or a folder (its entries); a full disk is raised, other fsync failures ignored."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - directories cannot be opened on some systems
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - e.g. fsync on a directory unsupported
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
    finally:
        os.close(fd)


def write_marker(folder, marker, extra=None):
    """Write `folder/marker` last: {"files": {relative path: {"size", "blake2b"}}, **extra}, fsynced."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            full = os.path.join(root, name)
            fsync_path(full)
            files[os.path.relpath(full, folder)] = {"size": os.path.getsize(full), "blake2b": file_digest(full)}
    files.pop(marker, None)
    with open(os.path.join(folder, marker), "w", encoding="utf-8") as f:
        json.dump({**(extra or {}), "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    fsync_path(folder, directory=True)
    return files


def read_marker(folder, marker):
    """The marker's content, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(folder, marker), encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and isinstance(content.get("files"), dict) else None


def folder_problem(folder, marker, check_hashes=False):
    """None when every file the marker lists is there with its size (and, with check_hashes, its blake2b),
    else a short phrase saying what is wrong. Markers of the first format list sizes only (name: size)."""
    if not os.path.isdir(folder):
        return "no such folder"
    content = read_marker(folder, marker)
    if content is None:
        return f"no valid {marker} marker" if os.path.exists(os.path.join(folder, marker)) else f"no {marker} marker"
    for name, expected in sorted(content["files"].items()):
        expected = expected if isinstance(expected, dict) else {"size": expected}
        path = os.path.join(folder, name)
        try:
            size = os.path.getsize(path)
        except OSError:
            return f"{name} is missing"
        if size != expected.get("size"):
            return f"{name} has {size} bytes, {expected.get('size')} when it was written"
        if check_hashes and "blake2b" in expected and file_digest(path) != expected["blake2b"]:
            return f"{name} does not match the hash recorded when it was written (damaged or changed since)"
    return None


def discard(path):
    """Delete a folder; when `path` is a symbolic link, only the link (what it points to is not ours to delete)."""
    if os.path.islink(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_tree(path):
    """Rename out of sight first (.trash-<name>-<pid>), then delete: a half-deleted folder never looks complete.
    A symbolic link is removed, not the folder it points to."""
    parent, name = os.path.split(os.path.normpath(path))
    trash = os.path.join(parent, f"{TRASH_PREFIX}{name}-{os.getpid()}")
    discard(trash)  # a leftover of this process: a link there would make the rename fail (NotADirectoryError)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, trash)
    discard(trash)


def tmp_sibling(final):
    """`<parent>/.tmp-<name>-<pid>`: where a folder is written before it is renamed to `final`."""
    parent, name = os.path.split(os.path.normpath(final))
    return os.path.join(parent, f"{TMP_PREFIX}{name}-{os.getpid()}")


def _move_aside(final, trash):
    """Rename `final` (a folder, or a symbolic link to one) to `trash`; False when it cannot be moved (a mount
    point: EBUSY; a read-only parent: EROFS, EACCES, EPERM). A full disk is raised."""
    discard(trash)
    try:
        os.replace(final, trash)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        logger.warning("%s cannot be replaced (%s): the new copy is saved beside it instead", final,
                       exc.strerror or exc)
        return False
    if os.path.islink(trash):
        logger.warning("%s was a symbolic link to %s: replaced by a folder here (the linked folder is left as it is)",
                       final, os.readlink(trash))
    return True


@contextlib.contextmanager
def atomic_folder(final, marker=MARKER, extra=None, replace=True, tmp=None, placed=None):
    """Yield a temporary folder beside `final` (`tmp`, default `tmp_sibling(final)`; its name must end in
    -PID); when the block succeeds, write the marker (every file's size and hash) last, and rename the
    folder to `final`. On an exception the temporary folder is removed (a kill leaves it for
    `reap_abandoned`) and `final` is untouched. With replace=False an existing complete `final`
    (another process finished first, before or while this one renamed) is kept and the new folder dropped. `extra`: a dict, or a
    callable returning one, merged into the marker.

    Replacing `final` never fails halfway: a symbolic link there is replaced (the folder it points to is left
    alone); a `final` that cannot be moved (a read-only mount) is kept and the new folder is saved beside it as
    `final.resaved-PID` (a warning says so). `placed`: a dict that gets {"path": where the folder was put}."""
    tmp = tmp or tmp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        if marker is not None:  # None: a folder without a marker (an evaluation's), only put in place whole
            write_marker(tmp, marker, extra() if callable(extra) else extra)
        trash = None
        if os.path.lexists(final):
            if not replace and folder_problem(final, marker) is None:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            # The same step saved twice (SIGTERM right after --save_steps): the old folder is renamed aside, the
            # new one put in its place, and only then the old one deleted, so a kill never leaves neither.
            parent, name = os.path.split(os.path.normpath(final))
            trash = os.path.join(parent, f"{TRASH_PREFIX}{name}-{os.getpid()}")
            if not _move_aside(final, trash):
                final, trash = f"{os.path.normpath(final)}.resaved-{os.getpid()}", None
                discard(final)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            # Another process put a complete `final` in place after the check above (two runs building the same
            # feature cache at once): keep theirs, as when it was there before.
            if replace or exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or folder_problem(final, marker) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None:  # the incomplete folder this one moved aside
                discard(trash)
            return
        fsync_path(os.path.dirname(os.path.abspath(final)), directory=True)
        if trash is not None:
            discard(trash)
        if placed is not None:
            placed["path"] = final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def put_in_place(staged, final):
    """Rename the folder `staged` to `final`; a previous `final` is renamed aside first and deleted after, so
    `final` is always the old folder or the new one, whole."""
    parent, name = os.path.split(os.path.normpath(final))
    trash = os.path.join(parent, f"{TRASH_PREFIX}{name}-{os.getpid()}")
    discard(trash)
    if os.path.lexists(final):
        os.replace(final, trash)
    os.replace(staged, final)
    fsync_path(parent or ".", directory=True)
    discard(trash)
    return final


def free_bytes(path):
    """Free bytes of the filesystem that holds `path` (or would: its nearest existing parent); None if unknown."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def folder_bytes(path):
    """Total size of the files under `path` (0 when it is gone)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def no_space_message(folder, needed, what, hint, at_least=False):
    """One line for a full disk: the folder, the space needed (`at_least`: a lower bound) and what is free now."""
    free = free_bytes(folder)
    need = f"{'more than ' if at_least else '~'}{size_text(needed)}" if needed else "more space"
    have = "an unknown amount" if free is None else size_text(free)
    return f"not enough free disk in {folder} for {what}: need {need}, have {have}; nothing half-written is kept: {hint}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def abandoned_folders(parent):
    """Temporary folders in `parent` whose process is gone (killed while writing or deleting): .tmp-NAME-PID,
    NAME.tmp-PID (feature caches) and .trash-NAME-PID."""
    if not os.path.isdir(parent):
        return []
    stale = []
    for name in sorted(os.listdir(parent)):
        if not (TMP_PREFIX in name or name.startswith(TRASH_PREFIX)):
            continue
        pid = name.rsplit("-", 1)[-1]
        path = os.path.join(parent, name)
        if os.path.isdir(path) and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            stale.append(path)
    return stale


def reap_abandoned(parent):
    """Remove what `abandoned_folders` finds (each may be a whole checkpoint in size); returns the paths."""
    stale = abandoned_folders(parent)
    for path in stale:
        discard(path)
    return stale
