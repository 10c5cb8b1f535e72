"""--nq_dev_file: whole-page NQ scores at every evaluation during training (qa/nq/train_eval.py), the best
checkpoint and early stopping by them, the refusal without it, and predict_nq's --rank auto.

A tiny ALBERT trains a few steps on the real SQuAD subset, with 3 real NQ dev records as --nq_dev_file; its
whole-page scores are compared with what scripts/predict_nq.py gives for the same checkpoint."""

import gzip
import json
import runpy

import pytest

from conftest import ROOT, shared_file

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import run_dir  # noqa: E402
from qa.nq import train_eval  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
PREDICT = ("squad", "squad2-dev-normans-complexity.json")
predict_nq_main = runpy.run_path(str(ROOT / "scripts" / "predict_nq.py"))["main"]


def write_records(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.writelines(lines)
    return path


@pytest.fixture(scope="module")
def nq_dev(tmp_path_factory):
    """The first 3 of the 10 real dev records (5 annotations each), as a gzip file."""
    with gzip.open(shared_file("nq", "nq-dev-10.full.jsonl.gz"), "rb") as f:
        lines = [line for line in f if line.strip()][:3]
    return write_records(tmp_path_factory.mktemp("nq") / "nq-dev-00.jsonl.gz", lines)


def train_argv(model_dir, output_dir, nq_file, *extra):
    """12 questions (42 windows), 4 windows a step, 12 steps; an evaluation and a checkpoint every 4 steps."""
    return ["--model_name_or_path", str(model_dir), "--do_train", "--do_eval", "--evaluate_during_training",
            "--train_file", str(shared_file(*TRAIN)), "--predict_file", str(shared_file(*PREDICT)),
            "--version_2_with_negative", "--learning_rate", "3e-4", "--max_steps", "12", "--max_seq_length", "128",
            "--doc_stride", "64", "--max_query_length", "32", "--output_dir", str(output_dir),
            "--per_gpu_train_batch_size", "4", "--per_gpu_eval_batch_size", "8", "--threads", "2",
            "--max_train_samples", "12", "--max_eval_samples", "8", "--logging_steps", "4", "--save_steps", "4",
            "--nq_dev_file", str(nq_file), "--metric_for_best_model", "nq_long_f1", *extra]


def eval_results(run):
    return dict(run_dir.all_eval_results(run))


@pytest.fixture(scope="module")
def nq_run(tiny_model_dir, nq_dev, tmp_path_factory):
    out = tmp_path_factory.mktemp("nqrun") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(train_argv(tiny_model_dir, out, nq_dev)) == 0
    finally:
        torch.set_num_threads(before)
    return out


def test_every_evaluation_carries_the_whole_page_scores(nq_run, nq_dev):
    results = eval_results(nq_run)
    assert sorted(results) == [4, 8, 12]  # the final model's evaluation is step 12's, written over it
    for step, metrics in results.items():
        assert 0.0 <= metrics["nq_long_f1"] <= 100.0 and 0.0 <= metrics["nq_short_f1"] <= 100.0, step
        official = json.loads((nq_run / "eval" / f"nq-{step}" / f"nq_eval_results_{step}.json").read_text())
        assert metrics["nq_long_f1"] == pytest.approx(100 * official["long-best-threshold-f1"])
        assert metrics["nq_short_f1"] == pytest.approx(100 * official["short-best-threshold-f1"])
        assert official["rank"] == "logprob" and official["examples"] == 3  # no answer-type head: the guide's way
    logged = [json.loads(line) for line in (nq_run / "metrics.jsonl").read_text().splitlines()]
    steps = sorted({entry["step"] for entry in logged if "eval/nq_long_f1" in entry})
    assert steps == [4, 8, 12]
    assert json.loads((nq_run / "args.json").read_text())["nq_dev_file"] == str(nq_dev)


def test_scores_equal_predict_nq_eval_of_the_checkpoint(nq_run, nq_dev, capsys):
    metrics = eval_results(nq_run)[8]
    folder = nq_run / "eval" / "nq-8"
    during_training = json.loads((folder / "nq_predictions.json").read_text())["predictions"]
    code = predict_nq_main(["--model_dir", str(nq_run), "--checkpoint", "checkpoint-8", "--input", str(nq_dev), "--eval",
                            "--batch_size", "8", "--threads", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--rank logprob: the model has no answer-type head" in err
    official = json.loads((folder / "nq_eval_results_8.json").read_text())
    assert official["rank"] == "logprob"
    assert 100 * official["long-best-threshold-f1"] == pytest.approx(metrics["nq_long_f1"], abs=1e-9)
    assert 100 * official["short-best-threshold-f1"] == pytest.approx(metrics["nq_short_f1"], abs=1e-9)
    again = json.loads((folder / "nq_predictions.json").read_text())["predictions"]
    assert [(p["long_answer"], p["short_answers"]) for p in again] == \
           [(p["long_answer"], p["short_answers"]) for p in during_training]


def test_the_best_checkpoint_follows_nq_long_f1(nq_run):
    best = run_dir.best_checkpoint(nq_run)
    scores = {step: metrics["nq_long_f1"] for step, metrics in eval_results(nq_run).items()}
    assert best["metric"] == "nq_long_f1" and best["value"] == pytest.approx(max(scores.values()))
    assert scores[best["step"]] == pytest.approx(max(scores.values()))
    assert best["step"] == min(step for step, value in scores.items() if value == max(scores.values()))  # the first


def test_early_stopping_by_nq_short_f1(tiny_model_dir, nq_dev, tmp_path, monkeypatch):
    """Planted whole-page scores (better at step 4, worse at 8): the run stops at step 8 with checkpoint-4 as best,
    though its SQuAD f1 says nothing of it."""
    planted = {4: 30.0, 8: 20.0}
    seen = []

    def scores(model, tokenizer, args, runtime, step, output_dir, should_stop=None):
        seen.append(step)
        return {"nq_long_f1": 0.0, "nq_short_f1": planted.get(step, 10.0), "rank": "logprob", "folder": str(output_dir)}

    monkeypatch.setattr(train_eval, "score_whole_pages", scores)
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, nq_dev, "--early_stopping_patience", "1")
    argv[argv.index("nq_long_f1")] = "nq_short_f1"
    torch.set_num_threads(1)
    assert run_squad.main(argv) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["early_stopped"] and summary["global_step"] == 8
    best = run_dir.best_checkpoint(out)
    assert (best["checkpoint"], best["metric"], best["value"]) == ("checkpoint-4", "nq_short_f1", 30.0)
    assert seen[:2] == [4, 8] and seen[2:] == [4]  # after the early stop, --do_eval evaluates the best checkpoint


def test_nq_metric_without_nq_dev_file_is_refused(tiny_model_dir, tmp_path, capsys):
    argv = train_argv(tiny_model_dir, tmp_path / "run", "x")
    del argv[argv.index("--nq_dev_file") : argv.index("--nq_dev_file") + 2]
    assert run_squad.main(argv) == 2
    err = capsys.readouterr().err
    assert "--metric_for_best_model nq_long_f1 ranks checkpoints by whole-page NQ scores: give --nq_dev_file" in err
    assert not (tmp_path / "run").exists()


def test_nq_dev_file_problems_are_refused(tiny_model_dir, tmp_path, capsys):
    train_records = shared_file("nq", "nq-train-1.simplified.jsonl")  # 1 annotation: F1 would always be 0
    for nq_file, message in ((tmp_path / "none-*.jsonl.gz", "none-*.jsonl.gz"),
                             (train_records, "has fewer than 2 annotations (a train record?)")):
        assert run_squad.main(train_argv(tiny_model_dir, tmp_path / "run", nq_file)) == 2
        assert message in capsys.readouterr().err
    argv = train_argv(tiny_model_dir, tmp_path / "run", shared_file("nq", "nq-dev-10.full.jsonl.gz"))
    argv.remove("--evaluate_during_training")
    argv.remove("--do_eval")
    assert run_squad.main([a for a in argv if a != "nq_long_f1" and a != "--metric_for_best_model"]) == 2
    assert "is used by evaluations only" in capsys.readouterr().err


def test_rank_auto_picks_logprob_without_the_answer_type_head(tmp_path):
    assert train_eval.auto_rank(False)[0] == "logprob" and train_eval.auto_rank(True)[0] == "margin"
    assert train_eval.resolve_rank("auto", tmp_path)[0] == "logprob"
    (tmp_path / "answer_type_head.safetensors").write_bytes(b"")
    assert train_eval.resolve_rank("auto", tmp_path)[0] == "margin"
    assert train_eval.resolve_rank("logprob", tmp_path) == ("logprob", "as given (--rank)")


def test_torchrun_ranks_share_the_pages_and_rank_0_scores(tiny_model_dir, nq_dev, tmp_path, capsys):
    """Two processes (gloo): one set of whole-page scores, equal to predict_nq's of the same checkpoint alone."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, nq_dev, "--report_to", "none")
    argv[argv.index("--max_steps") + 1] = "4"
    argv.remove("--do_eval")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged if "eval/nq_long_f1" in entry] == [4]  # written once, by rank 0
    assert (out / "train.log").read_text().count("whole-page NQ at step 4") == 1
    metrics = eval_results(out)[4]
    torch.set_num_threads(1)
    code = predict_nq_main(["--model_dir", str(out), "--checkpoint", "checkpoint-4", "--input", str(nq_dev),
                            "--batch_size", "8", "--threads", "2"])
    assert code == 0, capsys.readouterr().err
    official = json.loads((out / "eval" / "nq-4" / "nq_eval_results_4.json").read_text())
    assert 100 * official["long-best-threshold-f1"] == pytest.approx(metrics["nq_long_f1"], abs=1e-9)
    assert 100 * official["short-best-threshold-f1"] == pytest.approx(metrics["nq_short_f1"], abs=1e-9)


def test_a_stop_signal_abandons_the_whole_page_scoring(tiny_model_dir, nq_dev, tmp_path):
    """As the SQuAD evaluation: EvaluationAbandoned (the trainer then marks the evaluation pending for the resume),
    nothing written."""
    import argparse

    from qa.inference import EvaluationAbandoned, load_inference_model
    from qa.runtime import init_runtime

    runtime = init_runtime(no_cuda=True)
    model, tokenizer = load_inference_model(str(tiny_model_dir), runtime.device)
    args = argparse.Namespace(nq_dev_file=str(nq_dev), max_seq_length=128, doc_stride=64, max_query_length=32,
                              n_best_size=20, max_answer_length=30, per_gpu_eval_batch_size=8, threads=1)
    asked = []
    with pytest.raises(EvaluationAbandoned):
        train_eval.add_whole_page_scores({"f1": 1.0}, model, tokenizer, args, runtime, None, 4, str(tmp_path),
                                         should_stop=lambda: asked.append(1) or True)
    assert asked and not (tmp_path / "eval").exists()
