"""A resume is the same run, continued: `--output_dir RUN --do_train --resume_from_checkpoint auto` (or
`make resume OUTPUT_DIR=RUN CKPT=checkpoint-N`) takes every setting from the run's record and ends with the
weights of a run never interrupted; a flag that changes the data order needs --allow_changed_order."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from helpers import dropout_model_dir, env, finish, read_weights, start, train_argv  # noqa: F401 (a fixture)

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import run_dir  # noqa: E402

# Every one differs from run_squad.py's default, so a resume that fell back to a default would train otherwise.
# 12 questions -> 42 windows of 128 tokens -> 21 micro-batches of 2 an epoch -> 11 optimizer steps, 22 in all.
NON_DEFAULT = ["--learning_rate", "1e-3", "--per_gpu_train_batch_size", "2", "--gradient_accumulation_steps", "2",
               "--num_train_epochs", "2", "--save_steps", "4", "--logging_steps", "3", "--warmup_steps", "3"]


def assert_same_weights(a, b):
    wa, wb = read_weights(a), read_weights(b)
    assert wa.keys() == wb.keys()
    different = [name for name in wa if not torch.equal(wa[name], wb[name])]
    assert not different, f"weights differ after resume: {different}"


@pytest.mark.slow
def test_resume_from_the_record_alone_is_bit_identical(dropout_model_dir, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    uninterrupted = start(train_argv(dropout_model_dir, tmp_path / "a", cache, *NON_DEFAULT))
    # Micro-batch 30: after checkpoint-12, in the middle of epoch 2.
    killed = [start(train_argv(dropout_model_dir, tmp_path / name, cache, *NON_DEFAULT), QA_TEST_KILL_AT_MICRO_STEP="30")
              for name in ("b", "c")]
    for proc in killed:
        code, output = finish(proc)
        assert code == -signal.SIGKILL, output
    assert [s for s, _ in run_dir.list_checkpoints(tmp_path / "b")] == [4, 8, 12]

    # Only the run folder: every other setting comes from its record.
    resumed = start(["--output_dir", str(tmp_path / "b"), "--do_train", "--resume_from_checkpoint", "auto"])
    # Through make, with the guide's defaults (EPOCHS=7, LR=3e-5, BATCH=1, ...) in the Makefile: none may reach
    # the command line. SAVE_TOTAL_LIMIT, typed here, overrides the record and is named in a warning.
    via_make = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "resume", f"OUTPUT_DIR={tmp_path / 'c'}",
                               "CKPT=checkpoint-12", "NGPUS=0", "SAVE_TOTAL_LIMIT=5"],
                              env=env(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=300)
    assert via_make.returncode == 0, via_make.stdout[-3000:] + via_make.stderr[-3000:]
    command = next(line for line in via_make.stdout.splitlines() if "run_squad.py" in line)
    assert "--learning_rate" not in command and "--num_train_epochs" not in command and "--model_name_or_path" not in command
    assert "warning: resuming with settings that differ from the run's record: SAVE_TOTAL_LIMIT None -> 5" in via_make.stderr
    code, output = finish(resumed)
    assert code == 0, output
    assert "resuming from" in output and "checkpoint-12" in output and "warning: resuming with" not in output
    code, output = finish(uninterrupted)
    assert code == 0, output

    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert_same_weights(tmp_path / "a", tmp_path / "c")
    for name in ("b", "c"):
        assert run_dir.read_summary(tmp_path / name)["global_step"] == 22
    # The record stays the run's: args.json after the resume still holds the settings it was started with.
    args_b = run_dir.read_args(tmp_path / "b")
    assert (args_b["learning_rate"], args_b["max_seq_length"], args_b["doc_stride"]) == (1e-3, 128, 64)
    assert args_b["model_name_or_path"] == str(dropout_model_dir) and args_b["resume_from_checkpoint"] == "auto"
    assert run_dir.read_args(tmp_path / "c")["save_total_limit"] == 5

    # A changed batch size would make the saved position point at other windows: refused, naming the change.
    before = sorted(os.listdir(tmp_path / "b"))
    argv = ["--output_dir", str(tmp_path / "b"), "--do_train", "--resume_from_checkpoint", "checkpoint-12",
            "--per_gpu_train_batch_size", "3"]
    done = subprocess.run([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "would change --per_gpu_train_batch_size 2 -> 3" in done.stderr and "--allow_changed_order" in done.stderr
    assert sorted(os.listdir(tmp_path / "b")) == before  # refused before anything was written


def test_changed_order_through_make_names_the_variable(dropout_model_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    out = tmp_path / "run"
    code = run_squad.main(train_argv(dropout_model_dir, out, tmp_path / "cache", "--per_gpu_train_batch_size", "4",
                                     "--max_steps", "2", "--save_steps", "1", "--seed", "3"))
    assert code == 0
    monkeypatch.setenv("QA_VIA_MAKE", "1")
    capsys.readouterr()
    argv = ["--output_dir", str(out), "--do_train", "--resume_from_checkpoint", "checkpoint-1", "--seed", "4",
            "--gradient_accumulation_steps", "2"]
    assert run_squad.main(argv) == 2
    err = capsys.readouterr().err
    assert "would change GRAD_ACCUM 1 -> 2, --seed 3 -> 4" in err and "EXTRA=--allow_changed_order" in err
