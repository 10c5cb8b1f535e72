"""The switches around a run: --torch_compile trains (and says how many graphs it compiled), --deterministic
reaches torch, a resume can switch a recorded flag off (--no_<flag>), and one-time actions of the first start
(--overwrite_cache) are not repeated by every resume."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import run_dir  # noqa: E402
from qa.args import OFF_SWITCHES, parse_args  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")


def train_argv(model_dir, out, cache, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file(*TRAIN)), "--max_train_samples", "8", "--max_seq_length", "128", "--doc_stride", "64",
            "--report_to", "none", "--features_cache_dir", str(cache), "--version_2_with_negative",
            "--per_gpu_train_batch_size", "2", "--logging_steps", "1", "--threads", "1", *extra]


def run_process(argv, timeout=600):
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def losses(out):
    return [r["train/loss"] for r in run_dir.read_metrics(out) if "train/loss" in r]


def test_every_off_switch_turns_its_flag_off():
    base = ["--model_name_or_path", "m", "--output_dir", "o"]
    for name in OFF_SWITCHES:
        assert getattr(parse_args([*base, f"--{name}"]), name) is True
        assert getattr(parse_args([*base, f"--{name}", f"--no_{name}"]), name) is False


def test_the_checkpoint_settings_win_over_a_stale_args_json(tmp_path):
    """Every rank continues from the same agreed checkpoint, while args.json is rewritten by global rank 0 only
    (another node keeps the copy it fetched): the checkpoint's settings decide, so all ranks agree."""
    from qa.args import given_settings
    from qa.resume_record import continue_run_settings

    out, checkpoint = tmp_path / "run", tmp_path / "run" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps(
        {"global_step": 4, "args": {"torch_compile": False, "max_steps": 2000, "per_gpu_train_batch_size": 2}}))
    (out / "args.json").write_text(json.dumps({"torch_compile": True, "max_steps": 1000, "per_gpu_train_batch_size": 2,
                                               "learning_rate": 1e-3}))
    argv = ["--output_dir", str(out), "--do_train", "--resume_from_checkpoint", "auto"]
    args = parse_args(argv)
    assert continue_run_settings(args, given_settings(argv), 1, checkpoint=str(checkpoint)) is None
    assert (args.torch_compile, args.max_steps, args.learning_rate) == (False, 2000, 1e-3)  # lr: only in args.json


def test_torch_compile_trains_as_eager_does_with_few_graphs_for_many_lengths(tiny_model_dir, tmp_path):
    """8 questions -> windows of several lengths; batches of 2, each padded to its longest, for 6 steps: the
    compiled run sees several batch shapes but compiles a few graphs (a new length recompiles once, dynamic),
    and learns what the eager run learns (the same kernels' maths, in another order: close, not equal)."""
    cache = tmp_path / "cache"
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    # grouped by length: batches of several widths (random batches of 2 here are mostly as wide as the longest)
    run_process(train_argv(tiny_model_dir, eager, cache, "--max_steps", "6", "--save_steps", "0", "--group_by_length"))
    done = run_process(train_argv(tiny_model_dir, compiled, cache, "--max_steps", "6", "--save_steps", "0",
                                  "--group_by_length", "--torch_compile"))
    log = (compiled / "train.log").read_text()
    line = next(line for line in log.splitlines() if "torch.compile:" in line)
    graphs = int(line.split("torch.compile: ")[1].split(" graph")[0])
    shapes = int(line.split(" for ")[1].split(" batch shape")[0])
    assert shapes >= 3, line  # the test means something only when the lengths vary
    assert 1 <= graphs < shapes and graphs <= 3, line
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-3), done.stderr[-2000:]
    assert (compiled / "model.safetensors").is_file()


def test_deterministic_reaches_torch(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that monkeypatch puts back what was there before
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(train_argv(tiny_model_dir, tmp_path / "det", tmp_path / "cache", "--max_steps", "2",
                                         "--save_steps", "0", "--deterministic")) == 0
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert run_dir.read_args(tmp_path / "det")["deterministic"] is True
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)


def test_resume_switches_a_recorded_flag_off_and_does_not_rebuild_the_cache(tiny_model_dir, tmp_path):
    """Started with --evaluate_during_training --overwrite_cache, resumed with --no_evaluate_during_training: the
    resume evaluates no more, and it reads the cache the first start built instead of rebuilding it again."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    predict = ["--predict_file", str(shared_file("squad", "squad2-dev-normans-complexity.json")),
               "--max_eval_samples", "4"]
    run_process(train_argv(tiny_model_dir, out, cache, "--max_steps", "2", "--save_steps", "2",
                           "--evaluate_during_training", "--overwrite_cache", *predict))
    first = [r["step"] for r in run_dir.read_metrics(out) if "eval/f1" in r]
    assert first == [1, 2]
    built = (out / "train.log").read_text().count("features: building")
    assert built == 2  # the training and the evaluation windows, rebuilt as --overwrite_cache asks

    # The first start finished (step 2 of 2): training it further is asked for explicitly.
    done = run_process(["--output_dir", str(out), "--do_train", "--resume_from_checkpoint", "auto", "--max_steps", "4",
                        "--no_evaluate_during_training", "--continue_finished"])
    assert "--evaluate_during_training True -> False" in done.stderr
    assert [r["step"] for r in run_dir.read_metrics(out) if "eval/f1" in r] == [1, 2]  # none at 3 and 4
    assert [r["step"] for r in run_dir.read_metrics(out) if "train/loss" in r][-2:] == [3, 4]
    log = (out / "train.log").read_text()
    assert log.count("features: building") == built and "features: using cache" in log
    record = json.loads((out / "args.json").read_text())
    # The record now says what the run does, and so does the checkpoint saved after the resume: a later resume
    # continues without evaluations too.
    assert record["evaluate_during_training"] is False
    assert run_dir.load_train_state(out / "checkpoint-4")["args"]["evaluate_during_training"] is False


def test_length_group_batches_sets_how_many_batches_are_sorted_together():
    """--length_group_batches reaches qa.sampling (None: its MEGA_BATCH_SIZE), changes the order (so a resume
    refuses a changed value without --allow_changed_order), and 0 is refused."""
    import numpy as np

    from qa import sampling, trainer
    from qa.args import ORDER_SETTINGS, ArgumentError, validate_args
    from qa.runtime import Runtime

    lengths = np.random.default_rng(0).integers(20, 300, 800)
    features = type("Windows", (), {"lengths": lengths})()
    runtime = Runtime(device=torch.device("cpu"))
    orders = {}
    for value in (None, 1, 4):
        argv = ["--model_name_or_path", "m", "--output_dir", "o", "--group_by_length"] + (
            ["--length_group_batches", str(value)] if value else [])
        plan = {}
        trainer.next_group(features, trainer.TrainState(), parse_args(argv), runtime, plan)
        expected = sampling.epoch_batches(lengths, 8, 0, 42, mega_batch_size=value or sampling.MEGA_BATCH_SIZE)
        assert len(plan[0]) == len(expected) and all(np.array_equal(a, b) for a, b in zip(plan[0], expected))
        orders[value] = sampling.padding_fraction(lengths, plan[0])
    assert orders[None] < orders[4] < orders[1]  # fewer batches sorted together: more padding
    assert "length_group_batches" in ORDER_SETTINGS
    with pytest.raises(ArgumentError, match="--length_group_batches must be at least 1"):
        validate_args(parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--length_group_batches", "0"]),
                      cuda_available=False)
