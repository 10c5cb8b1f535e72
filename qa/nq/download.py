"""Downloads of Google Natural Questions v1.0 and SQuAD 2.0: resumable, parallel, retried, verified.

    jobs = nq_jobs("dev", [0, 1], NQ_BASE_URL)          # or simplified_jobs(...), squad_jobs(["dev"], SQUAD_BASE_URL)
    results = download_all(jobs, options)               # options: out/dest, workers, retries, retry_wait, timeout
    print(summary_table(results))

The command line is scripts/download_nq.py.

Where files go: NQ shards to OUT/{train,dev}/nq-{split}-NN.jsonl.gz, the simplified set to
OUT/simplified/, SQuAD files to OUT/. With --dest s3://bucket/prefix the same relative keys
are used under the prefix (AWS_ENDPOINT_URL selects an S3-compatible endpoint).

How a local file is made, so that an interrupted run loses nothing and a finished file is
always a verified one:
  * bytes go to NAME.part; a later run (or a retry after a dropped connection, with
    exponential backoff) continues it with an HTTP Range request;
  * when the last byte is in, the size is checked against the server's (Content-Length or
    the Content-Range total), the md5 and crc32c in Google Cloud Storage's `x-goog-hash`
    header when the server sends one (they cover the whole object, so the .part prefix from
    an earlier run is hashed again before continuing), and the git blob id of the official
    SQuAD files; only then is NAME.part renamed to NAME. A file that fails verification is
    deleted, and the message says so: the next run starts it from scratch. A .part that already
    holds every byte (a run stopped just before the rename) is verified, not fetched again.
  * "complete" therefore means "NAME exists": it can only exist after a verified rename. A
    re-run still sends one cheap HEAD request per file and re-downloads when the server's
    size differs (the dataset was updated, or a file was copied in by hand); when the
    server cannot be reached the existing file is kept. SQuAD files are checked against
    their blob id locally instead (40 MB, a fraction of a second).
--list-file FILE writes the paths (or s3:// URIs) of the selected files, one per line, once they
are all complete, and leaves FILE untouched (same mtime) when the list is the same as before:
`make data` converts exactly the selected shards and converts again only when the selection or
a shard changed.
S3 uploads stream from the HTTP response (multipart upload, nothing on local disk); the
hashes are checked before the upload is completed, so a corrupt object never appears. An
interrupted S3 upload restarts from the beginning of that file.

Needs only the standard library, plus google-crc32c to check the crc32c that Google's bucket sends
(pinned in requirements.txt; imported only when a server sends a crc32c), tqdm for progress bars
(optional) and boto3 (only for --dest s3://).
"""

import base64
import dataclasses
import hashlib
import http.client
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from qa import storage

try:
    from tqdm import tqdm
except ImportError:  # progress bars are optional
    tqdm = None

# --- Where the data lives ---------------------------------------------------------------------
# NQ v1.0 in Google's public bucket, as listed on https://ai.google.com/research/NaturalQuestions/download
# (gsutil -m cp -R gs://natural_questions/v1.0 ...); the same objects are served over HTTPS by
# storage.googleapis.com. The simplified train set sits beside it in v1.0-simplified/ (same page).
NQ_BASE_URL = "https://storage.googleapis.com/natural_questions/v1.0"
NQ_SIMPLIFIED_FILE = "simplified-nq-train.jsonl.gz"
SHARD_COUNTS = {"train": 50, "dev": 5}  # nq-train-00..49 (about 800 MB each), nq-dev-00..04
# SQuAD 2.0 from its official site (https://rajpurkar.github.io/SQuAD-explorer/).
SQUAD_BASE_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
# Git blob ids of the official files (sha1 of b"blob <size>\0" + content), as the site's git repository records them.
SQUAD_BLOB_IDS = {
    "train-v2.0.json": "312f804dbf85888fdce3299eaa58d6ec3f0bb6b7",  # 42,123,633 bytes
    "dev-v2.0.json": "c6fa1a89a12c90b7fbfa8f6fb437cfff27af41ca",  # 4,370,528 bytes
}

# --- Defaults, in one place --------------------------------------------------------------------
CHUNK_BYTES = 1 << 20  # largest read/write/hash unit: 1 MiB keeps memory flat
DEFAULT_WORKERS = 4  # files downloaded at once; GCS serves each connection at roughly 20-100 MB/s
DEFAULT_RETRIES = 5  # per file, with exponential backoff: waits of 2, 4, 8, 16, 32 s
DEFAULT_RETRY_WAIT = 2.0  # seconds before the first retry; doubled each time, capped below
MAX_RETRY_WAIT = 60.0
DEFAULT_TIMEOUT = 60.0  # seconds without a byte before a connection counts as dropped
HEAD_TIMEOUT = 15.0  # the skip check's HEAD request is not retried; it only decides whether to re-download
S3_PART_BYTES = 64 << 20  # multipart part size: 64 MiB -> at most 16 parts (of 10,000 allowed) for a 1 GB shard
S3_CONCURRENCY = 4  # parts uploaded at once per file


# --- crc32c (Castagnoli), as in GCS's x-goog-hash --------------------------------------------
# google-crc32c (pinned in requirements.txt) is Google's C library: 8,700 MB/s on one core here, where
# the numpy lane-parallel crc32c it replaced ran at 194-233 MB/s and a table loop in Python at 8 MB/s
# (64 MiB hashed in 1 MiB chunks, as the downloader reads). It is imported only when a server sends a
# crc32c, so a bare python3 still downloads from servers that send none (the SQuAD site, plain
# mirrors); GCS sends one, and then the message says to install it. No fallback: hashing NQ's 41 GB
# in Python would cost about 85 min of CPU, and google-crc32c itself falls back to such code (with a
# RuntimeWarning) on a platform it has no wheel for.
CRC32C_INSTALL = "pip install google-crc32c (or pip install -r requirements.txt)"


def _google_crc32c():
    try:
        import google_crc32c
    except ImportError:
        raise DownloadError(f"the server sends a crc32c hash (x-goog-hash) and checking it needs google-crc32c: "
                            f"{CRC32C_INSTALL}, then run the same command again") from None
    return google_crc32c


def crc32c(data, crc=0):
    """crc32c of `data` (bytes-like), continuing from `crc` (the crc32c of the bytes before), like zlib.crc32."""
    return _google_crc32c().extend(crc, bytes(data))


def crc32c_backend():
    """What checks crc32c here, in words, for the first line a run prints."""
    try:
        import google_crc32c
    except ImportError:
        return f"google-crc32c missing (needed when a server sends a crc32c: {CRC32C_INSTALL})"
    return "google-crc32c (C)" if google_crc32c.implementation == "c" else "google-crc32c (pure Python, slow)"


def git_blob_id(content):
    """The id git gives a file's content: sha1 of b"blob <size>\\0" + content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


# --- What to download ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    name: str  # file name, used in messages
    url: str
    relpath: str  # where it goes under --out or the --dest prefix
    hint: str  # what to check when the server answers 404
    blob_id: str = None  # expected git blob id (SQuAD), or None


def parse_shards(spec, count):
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7-9' -> [0, 3, 7, 8, 9]; 'all' -> range(count). Sorted, unique."""
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(count))
    shards = set()
    for piece in spec.split(","):
        piece = piece.strip()
        low, dash, high = piece.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())):
            raise ValueError(f"bad shard spec {spec!r}: '{piece}' is not a number or a range like 0-4 "
                             f"(use e.g. 0-4, 0,3,7-9 or all)")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ValueError(f"bad shard spec {spec!r}: range '{piece}' runs backwards (write {last}-{first})")
        if last >= count:
            raise ValueError(f"shard {last} does not exist: this split has {count} shards, 0-{count - 1}")
        shards.update(range(first, last + 1))
    return sorted(shards)


def nq_jobs(split, shards, base_url):
    hint = (f"check --base-url (now {base_url}) and --shards: the {split} split has "
            f"shards 00-{SHARD_COUNTS[split] - 1:02d}")
    jobs = []
    for shard in shards:
        name = f"nq-{split}-{shard:02d}.jsonl.gz"
        jobs.append(Job(name, f"{base_url}/{split}/{name}", f"{split}/{name}", hint))
    return jobs


def simplified_base_url(base_url):
    """v1.0-simplified/ sits beside v1.0/ in Google's bucket; another mirror is assumed to keep both in one folder."""
    return base_url + "-simplified" if base_url.endswith("/v1.0") else base_url


def simplified_jobs(base_url):
    hint = f"check --simplified-base-url (now {base_url})"
    return [Job(NQ_SIMPLIFIED_FILE, f"{base_url}/{NQ_SIMPLIFIED_FILE}", f"simplified/{NQ_SIMPLIFIED_FILE}", hint)]


def squad_jobs(splits, base_url):
    hint = f"check --squad-base-url (now {base_url})"
    jobs = []
    for split in splits:
        name = f"{split}-v2.0.json"
        jobs.append(Job(name, f"{base_url}/{name}", name, hint, blob_id=SQUAD_BLOB_IDS[name]))
    return jobs


# --- Verification ---------------------------------------------------------------------------
class DownloadError(Exception):
    """A failure retrying will not fix; the message says what to do."""


class TransientError(Exception):
    """A dropped connection, a timeout, a 5xx: retried with backoff."""


def parse_goog_hash(values):
    """['crc32c=n03x6A==', 'md5=Ojk9...'] or one 'crc32c=...,md5=...' -> {'crc32c': b'...', 'md5': b'...'}."""
    hashes = {}
    for value in values or []:
        for item in value.split(","):
            kind, _, encoded = item.strip().partition("=")
            if kind in ("crc32c", "md5") and encoded:
                try:
                    hashes[kind] = base64.b64decode(encoded, validate=True)
                except ValueError as exc:
                    raise DownloadError(f"x-goog-hash {item!r} is not valid base64 ({exc})") from exc
    return hashes


class Digests:
    """md5, crc32c and git blob id of the bytes seen so far, and how many there were."""

    def __init__(self, total, want_blob, want_crc32c):
        self.total = total
        self.count = 0
        self.md5 = hashlib.md5()
        self._crc32c = _google_crc32c() if want_crc32c else None  # DownloadError now, before a byte is written
        self.crc = 0 if want_crc32c else None
        self.blob = None
        if want_blob:
            if total is None:
                raise DownloadError("the server did not send the file size (Content-Length), "
                                    "so the git blob id cannot be checked while streaming")
            self.blob = hashlib.sha1(b"blob %d\0" % total)

    def update(self, data):
        self.count += len(data)
        self.md5.update(data)
        if self._crc32c is not None:
            self.crc = self._crc32c.extend(self.crc, bytes(data))
        if self.blob is not None:
            self.blob.update(data)

    def update_from_file(self, path, n_bytes):
        """Hash the first n_bytes of a .part file left by an earlier attempt or run."""
        with open(path, "rb") as handle:
            while self.count < n_bytes:
                data = handle.read(min(CHUNK_BYTES, n_bytes - self.count))
                if not data:
                    raise DownloadError(f"{path} shrank while being read")
                self.update(data)

    def problems(self, expected_hashes, blob_id):
        """Mismatches against the server's size and hashes, as readable strings (empty = verified)."""
        found = []
        if self.total is not None and self.count != self.total:
            found.append(f"size mismatch: server says {self.total} bytes, got {self.count}")
        if "md5" in expected_hashes and self.md5.digest() != expected_hashes["md5"]:
            found.append(f"md5 mismatch: x-goog-hash says {base64.b64encode(expected_hashes['md5']).decode()}, "
                         f"the bytes give {base64.b64encode(self.md5.digest()).decode()}")
        if "crc32c" in expected_hashes:
            got = self.crc.to_bytes(4, "big")
            if got != expected_hashes["crc32c"]:
                found.append(f"crc32c mismatch: x-goog-hash says {base64.b64encode(expected_hashes['crc32c']).decode()}, "
                             f"the bytes give {base64.b64encode(got).decode()}")
        if blob_id is not None and self.blob.hexdigest() != blob_id:
            found.append(f"git blob id mismatch: expected {blob_id} (the official file), got {self.blob.hexdigest()}")
        return found


# --- HTTP ------------------------------------------------------------------------------------
class RangeNotSatisfiable(Exception):
    pass


def open_url(job, offset, timeout):
    """GET job.url from byte `offset`; HTTP errors become DownloadError (4xx) or TransientError (5xx, network)."""
    headers = {"User-Agent": "download_nq.py", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(job.url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            raise RangeNotSatisfiable(exc.headers.get("Content-Range", "")) from exc
        if exc.code == 404:
            raise DownloadError(f"HTTP 404 Not Found: {job.url}; {job.hint}") from exc
        if exc.code in (408, 429) or exc.code >= 500:
            raise TransientError(f"HTTP {exc.code} {exc.reason} from {job.url}") from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason}: {job.url}; {job.hint}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise TransientError(f"cannot fetch {job.url}: {getattr(exc, 'reason', exc)}") from exc


def response_span(response, offset):
    """(first byte, total size or None) of a GET response; a 200 to a Range request starts at 0."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # "bytes 100-999/1000"
        try:
            first = int(content_range.split()[1].split("-")[0])
            total = content_range.rsplit("/", 1)[1]
            total = None if total == "*" else int(total)
        except (IndexError, ValueError) as exc:
            raise TransientError(f"unreadable Content-Range {content_range!r}") from exc
        if first != offset:
            raise TransientError(f"asked for bytes from {offset}, the server sent from {first}")
        if total is None and length is not None:
            total = first + int(length)
        return first, total
    return 0, int(length) if length is not None else None


def server_size(job):
    """The size the server reports for job.url (HEAD), or None when it cannot say."""
    request = urllib.request.Request(job.url, method="HEAD", headers={"User-Agent": "download_nq.py",
                                                                       "Accept-Encoding": "identity"})
    try:
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length is not None else None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return None


def range_total(content_range):
    """The N of a 416's `Content-Range: bytes */N`, or None."""
    total = content_range.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def server_hashes(job):
    """The x-goog-hash values of a HEAD of job.url ({} when the server sends none); network errors are transient."""
    request = urllib.request.Request(job.url, method="HEAD", headers={"User-Agent": "download_nq.py",
                                                                       "Accept-Encoding": "identity"})
    try:
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT) as response:
            return parse_goog_hash(response.headers.get_all("x-goog-hash"))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise TransientError(f"cannot ask {job.url} for its hashes: {getattr(exc, 'reason', exc)}") from exc


def read_chunk(response):
    """Up to CHUNK_BYTES of what has arrived (read1: no waiting for a whole MiB on a slow link)."""
    try:
        return response.read1(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(f"connection lost: {exc}") from exc


# --- Progress and messages ------------------------------------------------------------------
_PRINT_LOCK = threading.Lock()


def say(message):
    with _PRINT_LOCK:
        if tqdm is not None:
            tqdm.write(message, file=sys.stdout)
        else:
            print(message, flush=True)


class Progress:
    """One tqdm bar per file (bytes, rate, ETA), at its own line in parallel mode; silent without tqdm or a TTY."""

    def __init__(self, name, position):
        self.bar = None
        if tqdm is not None:
            self.bar = tqdm(desc=name, position=position, unit="B", unit_scale=True, unit_divisor=1024,
                            leave=False, dynamic_ncols=True, disable=None, file=sys.stderr)

    def start(self, total, done):
        if self.bar is not None:
            self.bar.reset(total=total)
            self.bar.update(done)

    def update(self, n_bytes):
        if self.bar is not None:
            self.bar.update(n_bytes)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def with_retries(job, options, attempt_once):
    """Call attempt_once() until it returns; TransientError is retried with exponential backoff."""
    attempt = 0
    while True:
        try:
            return attempt_once()
        except TransientError as exc:
            attempt += 1
            if attempt > options.retries:
                raise DownloadError(f"gave up after {options.retries} retries: {exc}; run the same command again later "
                                    f"(finished files are skipped, a partial one continues), or raise --retries") from exc
            wait = min(options.retry_wait * 2 ** (attempt - 1), MAX_RETRY_WAIT)
            say(f"{job.name}: {exc}; retry {attempt}/{options.retries} in {wait:g} s")
            time.sleep(wait)


# --- To local disk ---------------------------------------------------------------------------
def download_to_file(job, path, options, progress):
    """Fetch job.url into path via path.part (resumed with Range), verify, rename. Returns the size."""
    part = path + ".part"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state = {"digests": None, "hashes": {}}

    def attempt_once():
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        try:
            response = open_url(job, offset, options.timeout)
        except RangeNotSatisfiable as exc:
            total = range_total(str(exc))
            if offset and offset == total:
                # An earlier run got every byte but stopped before the rename: verify the .part, no new download.
                say(f"{job.name}: {part} already holds all {total} bytes; verifying it")
                state["hashes"] = server_hashes(job)
                state["digests"] = Digests(total, want_blob=job.blob_id is not None, want_crc32c="crc32c" in state["hashes"])
                state["digests"].update_from_file(part, total)
                return
            # The .part is longer than the server's file: start that file again.
            say(f"{job.name}: {part} does not fit the server's file (HTTP 416); starting it again")
            os.remove(part)
            raise TransientError("range not satisfiable") from None
        with response:
            first, total = response_span(response, offset)
            if offset and first == 0:
                say(f"{job.name}: the server ignored the Range request; downloading from the start")
            elif offset:
                say(f"{job.name}: resuming at byte {offset} of {total}")
            hashes = state["hashes"] = parse_goog_hash(response.headers.get_all("x-goog-hash"))
            digests = state["digests"]
            if (digests is None or digests.count != first or digests.total != total
                    or ("crc32c" in hashes and digests.crc is None)):
                digests = state["digests"] = Digests(total, want_blob=job.blob_id is not None, want_crc32c="crc32c" in hashes)
                if first:
                    digests.update_from_file(part, first)  # the hashes cover the whole file
            progress.start(total, first)
            with open(part, "r+b" if first else "wb") as out:
                out.seek(first)
                out.truncate()
                while data := read_chunk(response):
                    out.write(data)
                    digests.update(data)
                    progress.update(len(data))
            if total is not None and digests.count < total:
                raise TransientError(f"connection closed after {digests.count} of {total} bytes")

    with_retries(job, options, attempt_once)
    digests = state["digests"]
    problems = digests.problems(state["hashes"], job.blob_id)
    if problems:
        os.remove(part)
        raise DownloadError(f"verification failed: {'; '.join(problems)}. Deleted {part}, so the next run "
                            f"starts this file from scratch; if it fails again, {job.hint}")
    os.replace(part, path)
    return digests.count


def local_is_complete(job, path):
    """(complete?, reason). The final name only ever appears after verification, so existing is nearly enough."""
    if not os.path.exists(path):
        return False, ""
    size = os.path.getsize(path)
    if job.blob_id is not None:
        with open(path, "rb") as handle:
            if git_blob_id(handle.read()) == job.blob_id:
                return True, f"already complete ({size} bytes, git blob id verified), skipping"
        return False, f"{path} exists but is not the official file (git blob id differs); downloading it again"
    remote = server_size(job)
    if remote is None:
        return True, f"already complete ({size} bytes; the server could not be asked for its size), skipping"
    if remote == size:
        return True, f"already complete ({size} bytes), skipping"
    return False, f"{path} has {size} bytes but the server's file has {remote}; downloading it again"


# --- To S3 -----------------------------------------------------------------------------------
class VerifyingReader:
    """A file-like view of an HTTP response for boto3's upload_fileobj that hashes what passes through
    and raises at the end of the stream if the bytes are short or do not match: boto3 then aborts the
    multipart upload, so a corrupt object is never created."""

    def __init__(self, response, digests, hashes, blob_id, progress):
        self.response, self.digests, self.hashes, self.blob_id = response, digests, hashes, blob_id
        self.progress = progress
        self.pending = b""

    def read(self, size=-1):
        while size is None or size < 0 or len(self.pending) < size:
            data = read_chunk(self.response)
            if not data:
                self._check_end()
                break
            self.digests.update(data)
            self.progress.update(len(data))
            self.pending += data
        if size is None or size < 0:
            size = len(self.pending)
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def _check_end(self):
        total = self.digests.total
        if total is not None and self.digests.count < total:
            raise TransientError(f"connection closed after {self.digests.count} of {total} bytes")
        problems = self.digests.problems(self.hashes, self.blob_id)
        if problems:
            raise DownloadError(f"verification failed: {'; '.join(problems)}; the upload was aborted, "
                                f"no object was written")


def s3_object_size(client, bucket, key):
    import botocore.exceptions

    try:
        return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def download_to_s3(job, uri, options, progress):
    """Stream job.url into s3://bucket/key (multipart), verified before the upload completes. Returns the size."""
    from boto3.s3.transfer import TransferConfig

    bucket, key = storage.split_s3(uri)
    client = storage.s3_client()
    config = TransferConfig(multipart_threshold=S3_PART_BYTES, multipart_chunksize=S3_PART_BYTES,
                            max_concurrency=S3_CONCURRENCY)

    def attempt_once():
        response = open_url(job, 0, options.timeout)
        with response:
            _, total = response_span(response, 0)
            hashes = parse_goog_hash(response.headers.get_all("x-goog-hash"))
            digests = Digests(total, want_blob=job.blob_id is not None, want_crc32c="crc32c" in hashes)
            progress.start(total, 0)
            client.upload_fileobj(VerifyingReader(response, digests, hashes, job.blob_id, progress),
                                  bucket, key, Config=config)
            return digests.count

    size = with_retries(job, options, attempt_once)
    stored = s3_object_size(client, bucket, key)
    if stored != size:
        client.delete_object(Bucket=bucket, Key=key)
        raise DownloadError(f"{uri} holds {stored} bytes after the upload, expected {size}; deleted it, run again")
    return size


# --- One file, all files -------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    name: str
    size: int
    status: str  # downloaded | skipped | FAILED
    message: str = ""


def destination(options, job):
    if options.dest:
        return options.dest.rstrip("/") + "/" + job.relpath
    return os.path.join(options.out, *job.relpath.split("/"))


def run_job(job, options, position):
    target = destination(options, job)
    progress = Progress(job.name, position)
    try:
        if storage.is_s3(target):
            bucket, key = storage.split_s3(target)
            stored = s3_object_size(storage.s3_client(), bucket, key)
            if stored is not None:
                remote = server_size(job)
                if remote is None or remote == stored:
                    say(f"{job.name}: already in {target} ({stored} bytes), skipping")
                    return Result(job.name, stored, "skipped")
                say(f"{job.name}: {target} has {stored} bytes but the server's file has {remote}; uploading again")
            size = download_to_s3(job, target, options, progress)
        else:
            complete, reason = local_is_complete(job, target)
            if complete:
                say(f"{job.name}: {reason}")
                return Result(job.name, os.path.getsize(target), "skipped")
            if reason:
                say(f"{job.name}: {reason}")
            size = download_to_file(job, target, options, progress)
    except DownloadError as exc:
        say(f"{job.name}: FAILED: {exc}")
        return Result(job.name, 0, "FAILED", str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the others; said in full
        say(f"{job.name}: FAILED: {type(exc).__name__}: {exc}")
        return Result(job.name, 0, "FAILED", f"{type(exc).__name__}: {exc}")
    finally:
        progress.close()
    say(f"{job.name}: done ({size} bytes, verified) -> {target}")
    return Result(job.name, size, "downloaded")


def download_all(jobs, options):
    """Run the jobs on options.workers threads; results in job order."""
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        futures = [pool.submit(run_job, job, options, index % options.workers) for index, job in enumerate(jobs)]
        return [future.result() for future in futures]


def summary_table(results):
    width = max([len("file")] + [len(result.name) for result in results])
    lines = [f"{'file':<{width}}  {'bytes':>14}  status", f"{'-' * width}  {'-' * 14}  ----------"]
    for result in results:
        lines.append(f"{result.name:<{width}}  {result.size:>14,}  {result.status}")
    failed = sum(result.status == "FAILED" for result in results)
    lines.append(f"{len(results)} files: {len(results) - failed} ok, {failed} failed")
    return "\n".join(lines)


def write_list_file(path, targets):
    """Write the targets one per line, atomically, and only when the content differs (keeps the mtime)."""
    content = "".join(target + "\n" for target in targets)
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                say(f"{path}: the same {len(targets)} file(s) as before, left as it is")
                return
    except FileNotFoundError:
        pass
    with storage.atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(content)
    say(f"{path}: lists the {len(targets)} file(s)")
