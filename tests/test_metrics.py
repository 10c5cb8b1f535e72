"""qa.metrics: the official SQuAD 2.0 scores on real predictions, the CLI, edge cases, threshold tuning."""

import json
import random
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file
from qa import metrics
from qa.squad_io import read_squad

RHINE = ("squad", "squad2-dev-normans-rhine.json")

# Official evaluate-v2.0.py output on squad2-dev-normans-rhine.json (../shared/data/README.md).
OFFICIAL = {
    "bert-single.json": {"exact": 78.0453, "f1": 81.2160, "HasAns_exact": 71.5026, "HasAns_f1": 77.3019, "NoAns_exact": 85.9375},
    "bidaf-self-attention-elmo.json": {"exact": 63.3144, "f1": 65.2853, "HasAns_exact": 63.4715, "HasAns_f1": 67.0762, "NoAns_exact": 63.1250},
    "nlnet.json": {"exact": 75.4958, "f1": 77.5110, "HasAns_exact": 71.5026, "HasAns_f1": 75.1884, "NoAns_exact": 80.3125},
}
TOTALS = {"total": 706, "HasAns_total": 386, "NoAns_total": 320}
KEY_ORDER = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"]


def _load(name):
    return json.loads(shared_file("squad", "predictions", name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Official scores on real predictions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_reproduces_official_scores(name, capsys):
    examples = read_squad(shared_file(*RHINE))
    result = metrics.evaluate(examples, _load(name))
    assert list(result) == KEY_ORDER
    assert capsys.readouterr().out == ""  # every question has a prediction; extra ids are ignored
    for key, total in TOTALS.items():
        assert result[key] == total
    assert result["NoAns_f1"] == result["NoAns_exact"]
    for key, printed in OFFICIAL[name].items():
        assert round(result[key], 4) == pytest.approx(printed, abs=1e-9), key
        assert abs(result[key] - printed) < 1e-4
    # Exact match percentages are 100 * k / n with an integer k: recover k from the printed
    # value and hold ours to the exact fraction.
    for key, n in (("exact", 706), ("HasAns_exact", 386), ("NoAns_exact", 320)):
        k = round(OFFICIAL[name][key] * n / 100)
        assert abs(result[key] - 100 * k / n) < 1e-9, key


def test_cli_prints_the_official_json():
    data = shared_file(*RHINE)
    pred = shared_file("squad", "predictions", "nlnet.json")
    done = subprocess.run([sys.executable, "-m", "qa.metrics", str(data), str(pred)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    printed = json.loads(done.stdout)
    assert list(printed) == KEY_ORDER
    assert printed == dict(metrics.evaluate(read_squad(data), _load("nlnet.json")))
    assert done.stdout.strip() == json.dumps(printed, indent=2)


# The official script's bytes for SWEEP_* below, worked by hand: print(json.dumps(out, indent=2)) on
# stdout, json.dump(out, f) (one line, no newline) with -o. Sums run in data order, as there:
# f1 = 100 * (1 + 2/3 + 0 + 1) / 4; best_f1 = 100 * (2 + 1 + 2/3) / 4 reached at na_prob 0.5.
OFFICIAL_SWEEP_STDOUT = """{
  "exact": 50.0,
  "f1": 66.66666666666666,
  "total": 4,
  "HasAns_exact": 50.0,
  "HasAns_f1": 83.33333333333333,
  "HasAns_total": 2,
  "NoAns_exact": 50.0,
  "NoAns_f1": 50.0,
  "NoAns_total": 2,
  "best_exact": 75.0,
  "best_exact_thresh": 0.1,
  "best_f1": 91.66666666666666,
  "best_f1_thresh": 0.5
}
"""


def test_cli_output_is_byte_for_byte_the_official_format(tmp_path):
    contexts = {"q1": "Paris is the capital of France.", "q2": "Berlin Germany", "q3": "Lyon", "q4": "Nice"}
    paragraphs = [{"context": contexts[q], "qas": [{
        "id": q, "question": "?", "is_impossible": not answers,
        "answers": [{"text": t, "answer_start": contexts[q].index(t)} for t in answers]}]}
        for q, answers in SWEEP_GOLD.items()]
    (tmp_path / "data.json").write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    (tmp_path / "pred.json").write_text(json.dumps(SWEEP_PREDS))
    (tmp_path / "na.json").write_text(json.dumps(SWEEP_NA))
    cmd = [sys.executable, "-m", "qa.metrics", str(tmp_path / "data.json"), str(tmp_path / "pred.json"),
           "--na-prob-file", str(tmp_path / "na.json")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
    assert done.stdout.decode() == OFFICIAL_SWEEP_STDOUT
    subprocess.run([*cmd, "-o", str(tmp_path / "eval.json")], cwd=ROOT, capture_output=True, check=True)
    one_line = OFFICIAL_SWEEP_STDOUT.replace("{\n  ", "{").replace(",\n  ", ", ").replace("\n}\n", "}")
    assert (tmp_path / "eval.json").read_text() == one_line


def test_cli_na_probs_threshold_out_file_and_plots(tmp_path):
    data = shared_file(*RHINE)
    examples = read_squad(data)
    predictions = _load("bert-single.json")
    # Probabilities that separate no-answer questions perfectly: the oracle curve has AP 100.
    na_probs = {ex.qas_id: (0.9 if ex.is_impossible else 0.1) for ex in examples}
    (tmp_path / "na.json").write_text(json.dumps(na_probs))
    out, images = tmp_path / "eval.json", tmp_path / "plots"
    cmd = [sys.executable, "-m", "qa.metrics", str(data), str(shared_file("squad", "predictions", "bert-single.json")),
           "--na-prob-file", str(tmp_path / "na.json"), "-t", "0.5", "-o", str(out), "-p", str(images), "-v"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout == ""
    assert "706 questions (386 HasAns, 320 NoAns)" in done.stderr
    assert "11873 predictions, 11167 ignored (not in the data), 0 questions without a prediction" in done.stderr
    written = json.loads(out.read_text())
    expected = metrics.evaluate(examples, predictions, na_probs=na_probs, na_prob_thresh=0.5)
    assert {k: written[k] for k in expected} == dict(expected)
    # predicting "" for exactly the unanswerable questions: NoAns all right, HasAns as predicted
    assert written["NoAns_exact"] == 100.0
    assert written["HasAns_exact"] == metrics.evaluate(examples, predictions)["HasAns_exact"]
    assert written["pr_oracle_ap"] == pytest.approx(100.0)
    assert 0 < written["pr_exact_ap"] < written["pr_f1_ap"] <= 100.0
    assert sorted(p.name for p in images.iterdir()) == [
        "na_prob_hist_hasAns.png", "na_prob_hist_noAns.png", "pr_exact.png", "pr_f1.png", "pr_oracle.png"]


def test_cli_rejects_bad_prediction_file(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"56ddde6b9a695914005b9628": 3}))
    done = subprocess.run([sys.executable, "-m", "qa.metrics", str(shared_file(*RHINE)), str(tmp_path / "p.json")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "p.json" in done.stderr and "56ddde6b9a695914005b9628" in done.stderr


def test_missing_predictions_print_and_score_zero(capsys):
    gold = {"q1": ["Paris"], "q2": [], "q3": ["Rhine"]}
    result = metrics.evaluate(gold, {"q1": "Paris", "extra": "ignored"})
    assert capsys.readouterr().out == "Missing prediction for q2\nMissing prediction for q3\n"
    assert result["total"] == 3 and result["exact"] == pytest.approx(100 / 3)
    assert result["NoAns_exact"] == 0.0  # a missing prediction is not a correct no-answer


# ---------------------------------------------------------------------------------------------
# Normalisation and per-answer scores
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, normalized", [
    ("The Normans", "normans"),
    ("An apple, the pear & a plum.", "apple pear plum"),
    ("theatre anathema", "theatre anathema"),  # articles only as whole words
    ("the", ""),
    ("  New\tYork\n City ", "new york city"),
    ("U.S.A.", "usa"),
    ("well-known", "wellknown"),  # punctuation is removed, not replaced by a space
    ("Wilhelm Conrad Röntgen", "wilhelm conrad röntgen"),
    ("«Élan» — ÉCOLE", "«élan» — école"),  # only ASCII punctuation is removed
    ("l'Église", "léglise"),
    ("A\u00a0cat", "cat"),  # non-breaking space is whitespace to str.split
])
def test_normalize_answer(text, normalized):
    assert metrics.normalize_answer(text) == normalized


def test_exact_and_f1_hand_made_cases():
    assert metrics.compute_exact("The Cat", "cat!") == 1
    assert metrics.compute_exact("cat", "cats") == 0
    assert metrics.compute_f1("the cat sat", "cat sat down") == pytest.approx(0.8)  # P 2/3, R 1
    assert metrics.compute_f1("x x y", "x y y") == pytest.approx(2 / 3)  # token counts, not sets
    assert metrics.compute_f1("", "") == 1 and metrics.compute_f1("", "the") == 1  # both no-answer
    assert metrics.compute_f1("", "Paris") == 0 and metrics.compute_f1("Paris", "") == 0
    assert metrics.compute_f1("Paris", "London") == 0
    exact, f1 = metrics.get_raw_scores({"q": ["Berlin Germany", "of Germany"], "n": [], "a": ["The"]},
                                       {"q": "capital of Germany", "n": "", "a": ""})
    assert exact == {"q": 0, "n": 1, "a": 1}  # "The" normalises to "" so only "" is gold
    # "capital of germany" vs "berlin germany": P 1/3, R 1/2 -> 0.4; vs "of germany": P 2/3, R 1 -> 0.8
    assert metrics.compute_f1("Berlin Germany", "capital of Germany") == pytest.approx(0.4)
    assert f1["q"] == pytest.approx(0.8) and f1["n"] == 1 and f1["a"] == 1


# ---------------------------------------------------------------------------------------------
# The official no-answer sweep
# ---------------------------------------------------------------------------------------------
SWEEP_GOLD = {"q1": ["Paris"], "q2": ["Berlin Germany"], "q3": [], "q4": []}
SWEEP_PREDS = {"q1": "Paris", "q2": "Berlin", "q3": "Lyon", "q4": ""}
SWEEP_NA = {"q1": 0.1, "q2": 0.5, "q3": 0.6, "q4": 0.7}


def test_na_prob_sweep_hand_built():
    # Start: all no-answer = 2 (q3, q4). q1 +1 -> 3 (exact best, thresh 0.1); q2 +0 exact,
    # +2/3 F1 -> 3.667 (F1 best, thresh 0.5); q3 -1 (predicts "Lyon"); q4 +0.
    result = metrics.evaluate(SWEEP_GOLD, SWEEP_PREDS, na_probs=SWEEP_NA)
    assert result["exact"] == 50.0 and result["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)
    assert result["best_exact"] == 75.0 and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4) and result["best_f1_thresh"] == 0.5
    assert list(result)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    at_055 = metrics.evaluate(SWEEP_GOLD, SWEEP_PREDS, na_probs=SWEEP_NA, na_prob_thresh=0.55)
    assert at_055["exact"] == 75.0 and at_055["NoAns_exact"] == 100.0
    assert at_055["f1"] == pytest.approx(result["best_f1"])


def test_na_probs_must_cover_predictions():
    with pytest.raises(ValueError, match="'q4'"):
        metrics.evaluate(SWEEP_GOLD, SWEEP_PREDS, na_probs={k: v for k, v in SWEEP_NA.items() if k != "q4"})


# ---------------------------------------------------------------------------------------------
# Null threshold tuning
# ---------------------------------------------------------------------------------------------
def _real_tuning_case():
    """Best non-null answers and synthetic null score diffs for the real questions: questions
    bert-single left unanswered get higher diffs, and everything is shifted by +3, so the best
    threshold sits near 3, far from the legacy 0.0."""
    examples = read_squad(shared_file(*RHINE))
    preds = {name: _load(name) for name in OFFICIAL}
    rng = random.Random(0)
    best_non_null, diffs = {}, {}
    for ex in examples:
        candidates = [preds[n][ex.qas_id] for n in ("bert-single.json", "nlnet.json", "bidaf-self-attention-elmo.json")]
        best_non_null[ex.qas_id] = next((c for c in candidates if c), " ".join(ex.context.split()[:3]))
        diffs[ex.qas_id] = 3.0 + (1.0 if not candidates[0] else -1.0) + rng.gauss(0.0, 1.0)
    return examples, best_non_null, diffs


def test_tune_null_threshold_on_real_questions():
    examples, best_non_null, diffs = _real_tuning_case()
    tuned = metrics.tune_null_threshold(examples, best_non_null, diffs)
    assert list(tuned) == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    for name in ("exact", "f1"):
        thresh = tuned[f"best_{name}_thresh"]
        assert thresh in set(diffs.values()) and 1.0 < thresh < 5.0
        # applying the threshold reproduces the reported score
        applied = metrics.evaluate(examples, metrics.apply_null_threshold(best_non_null, diffs, thresh))
        assert abs(applied[name] - tuned[f"best_{name}"]) < 1e-9
    # brute force over every threshold the data allows: nothing beats the tuned scores
    null_scores = {ex.qas_id: float(not ex.has_answer) for ex in examples}
    exact_raw, f1_raw = metrics.get_raw_scores(examples, best_non_null)
    cuts = sorted(set(diffs.values())) + [min(diffs.values()) - 1.0]
    for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
        best = max(sum(null_scores[q] if diffs[q] > t else raw[q] for q in raw) for t in cuts) * 100.0 / len(raw)
        assert abs(best - tuned[f"best_{name}"]) < 1e-9
    # evaluate_predictions: the run's predictions as they are, plus the tuned numbers
    at_zero = metrics.apply_null_threshold(best_non_null, diffs, 0.0)
    results = metrics.evaluate_predictions(examples, at_zero, null_score_diff=diffs, best_non_null=best_non_null)
    assert list(results) == KEY_ORDER + list(tuned)
    assert {k: results[k] for k in tuned} == dict(tuned)
    assert results["f1"] < tuned["best_f1"]


def test_legacy_sweep_could_only_report_zero():
    """What the legacy run_squad.py did: sweep already-thresholded predictions with na_prob 0.0."""
    examples, best_non_null, diffs = _real_tuning_case()
    at_zero = metrics.apply_null_threshold(best_non_null, diffs, 0.0)
    legacy = metrics.evaluate(examples, at_zero, na_probs={q: 0.0 for q in at_zero})
    tuned = metrics.tune_null_threshold(examples, best_non_null, diffs)
    assert legacy["best_f1_thresh"] == 0.0 and legacy["best_exact_thresh"] == 0.0
    assert tuned["best_f1_thresh"] != 0.0 and tuned["best_f1"] > legacy["best_f1"]


def test_tune_handles_ties_and_all_null():
    gold = {"q1": ["Paris"], "q2": []}
    best_non_null = {"q1": "Paris", "q2": "Lyon"}
    diffs = {"q1": 0.5, "q2": 0.5}  # one threshold cannot answer q1 and not q2
    official, _ = metrics.find_best_thresh(best_non_null, {"q1": 1, "q2": 0}, diffs, metrics.make_qid_to_has_ans(gold))
    assert official == 100.0  # the official per-question sweep counts an unreachable split
    tuned = metrics.tune_null_threshold(gold, best_non_null, diffs)
    assert tuned["best_exact"] == 50.0 and tuned["best_exact_thresh"] == -0.5
    assert metrics.evaluate(gold, metrics.apply_null_threshold(best_non_null, diffs, -0.5))["exact"] == 50.0
    # all null is best: the threshold lies below every diff
    tuned = metrics.tune_null_threshold({"a": [], "b": []}, {"a": "x", "b": "y"}, {"a": 2.0, "b": 3.0})
    assert tuned["best_f1"] == 100.0 and tuned["best_f1_thresh"] == 1.0


def test_evaluate_predictions_needs_both_or_neither():
    with pytest.raises(ValueError, match="both"):
        metrics.evaluate_predictions(SWEEP_GOLD, SWEEP_PREDS, null_score_diff=SWEEP_NA)


def test_no_torch_or_transformers_imported():
    code = "import sys, qa.metrics, qa.squad_io; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_plots_without_answerable_questions_give_the_histogram_only(tmp_path):
    gold = {"n1": [], "n2": []}
    out = metrics.evaluate(gold, {"n1": "", "n2": "x"}, na_probs={"n1": 0.9, "n2": 0.2})
    exact_raw, f1_raw = metrics.get_raw_scores(gold, {"n1": "", "n2": "x"})
    metrics.run_precision_recall_analysis(out, exact_raw, f1_raw, {"n1": 0.9, "n2": 0.2},
                                          metrics.make_qid_to_has_ans(gold), str(tmp_path / "img"))
    assert not any(key.startswith("pr_") for key in out)  # as the official script: no recall without answers
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["na_prob_hist_noAns.png"]
