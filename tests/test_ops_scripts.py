"""Operations: clean_cache.sh, add_swap.sh, detach.sh, status.py and qa.preflight, on real files in tmp_path."""

import json
import os
import pathlib
import pty
import select
import shutil
import subprocess
import sys
import time
import uuid

import pytest

import status
from conftest import shared_file
from qa import preflight as pf

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def bash(script, *args, env=None, **kwargs):
    return subprocess.run(["bash", str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=env, **kwargs)


# --- clean_cache.sh ----------------------------------------------------------------------------

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


# --- add_swap.sh (dry runs and refusals only: no swap is created in tests) -----------------------

@pytest.mark.parametrize("size, message", [
    ("32", "not a whole number of M or G"), ("1.5G", "not a whole number of M or G"), ("-1G", "unknown option"),
    ("0G", "below the 64M minimum"), ("10M", "below the 64M minimum"), ("2048G", "larger than the 1024G limit"),
    ("99999999999999999999G", "larger than the 1024G limit"),
])
def test_add_swap_rejects_bad_sizes(tmp_path, size, message):
    result = bash("add_swap.sh", size, "--file", tmp_path / "swapfile", "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "swapfile").exists()


def test_add_swap_dry_run_prints_each_command(tmp_path):
    swapfile = tmp_path / "swap file"
    result = bash("add_swap.sh", "1G", "--file", swapfile, "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert commands == [f"+ fallocate -l 1024M -- {swapfile}", f"+ chmod 600 -- {swapfile}",
                        f"+ mkswap -- {swapfile}", f"+ swapon -- {swapfile}"]
    assert not swapfile.exists()


def test_add_swap_persist_entry_is_not_duplicated(tmp_path):
    swapfile, fstab = tmp_path / "swapfile", tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n")
    env = dict(os.environ, FSTAB=str(fstab))
    fresh = bash("add_swap.sh", "512M", "--file", swapfile, "--persist", "--dry-run", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert f"+ echo '{swapfile} none swap sw 0 0' >> {fstab}" in fresh.stdout
    fstab.write_text(f"UUID=abc / ext4 defaults 0 1\n{swapfile} none swap sw 0 0\n")
    present = bash("add_swap.sh", "512M", "--file", swapfile, "--persist", "--dry-run", env=env)
    assert present.returncode == 0
    assert "already has a swap entry" in present.stdout and ">> " not in present.stdout
    assert fstab.read_text() == f"UUID=abc / ext4 defaults 0 1\n{swapfile} none swap sw 0 0\n"  # dry run: untouched


def test_add_swap_refuses_existing_file_and_too_little_disk(tmp_path):
    existing = tmp_path / "swapfile"
    existing.write_text("mine")
    result = bash("add_swap.sh", "1G", "--file", existing, "--dry-run")
    assert result.returncode == 1 and "already exists" in result.stderr
    assert existing.read_text() == "mine"
    free_gib = shutil.disk_usage(tmp_path).free // 2**30
    if free_gib + 1 > 1024:
        pytest.skip(f"{free_gib} GiB free here: no size within the 1024G limit exceeds it")
    too_big = bash("add_swap.sh", f"{free_gib + 1}G", "--file", tmp_path / "big", "--dry-run")
    assert too_big.returncode == 1
    assert "not enough free disk" in too_big.stderr and "MiB margin" in too_big.stderr


def test_add_swap_needs_root_without_dry_run(tmp_path):
    path = f"/tmp/qa-swap-test-{uuid.uuid4().hex}"  # a folder every user can see
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: cannot run the script as another user")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    result = subprocess.run([*prefix, "bash", str(SCRIPTS / "add_swap.sh"), "100M", "--file", path],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "needs root" in result.stderr and "sudo" in result.stderr
    assert not os.path.exists(path)


# --- detach.sh ---------------------------------------------------------------------------------

def test_detach_argument_validation(tmp_path):
    log = tmp_path / "train.log"
    for args in [(), ("qa",), ("qa", log, "echo", "hi"), ("qa", log, "--"), ("bad name", log, "--", "true"),
                 ("qa;rm", log, "--", "true")]:
        result = bash("detach.sh", *args)
        assert result.returncode == 2, args
    assert not log.exists()


def test_detach_without_a_multiplexer_says_what_to_install(tmp_path):
    # A PATH holding only what the script needs before it looks for screen/tmux.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    result = subprocess.run([str(bin_dir / "bash"), str(SCRIPTS / "detach.sh"), "qa", tmp_path / "l.log", "--", "true"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "neither screen nor tmux is installed" in result.stderr
    assert "apt-get install -y screen" in result.stderr


@pytest.fixture
def tmux_env(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed here (apt-get install tmux); the real-session test needs it")
    socket_dir = tmp_path / "tmux"
    socket_dir.mkdir()
    env = dict(os.environ, TMUX_TMPDIR=str(socket_dir), MULTIPLEXER="tmux")
    env.pop("TMUX", None)
    yield env
    subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)


def _wait_for(path, text, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} after {timeout}s: {path.read_text() if path.exists() else 'missing'}")


def test_detach_runs_in_tmux_logs_and_refuses_a_duplicate(tmp_path, tmux_env):
    # An older tmux server already runs (with another environment): the session must still get ours.
    subprocess.run(["tmux", "new-session", "-d", "-s", "older", "sleep", "60"], env=tmux_env, check=True)
    log = tmp_path / "run dir" / "train.log"
    (tmp_path / "tmp").mkdir()
    env = dict(tmux_env, QA_MARKER="from-the-caller", TMPDIR=str(tmp_path / "tmp"))
    started = bash("detach.sh", "qa-train", log, "--", "bash", "-c",
                   'echo "marker=$QA_MARKER"; echo "to stderr" >&2; read -t 30 line; exit 3', env=env)
    assert started.returncode == 0, started.stderr
    assert "tmux attach -t qa-train" in started.stdout and "make logs" in started.stdout
    _wait_for(log, "marker=from-the-caller")
    assert subprocess.run(["tmux", "has-session", "-t", "=qa-train"], env=tmux_env).returncode == 0

    duplicate = bash("detach.sh", "qa-train", tmp_path / "other.log", "--", "true", env=tmux_env)
    assert duplicate.returncode == 1
    assert "already runs" in duplicate.stderr
    assert not (tmp_path / "other.log").exists()

    subprocess.run(["tmux", "send-keys", "-t", "=qa-train:", "go", "Enter"], env=tmux_env, check=True)
    text = _wait_for(log, "exit status 3")
    assert "to stderr" in text
    assert text.splitlines()[0].startswith("[detach]") and "start in tmux session 'qa-train'" in text
    # The environment handed to the session was read and deleted by it.
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.slow
def test_make_train_detach_attach_logs_status(tmp_path, tmux_env, tiny_model_dir):
    # The Makefile's own targets, as on a GPU box: make train DETACH=1 starts the training in a
    # session; make logs follows its train.log; make status says how it ended; make attach finds
    # a running session by NAME and says so when there is none.
    out = tmp_path / "run"
    data = shared_file("squad", "squad2-dev-normans-rhine.json")

    def make(*args, timeout=120):
        return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                              env=tmux_env, stdin=subprocess.DEVNULL, timeout=timeout)

    started = make("train", "DETACH=1", "NAME=qa-detach-test", f"MODEL={tiny_model_dir}", f"TRAIN_FILE={data}",
                   f"PREDICT_FILE={data}", f"OUTPUT_DIR={out}", "NGPUS=0", "EPOCHS=1", "BATCH=8", "MAX_SEQ_LENGTH=128",
                   "DOC_STRIDE=64", "THREADS=1", "SAVE_STEPS=1000",
                   f"EXTRA=--max_train_samples 8 --max_eval_samples 4 --features_cache_dir {tmp_path / 'cache'}")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "started in a detached tmux session 'qa-detach-test'" in started.stdout
    console = _wait_for(out / "console.log", "exit status", timeout=180)
    assert "[detach]" in console and "exit status 0" in console, console
    assert "run_squad.py" in console.splitlines()[0]  # the session ran the training command itself
    assert "training done at step" in (out / "train.log").read_text()

    followed = subprocess.run(["timeout", "3", "make", "--no-print-directory", "-C", str(ROOT), "logs",
                               f"OUTPUT_DIR={out}"], capture_output=True, text=True, env=tmux_env)
    assert "training done at step" in followed.stdout  # tail -F of train.log, stopped by timeout

    shown = make("status", f"OUTPUT_DIR={out}")
    assert shown.returncode == 0, shown.stderr
    assert "training:     finished at step" in shown.stdout
    assert "session:      tmux session 'qa-detach-test' ended" in shown.stdout and "exit status 0" in shown.stdout

    gone = make("attach", "NAME=qa-detach-test", f"OUTPUT_DIR={out}")
    assert gone.returncode != 0
    assert bash("detach.sh", "qa-sleeper", tmp_path / "sleep.log", "--", "sleep", "60", env=tmux_env).returncode == 0
    found = make("attach", "NAME=qa-sleeper", timeout=30)
    # Found and attached to: tmux itself then refuses, as this test has no terminal.
    lines = found.stdout.splitlines()  # make echoes the recipe too: look for the message as a line of its own
    assert "not a terminal" in found.stderr and not any(line.startswith("no screen or tmux session") for line in lines)
    assert any(line.startswith("no screen or tmux session named 'qa-detach-test' runs") for line in gone.stdout.splitlines())


def test_make_logs_shows_a_detached_run_that_died_before_train_log(tmp_path):
    # run_squad.py stopped on a bad flag: no train.log will ever appear, only detach.sh's console.log.
    run = tmp_path / "run"
    run.mkdir()
    (run / "console.log").write_text("[detach] 2026-11-26 10:00:00 start in tmux session 'qa-train': python run_squad.py\n"
                                     "run_squad.py: --fp16 needs CUDA\n[detach] 2026-11-26 10:00:02 exit status 2\n")
    followed = subprocess.run(["timeout", "3", "make", "-s", "--no-print-directory", "-C", str(ROOT), "logs",
                               f"OUTPUT_DIR={run}"], capture_output=True, text=True)
    assert "following console.log" in followed.stdout
    assert "--fp16 needs CUDA" in followed.stdout and "exit status 2" in followed.stdout


# --- status.py ---------------------------------------------------------------------------------

def _write_run(run, with_eval=True):
    run.mkdir(parents=True)
    lines = []
    t0 = 1_700_000_000.0
    # A first stretch at 1 step/s, a restart (resume) after a gap, then 2 steps/s.
    for step in range(10, 110, 10):
        lines.append({"step": step, "time": t0 + step, "train/loss": 6.0 - step / 100, "train/learning_rate": 3e-5})
    for step in range(110, 210, 10):
        lines.append({"step": step, "time": t0 + 5000 + (step - 110) / 2, "train/loss": 4.0 - step / 1000})
    if with_eval:
        lines.append({"step": 200, "time": t0 + 5045, "eval/exact": 41.5, "eval/f1": 44.25, "eval/HasAns_f1": 30.0})
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 21'  # a line being written
    (run / "metrics.jsonl").write_text(text)
    (run / "args.json").write_text(json.dumps({"max_steps": -1, "num_train_epochs": 2}))
    for name, step, epoch, complete in [("checkpoint-100", 100, 0.5, True), ("checkpoint-old-name", 150, 0.75, True),
                                        ("checkpoint-200", 200, 1.0, False)]:
        (run / name).mkdir()
        (run / name / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": epoch, "max_steps": 400}))
        if complete:
            (run / name / "COMPLETE").write_text("")
    return t0


def test_status_summary_from_a_run(tmp_path):
    run = tmp_path / "run"
    t0 = _write_run(run)
    s = status.summarize(str(run), now=t0 + 5105, gpus=None, gpu_note="no GPU (nvidia-smi not found)")
    assert s["step"] == 200 and s["total_steps"] == 400
    assert s["loss"] == pytest.approx(4.0 - 200 / 1000) and s["loss_step"] == 200
    assert s["eval"] == {"eval/exact": 41.5, "eval/f1": 44.25, "eval/HasAns_f1": 30.0}
    assert s["steps_per_second"] == pytest.approx(2.0)  # only the stretch after the restart
    assert s["eta_seconds"] == pytest.approx(100.0)
    assert s["last_update_seconds_ago"] == pytest.approx(60.0)
    # The step comes from trainer_state.json, not the folder name; checkpoint-200 is incomplete.
    assert s["newest_complete_checkpoint"].endswith("checkpoint-old-name")
    assert s["newest_complete_checkpoint_step"] == 150
    assert [os.path.basename(p) for p in s["incomplete_checkpoints"]] == ["checkpoint-200"]
    assert s["epoch"] == pytest.approx(1.0) and s["epoch_estimated"]
    assert s["unreadable_metrics_lines"] == 1
    text = status.format_status(s)
    assert "step:         200 / 400 (50.0%)" in text
    assert "exact 41.50, f1 44.25" in text
    assert "ETA 0:01:40" in text
    assert "no GPU (nvidia-smi not found)" in text


def test_status_total_from_train_log_and_detached_session(tmp_path):
    # What run_squad.py really writes: trainer_state.json without a total, the total in train.log
    # ("training: ..., N steps, ..."), and detach.sh's lines in console.log.
    run = tmp_path / "run"
    run.mkdir()
    t0 = 1_700_000_000.0
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": step, "time": t0 + step / 4, "train/loss": 1.0}) + "\n" for step in range(100, 700, 100)))
    (run / "args.json").write_text(json.dumps({"max_steps": -1, "num_train_epochs": 7}))
    (run / "train.log").write_text(
        "2026-11-26 10:00:00 training: 4000 features, 1 process(es) x 8 x 1 accumulation = 8 per step, 999 steps, "
        "precision float32\n"
        "2026-11-26 11:00:00 resuming from run/checkpoint-300: step 300, epoch 0, 2400 micro-batches into it\n"
        "2026-11-26 11:00:01 training: 4000 features, 2 process(es) x 8 x 1 accumulation = 16 per step, 1800 steps, "
        "precision torch.float16\n")
    console = run / "console.log"
    console.write_text("[detach] 2026-11-26 10:59:58 start in tmux session 'qa-train': python run_squad.py\n"
                       "train:  10%|#         | 180/1800 [00:45<06:45, 4.0step/s]\n")
    s = status.summarize(str(run), now=t0 + 200)
    assert s["total_steps"] == 1800  # the newest start wins
    assert s["eta_seconds"] == pytest.approx((1800 - 600) / 4.0)
    assert s["finished"] is None
    assert s["detached_session"] == {"started": "2026-11-26 10:59:58", "multiplexer": "tmux", "name": "qa-train",
                                     "ended": None, "exit_status": None}
    text = status.format_status(s)
    assert "step:         600 / 1800 (33.3%)" in text and "ETA 0:05:00" in text
    assert "session:      tmux session 'qa-train' started 2026-11-26 10:59:58, no exit recorded" in text

    with console.open("a") as handle:
        handle.write("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"
                     "[detach] 2026-11-26 11:20:00 exit status 1\n")
    text = status.format_status(status.summarize(str(run), now=t0 + 200))
    assert f"ended 2026-11-26 11:20:00 with exit status 1: see the end of {console}" in text
    assert "training:     finished" not in text

    (run / "training_summary.json").write_text(json.dumps({"global_step": 600, "early_stopped": True}))
    text = status.format_status(status.summarize(str(run), now=t0 + 200))
    assert f"training:     finished at step 600 (early stopping); final model in {run}" in text
    assert "ETA" not in text


def test_status_cli_without_nvidia_smi_and_without_a_run(tmp_path):
    run = tmp_path / "run"
    _write_run(run, with_eval=False)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # python, but no nvidia-smi
    result = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), str(run)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "gpu:          no GPU (nvidia-smi not found)" in result.stdout
    assert "last eval:    none yet" in result.stdout
    assert "disk free:" in result.stdout
    as_json = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), str(run), "--json"],
                             capture_output=True, text=True, env=env)
    assert json.loads(as_json.stdout)["step"] == 200

    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (empty, tmp_path / "missing"):
        result = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), str(folder)], capture_output=True, text=True, env=env)
        assert result.returncode == 1
        assert f"no run in {folder}" in result.stderr and "make train" in result.stderr


def test_parse_nvidia_smi_rows():
    text = "0, NVIDIA H200, 1234, 143771, 97\n1, NVIDIA H200, [N/A], 143771, 0\n"
    assert status.parse_nvidia_smi(text) == [
        {"index": 0, "name": "NVIDIA H200", "memory_used_mib": 1234, "memory_total_mib": 143771, "utilization_pct": 97}]


@pytest.mark.gpu
def test_status_reads_a_real_gpu(tmp_path):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi here")
    gpus, note = status.query_gpus()
    assert note is None and gpus and gpus[0]["memory_total_mib"] > 0


# --- qa.preflight ------------------------------------------------------------------------------

@pytest.fixture
def machine(monkeypatch):
    """Set the free disk, available RAM and CUDA presence preflight sees."""
    numbers = {"disk": 100e9, "ram": 64e9, "cuda": True}
    monkeypatch.setattr(pf, "disk_free_bytes", lambda path: numbers["disk"])
    monkeypatch.setattr(pf, "ram_available_bytes", lambda: numbers["ram"])
    monkeypatch.setattr(pf, "cuda_available", lambda: numbers["cuda"])
    return numbers


ALBERT_XLARGE_PARAMS = 58_700_000  # ~0.70 GB per checkpoint with Adam state


def test_preflight_quiet_when_everything_fits(machine, tmp_path):
    logged = []
    assert pf.preflight(tmp_path / "out", ALBERT_XLARGE_PARAMS, 3, pf.features_bytes(100_000, 384), True, logged.append) == []
    assert logged == []


def test_preflight_warns_about_disk_with_numbers(machine, tmp_path):
    machine["disk"] = 2.0e9  # fits 2 checkpoints of 0.70 GB, not 3 + 1 + the final model
    logged = []
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, logged.append, model_name="albert-xlarge-v2")
    assert logged == warnings and len(warnings) == 1
    assert warnings[0].startswith("free disk 2.0 GB < ~3.1 GB needed for 4 checkpoints of ~0.7 GB (albert-xlarge-v2, 58.7M parameters")
    assert "lower --save_total_limit" in warnings[0]


def test_preflight_limit_of_one_still_keeps_the_best(machine, tmp_path):
    # rotate_checkpoints keeps the newest and an older best even with --save_total_limit 1: 3 on disk while saving.
    per_checkpoint = pf.checkpoint_bytes(ALBERT_XLARGE_PARAMS)
    machine["disk"] = 3 * per_checkpoint  # room for 3 checkpoints, not 3 + the final model
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 1, 0, False, None)
    assert len(warnings) == 1 and "needed for 3 checkpoints" in warnings[0]
    assert "--save_total_limit 1 keeps the newest and the best + the one being written" in warnings[0]
    machine["disk"] = 3 * per_checkpoint + 4 * ALBERT_XLARGE_PARAMS
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 1, 0, False, None) == []


def test_preflight_model_bytes_and_no_limit(machine, tmp_path):
    machine["disk"] = 10e9
    warnings = pf.preflight(tmp_path, save_total_limit=None, model_bytes=4 * ALBERT_XLARGE_PARAMS)
    assert len(warnings) == 1 and "no --save_total_limit" in warnings[0] and "holds about 13" in warnings[0]


def test_preflight_warns_about_ram(machine, tmp_path):
    machine["ram"] = 3e9
    features = pf.features_bytes(500_000, 512)  # 14 bytes per token + 20 per window
    assert features == 500_000 * (512 * 14 + 20)
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 2, features, False, None)
    assert warnings == [
        "available RAM 3.0 GB < 3.6 GB of training features: they are memory-mapped from the feature cache, so "
        "batches will be read from disk instead of memory (slower); a machine with more RAM, a smaller "
        "--max_seq_length or a subset of the data (--max_train_samples) avoids it"]


def test_features_bytes_is_the_size_of_real_features(tiny_model_dir):
    # The estimate is the layout qa/features.py really builds, not a guess: compare with real arrays.
    from transformers import AutoTokenizer

    from qa.features import FeatureParams, build_features
    from qa.squad_io import read_squad

    examples = read_squad(str(shared_file("squad", "squad2-dev-normans-rhine.json")))[:6]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for training in (True, False):
        features = build_features(examples, tokenizer, FeatureParams(64, 32, 16), training=training)
        arrays = [getattr(features, name) for name in features.__dataclass_fields__]
        real = sum(array.nbytes for array in arrays if array is not None)
        assert len(features) > len(examples)  # several windows per example at 64 tokens
        assert pf.features_bytes(len(features), 64, training=training) == real


def test_preflight_raises_when_it_cannot_work(machine, tmp_path):
    machine["cuda"] = False
    logged = []
    with pytest.raises(pf.PreflightError, match="CUDA was asked for"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, True, logged.append)
    assert len(logged) == 1 and logged[0].startswith("CUDA was asked for")  # in train.log too
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None) == []
    machine["disk"] = 0.5e9
    with pytest.raises(pf.PreflightError, match=r"free disk 0.5 GB .* < one checkpoint of ~0.7 GB"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None)
    with pytest.raises(ValueError, match="model_num_params or model_bytes"):
        pf.preflight(tmp_path)


def _tiny_training_argv(model_dir, out, cache):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file("squad", "squad2-dev-normans-rhine.json")), "--max_train_samples", "8", "--num_train_epochs", "1",
            "--max_seq_length", "128", "--per_gpu_train_batch_size", "4", "--save_steps", "1000",
            "--save_total_limit", "2", "--report_to", "none", "--threads", "1", "--features_cache_dir", str(cache),
            "--version_2_with_negative"]


def test_run_squad_logs_preflight_warnings_in_train_log(machine, tiny_model_dir, tmp_path):
    # run_squad.py's own preflight, with the disk and RAM it sees made short: the run goes on, and
    # train.log (what `make logs` follows) says what is short, with the numbers.
    torch = pytest.importorskip("torch")
    import run_squad
    from transformers import AutoModelForQuestionAnswering

    params = AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir).num_parameters()
    # One checkpoint fits, not the 3 (--save_total_limit 2 + the one being written) + the final model.
    machine["disk"] = 2 * pf.checkpoint_bytes(params)
    machine["ram"] = 1000
    out = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(_tiny_training_argv(tiny_model_dir, out, tmp_path / "cache")) == 0
    finally:
        torch.set_num_threads(before)
    log = (out / "train.log").read_text()
    disk_lines = [line for line in log.splitlines() if "preflight: free disk" in line]
    assert len(disk_lines) == 1, log
    assert "needed for 3 checkpoints" in disk_lines[0] and "--save_total_limit 2" in disk_lines[0]
    assert "lower --save_total_limit or free space" in disk_lines[0]
    assert "preflight: available RAM 1.0 kB <" in log and "memory-mapped" in log
    assert (out / "model.safetensors").is_file()  # warnings only: the run finished
    # make status on this real run: the total comes from train.log (no --max_steps), and it is done.
    steps = json.loads((out / "training_summary.json").read_text())["global_step"]
    s = status.summarize(str(out))
    assert steps >= 2 and s["step"] == s["total_steps"] == steps
    assert s["finished"] == {"global_step": steps, "early_stopped": False}
    assert f"step:         {steps} / {steps} (100.0%)" in status.format_status(s)


def test_run_squad_stops_when_not_one_checkpoint_fits(machine, tiny_model_dir, tmp_path):
    pytest.importorskip("torch")
    import run_squad

    machine["disk"] = 1000  # bytes: not even one checkpoint of the tiny model
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"preflight: free disk 1.0 kB .* < one checkpoint of ~1.\d MB"):
        run_squad.main(_tiny_training_argv(tiny_model_dir, out, tmp_path / "cache"))
    assert "preflight: free disk 1.0 kB" in (out / "train.log").read_text()
    assert not list(out.glob("checkpoint-*")) and not (out / "model.safetensors").exists()


def test_preflight_real_machine_numbers(tmp_path):
    # The unpatched helpers read this machine: a folder that does not exist yet is measured at its parent.
    assert pf.disk_free_bytes(tmp_path / "not" / "yet") == shutil.disk_usage(tmp_path).free
    assert pf.ram_available_bytes() > 0
    assert pf.checkpoint_bytes(1_000_000) == 12_000_000


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
