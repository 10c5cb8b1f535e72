"""Real servers on 127.0.0.1 for tests: a static HTTP file server with Range support, and moto S3.

    from servers import RangeServer, moto_server, s3  # noqa: F401  (importing the fixtures enables them)

    with RangeServer({"/v1.0/dev/nq-dev-00.jsonl.gz": data}) as server:
        server.url                     # "http://127.0.0.1:PORT"
        server.drop_after[path] = 1000 # the first GET of path sends 1000 bytes, then closes the connection
        server.hash_headers[path] = ["md5=..."]  # replaces the x-goog-hash headers sent for path
        server.delay = 0.05            # seconds slept after each chunk_size bytes (a slow link)
        server.ignore_range = True     # answer Range requests with 200 and the whole file, as some mirrors do
        server.requests                # [Request(method, path, range), ...] as received, in order

    def test_upload(s3):               # s3: a boto3 client on a moto server; AWS_* env set for the code under test
        s3.create_bucket(Bucket="b")

Files are served like Google Cloud Storage serves them: `Content-Length`, `Accept-Ranges`,
206 + `Content-Range` for `Range: bytes=N-` / `bytes=N-M`, 416 past the end, 404 for unknown
paths, and two `x-goog-hash` headers (crc32c and md5 of the whole object, base64) on every
GET and HEAD, ranged or not. The crc32c here is a plain bitwise implementation, written apart
from the code under test so that the two check each other.
"""

import base64
import collections
import hashlib
import http.server
import threading
import time

import pytest

Request = collections.namedtuple("Request", "method path range")


def reference_crc32c(data):
    """crc32c (Castagnoli), bit by bit with a 256-entry table: slow, obviously right."""
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ (0x82F63B78 * (value & 1))
        table.append(value)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def goog_hash_headers(data):
    """The two x-goog-hash header values GCS sends for an object with this content."""
    crc = base64.b64encode(reference_crc32c(data).to_bytes(4, "big")).decode()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return [f"crc32c={crc}", f"md5={md5}"]


class RangeServer:
    """A ThreadingHTTPServer on 127.0.0.1, port chosen by the OS, serving `files` {url path: bytes}."""

    def __init__(self, files, *, goog_hash=True, chunk_size=16 * 1024, delay=0.0):
        self.files = dict(files)
        self.hash_headers = {path: goog_hash_headers(data) for path, data in self.files.items()} if goog_hash else {}
        self.drop_after = {}
        self.chunk_size = chunk_size
        self.delay = delay
        self.ignore_range = False
        self.requests = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = None

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def requests_for(self, path, method="GET"):
        with self._lock:
            return [request for request in self.requests if request.path == path and request.method == method]

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # Exempt from C901 (15 > 12): the count adds up the nested Handler's methods (which close over `server`).
    def _handler_class(self):  # noqa: C901
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a drop is a real close

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(send_body=False)

            def do_GET(self):
                self._serve(send_body=True)

            def _serve(self, send_body):
                range_header = self.headers.get("Range")
                with server._lock:
                    server.requests.append(Request(self.command, self.path, range_header))
                    drop_at = server.drop_after.pop(self.path, None) if send_body else None
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                first, last = 0, len(data) - 1
                status = 200
                if range_header and not server.ignore_range:
                    spec = range_header.removeprefix("bytes=")
                    low, _, high = spec.partition("-")
                    first = int(low)
                    last = min(int(high), len(data) - 1) if high else len(data) - 1
                    if first >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(last - first + 1))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
                for value in server.hash_headers.get(self.path, []):
                    self.send_header("x-goog-hash", value)
                self.end_headers()
                if not send_body:
                    return
                body = memoryview(data)[first:last + 1]
                if drop_at is not None:
                    body = body[:drop_at]
                try:
                    for start in range(0, len(body), server.chunk_size):
                        self.wfile.write(body[start:start + server.chunk_size])
                        self.wfile.flush()
                        if server.delay:
                            time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (killed, or timed out): nothing to do
                self.close_connection = True

        return Handler


@pytest.fixture(scope="session")
def moto_server():
    """A moto S3 server on 127.0.0.1 (random port) for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch):
    """A boto3 S3 client on the moto server, with AWS_ENDPOINT_URL and fake credentials in the environment
    (so code under test, and subprocesses started with os.environ, talk to moto too)."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
