"""Resume exactly: SIGKILL at any point + --resume_from_checkpoint auto = the weights of an uninterrupted run;
SIGTERM saves a checkpoint and exits; rotation keeps the best; early stopping evaluates the best by itself."""

import json
import os
import signal
import time

import pytest

from conftest import shared_file
from helpers import PREDICT, TRAIN, dropout_model_dir, finish, read_weights, start, train_argv  # noqa: F401 (a fixture)

torch = pytest.importorskip("torch")
from qa import checkpoints, run_dir  # noqa: E402


@pytest.mark.parametrize("order", [
    [],  # the default: random order, each batch padded to its longest window
    ["--group_by_length", "--length_group_epochs", "1"],  # grouped in epoch 1, killed and resumed in random epoch 2
], ids=["random-order", "grouped-first-epoch"])
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(dropout_model_dir, tmp_path, order):
    # 12 questions -> 42 windows -> 21 micro-batches of 2 an epoch -> 11 optimizer steps (the last of 1 micro-batch).
    common = ["--per_gpu_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--num_train_epochs", "2",
              "--save_steps", "4", "--logging_steps", "3", "--learning_rate", "1e-3", "--warmup_steps", "3",
              "--weight_decay", "0.01", *order]
    cache = tmp_path / "cache"
    uninterrupted = start(train_argv(dropout_model_dir, tmp_path / "a", cache, *common))
    # Micro-batch 30 = the 10th of epoch 2 (first of a 2-micro-batch group): after checkpoint-12, before step 16.
    killed = start(train_argv(dropout_model_dir, tmp_path / "b", cache, *common), QA_TEST_KILL_AT_MICRO_STEP="30")
    code, output = finish(killed)
    assert code == -signal.SIGKILL, output
    assert [s for s, _ in run_dir.list_checkpoints(tmp_path / "b")] == [4, 8, 12]
    assert not (tmp_path / "b" / "model.safetensors").exists()
    state = run_dir.load_train_state(tmp_path / "b" / "checkpoint-12")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)  # mid-epoch: 2 micro-batches of epoch 2 consumed
    resumed = start(train_argv(dropout_model_dir, tmp_path / "b", cache, *common, "--resume_from_checkpoint", "auto"))
    code, output = finish(resumed)
    assert code == 0, output
    assert "resuming from" in output and "checkpoint-12" in output
    code, output = finish(uninterrupted)
    assert code == 0, output
    a, b = read_weights(tmp_path / "a"), read_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"weights differ after resume: {different}"
    # The run did train (the weights moved away from the initial ones).
    initial = read_weights(dropout_model_dir)
    assert not all(torch.equal(initial[n], a[n]) for n in a)
    summary_a = json.loads((tmp_path / "a" / "training_summary.json").read_text())
    summary_b = json.loads((tmp_path / "b" / "training_summary.json").read_text())
    assert summary_a["global_step"] == summary_b["global_step"] == 22
    # The log of the resumed run reads as one run: what the killed run logged after checkpoint-12 was dropped,
    # and every loss and learning rate equals the uninterrupted run's.
    def logged(folder):
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "time"} for r in records]

    assert logged(tmp_path / "b") == logged(tmp_path / "a")
    assert [r["step"] for r in logged(tmp_path / "a")] == [3, 6, 9, 12, 15, 18, 21, 22]


def test_sigterm_saves_a_checkpoint_then_resume_and_rotation_keeps_the_best(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, tmp_path / "cache", "--per_gpu_train_batch_size", "1", "--max_steps", "200",
                      "--logging_steps", "25", "--save_steps", "1000", "--evaluate_during_training", "--predict_file",
                      str(shared_file(*PREDICT)), "--max_eval_samples", "8", "--save_total_limit", "1",
                      "--learning_rate", "3e-4")
    proc = start(argv)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc)
    assert code == 128 + signal.SIGTERM, output
    assert "resume with: the same command with --resume_from_checkpoint auto added" in output  # not run by make
    assert output.count("SIGTERM received: saving a checkpoint at the end of this optimizer step") == 1
    latest = run_dir.latest_checkpoint(out)
    step = run_dir.load_train_state(latest)["global_step"]
    assert f"stopped by signal {int(signal.SIGTERM)} at step {step}" in output
    assert 25 <= step < 200  # saved where the signal arrived, not at a --save_steps multiple (1000)
    assert not (out / "model.safetensors").exists()
    # Resumed the guide's way: --model_name_or_path pointing at the checkpoint.
    guide_way = [*argv]
    guide_way[guide_way.index("--model_name_or_path") + 1] = str(latest)
    code, output = finish(start(guide_way))
    assert code == 0, output
    assert f"resuming from {latest}: step {step}" in output
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 200
    # Rotation with --save_total_limit 1 keeps the newest and the best (every evaluation that improved saved one).
    best = run_dir.best_checkpoint(out)
    assert best is not None and (out / best["checkpoint"]).is_dir()
    kept = [path for _, path in run_dir.list_checkpoints(out)]
    assert len(kept) == (1 if os.path.basename(kept[-1]) == best["checkpoint"] else 2)
    evaluated = sorted(int(p.stem.split("_")[-1]) for p in out.glob("eval_results_*.json"))
    assert evaluated == list(range(25, 201, 25))


def test_early_stopping_then_the_best_is_evaluated(tiny_model_dir, tmp_path):
    import run_squad

    out = tmp_path / "run"
    # A learning rate of 1e-12 leaves the predictions (and so f1) unchanged: no evaluation improves on the first.
    argv = train_argv(tiny_model_dir, out, tmp_path / "cache", "--per_gpu_train_batch_size", "1", "--max_steps", "100",
                      "--logging_steps", "2", "--save_steps", "1000", "--evaluate_during_training", "--do_eval",
                      "--predict_file", str(shared_file(*PREDICT)), "--max_eval_samples", "8",
                      "--early_stopping_patience", "2", "--learning_rate", "1e-12")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["early_stopped"] and summary["global_step"] == 6
    assert run_dir.best_checkpoint(out)["checkpoint"] == "checkpoint-2"
    log = (out / "train.log").read_text()
    assert "early stopping at step 6" in log and "best: checkpoint-2 (step 2)" in log
    assert log.index("evaluating checkpoint-2") > log.index("early stopping at step 6")


def test_disk_full_while_saving_stops_cleanly(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The disk fills up in the middle of writing the second checkpoint (ENOSPC from the filesystem)."""
    import errno

    import run_squad

    real_save = checkpoints._save_torch
    calls = []

    def save_until_disk_full(obj, path):
        calls.append(path)
        if len(calls) == 5:  # 4 files (optimizer, scheduler, scaler, RNG) per checkpoint: the second one's first
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save(obj, path)

    monkeypatch.setattr(checkpoints, "_save_torch", save_until_disk_full)
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, tmp_path / "cache", "--per_gpu_train_batch_size", "1", "--max_steps", "6",
                      "--save_steps", "2", "--logging_steps", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit, match="disk full"):
            run_squad.main(argv)
    finally:
        torch.set_num_threads(before)
    assert [s for s, _ in run_dir.list_checkpoints(out)] == [2]
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]  # the half-written one is gone
    assert not (out / "model.safetensors").exists()
    log = (out / "train.log").read_text()
    assert "not enough disk space for a checkpoint, stopping" in log and "--resume_from_checkpoint auto" in log
    assert run_dir.resolve_checkpoint("auto", out) == str(out / "checkpoint-2")
