"""Evaluation after training never disturbs the training record: `run_squad.py --do_eval` alone (and `make eval`)
writes into RUN/eval/<data file stem>-<step>/, with the windows the run trained with; CKPT=final is the final model."""

import hashlib
import json
import pathlib
import subprocess

import pytest

from conftest import ROOT, shared_file
from helpers import PREDICT, TRAIN, env

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import run_dir  # noqa: E402


def record_hashes(run):
    """sha256 of every file of the run folder outside eval/: the training record."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.relative_to(run).parts[0] != run_dir.EVAL_DIR}


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """12 questions, 128-token windows (not the default 384), evaluated every 3 steps: a best checkpoint is recorded."""
    root = tmp_path_factory.mktemp("eval-folder")
    run = root / "run"
    code = run_squad.main(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(run), "--do_train",
                           "--do_eval", "--evaluate_during_training", "--train_file", str(shared_file(*TRAIN)),
                           "--predict_file", str(shared_file(*PREDICT)), "--max_train_samples", "12",
                           "--max_eval_samples", "8", "--version_2_with_negative", "--max_seq_length", "128",
                           "--doc_stride", "64", "--per_gpu_train_batch_size", "4", "--max_steps", "6",
                           "--save_steps", "3", "--logging_steps", "3", "--learning_rate", "1e-3",
                           "--features_cache_dir", str(root / "cache"), "--report_to", "none"])
    assert code == 0
    assert run_dir.best_checkpoint(run) is not None and run_dir.read_summary(run)["global_step"] == 6
    return run


def test_eval_alone_writes_its_own_folder_with_the_trained_windows(trained_run, tmp_path):
    before = record_hashes(trained_run)
    best = run_dir.best_checkpoint(trained_run)
    code = run_squad.main(["--output_dir", str(trained_run), "--do_eval", "--max_eval_samples", "8",
                           "--features_cache_dir", str(tmp_path / "cache"), "--report_to", "none"])
    assert code == 0
    assert record_hashes(trained_run) == before
    folder = trained_run / "eval" / f"{shared_file(*PREDICT).stem}-{best['step']}"
    assert folder == pathlib.Path(run_dir.eval_dir(trained_run, shared_file(*PREDICT), best["step"]))
    results = json.loads((folder / f"eval_results_{best['step']}.json").read_text())
    assert results["total"] == 8 and results["step"] == best["step"]
    # The same weights and windows as the evaluation during training: the same scores.
    assert results[best["metric"]] == pytest.approx(best["value"])
    for kind in ("predictions", "nbest_predictions", "null_odds"):
        assert (folder / f"{kind}_{best['step']}.json").is_file()
    evaluated_with = json.loads((folder / "args.json").read_text())
    assert (evaluated_with["max_seq_length"], evaluated_with["doc_stride"]) == (128, 64)
    assert evaluated_with["predict_file"] == str(shared_file(*PREDICT))
    assert f"eval at step {best['step']}" in (folder / "train.log").read_text()
    assert [r["step"] for r in run_dir.read_metrics(folder)] == [best["step"]]


def test_make_eval_final_evaluates_the_final_model_beside_a_best_checkpoint(trained_run, tmp_path):
    before = record_hashes(trained_run)
    final_step = run_dir.read_summary(trained_run)["global_step"]
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "eval", f"OUTPUT_DIR={trained_run}",
                           "CKPT=final", "NGPUS=0", "THREADS=1",
                           f"EXTRA=--max_eval_samples 8 --features_cache_dir {tmp_path / 'cache'}"],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no COMPLETE marker" not in done.stderr
    assert record_hashes(trained_run) == before
    folder = trained_run / "eval" / f"{shared_file(*PREDICT).stem}-{final_step}"
    results = json.loads((folder / f"eval_results_{final_step}.json").read_text())
    assert results["total"] == 8 and results["step"] == final_step
    assert f"evaluating final model ({trained_run})" in (folder / "train.log").read_text()
    assert json.loads((folder / "args.json").read_text())["max_seq_length"] == 128  # not the Makefile's 384


def test_ckpt_final_without_a_final_model_says_so(trained_run, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / run_dir.ARGS_FILE).write_text((trained_run / run_dir.ARGS_FILE).read_text())
    assert run_squad.main(["--output_dir", str(unfinished), "--do_eval", "--eval_checkpoint", "final"]) == 2
    assert f"{unfinished}: no final model (config.json) yet" in capsys.readouterr().err


def test_other_windows_get_their_own_folder_and_leave_the_first_one(trained_run, tmp_path):
    """An evaluation with other windows than the run's (MAX_SEQ_LENGTH=96) is a different result: its folder is named
    by the changed setting, so the evaluation with the run's own windows is kept as it was."""
    best = run_dir.best_checkpoint(trained_run)
    common = ["--output_dir", str(trained_run), "--do_eval", "--max_eval_samples", "8",
              "--features_cache_dir", str(tmp_path / "cache"), "--report_to", "none"]
    assert run_squad.main(common) == 0
    own = pathlib.Path(run_dir.eval_dir(trained_run, shared_file(*PREDICT), best["step"]))
    before = {p.name: p.read_bytes() for p in own.glob("*_*.json")}
    assert run_squad.main([*common, "--max_seq_length", "96", "--doc_stride", "32"]) == 0
    other = trained_run / "eval" / f"{shared_file(*PREDICT).stem}.doc_stride32.max_seq_length96-{best['step']}"
    assert other == pathlib.Path(run_dir.eval_dir(trained_run, shared_file(*PREDICT), best["step"],
                                                  {"max_seq_length": 96, "doc_stride": 32}))
    assert json.loads((other / f"eval_results_{best['step']}.json").read_text())["total"] == 8
    assert json.loads((other / "args.json").read_text())["max_seq_length"] == 96
    assert {p.name: p.read_bytes() for p in own.glob("*_*.json")} == before
    # A subset of the questions is another result too.
    assert run_squad.main([*common[:-6], "--max_eval_samples", "4", *common[-4:]]) == 0
    subset = trained_run / "eval" / f"{shared_file(*PREDICT).stem}.max_eval_samples4-{best['step']}"
    assert json.loads((subset / f"eval_results_{best['step']}.json").read_text())["total"] == 4
    assert {p.name: p.read_bytes() for p in own.glob("*_*.json")} == before
