"""`accelerate launch` sets the same environment as torchrun: two CPU processes started by it train and evaluate
exactly as two started by torchrun (the same steps, losses, evaluations and predictions)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

pytest.importorskip("torch")
pytest.importorskip("accelerate")

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
PREDICT = ("squad", "squad2-dev-normans-complexity.json")


def two_process_run(launcher, tiny_model_dir, tmp_path, name):
    out = tmp_path / name
    script = [str(ROOT / "run_squad.py"), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out),
              "--do_train", "--do_eval", "--evaluate_during_training", "--train_file", str(shared_file(*TRAIN)),
              "--max_train_samples", "12", "--per_device_train_batch_size", "2", "--num_train_epochs", "1",
              "--logging_steps", "5", "--save_steps", "0", "--learning_rate", "3e-4", "--max_seq_length", "128",
              "--doc_stride", "64", "--version_2_with_negative", "--predict_file", str(shared_file(*PREDICT)),
              "--max_eval_samples", "12", "--features_cache_dir", str(tmp_path / f"cache-{name}"), "--report_to", "none"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                   "HF_HOME": str(tmp_path / "hf-home")}  # no accelerate config of the user's is read
    proc = subprocess.run([sys.executable, "-m", *launcher, *script], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def outcome(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "training_summary.json").read_text())
    step = summary["global_step"]
    return {"step": step,
            "losses": [(r["step"], round(r["train/loss"], 5)) for r in records if "train/loss" in r],
            "evals": [r["step"] for r in records if "eval/f1" in r],
            "predictions": json.loads((out / f"predictions_{step}.json").read_text()),
            "scores": {k: v for k, v in json.loads((out / f"eval_results_{step}.json").read_text()).items()
                       if isinstance(v, (int, float))}}


@pytest.mark.slow
def test_accelerate_launch_trains_and_evaluates_like_torchrun(tiny_model_dir, tmp_path):
    # accelerate 1.15 starts several CPU processes through torch's elastic launcher (what torchrun is) with
    # --multi_gpu; its --cpu flag would start one process (or go through mpirun with a host file).
    accelerate = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    torchrun = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    by_accelerate = two_process_run(accelerate, tiny_model_dir, tmp_path, "accelerate")
    by_torchrun = two_process_run(torchrun, tiny_model_dir, tmp_path, "torchrun")
    assert "launched by torchrun: WORLD_SIZE=2" in (by_accelerate / "command.txt").read_text()
    assert "2 process(es)" in (by_accelerate / "train.log").read_text()
    expected = outcome(by_torchrun)
    # 42 windows over 2 ranks of 2 -> 11 steps; evaluations at 5, 10 and the end, written once (rank 0).
    assert expected["step"] == 11 and expected["evals"] == [5, 10, 11] and len(expected["predictions"]) == 12
    assert outcome(by_accelerate) == expected
