"""What make prints, as a user reads it (issue 19 #5-#7): no shell blocks echoed, no blank lines, help that
describes every variable, messages that name what the user typed (OUTPUT_DIR, EXTRA=--skip_bad_examples),
each once, and the demo's own settings free of the warning meant for users."""

import json
import os
import re
import shlex
import subprocess

import pytest

from conftest import ROOT, shared_file
from qa.args import parse_args, unused_flag_notes


def make(*args, env=None, timeout=300):
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "NGPUS=0", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def described_variables():
    """(variable, its `#:` line) for every `VAR ?=` of the Makefile, the first definition of each."""
    found, description = {}, None
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"([A-Z][A-Z_0-9]*) \?=", line)
        if match and match[1] not in found:
            found[match[1]] = description
        description = line[3:] if line.startswith("#: ") else None
    return found


def test_help_describes_every_variable_and_shows_no_make_syntax():
    variables = described_variables()
    assert len(variables) > 40
    assert not [name for name, description in variables.items() if not description], "a variable without #: line"
    shown = make("help")
    assert shown.returncode == 0 and "$(" not in shown.stdout
    lines = shown.stdout.splitlines()
    for name, description in variables.items():
        assert any(line.lstrip().startswith(f"{name}=") and line.endswith(description) for line in lines), name


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "python"
    path.write_text("#!/bin/bash\n")
    path.chmod(0o755)
    return path


def test_recipes_echo_one_line_each_and_no_blank_line(recorder, tmp_path):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "model.safetensors").write_text("{}")
    env = dict(os.environ, PYTHON="true", TMUX_TMPDIR=str(tmp_path), SCREENDIR=str(tmp_path / "screen"))
    for target, *assignments in (("resume", f"PY={recorder}", f"OUTPUT_DIR={run}"),
                                 ("eval", f"PY={recorder}", f"OUTPUT_DIR={run}"),
                                 ("swap", "SIZE=64M", "DRY_RUN=1", f"SWAPFILE={tmp_path / 'swapfile'}"),
                                 ("upload", f"OUTPUT_DIR={run}", "BUCKET=s3://bucket/x", "DRY_RUN=1"),
                                 ("clean-cache", f"DIRS={run}", "DRY_RUN=1"),
                                 ("attach", "NAME=qa-messages-test")):
        done = make(target, *assignments, env=env)
        output = done.stdout + done.stderr
        assert not [line for line in output.splitlines() if not line.strip()], (target, output)
        echoed = [line for line in done.stdout.splitlines() if line.startswith((str(recorder), "bash scripts/"))]
        assert len(echoed) == 1 and "  " not in echoed[0], (target, done.stdout)
        assert "no server running" not in output  # tmux's own complaint when no session exists at all
    upload = make("upload", f"OUTPUT_DIR={run}", "BUCKET=not-a-bucket", env=env)
    message = next(line for line in upload.stderr.splitlines() if line.startswith("upload.sh:"))
    assert message.endswith("e.g. s3://my-bucket/models/albert-nq")  # not followed by its exit code


def test_the_demo_settings_do_not_trigger_the_doc_stride_warning(tmp_path):
    planned = make("-n", "demo", f"DEMO_DIR={tmp_path / 'demo'}", f"DEMO_OUT={tmp_path / 'out'}")
    assert planned.returncode == 0, planned.stderr
    commands = planned.stdout.replace("\\\n", " ").splitlines()
    words = shlex.split(next(command for command in commands if "run_squad.py" in command))
    args = parse_args(words[words.index("run_squad.py") + 1:])
    assert not [note for note in unused_flag_notes(args) if "doc_stride" in note]
    # ... while the warning is still there for a user's settings that leave tokens out.
    args = parse_args([*words[words.index("run_squad.py") + 1:], "--doc_stride", "64"])
    assert [note for note in unused_flag_notes(args) if "doc_stride" in note]


def test_make_eval_of_a_missing_run_names_output_dir(tmp_path):
    done = make("eval", f"OUTPUT_DIR={tmp_path / 'mnie'}")
    assert done.returncode != 0
    assert f"OUTPUT_DIR {tmp_path / 'mnie'}: no such folder" in done.stderr and "MODEL " not in done.stderr


@pytest.mark.slow
def test_bad_data_under_make_names_extra_once(tiny_model_dir, tmp_path):
    document = json.loads(shared_file("squad", "squad2-dev-normans-rhine.json").read_text())
    qa = next(qa for qa in document["data"][0]["paragraphs"][0]["qas"] if qa["answers"])
    qa["answers"][0]["answer_start"] += 3
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(document))
    done = make("train", f"MODEL={tiny_model_dir}", f"TRAIN_FILE={bad}", f"PREDICT_FILE={bad}",
                f"OUTPUT_DIR={tmp_path / 'run'}", "MAX_SEQ_LENGTH=128", "DOC_STRIDE=32", "THREADS=1",
                f"EXTRA=--features_cache_dir {tmp_path / 'cache'}")
    assert done.returncode != 0
    assert done.stderr.count(f"question id {qa['id']!r}") == 1, done.stderr  # said once
    assert "add EXTRA=--skip_bad_examples to skip" in done.stderr and "skip_bad=True" not in done.stderr
    assert "question id" in (tmp_path / "run" / "train.log").read_text()  # and kept in the run's log


def test_make_eval_nq_names_its_variables(tmp_path):
    done = make("eval-nq", f"OUTPUT_DIR={tmp_path / 'nope'}")
    assert done.returncode != 0 and f"OUTPUT_DIR {tmp_path / 'nope'}: no such folder" in done.stderr
    (tmp_path / "run").mkdir()
    done = make("eval-nq", f"OUTPUT_DIR={tmp_path / 'run'}", "NQ_MAX_EXAMPLES=-1")
    assert done.returncode != 0 and "NQ_MAX_EXAMPLES must be >= 0" in done.stderr
