"""Log lines and the progress bar on one console (issue 19 item 7, review #5): every log line starts a line of its
own, never at the end of a bar's line, on the console output of a real short run (tiny model)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

pytest.importorskip("torch")

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def test_every_log_line_of_a_short_run_starts_at_the_beginning_of_a_line(tiny_model_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "run_squad.py", "--model_name_or_path", str(tiny_model_dir), "--output_dir",
         str(tmp_path / "run"), "--do_train", "--train_file", str(shared_file("squad", "squad2-dev-normans-rhine.json")),
         "--max_train_samples", "8", "--max_seq_length", "128", "--max_steps", "4", "--logging_steps", "1",
         "--save_steps", "2", "--per_gpu_train_batch_size", "2", "--report_to", "none", "--version_2_with_negative",
         "--features_cache_dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stderr
    starts = [m.start() for m in LOG_LINE.finditer(console)]
    assert len(starts) >= 5, console[-3000:]
    assert re.search(r"train\S*: +\d+%\|", console), "no progress bar drawn: the test would prove nothing"
    # The character before each log line: the start of the output, a newline, or the carriage return with which
    # tqdm clears its bar (a terminal then writes the line from column 0 over the cleared bar).
    glued = [console[max(0, i - 60):i + 30] for i in starts if i > 0 and console[i - 1] not in "\n\r"]
    assert glued == [], glued
