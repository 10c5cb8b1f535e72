"""make ask: a long document, the tuned threshold from qa_config.json, and a questions file."""

import json
import re
import shutil
import subprocess
import sys

import pytest

import ask
from conftest import shared_file
from qa import run_dir, storage

DOC = " ".join(f"Sentence {i} says the Rhine flows through country number {i} on its way to the sea." for i in range(120))


def run_ask(*args):
    done = subprocess.run([sys.executable, "scripts/ask.py", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_answer_span_comes_from_the_document(model_dir, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC, encoding="utf-8")
    # A threshold no null score can beat: the best span is always given, with its character span.
    (model_dir / "qa_config.json").write_text(json.dumps({"null_score_diff_threshold": 1e9, "max_seq_length": 64,
                                                          "doc_stride": 32, "max_query_length": 16}))
    done = run_ask(model_dir, "--question", "where does the rhine flow", "--context-file", doc)
    assert "from " + str(model_dir / "qa_config.json") in done.stderr
    answer = re.search(r"^Answer: (.*)$", done.stdout, re.M).group(1)
    start, end = map(int, re.search(r"characters (\d+)-(\d+)", done.stdout).groups())
    assert DOC[start:end] == answer and answer


def test_threshold_decides_no_answer(model_dir, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC, encoding="utf-8")
    done = run_ask(model_dir, "--question", "where does the rhine flow", "--context-file", doc, "--threshold=-1e9")
    assert "No answer" in done.stdout and "best span was" in done.stdout
    default = run_ask(model_dir, "--question", "where does the rhine flow", "--context-file", doc)
    assert "null threshold 0.0000 from defaults" in default.stderr


def test_questions_file(model_dir, tmp_path):
    data = shared_file("squad", "squad2-dev-normans-rhine.json")
    dataset = json.loads(data.read_text(encoding="utf-8"))
    dataset["data"] = dataset["data"][:1]
    dataset["data"][0]["paragraphs"] = dataset["data"][0]["paragraphs"][:2]
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps(dataset), encoding="utf-8")
    out = tmp_path / "preds.json"
    run_ask(model_dir, "--questions-file", questions, "--output", out, "--threshold", "1e9")
    predictions = json.loads(out.read_text(encoding="utf-8"))
    paragraphs = dataset["data"][0]["paragraphs"]
    expected = {qa["id"]: p["context"] for p in paragraphs for qa in p["qas"]}
    assert set(predictions) == set(expected)
    assert all(text and text in expected[qid] for qid, text in predictions.items())


def test_bad_arguments(model_dir, tmp_path):
    done = subprocess.run([sys.executable, "scripts/ask.py", str(model_dir), "--question", "q"], capture_output=True, text=True)
    assert done.returncode == 2 and "--context-file" in done.stderr
    done = subprocess.run([sys.executable, "scripts/ask.py", str(tmp_path), "--question", "q", "--context-file", "x"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not a model folder" in done.stderr
    truncated = tmp_path / "questions.json"
    truncated.write_text('{"version": "v2.0", "data": [', encoding="utf-8")
    done = subprocess.run([sys.executable, "scripts/ask.py", str(model_dir), "--questions-file", str(truncated)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"ask.py: {truncated}: not valid JSON" in done.stderr


def test_checkpoint_folder_uses_its_own_settings_and_the_threshold_tuned_at_its_step(model_dir, tmp_path):
    # A checkpoint-N folder has no qa_config.json: its trainer_state.json holds the training args and
    # the step, and the run folder above it the eval_results_{step}.json tuned at that step.
    run = tmp_path / "run"
    checkpoint = run / "checkpoint-7"
    shutil.copytree(model_dir, checkpoint)
    (checkpoint / "trainer_state.json").write_text(json.dumps({
        "global_step": 7, "args": {"max_seq_length": 64, "doc_stride": 32, "max_query_length": 16,
                                   "null_score_diff_threshold": 0.5, "learning_rate": 3e-5}}))
    storage.write_marker(str(checkpoint), run_dir.COMPLETE)  # complete, as qa.checkpoints writes them
    config = ask.load_qa_config(str(checkpoint))
    assert (config["max_seq_length"], config["doc_stride"], config["max_query_length"]) == (64, 32, 16)
    assert config["null_score_diff_threshold"] == 0.5 and "step 7 was not evaluated" in config["source"]
    assert "learning_rate" not in config

    (run / "eval_results_7.json").write_text(json.dumps({"f1": 50.0, "best_f1": 55.0, "best_f1_thresh": 1e9}))
    (run / "eval_results_3.json").write_text(json.dumps({"best_f1_thresh": -1e9}))  # another step: not used
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC, encoding="utf-8")
    done = run_ask(checkpoint, "--question", "where does the rhine flow", "--context-file", doc)
    assert "null threshold 1000000000.0000 from " + str(run / "eval_results_7.json") + " (tuned at step 7)" in done.stderr
    assert re.search(r"^Answer: .+$", done.stdout, re.M)  # no null score beats a threshold of 1e9
    assert "Loading weights" not in done.stderr
