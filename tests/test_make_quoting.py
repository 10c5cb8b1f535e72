"""Every make variable reaches its program as ONE argument, whatever it holds, and is never run (issue 18 item 2).

Each target runs for real through make with values holding backticks, $(...), $$(...), $(shell ...), quotes,
spaces, a leading dash and `;`. The python targets run a recorder in place of python (PY=...), which writes the
argv it got; the shell-script targets (logs, attach, clean-cache, swap, upload) run the real scripts on folders
named after the value. Each value would create the marker file if any shell or make expanded it: the marker is
named by an environment variable, so the values hold no '/' and can be folder names too.
"""

import os
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from bash_scripts import bash
from conftest import ROOT

MARK = "$QT_MARK"  # a shell that runs a value expands this to the marker's path
PAYLOADS = {
    "backticks": f"what does `touch {MARK}` print",
    "dollar-paren": f"$(touch {MARK}) x",
    "double-dollar": "$$(touch $$QT_MARK) x",
    "make-shell": "$(shell touch $$QT_MARK) x",
    "double-quote": f'x";touch {MARK};"',
    "single-quote": f"x';touch {MARK};'",
    "spaces": "a  b c",
    "leading-dash": "-x --help",
    "semicolon": f"x; touch {MARK} #",
    "all-at-once": f"-a \"b' `touch {MARK}` $(touch {MARK}) $$(touch {MARK}) $(shell touch $$QT_MARK) ; c",
}
RECORDER = '#!/bin/bash\nprintf "%s\\0" "$@" > "$QT_RECORD"\n'


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    path = tmp_path_factory.mktemp("recorder") / "python"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return path


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a value was run as shell code (or expanded by make)"


def make(target, *assignments, marker, env=None):
    env = dict(env or os.environ, QT_MARK=str(marker), QT_RECORD=str(marker.parent / "argv"))
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target, "NGPUS=0", *assignments],
                          capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


def recorded(target, recorder, marker, **variables):
    done = make(target, f"PY={recorder}", *(f"{name}={value}" for name, value in variables.items()), marker=marker)
    assert done.returncode == 0, done.stdout + done.stderr
    return (marker.parent / "argv").read_bytes().decode().split("\0")[:-1]


def assert_words(argv, value):
    # A list variable (EXTRA): split on blanks, each word one argument, in order, none of them run.
    words = value.split()
    starts = [i for i in range(len(argv)) if argv[i:i + len(words)] == words]
    assert starts, (words, argv)


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_python_targets_get_each_value_as_one_argument(payload, recorder, marker):
    value = payload
    argv = recorded("train", recorder, marker, OUTPUT_DIR=value, MODEL=value, TRAIN_FILE=value, PREDICT_FILE=value,
                    SYNC=value, WANDB_PROJECT=value, EXTRA=value)
    assert argv[0] == "run_squad.py"
    for flag in ("--output_dir", "--model_name_or_path", "--train_file", "--predict_file", "--sync_checkpoints",
                 "--wandb_project"):
        assert f"{flag}={value}" in argv, flag
    assert_words(argv, value)

    argv = recorded("resume", recorder, marker, OUTPUT_DIR=value, CKPT=value, MODEL=value, TRAIN_FILE=value,
                    PREDICT_FILE=value, EXTRA=value)
    for flag in ("--output_dir", "--resume_from_checkpoint", "--model_name_or_path", "--train_file", "--predict_file"):
        assert f"{flag}={value}" in argv, flag
    assert_words(argv, value)

    argv = recorded("eval", recorder, marker, OUTPUT_DIR=value, CKPT=value, PREDICT_FILE=value, EXTRA=value)
    for flag in ("--output_dir", "--model_name_or_path", "--eval_checkpoint", "--predict_file"):
        assert f"{flag}={value}" in argv, flag
    assert_words(argv, value)

    argv = recorded("eval-nq", recorder, marker, OUTPUT_DIR=value, CKPT=value, NQ_DEV_GLOB=value)
    for flag in ("--model_dir", "--checkpoint", "--input"):
        assert f"{flag}={value}" in argv, flag

    assert recorded("status", recorder, marker, OUTPUT_DIR=value)[-2:] == ["--", value]
    assert recorded("report", recorder, marker, RUN=value)[-2:] == ["--", value]
    argv = recorded("ask", recorder, marker, MODEL_DIR=value, QUESTION=value, CONTEXT_FILE=value)
    assert argv[-2:] == ["--", value] and f"--question={value}" in argv and f"--context-file={value}" in argv
    argv = recorded("ask", recorder, marker, MODEL_DIR=value, QUESTIONS_FILE=value, OUT=value)
    assert argv[-2:] == ["--", value] and f"--questions-file={value}" in argv and f"--output={value}" in argv
    assert f"--squad-base-url={value}" in recorded("data-squad", recorder, marker, SQUAD_BASE_URL=value)
    assert recorded("sync", recorder, marker, OUTPUT_DIR=value, SYNC=value)[-3:] == ["--", value, value]
    argv = recorded("export", recorder, marker, OUTPUT_DIR=value, CKPT=value, ONNX_DIR=value, PREDICT_FILE=value)
    assert argv[-2:] == ["--", value]
    for flag in ("--checkpoint", "--out", "--predict_file"):
        assert f"{flag}={value}" in argv, flag


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_print_and_help_show_values_unchanged(payload, marker):
    printed = make("print-OUTPUT_DIR", f"OUTPUT_DIR={payload}", marker=marker)
    assert printed.returncode == 0 and printed.stdout == payload + "\n"
    helped = make("help", f"OUTPUT_DIR={payload}", marker=marker)
    assert helped.returncode == 0 and f"OUTPUT_DIR={payload}" in helped.stdout


def _folder(base, name):
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_logs_follows_the_folder_named_by_the_value(payload, marker, tmp_path):
    run = _folder(tmp_path / "runs", payload)
    (run / "train.log").write_text("step 7: loss 1.25\n")
    env = dict(os.environ, QT_MARK=str(marker))
    with subprocess.Popen(["make", "--no-print-directory", "-C", str(ROOT), "logs", f"OUTPUT_DIR={run}"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True) as follow:
        try:
            lines = []
            for line in follow.stdout:  # tail -F never ends: read until the log's line arrives
                lines.append(line)
                if "step 7: loss 1.25" in line:
                    break
        finally:
            os.killpg(follow.pid, signal.SIGTERM)
    assert "step 7: loss 1.25\n" in lines, lines
    missing = make("logs", f"OUTPUT_DIR={tmp_path / 'gone' / payload}", marker=marker)
    assert missing.returncode == 2 and f"OUTPUT_DIR {tmp_path / 'gone' / payload}: no such folder" in missing.stderr


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_attach_refuses_a_bad_name_and_names_the_folder_as_given(payload, marker, tmp_path):
    env = dict(os.environ, TMUX_TMPDIR=str(tmp_path), SCREENDIR=str(tmp_path / "screen"))  # no session runs there
    refused = make("attach", f"NAME={payload}", marker=marker, env=env)
    assert refused.returncode == 2 and f"session NAME '{payload}' may only hold" in refused.stderr
    run = tmp_path / payload
    gone = make("attach", "NAME=qa-quoting-test", f"OUTPUT_DIR={run}", marker=marker, env=env)
    assert gone.returncode == 2 and "no screen or tmux session named 'qa-quoting-test' runs" in gone.stdout
    hint = next(line for line in gone.stdout.splitlines() if "make logs" in line)
    assert shlex.split(hint.split("its log: ", 1)[1]) == ["make", "logs", f"OUTPUT_DIR={run}"]


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_clean_cache_dirs_is_a_list_of_folders(payload, marker, tmp_path):
    # DIRS is a list: each blank-separated word is one folder, none of them run.
    folders = [_folder(tmp_path / "dirs", word) for word in payload.split()]
    for folder in folders:
        _folder(folder, "features-" + "0" * 32)
    listed = make("clean-cache", "DRY_RUN=yes", "DIRS=" + " ".join(str(f) for f in folders), marker=marker)
    assert listed.returncode == 0, listed.stderr
    for folder in folders:
        assert f"{folder}/features-{'0' * 32}" in listed.stdout
    assert all((folder / f"features-{'0' * 32}").exists() for folder in folders)
    # What the recipe runs, from a folder holding these names: a folder named like an option (-x) is a folder too.
    relative = bash("clean_cache.sh", "--dry-run", "--", *payload.split(), cwd=tmp_path / "dirs")
    assert relative.returncode == 0, relative.stderr
    assert all(f"features-{'0' * 32}" in line for line in relative.stdout.splitlines()[1:-2])
    assert len(relative.stdout.splitlines()) == len(set(folders)) + 3  # a folder given twice is listed once


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_swap_size_and_file_arrive_whole(payload, marker, tmp_path):
    refused = make("swap", f"SIZE={payload}", "DRY_RUN=1", f"SWAPFILE={tmp_path / 'swapfile'}", marker=marker)
    assert refused.returncode == 2 and f"SIZE '{payload}' is not a whole number of M or G" in refused.stderr
    swapfile = tmp_path / payload
    planned = make("swap", "SIZE=64M", "DRY_RUN=true", f"SWAPFILE={swapfile}", marker=marker)
    assert planned.returncode == 0, planned.stderr
    assert f"+ mkswap -- {swapfile}" in planned.stdout.splitlines()
    assert not swapfile.exists()


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_upload_bucket_checkpoint_and_endpoint_arrive_whole(payload, marker, tmp_path, recorder):
    run = _folder(tmp_path, payload)
    for name in ("config.json", "model.safetensors"):
        (run / name).write_text("{}")
    # PYTHON=true: the model folder check upload.sh runs first (qa.model_check, tested in test_model_check.py) passes.
    env = dict(os.environ, PYTHON="true")
    bucket = f"s3://quoting-test/{payload}"
    dry = make("upload", f"OUTPUT_DIR={run}", f"BUCKET={bucket}", "DRY_RUN=1",
               f"S3_ENDPOINT=http://127.0.0.1:9/{payload}", marker=marker, env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: would upload" in dry.stdout and f"to {bucket}/ (private)" in dry.stdout
    command = shlex.split(next(line for line in dry.stdout.splitlines() if line.startswith("+ "))[2:])
    assert command[-2:] == ["--endpoint-url", f"http://127.0.0.1:9/{payload}"] and f"{bucket}/" in command
    assert f"  {bucket}/config.json" in dry.stdout.splitlines()
    refused = make("upload", f"OUTPUT_DIR={run}", f"BUCKET=s3://{payload}", "DRY_RUN=1", marker=marker)
    assert refused.returncode == 2 and f"BUCKET 's3://{payload}' is not an s3://bucket[/prefix] URI" in refused.stderr
    # For real (awscli replaced by the recorder): the bucket and the endpoint reach aws as one argument each.
    real = make("upload", f"OUTPUT_DIR={run}", f"BUCKET={bucket}", f"S3_ENDPOINT=http://127.0.0.1:9/{payload}",
                marker=marker, env=dict(env, AWS=str(recorder)))
    assert real.returncode == 0, real.stdout + real.stderr
    argv = (marker.parent / "argv").read_bytes().decode().split("\0")[:-1]
    assert argv[:3] == ["s3", "cp", "--recursive"] and f"{bucket}/" in argv
    assert argv[-2:] == ["--endpoint-url", f"http://127.0.0.1:9/{payload}"]
    missing = make("upload", f"OUTPUT_DIR={run}", f"BUCKET={bucket}", f"CKPT={payload}", "DRY_RUN=1", marker=marker)
    assert missing.returncode == 2 and f"checkpoint '{payload}' not found" in missing.stderr


@pytest.mark.parametrize("variable", ["DETACH", "YES", "DRY_RUN", "PERSIST", "PUBLIC"])
def test_switches_take_the_usual_words_and_refuse_others(variable, recorder, tmp_path):
    marker = tmp_path / "marker"
    for word in ("1", "yes", "true", "on", "0", "no", "false", "off", ""):
        assert make("print-" + variable, f"{variable}={word}", marker=marker).returncode == 0, word
    for word in ("2", "maybe", "yes please", "$(shell touch $$QT_MARK)"):
        refused = make("print-" + variable, f"{variable}={word}", marker=marker)
        assert refused.returncode == 2, word
        assert f"{variable} must be 1/yes/true/on or 0/no/false/off, got '{word}'" in refused.stderr
    assert not marker.exists()


@pytest.mark.parametrize("word", ["yes", "true", "on", "1"])
def test_detach_true_words_start_a_detached_run(word, recorder, tmp_path):
    # DETACH=yes must detach, not silently run in the foreground: detach.sh is what the recipe runs first
    # (seen in the command make echoes: make -n would not prove that the value was understood).
    marker = tmp_path / "marker"
    done = make("train", f"DETACH={word}", "NAME=bad name", f"PY={recorder}", f"OUTPUT_DIR={tmp_path / 'run'}",
                marker=marker)
    assert done.returncode == 2 and "detach.sh: session NAME 'bad name'" in done.stderr  # detach.sh ran, refused it
    foreground = make("train", "DETACH=no", "NAME=bad name", f"PY={recorder}", f"OUTPUT_DIR={tmp_path / 'run'}",
                      marker=marker)
    assert foreground.returncode == 0 and "detach.sh" not in foreground.stdout


@pytest.mark.parametrize("variable, value, message", [
    ("NGPUS", "1;touch $$QT_MARK", "NGPUS must be a whole number"), ("NNODES", "two", "NNODES must be a whole number"),
    ("PRECISION", "fp8", "PRECISION must be one of: fp16 bf16 fp32"), ("DATA_DIR", "a b", "DATA_DIR must be a path"),
    ("NQ_CANDIDATES", "top all", "NQ_CANDIDATES must be one of: top all"),
    ("TEST_WORKERS", "2 --co", "TEST_WORKERS must be a whole number"),
])
def test_values_make_decides_on_are_validated(variable, value, message, tmp_path):
    marker = tmp_path / "marker"
    refused = make("help", f"{variable}={value}", marker=marker)
    assert refused.returncode == 2 and message in refused.stderr
    assert not marker.exists()


@pytest.mark.parametrize("payload", [PAYLOADS["all-at-once"], PAYLOADS["double-quote"]], ids=["all-at-once", "double-quote"])
def test_a_detached_run_gets_the_values_whole_too(payload, recorder, marker, tmp_path):
    # DETACH=1 adds two shells (detach.sh's session runs `bash -c`): the values must cross both untouched.
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed here; the detached path needs it")
    env = dict(os.environ, TMUX_TMPDIR=str(tmp_path), MULTIPLEXER="tmux")
    env.pop("TMUX", None)
    run = tmp_path / payload
    try:
        started = make("train", "DETACH=1", "NAME=qa-quoting", f"PY={recorder}", f"OUTPUT_DIR={run}", f"MODEL={payload}",
                       f"EXTRA={payload}", marker=marker, env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        console = run / "console.log"
        deadline = time.time() + 60
        while time.time() < deadline and "exit status" not in (console.read_text() if console.exists() else ""):
            time.sleep(0.05)
        assert "exit status 0" in console.read_text(), console.read_text()
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)
    argv = (marker.parent / "argv").read_bytes().decode().split("\0")[:-1]
    assert f"--output_dir={run}" in argv and f"--model_name_or_path={payload}" in argv
    assert_words(argv, payload)
