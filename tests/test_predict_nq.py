"""scripts/predict_nq.py and qa.nq.predict: whole NQ documents -> official NQ predictions (and scores), on the real dev records.

A tiny random ALBERT answers, so its answers are arbitrary; what is asserted of them is that they are
valid official predictions of these very documents: every example, spans of the record's own candidates
and tokens, byte offsets that agree with document_tokens, the scores the selection rule says. The choice
itself (which candidate, which span, which score) is asserted exactly with planted logits
(qa.inference.predict_logits replaced)."""

import gzip
import json
import re
import runpy
import shutil
import subprocess

import numpy as np
import pytest
import torch

import qa.inference
from conftest import ROOT, shared_file
from qa import run_dir, storage
from qa.nq import predict as nq_predict
from qa.nq.annotation import NULL_SPAN
from qa.nq.document import token_span_to_chars
from qa.nq.evaluate import evaluate, read_gold, read_predictions
from qa.postprocess import PostprocessResult, postprocess_predictions

WINDOWS = {"max_seq_length": 128, "doc_stride": 64, "max_query_length": 32}  # small windows: fast on 2 cores
RONTGEN_ID = -3290814144789249484  # "who got the first nobel prize in physics"; gold short answer: tokens 245-248
NO_LONG_ANSWER_ID = 6986236841860957647  # no annotator gave a long answer
predict_nq_main = runpy.run_path(str(ROOT / "scripts" / "predict_nq.py"))["main"]  # the command line, in-process


@pytest.fixture(scope="module")
def full_path():
    return shared_file("nq", "nq-dev-10.full.jsonl.gz")


@pytest.fixture(scope="module")
def simplified_path():
    return shared_file("nq", "nq-dev-10.simplified.jsonl")


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """A final model folder with its qa_config.json, as run_squad.py leaves one (window sizes read from it)."""
    folder = tmp_path_factory.mktemp("model") / "run"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "qa_config.json").write_text(json.dumps({**WINDOWS, "max_answer_length": 30, "n_best_size": 20,
                                                       "version_2_with_negative": True, "null_score_diff_threshold": 0.0}))
    (folder / "training_summary.json").write_text(json.dumps({"global_step": 12, "early_stopped": False}))
    return folder


def read_records(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(args, capsys):
    code = predict_nq_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def check_predictions(predictions_path, input_path, records, top_level_only):
    """The official reader accepts the file against the gold; every span belongs to its record."""
    predictions = read_predictions(str(predictions_path), read_gold(str(input_path)))  # ids, offsets, scores
    assert len(predictions) == len(records)
    entries = {p["example_id"]: p for p in json.loads(predictions_path.read_text())["predictions"]}
    for record in records:
        entry = entries[record["example_id"]]
        long_answer, shorts = entry["long_answer"], entry["short_answers"]
        candidates = [c for c in record["long_answer_candidates"] if c["top_level"] or not top_level_only]
        full = "document_tokens" in record
        keys = ("start_token", "end_token", "start_byte", "end_byte") if full else ("start_token", "end_token")
        assert any(all(long_answer[k] == c[k] for k in keys) for c in candidates), record["example_id"]
        assert entry["yes_no_answer"] == "NONE" and len(shorts) == 1
        short = shorts[0]
        assert long_answer["start_token"] <= short["start_token"] < short["end_token"] <= long_answer["end_token"]
        assert entry["short_answers_score"] == entry["long_answer_score"]
        if full:
            tokens = record["document_tokens"]
            first, last = tokens[short["start_token"]], tokens[short["end_token"] - 1]
            assert not first["html_token"] and not last["html_token"]  # a short answer starts and ends on text
            assert (short["start_byte"], short["end_byte"]) == (first["start_byte"], last["end_byte"])
            assert long_answer["start_byte"] == tokens[long_answer["start_token"]]["start_byte"]
            assert long_answer["end_byte"] == tokens[long_answer["end_token"] - 1]["end_byte"]
            html = record["document_html"].encode("utf-8")
            assert html[short["start_byte"] : short["end_byte"]].strip()
        else:
            words = record["document_text"].split(" ")
            assert short["start_byte"] == short["end_byte"] == long_answer["start_byte"] == -1
            assert not words[short["start_token"]].startswith("<") and not words[short["end_token"] - 1].startswith("<")
    return entries


def summary_counts(stdout):
    match = re.search(r"(\d+) documents, (\d+) candidates, (\d+) windows", stdout)
    return tuple(map(int, match.groups()))


# ---------------------------------------------------------------------------------------------
# The selection rule, on hand-made post-processing results
# ---------------------------------------------------------------------------------------------
def nbest(*spans):
    """n-best entries: (text, start_char, end_char) for spans, None for the null entry."""
    return [{"text": "", "probability": 0.1, "start_logit": 0.0, "end_logit": 0.0, "start_char": -1, "end_char": -1}
            if span is None else
            {"text": span[0], "probability": 0.1, "start_logit": 1.0, "end_logit": 1.0, "start_char": span[1], "end_char": span[2]}
            for span in spans]


def test_the_candidate_with_the_best_single_window_wins():
    # Windows are questions of their own (qa.nq.predict.per_window): null_score_diff = that window's null
    # - its best span, so the window margins are 2.0 | 5.0, 6.0 | (no span) | 6.0 | -1.0, 0.5.
    result = PostprocessResult(
        predictions={},
        nbest={"0": nbest(None, ("Ada", 3, 6)), "1": nbest(("Tom", 0, 3), None), "2": nbest(("Tom read", 0, 8), None),
               "3": nbest(None), "4": nbest(("it", 9, 11), None), "5": nbest(None, ("a", 0, 1)), "6": nbest(("b", 2, 3))},
        null_score_diff={"0": -2.0, "1": -5.0, "2": -6.0, "3": -9.0, "4": -6.0, "5": 1.0, "6": -0.5},
        best_non_null={},
    )
    windows = [("7:0", ["0"]), ("7:2", ["1", "2"]), ("7:5", ["3"]), ("7:6", ["4"])]
    # 7:2's second window wins (its span, not the first window's); 7:5 has the largest -null_score_diff but
    # no span; 7:6 ties with 7:2 and comes later.
    assert nq_predict.best_candidate(windows, result) == ("7:2", 6.0, 0, 8)
    assert nq_predict.best_candidate([("7:0", ["0"]), ("7:5", ["3"])], result) == ("7:0", 2.0, 3, 6)
    assert nq_predict.best_candidate([("7:5", ["3"])], result) is None
    # Within a candidate, equal margins go to the earlier window.
    assert nq_predict.best_candidate([("7:9", ["4", "2"])], result) == ("7:9", 6.0, 9, 11)
    # No window beats its null: the least bad one is still chosen, with its negative margin.
    assert nq_predict.best_candidate([("1:0", ["5"]), ("1:1", ["6"])], result) == ("1:1", 0.5, 2, 3)


def test_rank_logprob_scores_a_span_by_its_own_windows_softmax():
    """--rank logprob: s_i + e_j - logsumexp(s) - logsumexp(e) of each window's best span, blind to its null score."""
    result = PostprocessResult(
        predictions={},
        nbest={"0": nbest(("Ada", 3, 6)), "1": nbest(None, ("Tom", 0, 3)), "2": nbest(None)},
        null_score_diff={"0": 3.0, "1": -4.0, "2": -9.0},  # margins -3 | 4 | (no span)
        best_non_null={},
    )
    result.nbest["0"][0].update(start_logit=2.0, end_logit=1.5)
    windows = [("7:0", ["0"]), ("7:1", ["1"]), ("7:2", ["2"])]
    assert nq_predict.best_candidate(windows, result) == ("7:1", 4.0, 0, 3)  # margin: window 1
    # Window 0's span has most of its softmax (3.5 - 4.0 = -0.5); window 1's is one of many (2.0 - 6.0 = -4.0).
    normalizers = {"0": 4.0, "1": 6.0, "2": 0.0}
    assert nq_predict.best_candidate(windows, result, normalizers) == ("7:0", -0.5, 3, 6)
    # The normalizers: logsumexp over each window's real tokens, padding left out.
    starts = np.array([[0.0, 1.0, 2.0, 50.0], [3.0, -1.0, 99.0, 99.0]], dtype=np.float32)
    ends = np.array([[1.0, 1.0, 1.0, 50.0], [0.0, 0.0, 99.0, 99.0]], dtype=np.float32)
    got = nq_predict.window_log_normalizers(starts, ends, np.array([3, 2]))
    expected = [np.log(np.exp([0.0, 1.0, 2.0]).sum()) + np.log(3 * np.e), np.log(np.exp([3.0, -1.0]).sum()) + np.log(2.0)]
    assert list(got) == ["0", "1"] and np.allclose([got["0"], got["1"]], expected)


def test_rank_logprob_end_to_end_writes_its_own_folder(model_dir, full_path, tmp_path, capsys):
    run_folder = tmp_path / "run"
    shutil.copytree(model_dir, run_folder)
    code, _, err = run(["--model_dir", run_folder, "--input", full_path, "--max_examples", 2, "--rank", "logprob"], capsys)
    assert code == 0, err
    predictions = run_folder / "eval" / "nq-12-first-2-logprob" / "nq_predictions.json"
    entries = json.loads(predictions.read_text())["predictions"]
    for record, entry in zip(read_records(full_path)[:2], entries):
        spans = [(c["start_token"], c["end_token"]) for c in record["long_answer_candidates"] if c["top_level"]]
        assert entry["example_id"] == record["example_id"]
        assert (entry["long_answer"]["start_token"], entry["long_answer"]["end_token"]) in spans
        assert entry["long_answer_score"] == entry["short_answers_score"] <= 0  # a log-probability
    assert json.loads((predictions.parent / "nq_eval_results_12.json").read_text())["examples"] == 2


def test_prediction_entry_maps_the_span_to_the_candidates_tokens():
    record = {"example_id": 7, "question_text": "who read it",
              "document_text": "<H1> Books </H1> <P> Ada wrote it </P> <P> Tom read it , twice </P> <Table> </Table>",
              "long_answer_candidates": [{"start_token": 3, "end_token": 8, "top_level": True},
                                         {"start_token": 8, "end_token": 15, "top_level": True},
                                         {"start_token": 15, "end_token": 17, "top_level": True}]}
    doc = nq_predict.document_from_record(record, True, "test:1")
    # The empty table holds no text: it cannot hold a span, so it is not a candidate.
    assert [(index, context.text) for index, _, context in doc.candidates] == [(0, "Ada wrote it"), (1, "Tom read it , twice")]
    entry = nq_predict.prediction_entry(doc, ("7:1", 3.5, 4, 11))  # "read it"
    assert entry == {"example_id": 7, "long_answer": {"start_token": 8, "end_token": 15, "start_byte": -1, "end_byte": -1},
                     "long_answer_score": 3.5,
                     "short_answers": [{"start_token": 10, "end_token": 12, "start_byte": -1, "end_byte": -1}],
                     "short_answers_score": 3.5, "yes_no_answer": "NONE"}
    empty = nq_predict.prediction_entry(nq_predict.document_from_record({**record, "long_answer_candidates": []}, True, "t"), None)
    assert empty["long_answer"] == NULL_SPAN.as_dict() and empty["short_answers"] == []
    assert empty["long_answer_score"] == empty["short_answers_score"] == nq_predict.NO_ANSWER_SCORE


# ---------------------------------------------------------------------------------------------
# The real dev records
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(model_dir, full_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "nq_predictions.json"
    code = predict_nq_main(["--model_dir", str(model_dir), "--input", str(full_path), "--output", str(out)])
    assert code == 0
    return out


def write_records(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode("utf-8")))
    return path


def planted_logits(targets, seen=None):
    """A stand-in for qa.inference.predict_logits: every window's CLS logits are 1.0 (null score 2.0) and
    all others -5.0 (any span -10.0), except what `targets(features)` plants: [(window, {position: (start
    logit, end logit)})]; the CLS position may be planted too. `seen` (a list) gets (features, starts, ends)."""

    def predict_logits(model, features, batch_size, runtime, **kwargs):
        width = features.offsets.shape[1]
        starts = np.full((len(features), width), -5.0, dtype=np.float32)
        ends = starts.copy()
        rows = np.arange(len(features))
        starts[rows, features.cls_index] = ends[rows, features.cls_index] = 1.0
        for window, positions in targets(features):
            for position, (start_logit, end_logit) in positions.items():
                starts[window, position], ends[window, position] = start_logit, end_logit
        if seen is not None:
            seen.append((features, starts, ends))
        return starts, ends

    return predict_logits


def test_planted_logits_choose_candidate_span_and_score_end_to_end(model_dir, full_path, tmp_path, capsys, monkeypatch):
    """The Röntgen record: its candidate 1 gets a span at the gold short answer's tokens, margin 8 - 2 = 6;
    a decoy candidate with two windows gets span 6 over null 3 in one (margin 3) and null -8 under spans
    of -10 in the other (margin -2). Its best span over the smallest null would be 6 - (-8) = 14 and win:
    the per-window rule picks candidate 1. The second record favours null everywhere (margin -12)."""
    records = {r["example_id"]: r for r in read_records(full_path)}
    rontgen, no_long = records[RONTGEN_ID], records[NO_LONG_ANSWER_ID]
    # A folder as --input: its *.jsonl.gz, as qa.nq.evaluate reads it.
    folder = tmp_path / "dev"
    path = write_records(folder / "nq-dev-00.jsonl.gz", [rontgen, no_long])
    documents = [nq_predict.document_from_record(r, True, "t") for r in (rontgen, no_long)]
    # features.example_index counts the candidates of the chunk's records in this order.
    candidates = [(doc.example_id, index) for doc in documents for index, _, _ in doc.candidates]
    target, context = candidates.index((RONTGEN_ID, 1)), documents[0].candidates[1][2]
    assert documents[0].candidates[1][0] == 1
    char_start, char_end = token_span_to_chars(context, 245, 248)
    assert context.text[char_start:char_end] == "Wilhelm Conrad Röntgen"
    planted = {}

    def targets(features):
        example_index = np.asarray(features.example_index)
        offsets, max_context = np.asarray(features.offsets), np.asarray(features.token_is_max_context)
        for window in np.flatnonzero(example_index == target):
            starts = np.flatnonzero((offsets[window, :, 0] == char_start) & max_context[window])
            ends = np.flatnonzero(offsets[window, :, 1] == char_end)
            if len(starts) and len(ends):
                break
        else:
            pytest.fail("no window holds the gold short answer with its maximum context")
        assert 0 <= ends[0] - starts[0] < 30  # within max_answer_length
        decoy = next(e for e in range(len(candidates)) if candidates[e][0] == RONTGEN_ID and e != target
                     and (example_index == e).sum() >= 2)
        first, second = np.flatnonzero(example_index == decoy)[:2]
        token = np.flatnonzero((offsets[first, :, 0] >= 0) & max_context[first])[0]
        planted["decoy"] = candidates[decoy][1]
        return [(window, {starts[0]: (4.0, -5.0), ends[0]: (-5.0, 4.0)} if starts[0] != ends[0] else {starts[0]: (4.0, 4.0)}),
                (first, {token: (3.0, 3.0), features.cls_index[first]: (1.5, 1.5)}),
                (second, {features.cls_index[second]: (-4.0, -4.0)})]

    seen = []
    monkeypatch.setattr(qa.inference, "predict_logits", planted_logits(targets, seen))
    out = tmp_path / "out" / "nq_predictions.json"
    # --rank margin: the default (auto) takes logprob for this model without the answer-type head
    code, stdout, err = run(["--model_dir", model_dir, "--input", folder, "--output", out, "--rank", "margin"], capsys)
    assert code == 0, err
    assert planted["decoy"] != 1
    # The planted logits do tell the two rules apart: merging each candidate's windows (best span over
    # them all minus their smallest null), the decoy would win with 14 against 6.
    (features, starts, ends), = seen
    merged = postprocess_predictions(nq_predict.candidate_examples(documents), features, starts, ends, 20, 30)
    assert -merged.null_score_diff[f"{RONTGEN_ID}:{planted['decoy']}"] == 14.0
    assert -merged.null_score_diff[f"{RONTGEN_ID}:1"] == 6.0
    first, second = json.loads(out.read_text())["predictions"]
    gold_long = rontgen["long_answer_candidates"][1]
    tokens = rontgen["document_tokens"]
    assert first == {
        "example_id": RONTGEN_ID,
        "long_answer": {key: gold_long[key] for key in ("start_token", "end_token", "start_byte", "end_byte")},
        "long_answer_score": 6.0,
        # End exclusive: tokens 245, 246, 247 and the bytes of "Wilhelm Conrad Röntgen" (ö is 2 bytes).
        "short_answers": [{"start_token": 245, "end_token": 248, "start_byte": 37907, "end_byte": 37930}],
        "short_answers_score": 6.0,
        "yes_no_answer": "NONE",
    }
    assert (tokens[245]["start_byte"], tokens[247]["end_byte"]) == (37907, 37930)
    assert rontgen["document_html"].encode()[37907:37930].decode() == "Wilhelm Conrad Röntgen"
    # Every window of the second record: null 2 over spans of -10. The first candidate's first span wins
    # the tie: its first text token.
    index, candidate, first_context = documents[1].candidates[0]
    first_text = next(i for i, span in enumerate(first_context.token_spans) if span) + first_context.start_token
    assert second["long_answer"] == {key: candidate[key] for key in ("start_token", "end_token", "start_byte", "end_byte")}
    assert second["long_answer_score"] == second["short_answers_score"] == -12.0
    assert [(s["start_token"], s["end_token"]) for s in second["short_answers"]] == [(first_text, first_text + 1)]
    # Scored by default (5 annotators each), against the input folder: exactly qa.nq.evaluate.evaluate's numbers.
    results = json.loads((out.parent / "nq_eval_results_12.json").read_text())
    expected = evaluate(str(path), str(out))
    assert results == {**expected, "step": 12, "candidates": "top", "examples": 2, "rank": "margin"}
    # Threshold 6.0: the Röntgen answers only, both right; the other record has no gold long or short answer.
    assert (expected["long-best-threshold-f1"], expected["short-best-threshold-f1"], expected["long-best-threshold"]) == (1.0, 1.0, 6.0)
    assert "NQ long answer F1 100.00" in stdout


def test_train_records_are_not_scored_by_default(model_dir, full_path, tmp_path, capsys, monkeypatch):
    """A train record has 1 annotator: gold never has an answer (2 needed), so every F1 would be 0."""
    records = read_records(full_path)[:2]
    train = write_records(tmp_path / "nq-train-00.jsonl.gz", [{**r, "annotations": r["annotations"][:1]} for r in records])
    monkeypatch.setattr(qa.inference, "predict_logits", planted_logits(lambda features: []))
    out = tmp_path / "p.json"
    code, stdout, err = run(["--model_dir", model_dir, "--input", train, "--output", out], capsys)
    assert code == 0, err
    assert out.exists() and not list(tmp_path.glob("nq_eval_results_*"))
    not_scored = [line for line in stdout.splitlines() if "not scored" in line]
    assert not_scored == ["predict_nq: not scored: 2 of 2 records have fewer than 2 annotations (a train file: 1 annotator), "
                          "and gold has an answer only when 2 annotators give one, so every F1 would be 0; --eval to score "
                          "anyway"]
    # --eval scores them, saying why the numbers are 0.
    code, stdout, err = run(["--model_dir", model_dir, "--input", train, "--output", out, "--eval"], capsys)
    assert code == 0, err
    assert "predict_nq: warning: scoring as asked (--eval), but 2 of 2 records have fewer than 2 annotations" in err
    results = json.loads((tmp_path / "nq_eval_results_12.json").read_text())
    assert results["long-best-threshold-f1"] == results["short-best-threshold-f1"] == 0.0


def test_scoring_decision():
    stats = {"records": 10, "simplified": 0, "few_annotations": 0}
    assert nq_predict.scoring_decision(None, stats) == (True, None)
    assert nq_predict.scoring_decision(True, stats) == (True, None)
    assert nq_predict.scoring_decision(False, stats) == (False, "predict_nq: not scored (--no-eval)")
    scored, message = nq_predict.scoring_decision(None, {**stats, "simplified": 10})
    assert not scored and message == ("predict_nq: not scored: 10 of 10 records are in the simplified format (no byte "
                                      "offsets); --eval to score anyway")
    assert nq_predict.scoring_decision(True, {**stats, "simplified": 10}) == (True, None)
    scored, message = nq_predict.scoring_decision(None, {**stats, "simplified": 1, "few_annotations": 3})
    assert not scored and message.count("\n") == 0 and "3 of 10 records have fewer than 2" in message and "1 of 10" in message
    assert nq_predict.unscored_reason({"document_tokens": [], "annotations": [{}] * 5}) is None
    assert nq_predict.unscored_reason({"document_tokens": [], "annotations": [{}]}) == "few_annotations"
    assert nq_predict.unscored_reason({"document_text": "x", "annotations": [{}] * 5}) == "simplified"


def test_default_output_folder_names_the_mode_and_subset():
    def name(candidates, max_examples):
        return run_dir.nq_predictions_file(run_dir.nq_eval_dir("RUN", 40, candidates == "all", max_examples))

    assert name("top", 0) == "RUN/eval/nq-40/nq_predictions.json"
    assert name("all", 0) == "RUN/eval/nq-40-all-candidates/nq_predictions.json"
    assert name("top", 50) == "RUN/eval/nq-40-first-50/nq_predictions.json"
    assert name("all", 50) == "RUN/eval/nq-40-all-candidates-first-50/nq_predictions.json"
    assert run_dir.nq_eval_dir("RUN", 40, rank="logprob") == "RUN/eval/nq-40-logprob"


def test_full_format_gives_valid_official_predictions_and_scores(full_run, full_path):
    records = read_records(full_path)
    entries = check_predictions(full_run, full_path, records, top_level_only=True)
    assert all(e["long_answer"]["start_token"] >= 0 for e in entries.values())  # every record has candidates
    # Full format with annotations: scored by default, beside the predictions, named by the model's step.
    results = json.loads((full_run.parent / "nq_eval_results_12.json").read_text())
    assert results["step"] == 12 and results["examples"] == 10 and results["candidates"] == "top"
    for key in ("long-best-threshold-f1", "short-best-threshold-f1", "long-recall-at-precision>=0.5"):
        assert 0 <= results[key] <= 1


def test_deterministic(full_run, model_dir, full_path, tmp_path, capsys):
    again = tmp_path / "again.json"
    code, out, _ = run(["--model_dir", model_dir, "--input", full_path, "--output", again, "--no-eval"], capsys)
    assert code == 0 and "not scored (--no-eval)" in out
    assert again.read_bytes() == full_run.read_bytes()
    assert not list(tmp_path.glob("nq_eval_results_*"))
    # Other chunk boundaries batch other windows together (other padded widths, float sums in another
    # order): the same answers, the scores equal to float32 rounding; reader processes change nothing.
    chunked = tmp_path / "chunked.json"
    code, _, _ = run(["--model_dir", model_dir, "--input", full_path, "--output", chunked, "--no-eval",
                      "--records_per_chunk", "3", "--workers", "2", "--threads", "2"], capsys)
    assert code == 0
    for a, b in zip(json.loads(full_run.read_text())["predictions"], json.loads(chunked.read_text())["predictions"]):
        assert (a["example_id"], a["long_answer"], a["short_answers"]) == (b["example_id"], b["long_answer"], b["short_answers"])
        assert a["long_answer_score"] == pytest.approx(b["long_answer_score"], abs=1e-4)


def test_max_examples_and_all_candidates(model_dir, full_path, tmp_path, capsys):
    records = read_records(full_path)[:3]
    top, all_ = tmp_path / "top" / "p.json", tmp_path / "all" / "p.json"
    code, out_top, _ = run(["--model_dir", model_dir, "--input", full_path, "--output", top, "--max_examples", 3], capsys)
    assert code == 0
    code, out_all, _ = run(["--model_dir", model_dir, "--input", full_path, "--output", all_, "--max_examples", 3,
                            "--candidates", "all"], capsys)
    assert code == 0
    docs_top, candidates_top, windows_top = summary_counts(out_top)
    docs_all, candidates_all, windows_all = summary_counts(out_all)
    expected_top = sum(c["top_level"] for r in records for c in r["long_answer_candidates"])
    assert docs_top == docs_all == 3 and candidates_top == expected_top
    assert candidates_all > candidates_top and windows_all > windows_top
    ids = [p["example_id"] for p in json.loads(top.read_text())["predictions"]]
    assert ids == [r["example_id"] for r in records]  # the first 3, in file order
    # The predictions of 3 records are scored against those 3 gold examples only.
    for path, top_level_only in ((top, True), (all_, False)):
        gold = {i: g for i, g in read_gold(str(full_path)).items() if i in ids}
        read_predictions(str(path), gold)
        results = json.loads((path.parent / "nq_eval_results_12.json").read_text())
        assert results["examples"] == 3
    entries = json.loads(all_.read_text())["predictions"]
    for record, entry in zip(records, entries):
        spans = [(c["start_token"], c["end_token"]) for c in record["long_answer_candidates"]]
        assert (entry["long_answer"]["start_token"], entry["long_answer"]["end_token"]) in spans


def test_simplified_format(model_dir, simplified_path, tmp_path, capsys):
    records = read_records(simplified_path)
    out = tmp_path / "p.json"
    code, stdout, _ = run(["--model_dir", model_dir, "--input", simplified_path, "--output", out], capsys)
    assert code == 0 and "not scored" in stdout and not list(tmp_path.glob("nq_eval_results_*"))
    check_predictions(out, simplified_path, records, top_level_only=True)
    code, stdout, _ = run(["--model_dir", model_dir, "--input", simplified_path, "--output", out, "--eval"], capsys)
    assert code == 0 and re.search(r"NQ long answer F1 [\d.]+ .*short answer F1 [\d.]+", stdout)
    assert json.loads((tmp_path / "nq_eval_results_12.json").read_text())["examples"] == 10


def test_record_without_candidates_gets_a_null_long_answer(model_dir, simplified_path, tmp_path, capsys):
    first = read_records(simplified_path)[0]
    bare = {**first, "example_id": 1, "long_answer_candidates": []}
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(bare) + "\n")
    out = tmp_path / "p.json"
    code, _, _ = run(["--model_dir", model_dir, "--input", path, "--output", out, "--eval"], capsys)
    assert code == 0
    predictions = read_predictions(str(out), read_gold(str(path)))
    assert predictions[1].long_answer.is_null() and predictions[1].long_answer_score == nq_predict.NO_ANSWER_SCORE
    assert not predictions[first["example_id"]].long_answer.is_null()


# ---------------------------------------------------------------------------------------------
# Checkpoints, and bad input
# ---------------------------------------------------------------------------------------------
def make_checkpoint(model_dir, run, step):
    checkpoint = run / f"checkpoint-{step}"
    shutil.copytree(model_dir, checkpoint, ignore=shutil.ignore_patterns("qa_config.json", "training_summary.json"))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "args": {
        **WINDOWS, "n_best_size": 20, "max_answer_length": 30, "learning_rate": 3e-5}}))
    storage.write_marker(str(checkpoint), run_dir.COMPLETE)  # complete, as qa.checkpoints writes them
    return checkpoint


def test_checkpoint_folder(model_dir, full_path, tmp_path, capsys):
    folder = tmp_path / "run"
    checkpoint = make_checkpoint(model_dir, folder, 7)
    code, _, err = run(["--model_dir", checkpoint, "--input", full_path, "--max_examples", 2], capsys)
    assert code == 0, err
    # Its window sizes come from its trainer_state.json; the output goes to the run's eval/ folder, by step
    # and subset (the first 2 records: never over a whole-input run's files).
    assert "windows of 128 tokens, stride 64, question 32" in err and str(checkpoint / "trainer_state.json") in err
    predictions = folder / "eval" / "nq-7-first-2" / "nq_predictions.json"
    assert json.loads((predictions.parent / "nq_eval_results_7.json").read_text())["step"] == 7
    first = predictions.read_bytes()
    # The same checkpoint named inside its run folder.
    code, _, _ = run(["--model_dir", folder, "--checkpoint", "checkpoint-7", "--input", full_path, "--max_examples", 2], capsys)
    assert code == 0 and predictions.read_bytes() == first
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-7", "eval"]  # nothing over the training record


def test_damaged_or_missing_model_is_refused(model_dir, full_path, tmp_path, capsys):
    folder = tmp_path / "run"
    checkpoint = make_checkpoint(model_dir, folder, 3)
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed: only the hash can tell
    weights.write_bytes(bytes(data))
    code, _, err = run(["--model_dir", checkpoint, "--input", full_path], capsys)
    assert code == 2 and "cannot be trusted" in err and "model.safetensors" in err
    assert not (folder / "eval").exists()
    code, _, err = run(["--model_dir", folder, "--input", full_path], capsys)  # a run without a final model: its newest
    assert code == 2 and "cannot be trusted" in err and str(checkpoint) in err  # checkpoint, as make eval takes
    code, _, err = run(["--model_dir", folder, "--checkpoint", "final", "--input", full_path], capsys)
    assert code == 2 and "no final model" in err and "checkpoint-N" in err
    code, _, err = run(["--model_dir", tmp_path, "--input", full_path], capsys)  # no model at all
    assert code == 2 and "no complete checkpoint" in err
    code, _, err = run(["--model_dir", folder, "--checkpoint", "checkpoint-9", "--input", full_path], capsys)
    assert code == 2 and "checkpoint-9" in err


def test_the_runs_model_is_the_one_make_eval_takes(model_dir, full_path, tmp_path, capsys):
    """No --checkpoint: run_dir.run_model (the best, the final model included); --checkpoint best names it too."""
    folder = tmp_path / "run"
    shutil.copytree(model_dir, folder)  # a finished run: the final model at step 12 ...
    make_checkpoint(model_dir, folder, 4)  # ... and a checkpoint
    best = {"checkpoint": run_dir.FINAL, "step": 12, "metric": "f1", "value": 60.0}
    (folder / run_dir.BEST_FILE).write_text(json.dumps(best))
    (folder / "args.json").write_text(json.dumps({"torch_threads": 1}))  # the run's threads, as recorded
    threads_before = torch.get_num_threads()
    for extra, threads in (([], "1 torch thread(s) (the run's record)"),
                           (["--checkpoint", "best", "--torch_threads", "2"], "2 torch thread(s) (--torch_threads)"),
                           (["--checkpoint", "final"], "1 torch thread(s) (the run's record)")):
        code, _, err = run(["--model_dir", folder, *extra, "--input", full_path, "--max_examples", 1], capsys)
        assert code == 0, err
        assert f"predict_nq: {folder} (step 12)" in err and threads in err
        assert torch.get_num_threads() == threads_before  # the caller's count again
    assert (folder / "eval" / "nq-12-first-1" / "nq_predictions.json").exists()

    (folder / run_dir.BEST_FILE).write_text(json.dumps({**best, "checkpoint": "checkpoint-4", "step": 4}))
    for extra in ([], ["--checkpoint", "best"]):
        code, _, err = run(["--model_dir", folder, *extra, "--input", full_path, "--max_examples", 1], capsys)
        assert code == 0 and f"predict_nq: {folder / 'checkpoint-4'} (step 4)" in err, err
    assert json.loads((folder / "eval" / "nq-4-first-1" / "nq_eval_results_4.json").read_text())["step"] == 4


def test_bad_input_is_named(model_dir, full_path, simplified_path, tmp_path, capsys):
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(full_path.read_bytes()[: 300_000])
    out = tmp_path / "p.json"
    code, _, err = run(["--model_dir", model_dir, "--input", truncated, "--output", out], capsys)
    assert code == 2 and str(truncated) in err and "truncated" in err and "Traceback" not in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(simplified_path.read_text().splitlines()[0] + "\n{not json\n")
    code, _, err = run(["--model_dir", model_dir, "--input", broken, "--output", out], capsys)
    assert code == 2 and f"{broken}:2: not valid JSON" in err
    code, _, err = run(["--model_dir", model_dir, "--input", tmp_path / "nq-dev-*.jsonl.gz", "--output", out], capsys)
    assert code == 2 and "no file matches" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        predict_nq_main(["--model_dir", str(model_dir), "--input", str(full_path), "--batch_size", "0"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------------------------
# make eval-nq
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_make_eval_nq_writes_into_eval(model_dir, full_path, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    make_checkpoint(model_dir, run, 4)
    common = ["make", "-C", str(ROOT), "--no-print-directory", "eval-nq", f"OUTPUT_DIR={run}", f"NQ_DEV_GLOB={full_path}",
              "NGPUS=0", "THREADS=1", "WORKERS=1", "NQ_MAX_EXAMPLES=2"]
    for extra, step in (([], 12), (["CKPT=checkpoint-4"], 4)):
        done = subprocess.run(common + extra, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "NQ long answer F1" in done.stdout
        folder = run / "eval" / f"nq-{step}-first-2"
        assert len(json.loads((folder / "nq_predictions.json").read_text())["predictions"]) == 2
        assert json.loads((folder / f"nq_eval_results_{step}.json").read_text())["step"] == step
    assert not list(run.glob("nq_*"))  # the training record is left alone
