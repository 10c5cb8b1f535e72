"""scripts/clean_cache.sh and `make clean-cache`: our feature caches and legacy cached_* files, on real files in tmp_path."""

import os
import pty
import select
import subprocess
import time

import pytest

from bash_scripts import ROOT, SCRIPTS, bash


@pytest.fixture
def caches(tmp_path):
    """Our feature caches and legacy cached_* files, among files that must survive."""
    data = tmp_path / "my data"
    ours = data / "nq" / ".features_cache" / "features-3f2a 9c"
    (ours / "chunk dir").mkdir(parents=True)
    (ours / "chunk dir" / "part-0.npy").write_bytes(b"\0" * 200_000)
    legacy_train = data / "squad" / "cached_train_albert-xlarge-v2_384"
    legacy_dev = tmp_path / "outputs" / "cached_dev_albert-xlarge-v2_512"
    legacy_train.parent.mkdir(parents=True)
    legacy_dev.parent.mkdir(parents=True)
    legacy_train.write_bytes(b"\1" * 50_000)
    legacy_dev.write_bytes(b"\2" * 10)
    # The names qa/features.py writes: features-<32 hex key>/ (COMPLETE marker last) and, while
    # building or after a killed build, features-<key>.tmp-<pid>-<random>/ beside it.
    key = "1d8c9b56ba943d7138dadaecbd4e856d"
    abandoned = data / "nq" / ".features_cache" / f"features-{key}.tmp-4242-x1y2"
    # --features_cache_dir /mnt/cache: no .features_cache parent; recognised by the key's shape.
    custom = tmp_path / "cache"
    custom_final, custom_tmp = custom / f"features-{key}", custom / f"features-{key}.tmp-77-old1700000000"
    for folder in (abandoned, custom_final, custom_tmp):
        folder.mkdir(parents=True)
        (folder / "input_ids.bin").write_bytes(b"\4" * 1000)
    (custom_final / "COMPLETE").write_text("{}")
    keep = [data / "nq" / "nq_train.json", data / "squad" / "cached_notes.txt",
            tmp_path / "outputs" / "features-123" / "x.json", data / "nq" / ".features_cache" / "README",
            custom / f"features-{key[:31]}" / "x.json", custom / f"features-{key.upper()}" / "x.json"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep me")
    return {"dirs": [data, tmp_path / "outputs", custom],
            "remove": [ours, abandoned, legacy_train, legacy_dev, custom_final, custom_tmp], "keep": keep}


def test_clean_cache_dry_run_lists_sizes_and_total(caches):
    result = bash("clean_cache.sh", "--dry-run", *caches["dirs"])
    assert result.returncode == 0, result.stderr
    for path in caches["remove"]:
        assert str(path) in result.stdout and path.exists()
    for path in caches["keep"]:
        assert str(path.parent / path.name) not in result.stdout
    assert "total: " in result.stdout and "in 6 item(s)" in result.stdout
    assert "dry run: nothing deleted" in result.stdout


def test_clean_cache_without_tty_refuses_and_yes_deletes(caches):
    refused = bash("clean_cache.sh", *caches["dirs"], stdin=subprocess.DEVNULL)
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert all(path.exists() for path in caches["remove"])

    deleted = bash("clean_cache.sh", "--yes", *caches["dirs"])
    assert deleted.returncode == 0, deleted.stderr
    assert not any(path.exists() for path in caches["remove"])
    assert all(path.read_text() == "keep me" for path in caches["keep"])
    again = bash("clean_cache.sh", "--yes", *caches["dirs"])
    assert again.returncode == 0 and "no cached features found" in again.stdout


def _run_on_tty(args, answer):
    """Run a command with a pseudo-terminal as stdin, type `answer` at its prompt; (rc, output)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output, answered = b"", False
    deadline = time.time() + 30
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"[y/N]" in output:
            os.write(master, answer)
            answered = True
        if process.poll() is not None and not ready:
            break
    process.wait(timeout=10)
    os.close(master)
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize("answer, deleted", [(b"n\n", False), (b"\n", False), (b"y\n", True)])
def test_clean_cache_asks_on_a_terminal(caches, answer, deleted):
    rc, output = _run_on_tty(["bash", str(SCRIPTS / "clean_cache.sh"), *map(str, caches["dirs"])], answer)
    assert rc == 0, output
    assert "Delete these 6 item(s)" in output
    assert all(not path.exists() for path in caches["remove"]) if deleted else all(path.exists() for path in caches["remove"])
    assert all(path.exists() for path in caches["keep"])


def test_clean_cache_argument_errors(tmp_path):
    assert bash("clean_cache.sh").returncode == 2
    missing = bash("clean_cache.sh", tmp_path / "nope")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    unknown = bash("clean_cache.sh", "--force", tmp_path)
    assert unknown.returncode == 2 and "unknown option '--force'" in unknown.stderr


def test_make_clean_cache_passes_its_variables(tmp_path):
    # The Makefile's own target: DIRS and DRY_RUN reach the script (no space in these paths: make splits words).
    data = tmp_path / "plain"
    legacy = data / "cached_dev_albert-base-v2_384"
    data.mkdir()
    legacy.write_bytes(b"\3" * 100)
    listed = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "clean-cache", f"DIRS={data}", "DRY_RUN=1"],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert str(legacy) in listed.stdout and "dry run: nothing deleted" in listed.stdout and legacy.exists()
    deleted = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "clean-cache", f"DIRS={data}", "YES=1"],
                             capture_output=True, text=True)
    assert deleted.returncode == 0, deleted.stderr
    assert not legacy.exists()


def test_make_clean_cache_keeps_the_caches_while_a_run_trains(tmp_path):
    # Issue 19 #8: a live run (its folder's OS lock held, as run_squad.py holds it) may be reading these features.
    from qa import run_lock

    data, run = tmp_path / "data", tmp_path / "outputs" / "live run"
    cache = data / ".features_cache" / ("features-" + "a" * 32)
    cache.mkdir(parents=True)
    (cache / "part-0.npy").write_bytes(b"\0" * 64)

    def clean(*flags):
        return subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "clean-cache",
                               f"DIRS={data} {tmp_path / 'outputs'}", *flags], capture_output=True, text=True)

    lock = run_lock.hold(str(run))
    try:
        refused = clean("YES=1")
        listed = clean("DRY_RUN=1")
    finally:
        lock.release()
    assert refused.returncode != 0 and cache.exists()
    assert f"a training run is live in {run} (pid {os.getpid()} on host " in refused.stderr
    assert "not deleting while a run trains" in refused.stderr
    assert listed.returncode == 0 and str(cache) in listed.stdout and f"live in {run}" in listed.stderr
    deleted = clean("YES=1")  # the run ended: its lock file stays, nobody holds it
    assert deleted.returncode == 0, deleted.stderr
    assert not cache.exists() and "live" not in deleted.stderr


def test_make_clean_cache_keeps_a_cache_a_live_process_uses_outside_dirs_and_outputs(tmp_path):
    # Review #1: a run whose folder is outside DIRS and outputs/ (no .run.lock found) still maps its features:
    # the shared lock qa/features.py takes in the cache folder protects them; it dies with the process.
    data = tmp_path / "data"
    cache_dir = data / ".features_cache"
    used, unused = cache_dir / ("features-" + "a" * 32), tmp_path / "other" / ("features-" + "b" * 32)
    for folder in (used, unused):
        folder.mkdir(parents=True)
        (folder / "part-0.npy").write_bytes(b"\0" * 64)
    holder = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "-c",
         "import sys; from qa import features; features.hold_cache_dir(sys.argv[1]); print('held', flush=True); "
         "sys.stdin.read()", str(cache_dir)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cleaned = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "clean-cache",
                                  f"DIRS={data} {tmp_path / 'other'}", "YES=1"], capture_output=True, text=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert cleaned.returncode == 0, cleaned.stderr
    assert used.exists() and not unused.exists()
    assert f"keeping {used}: in use by a live process, last taken by pid {holder.pid} on host " in cleaned.stderr
    again = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "clean-cache", f"DIRS={data}",
                            "YES=1"], capture_output=True, text=True)
    assert again.returncode == 0 and not used.exists(), again.stderr
