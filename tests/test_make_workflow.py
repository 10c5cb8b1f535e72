"""The guide's workflow through the Makefile, as a user types it: train, resume, eval, status, report, ask.

The recipes are the product's interface; this runs each one (on CPU, NGPUS=0, with a tiny model and
small real data) so a broken variable or flag in the Makefile fails here."""

import json
import re
import subprocess

import pytest

from conftest import ROOT, shared_file


def make(*args, **env_vars):
    done = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"make {' '.join(args)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.mark.slow
def test_train_resume_eval_status_report_ask(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    common = [
        f"MODEL={tiny_model_dir}", f"TRAIN_FILE={shared_file('squad', 'squad2-dev-normans-rhine.json')}",
        f"PREDICT_FILE={shared_file('squad', 'squad2-dev-normans-complexity.json')}", f"OUTPUT_DIR={out}",
        "NGPUS=0", "EPOCHS=1", "BATCH=8", "EVAL_BATCH=32", "MAX_SEQ_LENGTH=128", "DOC_STRIDE=64", "SAVE_STEPS=3",
        "LOGGING_STEPS=3", "THREADS=1", "SAVE_TOTAL_LIMIT=2",
        f"EXTRA=--max_train_samples 64 --max_eval_samples 48 --features_cache_dir {tmp_path / 'cache'}",
    ]
    trained = make("train", *common)
    assert "fp32" in trained.stdout  # no GPU: PRECISION defaults to fp32, plain python
    summary = json.loads((out / "training_summary.json").read_text())
    final_step = summary["global_step"]
    assert final_step >= 6 and (out / f"eval_results_{final_step}.json").exists()
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= 3  # SAVE_TOTAL_LIMIT=2 (+ the best, which may be a third)

    # make resume CKPT=checkpoint-N continues from that checkpoint's own state file.
    first = min(checkpoints, key=lambda name: int(name.split("-")[1]))
    # The run finished: going back to an older checkpoint must be asked for (EXTRA=--continue_finished).
    resumed = make("resume", *common[:-1], common[-1] + " --continue_finished", f"CKPT={first}")
    log = (out / "train.log").read_text()
    assert re.search(rf"resuming from \S*{first}: step {first.split('-')[1]}", log)
    assert "--resume_from_checkpoint=" + first in resumed.stdout

    # make eval CKPT=...: the predictions and metrics of that checkpoint.
    make("eval", *common, f"CKPT={first}")
    step = first.split("-")[1]
    evaluated = out / "eval" / f"squad2-dev-normans-complexity-{step}"  # evaluation alone: its own folder
    for name in (f"predictions_{step}.json", f"nbest_predictions_{step}.json", f"null_odds_{step}.json"):
        assert (evaluated / name).exists(), name
    results = json.loads((evaluated / f"eval_results_{step}.json").read_text())
    assert results["total"] == 48 and "best_f1_thresh" in results

    status = make("status", f"OUTPUT_DIR={out}")
    assert str(final_step) in status.stdout and "checkpoint" in status.stdout

    make("report", f"RUN={out}")
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"

    doc = tmp_path / "doc.txt"
    doc.write_text("The Rhine is a European river that begins in the Swiss canton of Graubünden.", encoding="utf-8")
    asked = make("ask", f"MODEL_DIR={out}", "QUESTION=where does the rhine begin", f"CONTEXT_FILE={doc}")
    assert re.search(r"^(Answer: .+|No answer: .+)$", asked.stdout, re.M)
    # the run's model (run_dir.run_model: the best checkpoint, or the final model) with the threshold tuned for it
    best = json.loads((out / "best_checkpoint.json").read_text())["checkpoint"]
    assert "ask: the run's model: " in asked.stderr
    if best == "final":
        assert "qa_config.json" in asked.stderr
    else:
        step = best.split("-")[1]
        assert f"{best} (step {step})" in asked.stderr and f"eval_results_{step}.json" in asked.stderr
