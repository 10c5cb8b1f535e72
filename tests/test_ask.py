"""make ask: a long document, the tuned threshold from qa_config.json, and a questions file."""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

import ask
from conftest import shared_file
from helpers import plant_nan_qa_head
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
    (tmp_path / "doc.txt").write_text(DOC, encoding="utf-8")
    done = subprocess.run([sys.executable, "scripts/ask.py", str(tmp_path), "--question", "q", "--context-file",
                           str(tmp_path / "doc.txt")], capture_output=True, text=True)  # no model, no checkpoint
    assert done.returncode == 2 and "not a model folder, nor a run with a model" in done.stderr
    assert "Traceback" not in done.stderr
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


# ---------------------------------------------------------------------------------------------
# Answers shaped like transformers' question-answering pipeline (--top_k, QuestionAnswerer)
# ---------------------------------------------------------------------------------------------
def nbest_entry(text, start_logit, end_logit, start_char, end_char):
    return {"text": text, "probability": 0.0, "start_logit": start_logit, "end_logit": end_logit,
            "start_char": start_char, "end_char": end_char}


NBEST = [nbest_entry("the Rhine", 3.0, 2.0, 10, 19), nbest_entry("", 2.0, 1.5, -1, -1),
         nbest_entry("Rhine", 1.0, 1.0, 14, 19)]


def test_pipeline_answers_rank_the_no_answer_entry_with_the_spans():
    answers = ask.pipeline_answers(NBEST, top_k=3, threshold=0.0)
    assert [(a["answer"], a["start"], a["end"]) for a in answers] == [("the Rhine", 10, 19), ("", 0, 0), ("Rhine", 14, 19)]
    assert list(answers[0]) == ["answer", "score", "start", "end"]
    # A softmax over the candidates' start + end logits: 5.0, 3.5 and 2.0.
    total = math.exp(5.0) + math.exp(3.5) + math.exp(2.0)
    assert [a["score"] for a in answers] == pytest.approx([math.exp(5.0) / total, math.exp(3.5) / total,
                                                           math.exp(2.0) / total], rel=1e-12)
    # The null threshold moves the no-answer entry: first exactly when null - best span > threshold.
    assert ask.pipeline_answers(NBEST, top_k=1, threshold=-1.4)[0]["answer"] == "the Rhine"
    assert ask.pipeline_answers(NBEST, top_k=1, threshold=-1.6)[0] == {
        "answer": "", "score": pytest.approx(math.exp(5.1) / (math.exp(5.1) + math.exp(5.0) + math.exp(2.0))),
        "start": 0, "end": 0}
    assert ask.pipeline_answers(NBEST, top_k=1, threshold=-1.5)[0]["answer"] == "the Rhine"  # a tie: the span
    assert [a["answer"] for a in ask.pipeline_answers(NBEST, top_k=5, threshold=0.0, handle_impossible_answer=False)] \
        == ["the Rhine", "Rhine"]
    # Without any valid span the no-answer entry is the answer, whatever handle_impossible_answer says.
    only_null = [nbest_entry("", 0.5, 0.5, -1, -1)]
    assert ask.pipeline_answers(only_null, top_k=2, handle_impossible_answer=False) == [
        {"answer": "", "score": 1.0, "start": 0, "end": 0}]
    assert ask.pipeline_shape(answers, 1) is answers[0] and ask.pipeline_shape(answers, 3) is answers


def squad_questions(tmp_path, paragraphs=2):
    dataset = json.loads(shared_file("squad", "squad2-dev-normans-rhine.json").read_text(encoding="utf-8"))
    dataset["data"] = dataset["data"][:1]
    dataset["data"][0]["paragraphs"] = dataset["data"][0]["paragraphs"][:paragraphs]
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(dataset), encoding="utf-8")
    contexts = {qa["id"]: p["context"] for p in dataset["data"][0]["paragraphs"] for qa in p["qas"]}
    return path, contexts


def test_question_answerer_agrees_with_the_thresholded_predictions(model_dir, tmp_path, one_thread):
    path, contexts = squad_questions(tmp_path)
    examples = ask.read_squad(path, questions_only=True)
    answerer = ask.QuestionAnswerer(model_dir)  # no qa_config.json: threshold 0.0, SQuAD 2.0
    diffs = sorted(answerer.postprocess(examples).null_score_diff.values())
    # The default threshold, then the median null score difference: about half the questions get no answer.
    for threshold in (0.0, diffs[len(diffs) // 2]):
        answerer.config["null_score_diff_threshold"] = threshold
        predictions = answerer.postprocess(examples).predictions
        shaped = answerer.answer_many(examples, top_k=3)
        assert set(shaped) == set(contexts)
        for qas_id, answers in shaped.items():
            assert 1 <= len(answers) <= 3
            assert answers[0]["answer"] == predictions[qas_id]  # the pipeline's first = the {id: answer} prediction
            assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
            assert all(0.0 < a["score"] <= 1.0 for a in answers)
            for a in answers:
                expected = contexts[qas_id][a["start"]:a["end"]] if a["answer"] else ""
                assert a["answer"] == expected and (a["answer"] or (a["start"], a["end"]) == (0, 0))
    assert 0 < sum(text == "" for text in predictions.values()) < len(predictions)
    one = answerer(question=examples[0].question, context=examples[0].context)
    assert set(one) == {"answer", "score", "start", "end"} and one["answer"] == predictions[examples[0].qas_id]


@pytest.mark.slow
def test_make_ask_top_k_writes_pipeline_shaped_answers(model_dir, tmp_path):
    from conftest import ROOT

    path, contexts = squad_questions(tmp_path, paragraphs=1)
    out = tmp_path / "answers.json"
    done = subprocess.run(["make", "--no-print-directory", "ask", f"MODEL_DIR={model_dir}", f"QUESTIONS_FILE={path}",
                           f"OUT={out}", "TOP_K=2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    shaped = json.loads(out.read_text(encoding="utf-8"))
    assert set(shaped) == set(contexts)
    assert all(isinstance(answers, list) and 1 <= len(answers) <= 2 for answers in shaped.values())
    assert all(a["answer"] == contexts[qid][a["start"]:a["end"]] for qid, answers in shaped.items() for a in answers)
    # One question on the command line, --top_k 1: one dict, as the pipeline returned.
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC, encoding="utf-8")
    single = run_ask(model_dir, "--question", "where does the rhine flow", "--context-file", doc, "--top_k", "1")
    answer = json.loads(single.stdout)
    assert set(answer) == {"answer", "score", "start", "end"}
    assert answer["answer"] == DOC[answer["start"]:answer["end"]] or (answer["start"], answer["end"]) == (0, 0)
    bad = subprocess.run([sys.executable, "scripts/ask.py", str(model_dir), "--question", "q", "--context-file", str(doc),
                          "--top_k", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--top_k must be at least 1" in bad.stderr


# ---------------------------------------------------------------------------------------------
# A run folder: the run's model, as make eval takes it (issue 19 item 4), and the run's torch threads
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_make_ask_on_a_run_answers_with_the_runs_model(model_dir, tmp_path):
    from conftest import ROOT

    run = tmp_path / "run"
    shutil.copytree(model_dir, run)  # the final model at step 9 ...
    (run / "training_summary.json").write_text(json.dumps({"global_step": 9}))
    (run / "args.json").write_text(json.dumps({"torch_threads": 1}))
    checkpoint = run / "checkpoint-7"  # ... and the best checkpoint, its threshold tuned at step 7
    shutil.copytree(model_dir, checkpoint)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 7, "args": {
        "max_seq_length": 64, "doc_stride": 32, "max_query_length": 16}}))
    storage.write_marker(str(checkpoint), run_dir.COMPLETE)
    results = run_dir.eval_file(str(run), "eval_results", 7)
    os.makedirs(os.path.dirname(results), exist_ok=True)
    with open(results, "w", encoding="utf-8") as f:
        json.dump({"f1": 55.0, "best_f1_thresh": 1e9}, f)
    (run / run_dir.BEST_FILE).write_text(json.dumps({"checkpoint": "checkpoint-7", "step": 7, "metric": "f1", "value": 55.0}))
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC, encoding="utf-8")
    ask_run = ["make", "--no-print-directory", "ask", f"MODEL_DIR={run}", "QUESTION=where does the rhine flow",
               f"CONTEXT_FILE={doc}"]

    done = subprocess.run(ask_run, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"ask: the run's model: checkpoint-7 (step 7) of {run}: the best by f1 (55.00); 1 torch thread(s) " \
           "(the run's record)" in done.stderr
    assert f"null threshold 1000000000.0000 from {results} (tuned at step 7)" in done.stderr
    assert re.search(r"^Answer: .+$", done.stdout, re.M)

    # The final model's evaluation scored best: it answers (its qa_config.json), as make eval takes it.
    (run / run_dir.BEST_FILE).write_text(json.dumps({"checkpoint": "final", "step": 9, "metric": "f1", "value": 60.0}))
    (run / "qa_config.json").write_text(json.dumps({"null_score_diff_threshold": -1e9, "max_seq_length": 64,
                                                    "doc_stride": 32, "max_query_length": 16}))
    done = run_ask(run, "--question", "where does the rhine flow", "--context-file", doc, "--torch_threads", "2")
    assert f"ask: the run's model: the final model (step 9) of {run}: the best by f1 (60.00); 2 torch thread(s) " \
           "(--torch_threads)" in done.stderr
    assert f"from {run / 'qa_config.json'}" in done.stderr and "No answer" in done.stdout
    # A checkpoint named is that checkpoint, whatever the best.
    done = run_ask(checkpoint, "--question", "where does the rhine flow", "--context-file", doc)
    assert f"ask: {checkpoint}; 1 torch thread(s) (the run's record)" in done.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_that_is_not_a_number_is_refused(model_dir, tmp_path, value):
    # Review #8: --threshold nan answered without a word (every comparison with nan is False).
    (tmp_path / "doc.txt").write_text(DOC, encoding="utf-8")
    done = subprocess.run([sys.executable, "scripts/ask.py", str(model_dir), "--question", "q", "--context-file",
                           str(tmp_path / "doc.txt"), f"--threshold={value}"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"argument --threshold: {float(value)} is not a finite number" in done.stderr


def test_a_model_whose_logits_are_nan_is_named_in_one_line(model_dir, tmp_path):
    # Review #9: NonFiniteLogits ended ask in a traceback.
    plant_nan_qa_head(model_dir)
    (tmp_path / "doc.txt").write_text(DOC, encoding="utf-8")
    done = subprocess.run([sys.executable, "scripts/ask.py", str(model_dir), "--question", "where does the Rhine flow",
                           "--context-file", str(tmp_path / "doc.txt")], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"ask.py: {model_dir}: the model's logits are not finite (NaN)" in done.stderr
