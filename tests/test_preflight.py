"""qa.preflight: free disk, RAM and CUDA checked before training, alone and inside run_squad.py."""

import json
import shutil

import pytest

import status
from conftest import shared_file
from qa import preflight as pf


@pytest.fixture
def machine(monkeypatch):
    """Set the free disk, available RAM and CUDA presence preflight sees."""
    numbers = {"disk": 100e9, "ram": 64e9, "cuda": True}
    monkeypatch.setattr(pf, "disk_free_bytes", lambda path: numbers["disk"])
    monkeypatch.setattr(pf, "ram_available_bytes", lambda: numbers["ram"])
    monkeypatch.setattr(pf, "cuda_available", lambda: numbers["cuda"])
    return numbers


ALBERT_XLARGE_PARAMS = 58_700_000  # ~0.70 GB per checkpoint with Adam state


def test_preflight_quiet_when_everything_fits(machine, tmp_path):
    logged = []
    assert pf.preflight(tmp_path / "out", ALBERT_XLARGE_PARAMS, 3, pf.features_bytes(100_000, 384), True, logged.append) == []
    assert logged == []


def test_preflight_warns_about_disk_with_numbers(machine, tmp_path):
    machine["disk"] = 2.0e9  # fits 2 checkpoints of 0.70 GB, not 3 + 1 + the final model
    logged = []
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, logged.append, model_name="albert-xlarge-v2")
    assert logged == warnings and len(warnings) == 1
    assert warnings[0].startswith("free disk 2.0 GB < ~3.1 GB needed for 4 checkpoints of ~0.7 GB (albert-xlarge-v2, 58.7M parameters")
    assert "lower --save_total_limit" in warnings[0]


def test_preflight_limit_of_one_still_keeps_the_best(machine, tmp_path):
    # rotate_checkpoints keeps the newest and an older best even with --save_total_limit 1: 3 on disk while saving.
    per_checkpoint = pf.checkpoint_bytes(ALBERT_XLARGE_PARAMS)
    machine["disk"] = 3 * per_checkpoint  # room for 3 checkpoints, not 3 + the final model
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 1, 0, False, None)
    assert len(warnings) == 1 and "needed for 3 checkpoints" in warnings[0]
    assert "--save_total_limit 1 keeps the newest and the best + the one being written" in warnings[0]
    machine["disk"] = 3 * per_checkpoint + 4 * ALBERT_XLARGE_PARAMS
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 1, 0, False, None) == []


def test_preflight_model_bytes_and_no_limit(machine, tmp_path):
    machine["disk"] = 10e9
    warnings = pf.preflight(tmp_path, save_total_limit=None, model_bytes=4 * ALBERT_XLARGE_PARAMS)
    assert len(warnings) == 1 and "no --save_total_limit" in warnings[0] and "holds about 13" in warnings[0]


def test_preflight_warns_about_ram(machine, tmp_path):
    machine["ram"] = 3e9
    features = pf.features_bytes(500_000, 512)  # 14 bytes per token + 21 per window (answer_types: 1 byte)
    assert features == 500_000 * (512 * 14 + 21)
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 2, features, False, None)
    assert warnings == [
        "available RAM 3.0 GB < 3.6 GB of training features: they are memory-mapped from the feature cache, so "
        "batches will be read from disk instead of memory (slower); a machine with more RAM, a smaller "
        "--max_seq_length or a subset of the data (--max_train_samples) avoids it"]


def test_features_bytes_is_the_size_of_real_features(tiny_model_dir):
    # The estimate is the layout qa/features.py really builds, not a guess: compare with real arrays.
    from transformers import AutoTokenizer

    from qa.features import FeatureParams, build_features
    from qa.squad_io import read_squad

    examples = read_squad(str(shared_file("squad", "squad2-dev-normans-rhine.json")))[:6]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for training in (True, False):
        features = build_features(examples, tokenizer, FeatureParams(64, 32, 16), training=training)
        arrays = [getattr(features, name) for name in features.__dataclass_fields__]
        real = sum(array.nbytes for array in arrays if array is not None)
        assert len(features) > len(examples)  # several windows per example at 64 tokens
        assert pf.features_bytes(len(features), 64, training=training) == real


def test_preflight_raises_when_it_cannot_work(machine, tmp_path):
    machine["cuda"] = False
    logged = []
    with pytest.raises(pf.PreflightError, match="CUDA was asked for"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, True, logged.append)
    assert len(logged) == 1 and logged[0].startswith("CUDA was asked for")  # in train.log too
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None) == []
    machine["disk"] = 0.5e9
    with pytest.raises(pf.PreflightError, match=r"free disk 0.5 GB .* < one checkpoint of ~0.7 GB"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None)
    with pytest.raises(ValueError, match="model_num_params or model_bytes"):
        pf.preflight(tmp_path)


def _tiny_training_argv(model_dir, out, cache):
    # A checkpoint at every step (4 steps): the run writes more than --save_total_limit 2 keeps, so the
    # preflight counts the 3 rotation can hold at once whether or not it is told how many the run writes.
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file("squad", "squad2-dev-normans-rhine.json")), "--max_train_samples", "8", "--num_train_epochs", "1",
            "--max_seq_length", "128", "--per_gpu_train_batch_size", "4", "--save_steps", "1",
            "--save_total_limit", "2", "--report_to", "none", "--threads", "1", "--features_cache_dir", str(cache),
            "--version_2_with_negative"]


def test_run_squad_logs_preflight_warnings_in_train_log(machine, tiny_model_dir, tmp_path):
    # run_squad.py's own preflight, with the disk and RAM it sees made short: the run goes on, and
    # train.log (what `make logs` follows) says what is short, with the numbers.
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForQuestionAnswering

    import run_squad

    params = AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir).num_parameters()
    # One checkpoint fits, not the 3 (--save_total_limit 2 + the one being written) + the final model.
    machine["disk"] = 2 * pf.checkpoint_bytes(params)
    machine["ram"] = 1000
    out = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(_tiny_training_argv(tiny_model_dir, out, tmp_path / "cache")) == 0
    finally:
        torch.set_num_threads(before)
    log = (out / "train.log").read_text()
    disk_lines = [line for line in log.splitlines() if "preflight: free disk" in line]
    assert len(disk_lines) == 1, log
    assert "needed for 3 checkpoints" in disk_lines[0] and "--save_total_limit 2" in disk_lines[0]
    assert "lower --save_total_limit or free space" in disk_lines[0]
    assert "preflight: available RAM 1.0 kB <" in log and "memory-mapped" in log
    assert (out / "model.safetensors").is_file()  # warnings only: the run finished
    # make status on this real run: the total comes from train.log (no --max_steps), and it is done.
    steps = json.loads((out / "training_summary.json").read_text())["global_step"]
    s = status.summarize(str(out))
    assert steps >= 2 and s["step"] == s["total_steps"] == steps
    assert s["finished"] == {"global_step": steps, "early_stopped": False}
    assert f"step:         {steps} / {steps} (100.0%)" in status.format_status(s)


def test_run_squad_stops_when_not_one_checkpoint_fits(machine, tiny_model_dir, tmp_path):
    pytest.importorskip("torch")
    import run_squad

    machine["disk"] = 1000  # bytes: not even one checkpoint of the tiny model
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"preflight: free disk 1.0 kB .* < one checkpoint of ~1.\d MB"):
        run_squad.main(_tiny_training_argv(tiny_model_dir, out, tmp_path / "cache"))
    assert "preflight: free disk 1.0 kB" in (out / "train.log").read_text()
    assert not list(out.glob("checkpoint-*")) and not (out / "model.safetensors").exists()


def test_preflight_real_machine_numbers(tmp_path):
    # The unpatched helpers read this machine: a folder that does not exist yet is measured at its parent.
    assert pf.disk_free_bytes(tmp_path / "not" / "yet") == shutil.disk_usage(tmp_path).free
    assert pf.ram_available_bytes() > 0
    assert pf.checkpoint_bytes(1_000_000) == 12_000_000


def _checkpoints_by_the_loop(total_steps, save_steps, logging_steps, evaluate_during_training, first_step=0):
    # qa.trainer.train saves at every(step, save_steps) or at a new best; a new best can come at any evaluation,
    # and evaluations run at every(step, logging_steps) or every(step, save_steps) with --evaluate_during_training.
    from qa.trainer import every

    return sum(every(step, save_steps) or (evaluate_during_training and every(step, logging_steps))
               for step in range(first_step + 1, total_steps + 1))


def test_planned_checkpoints_counts_what_the_loop_saves():
    assert pf.planned_checkpoints(1000, save_steps=0) == 0  # --save_steps 0: none (the final model is not one)
    assert pf.planned_checkpoints(1000, 300) == 3  # 300, 600, 900; step 1000 is the final model
    assert pf.planned_checkpoints(1000, 300, 100) == 3  # logging alone saves nothing
    assert pf.planned_checkpoints(1000, 300, 100, True) == 10  # 100 .. 1000, any evaluation a new best; 300 is one too
    assert pf.planned_checkpoints(1000, 250, 100, True) == 12  # 4 + 10 - 2 (500 and 1000 are both)
    assert pf.planned_checkpoints(1000, 0, 100, True) == 10
    assert pf.planned_checkpoints(1000, 300, 0, True) == 3  # evaluations at the save steps only
    assert pf.planned_checkpoints(1000, 300, first_step=500) == 2  # a resume from 500: 600, 900
    assert pf.planned_checkpoints(500, 300, first_step=500) == 0
    for total in (1, 7, 60, 97):
        for save_steps in (0, 1, 4, 6, 50):
            for logging_steps in (0, 1, 3, 4, 9):
                for evaluate in (False, True):
                    for first in (0, 5):
                        assert pf.planned_checkpoints(total, save_steps, logging_steps, evaluate, first) == \
                            _checkpoints_by_the_loop(total, save_steps, logging_steps, evaluate, first), \
                            (total, save_steps, logging_steps, evaluate, first)


def test_preflight_no_limit_warns_only_when_the_planned_checkpoints_do_not_fit(machine, tmp_path):
    machine["disk"] = 10e9  # 13 checkpoints of 0.70 GB + the final model (0.23 GB)
    # --save_steps 0: no checkpoint is written, so nothing about keeping every one of them.
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, None, 0, False, None, checkpoints_planned=0) == []
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 0, 0, False, None, checkpoints_planned=13) == []
    logged = []
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, None, 0, False, logged.append, checkpoints_planned=20,
                            model_name="albert-xlarge-v2")
    assert logged == warnings and len(warnings) == 1
    assert warnings[0].startswith("no --save_total_limit: all 20 checkpoints this run writes are kept, ~0.7 GB "
                                  "(albert-xlarge-v2, 58.7M parameters + Adam state) each: ~14.3 GB with the final model, "
                                  "but free disk 10.0 GB holds about 13;")
    # Not known (the old call): every checkpoint is kept, however many that is.
    unknown = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, None, 0, False, None)
    assert len(unknown) == 1 and "every checkpoint is kept" in unknown[0] and "holds about 13" in unknown[0]
    with pytest.raises(ValueError, match="checkpoints_planned must be 0 or more, got -1"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, checkpoints_planned=-1)


def test_preflight_without_planned_checkpoints_needs_only_the_final_model(machine, tmp_path):
    final_model = 4 * ALBERT_XLARGE_PARAMS  # 0.23 GB of fp32 weights; a checkpoint is 0.70 GB
    machine["disk"] = final_model + 1000
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None, checkpoints_planned=0) == []
    with pytest.raises(pf.PreflightError, match=r"< one checkpoint of ~0.7 GB"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None, checkpoints_planned=1)
    machine["disk"] = final_model - 1000
    with pytest.raises(pf.PreflightError, match=r"free disk 0.2 GB at .* < the final model's ~0.2 GB \(the model, 58.7M"):
        pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, None, 0, False, None, checkpoints_planned=0)


def test_preflight_limit_counts_no_more_than_the_run_writes(machine, tmp_path):
    per_checkpoint = pf.checkpoint_bytes(ALBERT_XLARGE_PARAMS)
    final_model = 4 * ALBERT_XLARGE_PARAMS
    machine["disk"] = 2 * per_checkpoint + final_model  # not the 4 of --save_total_limit 3, but the 2 the run writes
    assert len(pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None)) == 1  # not known: 4 are counted
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None, checkpoints_planned=2) == []
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None, checkpoints_planned=3)
    assert len(warnings) == 1 and "needed for 3 checkpoints of" in warnings[0]
    assert "(all the run writes, within --save_total_limit 3) and the final model" in warnings[0]
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, 3, 0, False, None, checkpoints_planned=50)
    assert len(warnings) == 1 and "needed for 4 checkpoints" in warnings[0] and "+ the one being written" in warnings[0]


def test_run_squad_save_steps_0_plans_no_checkpoint(machine, tmp_path):
    # The numbers run_squad.py has for a run with --save_steps 0 (the legacy flags, their defaults: logging every
    # 500 steps, no evaluation during training): no checkpoint planned, and the preflight says nothing of keeping them.
    from qa.args import parse_args
    from qa.trainer import total_steps

    argv = ["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--do_train", "--train_file", "t.json",
            "--save_steps", "0", "--num_train_epochs", "3"]
    args = parse_args(argv)
    steps = total_steps(88_000, args, world_size=2)  # NQ-sized: 88,000 windows, 2 GPUs x 8 -> 5,500 steps an epoch
    assert steps == 16_500
    planned = pf.planned_checkpoints(steps, args.save_steps, args.logging_steps, args.evaluate_during_training)
    assert planned == 0
    machine["disk"] = 5e9
    assert pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, args.save_total_limit, 0, False, None,
                        checkpoints_planned=planned) == []
    args = parse_args([*argv[:-4], "--save_steps", "1500", "--num_train_epochs", "3"])  # the guide's: 11 checkpoints
    planned = pf.planned_checkpoints(total_steps(88_000, args, 2), args.save_steps, args.logging_steps,
                                     args.evaluate_during_training)
    assert planned == 11
    warnings = pf.preflight(tmp_path, ALBERT_XLARGE_PARAMS, args.save_total_limit, 0, False, None,
                            checkpoints_planned=planned)
    assert len(warnings) == 1 and "all 11 checkpoints this run writes are kept" in warnings[0] and "about 6" in warnings[0]


def test_run_squad_save_steps_0_says_nothing_about_kept_checkpoints(machine, tiny_model_dir, tmp_path):
    """--save_steps 0 writes no periodic checkpoint: the preflight must not warn that every one is kept."""
    import torch

    import run_squad

    machine["disk"] = 10e9
    out = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    argv = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file("squad", "squad2-dev-normans-rhine.json")), "--max_train_samples", "8",
            "--max_seq_length", "128", "--per_gpu_train_batch_size", "4", "--save_steps", "0", "--report_to", "none",
            "--threads", "1", "--features_cache_dir", str(tmp_path / "cache"), "--version_2_with_negative"]
    try:
        assert run_squad.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    log = (out / "train.log").read_text()
    assert "training: 16 features" in log and not list(out.glob("checkpoint-*"))
    assert "no --save_total_limit" not in log, log
