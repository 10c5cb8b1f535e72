"""A diverged run stops (exit 3, one line, no checkpoint or final model of the bad weights); float flags must be
finite; sizes no machine can use are refused before anything is built (issue 18, items 4 and 11)."""

import json
import os
import types

import pytest

from conftest import shared_file

torch = pytest.importorskip("torch")
from qa import divergence, limits, run_dir  # noqa: E402
from qa.args import ArgumentError, parse_args, validate_args  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")


def train_argv(model_dir, out, cache, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file(*TRAIN)), "--max_train_samples", "8", "--max_seq_length", "128", "--report_to", "none",
            "--features_cache_dir", str(cache), "--version_2_with_negative", *extra]


@pytest.mark.parametrize("flag", ["--learning_rate", "--weight_decay", "--adam_epsilon", "--max_grad_norm",
                                  "--num_train_epochs", "--null_score_diff_threshold"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e400", "1e39"])
def test_non_finite_float_flags_are_refused_when_parsed(flag, value, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--do_train", f"{flag}={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {flag}:" in err and "not a finite number" in err


def test_finite_values_pass(tmp_path):
    args = parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--do_train", "--learning_rate", "1e-4",
                       "--null_score_diff_threshold", "-2.5"])
    assert args.learning_rate == 1e-4 and args.null_score_diff_threshold == -2.5


class FakeRuntime:
    device, distributed, is_main = torch.device("cpu"), False, True

    def __init__(self, amp_dtype=None):
        self.amp_dtype = amp_dtype


def run_steps(watch, model, losses):
    """Feed one loss per optimizer step; the step at which the watch stopped the run, or None."""
    for step, loss in enumerate(losses, 1):
        watch.add(torch.tensor(loss))
        watch.end_step()
        try:
            watch.stop_if_diverged(step, model, FakeRuntime(), "/nonexistent")
        except divergence.TrainingDiverged as exc:
            assert exc.code == divergence.DIVERGED_EXIT == 3
            return step, exc.message
    return None, None


def test_fp16_tolerates_the_scalers_skips_then_stops():
    model, nan = torch.nn.Linear(2, 2), float("nan")
    logged = []
    log = types.SimpleNamespace(info=logged.append)
    patience = divergence.FP16_PATIENCE
    # fewer non-finite steps in a row than the patience, between finite ones: the scaler skipped them, no stop
    steps = [1.0] + [nan] * (patience - 1) + [0.9] + [float("inf")] * (patience - 1) + [0.8]
    assert run_steps(divergence.DivergenceWatch(FakeRuntime(torch.float16), log), model, steps) == (None, None)
    step, message = run_steps(divergence.DivergenceWatch(FakeRuntime(torch.float16), log), model, [1.0] + [nan] * patience)
    assert step == 1 + patience
    assert f"loss was not finite (inf or NaN) for {patience} optimizer step(s) in a row" in message
    assert logged == [f"error: {message}"] and "\n" not in message


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_fp32_and_bf16_stop_at_the_first_non_finite_loss(amp_dtype):
    log = types.SimpleNamespace(info=lambda message: None)
    watch = divergence.DivergenceWatch(FakeRuntime(amp_dtype), log)
    assert run_steps(watch, torch.nn.Linear(2, 2), [1.0, 0.5, float("nan")])[0] == 3


def test_non_finite_weights_stop_the_run():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    step, message = run_steps(divergence.DivergenceWatch(FakeRuntime(), types.SimpleNamespace(info=print)), model, [1.0])
    assert step == 1 and "weights are no longer finite" in message


def test_checks_come_at_every_log_save_and_evaluation_step():
    args = types.SimpleNamespace(logging_steps=0, save_steps=7)
    assert [s for s in range(1, 31) if divergence.DivergenceWatch.due(s, args, 30)] == [7, 10, 14, 20, 21, 28, 30]
    args.logging_steps = 4
    assert [s for s in range(1, 13) if divergence.DivergenceWatch.due(s, args, 30)] == [4, 7, 8, 10, 12]
    watch = divergence.DivergenceWatch(FakeRuntime(), types.SimpleNamespace(info=print))
    assert watch.stop_if_diverged(3, torch.nn.Linear(2, 2), FakeRuntime(), "/nonexistent", 30, args) is False
    assert watch.stop_if_diverged(4, torch.nn.Linear(2, 2), FakeRuntime(), "/nonexistent", 30, args) is True


def test_a_diverged_run_exits_3_and_keeps_the_last_good_checkpoint(tiny_model_dir, tmp_path, capsys, one_thread):
    """--learning_rate 1e38 (finite, so accepted) with 4 warmup steps: step 1 has learning rate 0, step 2 makes the
    weights ~1e38 (still finite: both are saved), step 3's loss overflows and its update makes the weights NaN. The run
    stops there: exit 3, no checkpoint-3, no final model, checkpoint-2 the newest."""
    import run_squad

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        run_squad.main(train_argv(tiny_model_dir, out, tmp_path / "cache", "--learning_rate", "1e38", "--warmup_steps",
                                  "4", "--max_steps", "6", "--save_steps", "1", "--logging_steps", "1"))
    assert exc.value.code == 3
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "training diverged" in line]
    assert len(lines) == 1 and "at step 3: the weights are no longer finite" in lines[0]
    assert "the newest checkpoint, checkpoint-2, holds the last finite weights" in lines[0]
    assert [os.path.basename(p) for _, p in run_dir.list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
    assert run_dir.latest_checkpoint(out).endswith("checkpoint-2")
    assert not run_dir.has_final_model(out) and not (out / "model.safetensors").exists()
    assert "training done" not in (out / "train.log").read_text()
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def validation_errors(tmp_path, model_dir, *extra):
    args = parse_args(["--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "out"), "--do_train",
                       "--train_file", str(shared_file(*TRAIN)), *extra])
    with pytest.raises(ArgumentError) as exc:
        validate_args(args, cuda_available=False)
    return str(exc.value)


def test_max_seq_length_beyond_the_models_positions_is_refused_with_the_numbers(tiny_model_dir, tmp_path):
    positions = json.loads((tiny_model_dir / "config.json").read_text())["max_position_embeddings"]
    message = validation_errors(tmp_path, tiny_model_dir, "--max_seq_length", str(positions + 1))
    assert (f"--max_seq_length {positions + 1} is longer than the {positions} positions of the model ({tiny_model_dir}: "
            f"max_position_embeddings {positions}): use --max_seq_length {positions} or less") in message
    args = parse_args(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "ok"), "--do_train",
                       "--train_file", str(shared_file(*TRAIN)), "--max_seq_length", str(positions)])
    validate_args(args, cuda_available=False)


def test_roberta_positions_leave_out_the_padding_offset(tmp_path):
    from qa.preflight import usable_positions

    assert usable_positions({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert usable_positions({"model_type": "albert", "max_position_embeddings": 512, "pad_token_id": 0}) == 512
    assert usable_positions({"model_type": "t5"}) is None


def test_absurd_sizes_are_refused(tiny_model_dir, tmp_path):
    message = validation_errors(tmp_path, tiny_model_dir, "--max_seq_length", "100000", "--threads", "5000",
                                "--per_gpu_train_batch_size", "100000")
    assert f"--max_seq_length 100000 is beyond any encoder's positions (limit {limits.MAX_SEQ_LENGTH})" in message
    assert "--threads 5000 is more than any machine can use (limit 1024" in message
    assert "--per_gpu_train_batch_size 100000 x --max_seq_length 100000 = 10,000,000,000 tokens" in message
    message = validation_errors(tmp_path, tiny_model_dir, "--max_seq_length", "128", "--per_gpu_train_batch_size", "100000")
    assert "--per_gpu_train_batch_size 100000 x --max_seq_length 128 = 12,800,000 tokens per device" in message
    assert "raise --gradient_accumulation_steps" in message


def test_threads_beyond_the_cpus_are_warned(monkeypatch):
    from qa.args import unused_flag_notes

    monkeypatch.setattr(limits, "cpu_count", lambda: 2)
    args = types.SimpleNamespace(threads=9, fp16=False, fp16_opt_level="O1", model_type=None, doc_stride=128,
                                 max_seq_length=384, max_query_length=64, answer_type_head=None, do_train=True)
    assert ["warning: --threads 9 is more than 4x this machine's 2 CPUs: the extra threads only hold more windows in "
            "memory (2 chunks each); 2 is enough"] == [n for n in unused_flag_notes(args) if "threads" in n]
    args.threads = 8
    assert not [n for n in unused_flag_notes(args) if "threads" in n]


@pytest.mark.parametrize("amp_dtype, via_make, precision", [
    (torch.float16, "1", "(or PRECISION=bf16 / fp32 instead of fp16) "), (None, "1", ""), (torch.bfloat16, "1", ""),
    (torch.float16, "", "(or --bf16 / fp32 instead of --fp16) "), (None, "", "")])
def test_the_hint_names_another_precision_only_for_an_fp16_run(amp_dtype, via_make, precision, monkeypatch, tmp_path):
    # Review #10: "instead of fp16" told an fp32 run to change what it did not use.
    monkeypatch.setenv("QA_VIA_MAKE", via_make)
    watch = divergence.DivergenceWatch(FakeRuntime(amp_dtype), types.SimpleNamespace(info=lambda message: None))
    with pytest.raises(divergence.TrainingDiverged) as exc:
        watch.stop(7, "the weights are no longer finite (inf or NaN)", FakeRuntime(amp_dtype), str(tmp_path))
    rate, folder = ("LR ", "OUTPUT_DIR") if via_make else ("--learning_rate ", "--output_dir")
    assert exc.value.message.endswith(f"train again with a lower {rate}{precision}into a new {folder}: a resume would "
                                      "restore this run's learning rate")
    assert divergence.read_divergence(str(tmp_path)) == {"step": 7, "problem": "the weights are no longer finite (inf "
                                                                                "or NaN)"}
