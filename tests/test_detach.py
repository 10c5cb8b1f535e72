"""scripts/detach.sh and the Makefile targets around a detached run: train DETACH=1, attach, logs, status."""

import os
import shlex
import shutil
import subprocess
import time

import pytest

from bash_scripts import ROOT, SCRIPTS, bash
from conftest import shared_file


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
    assert "tmux attach -t qa-train" in started.stdout
    # The hints name the run's folder (here with a space), quoted so that they run as printed.
    hint = next(line for line in started.stdout.splitlines() if "make logs" in line)
    assert shlex.split(hint.split("training log:", 1)[1])[:3] == ["make", "logs", f"OUTPUT_DIR={log.parent}"]
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
    assert f"its log: make logs OUTPUT_DIR={out}" in gone.stdout  # the session's own folder, not the default one


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


def test_attach_without_output_dir_finds_the_sessions_folder(tmp_path):
    # `make attach NAME=x` with no session running: the hints name the folder whose console.log that session
    # wrote (the newest, under outputs/), not the default OUTPUT_DIR.
    for name, session in (("older", "qa-x"), ("run b", "qa-x"), ("other", "qa-y")):
        folder = tmp_path / "outputs" / name
        folder.mkdir(parents=True)
        (folder / "console.log").write_text(f"[detach] 2026-12-01 10:00:00 start in tmux session '{session}': make\n")
    os.utime(tmp_path / "outputs" / "older" / "console.log", (1, 1))
    env = dict(os.environ, TMUX_TMPDIR=str(tmp_path), SCREENDIR=str(tmp_path / "screen"))
    gone = bash("attach.sh", "qa-x", env=env, cwd=tmp_path)
    assert gone.returncode == 1 and "no screen or tmux session named 'qa-x' runs" in gone.stdout
    assert "its log: make logs OUTPUT_DIR=outputs/run\\ b" in gone.stdout and "no server running" not in gone.stderr
    unknown = bash("attach.sh", "qa-z", env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "no console.log under outputs/ names that session" in unknown.stdout
