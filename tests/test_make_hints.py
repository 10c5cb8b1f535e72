"""Every command the project prints runs as printed, from where the user stands (issue 19 #1-#2).

Through make, on a tiny model: a training stopped by SIGTERM, a second start into the same folder, the hint
of each run as printed (`subprocess.run(hint, shell=True)` in the checkout, as a user pastes it), then the
finished run's own hints. The run's folder has a space in its name, so a hint that forgets OUTPUT_DIR or
its quoting fails here. Early stopping and the end of training print no command (only the best checkpoint).
"""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import ROOT, shared_file

TARGETS = "train|resume|eval|eval-nq|status|logs|attach|report|ask|upload"
HINT = re.compile(rf"make (?:{TARGETS})(?: [A-Z_0-9]+=(?:'[^']*'|[^\s`'();,]+))*")


def hints(text, target):
    return [hint for hint in HINT.findall(text) if hint.split()[1] == target]


def shell(command, timeout=600):
    """A command as a user pastes it into a shell in the checkout."""
    return subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def make_args(tiny_model_dir, out, cache):
    return ["make", "--no-print-directory", "train", f"MODEL={tiny_model_dir}",
            f"TRAIN_FILE={shared_file('squad', 'squad2-dev-normans-rhine.json')}",
            f"PREDICT_FILE={shared_file('squad', 'squad2-dev-normans-complexity.json')}", f"OUTPUT_DIR={out}",
            "NGPUS=0", "EPOCHS=1", "BATCH=4", "EVAL_BATCH=32", "MAX_SEQ_LENGTH=128", "DOC_STRIDE=32",
            "LOGGING_STEPS=1", "SAVE_STEPS=1000", "THREADS=1",
            f"EXTRA=--max_steps 6 --max_train_samples 24 --max_eval_samples 4 --features_cache_dir {cache}"]


def child_of(pid):
    """The process make started for the recipe (run_squad.py), once it runs."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


@pytest.mark.slow
def test_hints_of_a_stopped_a_refused_and_a_finished_run_run_as_printed(tiny_model_dir, tmp_path):
    out = tmp_path / "run x"  # a space: the hints must quote the folder
    args = make_args(tiny_model_dir, out, tmp_path / "cache")
    metrics = out / "metrics.jsonl"
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as training:
        deadline = time.time() + 300
        while time.time() < deadline and training.poll() is None and not (metrics.exists() and metrics.read_text()):
            time.sleep(0.05)
        child = child_of(training.pid)
        if child is None:  # make ended (or never started run_squad.py) before metrics.jsonl had a line
            training.kill()
            pytest.fail(f"make train ended before its first logged step: {training.communicate(timeout=60)[0][-3000:]}")
        os.kill(child, signal.SIGTERM)  # what a spot instance's shutdown sends the training
        output = training.communicate(timeout=300)[0]
    assert "stopped by signal" in output, output[-3000:]
    [resume] = hints(output, "resume")
    assert f"OUTPUT_DIR='{out}'" in resume and "CKPT=checkpoint-" in resume

    # make status says the run is not running and how to continue it.
    stopped = shell(f"make --no-print-directory status OUTPUT_DIR='{out}'", timeout=120)
    assert "ETA" not in stopped.stdout and hints(stopped.stdout, "resume") == [f"make resume OUTPUT_DIR='{out}'"]

    # A second start into the folder is refused; its hints are make's forms.
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    assert "EXTRA=--overwrite_output_dir" in again.stderr
    assert not re.search(r"(?<!EXTRA=)--overwrite_output_dir", again.stderr)  # never the raw flag under make
    assert hints(again.stderr, "resume") == [f"make resume OUTPUT_DIR='{out}'"]

    resumed = shell(resume)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "training done at step 6" in (out / "train.log").read_text()
    for hint in hints(resumed.stdout + resumed.stderr, "status") + [f"make status OUTPUT_DIR='{out}'"]:
        shown = shell(hint)
        assert shown.returncode == 0 and "finished at step 6" in shown.stdout, shown.stdout + shown.stderr

    # The finished run: resuming it again is refused, with hints that name the run's folder and data.
    finished = shell(hints(again.stderr, "resume")[0])
    assert finished.returncode != 0 and "finished training at step 6" in finished.stderr
    [new_run] = hints(finished.stderr, "train")
    [more] = hints(finished.stderr, "resume")
    assert f"MODEL='{out}'" in new_run and f"OUTPUT_DIR='{out}-more'" in new_run and "TRAIN_FILE=" in new_run
    assert f"OUTPUT_DIR='{out}'" in more and re.search(r"EPOCHS=\d", more) and "EXTRA=--continue_finished" in more
    for hint, flags in ((new_run, [f"--output_dir={out}-more", f"--model_name_or_path={out}"]),
                        (more, [f"--output_dir={out}", "--continue_finished"])):
        planned = shell(hint.replace("make ", "make -n ", 1), timeout=60)  # whole runs: what make would run
        assert planned.returncode == 0, planned.stderr
        command = next(line for line in planned.stdout.splitlines() if "run_squad.py" in line)
        # The words the shell would hand to python (the command make echoes, parsed by bash).
        parsed = subprocess.run(["bash", "-c", f"printf '%s\\n' {command}"], capture_output=True, text=True).stdout
        for flag in flags:
            assert flag in parsed.splitlines(), (flag, command)


def test_bare_make_logs_says_what_to_do_instead_of_waiting(tmp_path):
    default = ROOT / "outputs" / "nq-albert-xlarge-v2"
    if default.exists():
        pytest.skip(f"{default} exists in this checkout: make logs would follow it")
    done = shell("make --no-print-directory logs", timeout=30)
    assert done.returncode != 0
    assert f"OUTPUT_DIR {default.relative_to(ROOT)}: no such folder" in done.stderr
    assert "make logs OUTPUT_DIR=" in done.stderr
