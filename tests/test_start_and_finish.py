"""The first start and the end of a run (issue 19 items 1, 3, 4): a failed start does not block the next one,
an unreachable hub is one line, a finished run is not resumed by accident, its thread count is part of the
record, and the final model's evaluation takes part in "best".

run_squad.main runs in-process with the tiny model of conftest (one torch thread), except where the process
itself matters (the hub's network, make).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import types

import pytest

from conftest import ROOT, shared_file

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import retention, run_dir  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")


def train_argv(model_dir, out, *extra, train_file=None):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(train_file or shared_file(*TRAIN)), "--max_train_samples", "4", "--max_seq_length", "128",
            "--doc_stride", "64", "--features_cache_dir", str(out) + "-cache", "--report_to", "none", *extra]


def stderr_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("run_squad.py:")]


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    """A run that finished at step 2 (checkpoint-1, checkpoint-2, the final model), trained with 1 torch thread."""
    out = tmp_path_factory.mktemp("finished") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(train_argv(tiny_model_dir, out, "--max_steps", "2", "--save_steps", "1")) == 0
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


# --- item 1: a failed first start ----------------------------------------------------------------

def test_a_failed_first_start_leaves_a_folder_the_next_start_takes(tiny_model_dir, tmp_path, capsys, one_thread):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": "v2.0", "data": []}))
    out = tmp_path / "run"
    assert run_squad.main(train_argv(tiny_model_dir, out, "--max_steps", "1", train_file=empty)) == 2
    assert "no questions to train on" in "\n".join(stderr_lines(capsys))
    assert (out / "args.json").exists() and (out / "train.log").exists()  # what the failed start left
    assert run_dir.failed_start(out) is not None

    assert run_squad.main(train_argv(tiny_model_dir, out, "--max_steps", "1")) == 0  # no --overwrite_output_dir
    taken = "holds no checkpoint, no final model and no live run, only what a start that failed left"
    assert taken in (out / "train.log").read_text() and taken in capsys.readouterr().err
    assert run_dir.finished_step(out) == 1
    assert run_dir.read_args(out)["train_file"] == str(shared_file(*TRAIN))  # the new start's record
    # A folder with a checkpoint is a run: still refused (tests/test_args.py checks the message).
    assert run_squad.main(train_argv(tiny_model_dir, out, "--max_steps", "1")) == 2
    assert "already exists and is not empty" in "\n".join(stderr_lines(capsys))


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("via_make", [False, True])
def test_an_unreachable_hub_is_one_line_without_retries(tmp_path, via_make):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "QA_VIA_MAKE")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", OMP_NUM_THREADS="1",
               **({"QA_VIA_MAKE": "1"} if via_make else {}))
    argv = ["--model_name_or_path", "albert-base-v2", "--output_dir", str(tmp_path / "run"), "--do_train",
            "--train_file", str(shared_file(*TRAIN))]
    done = subprocess.run([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("run_squad.py: error: cannot reach the model hub for albert-base-v2 (http://127.0.0.1:")
    assert "download it once with network, or give a local folder" in lines[0]
    assert ("(MODEL PATH)" if via_make else "(--model_name_or_path PATH)") in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written: the next start is not blocked


# --- item 3: a finished run ---------------------------------------------------------------------

def test_resuming_a_finished_run_is_refused_saying_how_to_train_further(run_copy, capsys, monkeypatch, one_thread):
    weights = run_copy / "model.safetensors"
    before = (weights.stat().st_mtime_ns, sorted(os.listdir(run_copy)))
    for spec, says in (("auto", "there is nothing left to resume"),
                       ("checkpoint-1", "resuming from step 1 would train steps 2-2 again and write over its final model")):
        assert run_squad.main(["--output_dir", str(run_copy), "--do_train", "--resume_from_checkpoint", spec]) == 2
        message = "\n".join(stderr_lines(capsys))
        assert f"{run_copy} finished training at step 2 (its final model is saved): {says}" in message
        assert f"--model_name_or_path {run_copy} --output_dir {run_copy}-more" in message
        assert "--num_train_epochs 4 --continue_finished" in message  # one more than the run's 3
    # The guide's way (--model_name_or_path RUN/checkpoint-1) is a resume too.
    assert run_squad.main(["--model_name_or_path", str(run_copy / "checkpoint-1"), "--output_dir", str(run_copy),
                           "--do_train"]) == 2
    assert "finished training at step 2" in "\n".join(stderr_lines(capsys))
    monkeypatch.setenv("QA_VIA_MAKE", "1")
    assert run_squad.main(["--output_dir", str(run_copy), "--do_train", "--resume_from_checkpoint", "auto"]) == 2
    message = "\n".join(stderr_lines(capsys))
    assert f"make train MODEL={run_copy} OUTPUT_DIR={run_copy}-more" in message
    # Review #11: the new run carries the run's own settings, not the guide's defaults (EPOCHS=7, BATCH=1, LR 3e-5)
    record = json.loads((run_copy / "args.json").read_text())
    assert f" EPOCHS={record['num_train_epochs']:g} " in message and f" LR={record['learning_rate']:g} " in message
    assert f" BATCH={record['per_gpu_train_batch_size']} " in message
    assert f" MAX_SEQ_LENGTH={record['max_seq_length']} " in message
    assert f"make resume OUTPUT_DIR={run_copy} EPOCHS=4 EXTRA=--continue_finished" in message
    assert (weights.stat().st_mtime_ns, sorted(os.listdir(run_copy))) == before  # nothing trained, nothing written


def test_continue_finished_trains_further_with_the_runs_thread_count(run_copy, capsys):
    """--continue_finished with more steps: the run continues from its newest checkpoint; the torch thread count
    comes from the record (1) although this process uses 2, and main() gives the caller its own count back."""
    assert run_dir.read_args(run_copy)["torch_threads"] == 1
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code = run_squad.main(["--output_dir", str(run_copy), "--do_train", "--resume_from_checkpoint", "auto",
                               "--max_steps", "3", "--continue_finished"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert code == 0, capsys.readouterr().err[-3000:]
    log = (run_copy / "train.log").read_text()
    resumed = log[log.index("--continue_finished: "):]
    assert "had finished at step 2" in resumed and "resuming from" in resumed
    assert "1 CPU thread(s)" in resumed.split("training: ", 1)[1].splitlines()[0]
    assert run_dir.finished_step(run_copy) == 3 and run_dir.latest_checkpoint(run_copy).endswith("checkpoint-3")


def test_make_resume_of_a_finished_run_says_it_is_finished(run_copy):
    done = subprocess.run(["make", "--no-print-directory", "resume", f"OUTPUT_DIR={run_copy}", "NGPUS=0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert f"{run_copy} finished training at step 2" in done.stderr, done.stderr[-3000:]
    assert f"make resume OUTPUT_DIR={run_copy} EPOCHS=4 EXTRA=--continue_finished" in done.stderr
    assert "Traceback" not in done.stderr


# --- item 4: the final model takes part in "best" -------------------------------------------------

def test_the_final_model_becomes_best_when_it_scores_better(run_copy):
    retention.record_best(run_copy, run_copy / "checkpoint-1", "f1", 50.0)
    assert run_dir.run_model(run_copy) == str(run_copy / "checkpoint-1")
    args = types.SimpleNamespace(output_dir=str(run_copy), metric_for_best_model="f1")
    result = types.SimpleNamespace(global_step=2, early_stopped=False)
    log = types.SimpleNamespace(info=lambda message: None)

    run_squad.record_final_best(args, result, {"f1": 40.0}, log)  # worse: the checkpoint stays the best
    assert run_dir.best_checkpoint(run_copy)["checkpoint"] == "checkpoint-1"
    run_squad.record_final_best(args, result, {"f1": 60.0}, log)
    best = run_dir.best_checkpoint(run_copy)
    assert (best["checkpoint"], best["step"], best["value"]) == (run_dir.FINAL, 2, 60.0)
    assert run_dir.read_summary(run_copy)["best"]["checkpoint"] == run_dir.FINAL  # status and report read it there
    # Every reader of "the run's model" now takes the final model.
    assert run_dir.run_model(run_copy) == str(run_copy)
    assert run_dir.resolve_model("best", run_copy) == str(run_copy)
    eval_alone = types.SimpleNamespace(eval_all_checkpoints=False, eval_checkpoint=None, output_dir=str(run_copy),
                                       model_name_or_path=str(run_copy))
    assert run_squad.eval_targets(eval_alone, None) == [("final model", str(run_copy), 2)]
    eval_alone.eval_checkpoint = "best"
    assert run_squad.eval_targets(eval_alone, None) == [("final model", str(run_copy), 2)]
    # A checkpoint named "best" is asked for by name: the error says the best is the final model.
    with pytest.raises(run_dir.CheckpointError, match="is its final model"):
        run_dir.resolve_checkpoint("best", run_copy)
    # Later evaluations during training compare with the final model's score, which is still there.
    assert not retention.record_best(run_copy, run_copy / "checkpoint-2", "f1", 55.0)
    assert retention.record_best(run_copy, run_copy / "checkpoint-2", "f1", 65.0)


def test_model_step_of_checkpoints_final_models_and_other_folders(run_copy, tiny_model_dir):
    assert run_dir.model_step(run_copy / "checkpoint-1") == 1
    assert run_dir.model_step(run_copy) == 2
    assert run_dir.model_step(tiny_model_dir, default="pretrained") == "pretrained"


def test_evaluation_alone_takes_the_runs_thread_count_without_naming_its_folder(run_copy):
    from qa.args import given_settings, parse_args
    from qa.resume_record import eval_run_settings

    for extra, threads in (([], 1), (["--torch_threads", "2"], 2)):
        argv = ["--output_dir", str(run_copy), "--do_eval", *extra]
        args = parse_args(argv)
        eval_run_settings(args, given_settings(argv))
        assert args.torch_threads == threads and "torch_threads" not in args.eval_changed  # speed, not the result
