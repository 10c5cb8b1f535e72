"""Two processes with torchrun on the CPU (gloo): training, evaluation during training on both ranks, one set of outputs."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

torch = pytest.importorskip("torch")
from qa import run_dir  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
PREDICT = ("squad", "squad2-dev-normans-complexity.json")


def test_torchrun_two_processes_with_evaluation_during_training(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--max_seq_length", "128", "--doc_stride", "64", "--version_2_with_negative", "--predict_file",
              str(shared_file(*PREDICT)), "--max_eval_samples", "12", "--features_cache_dir", str(tmp_path / "cache"),
              "--report_to", "none"]
    # `python -m torch.distributed.run` is the torchrun command, for this very Python.
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ROOT / "run_squad.py"),
            "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_train", "--do_eval",
            "--evaluate_during_training", "--train_file", str(shared_file(*TRAIN)), "--max_train_samples", "12",
            "--per_gpu_train_batch_size", "2", "--num_train_epochs", "2", "--logging_steps", "5", "--save_steps", "10",
            "--learning_rate", "3e-4", *common]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 42 windows over 2 ranks of 2 -> 11 steps an epoch, 22 in all; evaluations at 5, 10, 15, 20 and the end.
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 22
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["step"] for r in records if "eval/f1" in r]
    trains = [r["step"] for r in records if "train/loss" in r]
    assert evals == [5, 10, 15, 20, 22] and trains == [5, 10, 15, 20, 22]  # written once, by rank 0 only
    for step in (5, 10, 15, 20, 22):
        results = json.loads((out / f"eval_results_{step}.json").read_text())
        assert results["total"] == 12 and "best_f1_thresh" in results
    log = (out / "train.log").read_text()
    assert log.count("training done at step 22") == 1 and "2 process(es)" in log
    assert (out / "command.txt").read_text().count("launched by torchrun: WORLD_SIZE=2") == 1
    # Checkpoints at --save_steps, and at every evaluation that improved f1 (the first one always does).
    saved = {s for s, _ in run_dir.list_checkpoints(out)}
    assert {5, 10, 20} <= saved <= {5, 10, 15, 20, 22} and run_dir.best_checkpoint(out)["step"] in saved
    # The final weights load, and one process evaluating them alone predicts exactly what the two ranks did.
    from transformers import AutoModelForQuestionAnswering

    AutoModelForQuestionAnswering.from_pretrained(out)
    import run_squad

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(["--model_name_or_path", str(out), "--output_dir", str(tmp_path / "alone"),
                               "--do_eval", *common]) == 0
    finally:
        torch.set_num_threads(before)
    # Evaluation alone writes into its own folder (run_dir.eval_dir), never over a training record.
    alone_dir = run_dir.eval_dir(str(tmp_path / "alone"), str(shared_file(*PREDICT)), "pretrained")
    alone = json.loads((tmp_path / alone_dir / "predictions_pretrained.json").read_text())
    assert alone == json.loads((out / "predictions_22.json").read_text())
    odds_alone = json.loads((tmp_path / alone_dir / "null_odds_pretrained.json").read_text())
    odds_ranks = json.loads((out / "null_odds_22.json").read_text())
    assert odds_alone.keys() == odds_ranks.keys()
    assert all(abs(odds_alone[q] - odds_ranks[q]) < 1e-4 for q in odds_alone)
