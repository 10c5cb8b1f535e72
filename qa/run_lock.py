"""One training run per output folder: the run holds an OS lock on `run_dir.LOCK_FILE` while it writes there.

    lock = run_lock.hold("outputs/nq-albert")   # FolderBusy("... in use by pid 4242 on host gpu-7 ...") if taken
    ...                                         # train; readers (status, report, eval, ask) never take the lock
    lock.release()                              # or the process ends: the OS drops it (SIGKILL included)
    run_lock.holder("outputs/nq-albert")        # {"pid", "host", "run_id", "since"} of the live holder, or None

The lock is fcntl.flock on a file that stays in the folder: the kernel releases it when the process ends however
it ends, so a killed run never leaves a stale lock (the file's text, naming the last holder, is then only a
note). Under torchrun only global rank 0 takes it (run_squad.py): it is the process that writes the run's
record, and on nodes sharing a disk a lock taken by each node's local rank 0 would refuse the run itself.
flock over NFS is emulated with POSIX byte-range locks (Linux 2.6.12+), which other clients see.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import time

from qa.run_dir import LOCK_FILE

# How long a start retries a lock held by a reader's probe (`holder` holds it for microseconds); a run's lock is
# held for hours, so a start that still finds it taken after this is refused.
PROBE_GRACE_S = 1.0


# flock's errors on filesystems without locks (some FUSE mounts; NFS without its lock daemon).
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class LocksUnsupported(OSError):
    """The folder's filesystem cannot lock files: the run goes on unprotected (run_squad.py warns)."""


class FolderBusy(RuntimeError):
    """Another live process holds the folder; the message names it (pid, host) and what to do."""


class RunLock:
    """The held lock of one folder (an open file descriptor: closing it releases the lock)."""

    def __init__(self, output_dir, fd, record):
        self.output_dir, self.fd, self.record = output_dir, fd, record

    def note_run_id(self, run_id):
        """Add the run's id (args.run_id, recorded in args.json) to the holder's record, for readers of the lock."""
        self.record = dict(self.record, run_id=run_id)
        _write_record(self.fd, self.record)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # drops the flock; the file stays (removing it would race with a new holder's open)
            self.fd = None


def _open(output_dir):
    return os.open(os.path.join(output_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)


def _read_record(output_dir):
    try:
        with open(os.path.join(output_dir, LOCK_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(record):
    """'pid 4242 on host gpu-7 (since 2026-12-03 12:00:01 UTC)' from a lock record (parts it lacks left out)."""
    since = f" (since {record['since']})" if record.get("since") else ""
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')}{since}"


def busy_message(output_dir, record, make=False):
    """The one line a second start gets: who holds the folder and what to do."""
    status = f"make status OUTPUT_DIR={shlex.quote(str(output_dir))}" if make else \
        f"python scripts/status.py {shlex.quote(str(output_dir))}"
    return (f"{output_dir} is in use by a training run, {describe(record)}: wait for it to finish or stop it "
            f"(kill {record.get('pid', 'PID')} on that host), or give another output folder; reading the run works "
            f"meanwhile ({status})")


def hold(output_dir, environ=None):
    """Take `output_dir`'s lock for this process (the folder is created if missing) and record who holds it;
    raises FolderBusy naming the live holder."""
    environ = os.environ if environ is None else environ
    os.makedirs(output_dir, exist_ok=True)
    fd = _open(output_dir)
    deadline = time.monotonic() + PROBE_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise FolderBusy(busy_message(output_dir, _read_record(output_dir),
                                              environ.get("QA_VIA_MAKE") == "1")) from None
            time.sleep(0.02)  # a reader's probe lets go within microseconds
        except OSError as exc:
            os.close(fd)
            if exc.errno in UNSUPPORTED:
                raise LocksUnsupported(f"{output_dir}: its filesystem has no file locks ({exc.strerror}): nothing "
                                       "stops a second run from writing into it") from exc
            raise
    record = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": None,  # RunLock.note_run_id
              "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    _write_record(fd, record)
    return RunLock(output_dir, fd, record)


def _write_record(fd, record):
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)


def holder(output_dir):
    """The record ({"pid", "host", "run_id", "since"}) of the live process holding `output_dir`, or None.

    A shared lock probe: it fails only while a run holds the exclusive one; a dead run's file says nothing."""
    path = os.path.join(output_dir, LOCK_FILE)
    if not os.path.exists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_record(output_dir) or {"pid": "?", "host": "?"}
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # also drops the probe's shared lock
    return None
