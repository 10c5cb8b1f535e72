"""qa.nq.evaluate (python -m qa.nq_eval) against hand-built NQ records with hand-computed metrics, and the real dev records.

Every expected number below was worked out by hand from the official rules (nq_eval.py /
eval_utils.py of google-research-datasets/natural-questions); the reasoning is in the comments.
"""

import gzip
import json
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file
from qa.nq import evaluate as nq_eval
from qa.nq.evaluate import NQEvalError, Span
from servers import moto_server, s3  # noqa: F401, F811  (fixtures)

NULL = (-1, -1, -1, -1)
BIG_NEGATIVE_ID = -7660771254611710392  # a real dev id: 64-bit, below -2**53


# ---------------------------------------------------------------------------------------------
# Builders of full-format records and official predictions
# ---------------------------------------------------------------------------------------------
def span_record(offsets):
    start_byte, end_byte, start_token, end_token = offsets
    return {"end_byte": end_byte, "end_token": end_token, "start_byte": start_byte, "start_token": start_token}


def annotation(long=NULL, short=(), yes_no="NONE"):
    long_record = span_record(long)
    long_record["candidate_index"] = -1 if long == NULL else 0
    return {
        "annotation_id": 13037645000009169623,  # above 2**63, as in the real dev set
        "long_answer": dict(sorted(long_record.items())),
        "short_answers": [span_record(s) for s in short],
        "yes_no_answer": yes_no,
    }


def full_record(example_id, annotations, question="what is it", **extra):
    """A full-format NQ record, keys in the order of the real files (sorted), compact JSON."""
    record = {
        "annotations": annotations,
        "document_html": '<P>some "quoted" html &amp; text</P>',
        "document_title": "Title",
        "document_tokens": [{"end_byte": 3, "html_token": True, "start_byte": 0, "token": "<P>"}],
        "document_url": "https://en.wikipedia.org//w/index.php?title=X&amp;oldid=1",
        "example_id": example_id,
        "long_answer_candidates": [{"end_byte": 40, "end_token": 9, "start_byte": 0, "start_token": 0, "top_level": True}],
        "question_text": question,
        "question_tokens": question.split(),
    }
    record.update(extra)
    return record


def write_gold(path, records, compress=True):
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def prediction(example_id, long=NULL, long_score=0.0, short=(), short_score=0.0, yes_no="NONE"):
    return {
        "example_id": example_id,
        "long_answer": span_record(long),
        "long_answer_score": long_score,
        "short_answers": [span_record(s) for s in short],
        "short_answers_score": short_score,
        "yes_no_answer": yes_no,
    }


def write_predictions(path, entries):
    path.write_text(json.dumps({"predictions": entries}))
    return path


# ---------------------------------------------------------------------------------------------
# The hand-built scenario: 7 examples, 5 annotators each
# ---------------------------------------------------------------------------------------------
L1, S1 = (100, 200, 10, 20), (120, 130, 12, 13)
L2 = (900, 1000, 90, 100)
L2_SHORT_A, L2_SHORT_B = (910, 915, 91, 92), (920, 925, 93, 94)
L3, S3 = (300, 400, 30, 40), (310, 320, 31, 32)
L5_A, L5_B = (500, 600, 50, 60), (700, 800, 70, 80)
L7, S7 = (50, 60, 5, 7), (52, 54, 5, 6)


def scenario_gold():
    return [
        # E1: long by 3 of 5 (gold has one); short by 2 of 5 (gold has one).
        full_record(1, [annotation(L1, [S1]), annotation(L1, [S1]), annotation(L1), annotation(), annotation()]),
        # E2: long by 5; short: annotator 1 gives two spans, annotator 2 one of them -> 2 votes.
        full_record(
            2,
            [annotation(L2, [L2_SHORT_A, L2_SHORT_B]), annotation(L2, [L2_SHORT_A])] + [annotation(L2)] * 3,
        ),
        # E3: long and short by only 1 of 5: gold has neither (threshold 2).
        full_record(3, [annotation(L3, [S3])] + [annotation()] * 4),
        # E4, E6: all null.
        full_record(4, [annotation()] * 5),
        # E5: two annotators, two different long answers, yes/no YES and NO -> gold has long and short.
        full_record(BIG_NEGATIVE_ID, [annotation(L5_A, yes_no="YES"), annotation(L5_B, yes_no="NO")] + [annotation()] * 3),
        full_record(6, [annotation()] * 5),
        # E7: long by 2; short: a span from annotator 1, NO from annotator 2 -> 2 votes.
        full_record(7, [annotation(L7, [S7]), annotation(L7, yes_no="NO")] + [annotation()] * 3),
    ]


def scenario_predictions():
    e6 = {"example_id": 6, "long_answer_score": 0.1, "short_answers_score": 0.0}  # every optional field absent
    return [
        # long right by bytes only (tokens -1); short set equal to annotator 1's
        prediction(1, (100, 200, -1, -1), 0.9, [S1], 2.0),
        # long: bytes wrong (999), tokens right -> correct (the official token fall-through);
        # short: annotator 1's two spans, bytes only, swapped, plus a null span that is ignored
        prediction(2, (900, 999, 90, 100), 0.5, [(920, 925, -1, -1), (910, 915, -1, -1), NULL], 1.5),
        # gold has neither long nor short (1 vote of 5): both count as wrong predictions
        prediction(3, L3, 0.5, [S3], 1.5),
        prediction(4, (10, 20, 1, 2), 0.5, [], 0.5, yes_no="YES"),
        # long: token-only (50, 61) matches neither annotator; yes/no "no" (lower case) matches annotator 2
        prediction(BIG_NEGATIVE_ID, (-1, -1, 50, 61), 0.3, [], 1.0, yes_no="no"),
        e6,
        prediction(7, NULL, 0.2, [], 0.2),
    ]


# Long, sorted by score:  E1 0.9 (gold, pred, correct) | E2 0.5 (g,p,c), E3 0.5 (-,p,-), E4 0.5 (-,p,-)
# | E5 0.3 (g,p,-) | E7 0.2 (g,-,-) | E6 0.1 (-,-,-).  4 examples have gold.
# Points: 0.9 P 1/1 R 1/4 F1 0.4; 0.5 (the whole tie) P 2/4 R 2/4 F1 0.5; 0.3 P 2/5 R 2/4 F1 4/9; then flat.
# (Counting E2 alone at 0.5 would give P 1, R 0.5, F1 2/3: the tie must be counted as a whole.)
# Short, sorted: E1 2.0 (g,p,c) | E2 1.5 (g,p,c), E3 1.5 (-,p,-) | E5 1.0 (g,p,c) | E4 0.5 (-,p,-)
# | E7 0.2 (g,-,-) | E6 0.0 (-,-,-).  4 with gold.
# Points: 2.0 P 1 R 1/4; 1.5 P 2/3 R 2/4 F1 4/7; 1.0 P 3/4 R 3/4 F1 0.75; 0.5 P 3/5 R 3/4 F1 2/3; flat.
SCENARIO_METRICS = {
    "long-best-threshold-f1": 0.5,
    "long-best-threshold-precision": 0.5,
    "long-best-threshold-recall": 0.5,
    "long-best-threshold": 0.5,
    "long-recall-at-precision>=0.5": 0.5,
    "long-precision-at-precision>=0.5": 0.5,
    "long-recall-at-precision>=0.75": 0.25,
    "long-precision-at-precision>=0.75": 1.0,
    "long-recall-at-precision>=0.9": 0.25,
    "long-precision-at-precision>=0.9": 1.0,
    "short-best-threshold-f1": 0.75,
    "short-best-threshold-precision": 0.75,
    "short-best-threshold-recall": 0.75,
    "short-best-threshold": 1.0,
    "short-recall-at-precision>=0.5": 0.75,
    "short-precision-at-precision>=0.5": 0.75,
    "short-recall-at-precision>=0.75": 0.75,
    "short-precision-at-precision>=0.75": 0.75,
    "short-recall-at-precision>=0.9": 0.25,
    "short-precision-at-precision>=0.9": 1.0,
}

SCENARIO_PRETTY = """\
********************
LONG ANSWER R@P TABLE:
Optimal threshold: 0.5
 F1     /  P      /  R
 50.00% /  50.00% /  50.00%
R@P=0.5: 50.00% (actual p=50.00%, score threshold=0.5)
R@P=0.75: 25.00% (actual p=100.00%, score threshold=0.9)
R@P=0.9: 25.00% (actual p=100.00%, score threshold=0.9)
********************
SHORT ANSWER R@P TABLE:
Optimal threshold: 1.0
 F1     /  P      /  R
 75.00% /  75.00% /  75.00%
R@P=0.5: 75.00% (actual p=75.00%, score threshold=1.0)
R@P=0.75: 75.00% (actual p=75.00%, score threshold=1.0)
R@P=0.9: 25.00% (actual p=100.00%, score threshold=2.0)
********************
METRICS IGNORING SCORES (n=7):
              F1     /  P      /  R
Long answer   44.44% /  40.00% /  50.00%
Short answer  66.67% /  60.00% /  75.00%
"""


@pytest.fixture
def scenario(tmp_path):
    gold_path = write_gold(tmp_path / "nq-dev-00.jsonl.gz", scenario_gold())
    predictions_path = write_predictions(tmp_path / "predictions.json", scenario_predictions())
    return gold_path, predictions_path


def test_scenario_metrics_match_the_hand_computed_values(scenario):
    metrics = nq_eval.evaluate(str(scenario[0]), str(scenario[1]))
    assert list(metrics) == list(SCENARIO_METRICS)
    for key, expected in SCENARIO_METRICS.items():
        assert metrics[key] == pytest.approx(expected, abs=1e-12), key


def test_scenario_per_example_stats(scenario):
    gold = nq_eval.read_gold(str(scenario[0]))
    predictions = nq_eval.read_predictions(str(scenario[1]), gold)
    long_stats, short_stats = nq_eval.score(gold, predictions)
    assert [tuple(s) for s in long_stats] == [
        (True, True, True, 0.9),
        (True, True, True, 0.5),  # E2: token fall-through
        (False, True, False, 0.5),  # E3: 1 vote of 5
        (False, True, False, 0.5),
        (True, True, False, 0.3),  # E5: token span (50, 61) is neither annotator's
        (True, False, False, 0.2),
        (False, False, False, 0.1),  # E6: long_answer absent = null
    ]
    assert [tuple(s) for s in short_stats] == [
        (True, True, True, 2.0),
        (True, True, True, 1.5),  # E2: set equality with annotator 1, order and null span ignored
        (False, True, False, 1.5),
        (True, True, True, 1.0),  # E5: "no" matches annotator 2's NO
        (False, True, False, 0.5),  # E4: YES where gold has nothing
        (True, False, False, 0.2),
        (False, False, False, 0.0),
    ]
    # Ignoring scores: long 2 correct / 5 predicted / 4 gold; short 3 / 5 / 4.
    final = nq_eval.compute_final_f1(long_stats, short_stats)
    assert final["long-answer-n"] == 7
    assert final["long-answer-precision"] == pytest.approx(0.4)
    assert final["long-answer-recall"] == pytest.approx(0.5)
    assert final["long-answer-f1"] == pytest.approx(4 / 9)
    assert final["short-answer-precision"] == pytest.approx(0.6)
    assert final["short-answer-recall"] == pytest.approx(0.75)
    assert final["short-answer-f1"] == pytest.approx(2 / 3)


def test_non_null_thresholds_change_what_gold_has(scenario):
    gold_path, predictions_path = map(str, scenario)
    # long threshold 1: E3 (1 vote) now has gold and its prediction is right. 5 with gold.
    # Points: 0.9 P 1 R 1/5; 0.5 P 3/4 R 3/5 F1 2/3; 0.3 P 3/5 R 3/5 F1 0.6.
    one = nq_eval.evaluate(gold_path, predictions_path, long_non_null_threshold=1)
    assert one["long-best-threshold-f1"] == pytest.approx(2 / 3)
    assert (one["long-best-threshold-precision"], one["long-best-threshold-recall"]) == pytest.approx((0.75, 0.6))
    assert one["long-best-threshold"] == 0.5
    # long threshold 3: only E1 (3 votes) and E2 (5) have gold. 0.9: P 1 R 1/2 F1 2/3; 0.5: P 2/4 R 1
    # F1 2/3 as well: the strict ">" keeps the first (highest) threshold.
    three = nq_eval.evaluate(gold_path, predictions_path, long_non_null_threshold=3)
    assert three["long-best-threshold-f1"] == pytest.approx(2 / 3)
    assert (three["long-best-threshold-precision"], three["long-best-threshold-recall"]) == (1.0, 0.5)
    assert three["long-best-threshold"] == 0.9
    # short threshold 1: E3 has gold short and is right. 5 with gold.
    # Points: 2.0 P 1 R 1/5; 1.5 P 1 R 3/5; 1.0 P 1 R 4/5 F1 8/9; 0.5 P 4/5 R 4/5 F1 0.8.
    short_one = nq_eval.evaluate(gold_path, predictions_path, short_non_null_threshold=1)
    assert short_one["short-best-threshold-f1"] == pytest.approx(8 / 9)
    assert short_one["short-best-threshold"] == 1.0
    assert short_one["short-recall-at-precision>=0.9"] == pytest.approx(0.8)
    assert short_one["long-best-threshold-f1"] == 0.5  # long unchanged


def test_all_null_predictions_score_zero_with_the_official_types(scenario, tmp_path):
    entries = [prediction(r["example_id"]) for r in scenario_gold()]
    metrics = nq_eval.evaluate(str(scenario[0]), str(write_predictions(tmp_path / "null.json", entries)))
    for prefix in ("long-", "short-"):
        # One point (every score 0.0): 0 correct of 0 predicted -> precision is the integer 0 of
        # safe_divide; F1 never exceeds 0, so the best threshold stays 0.0; no R@P is ever reached.
        assert metrics[prefix + "best-threshold-f1"] == 0.0
        assert metrics[prefix + "best-threshold"] == 0.0
        for target in ("0.5", "0.75", "0.9"):
            recall = metrics[f"{prefix}recall-at-precision>={target}"]
            assert recall == 0 and type(recall) is int


def test_compute_pr_curves_matches_the_official_unit_test():
    # eval_utils_test / nq_eval_test testPrCurve: [(True, True, True, 1.0), (False, True, False, 10.0)].
    stats = sorted(
        [nq_eval.AnswerStat(True, True, True, 1.0), nq_eval.AnswerStat(False, True, False, 10.0)],
        key=lambda s: s.score,
        reverse=True,
    )
    (f1, precision, recall, threshold), table = nq_eval.compute_pr_curves(stats)
    assert (precision, recall, threshold) == (0.5, 1.0, 1.0)
    assert f1 == pytest.approx(2 / 3)
    assert table == [(0.5, 1.0, 0.5, 1.0), (0.75, 0, 0, None), (0.9, 0, 0, None)]


def test_span_equality_is_bytes_or_tokens():
    gold = Span(100, 200, 10, 20)
    assert nq_eval.nonnull_spans_equal(gold, Span(-1, -1, 10, 20))
    assert nq_eval.nonnull_spans_equal(gold, Span(100, 200, -1, -1))
    assert nq_eval.nonnull_spans_equal(gold, Span(100, 201, 10, 20))  # bytes differ, tokens equal
    assert not nq_eval.nonnull_spans_equal(gold, Span(100, 201, 10, 21))
    # Bytes on one side, tokens on the other: nothing to compare -> not equal.
    assert not nq_eval.nonnull_spans_equal(Span(100, 200, -1, -1), Span(-1, -1, 10, 20))


def test_pretty_print_output_is_the_official_text(scenario):
    gold = nq_eval.read_gold(str(scenario[0]))
    long_stats, short_stats = nq_eval.score(gold, nq_eval.read_predictions(str(scenario[1]), gold))
    assert nq_eval.format_pretty(long_stats, short_stats) == SCENARIO_PRETTY


# ---------------------------------------------------------------------------------------------
# Bad predictions and bad gold
# ---------------------------------------------------------------------------------------------
def _bad(tmp_path, scenario, change):
    entries = scenario_predictions()
    change(entries)
    path = write_predictions(tmp_path / "bad.json", entries)
    gold = nq_eval.read_gold(str(scenario[0]))
    with pytest.raises(NQEvalError) as info:
        nq_eval.read_predictions(str(path), gold)
    return str(info.value)


def test_ids_must_equal_the_gold_ids(tmp_path, scenario):
    message = _bad(tmp_path, scenario, lambda e: e.pop(3))
    assert "1 gold example(s) have no prediction (e.g. example_id 4)" in message
    message = _bad(tmp_path, scenario, lambda e: e.append(prediction(999)))
    assert "1 prediction(s) are not in the gold (e.g. example_id 999)" in message
    # score() checks too, for callers that build the dicts themselves.
    gold = nq_eval.read_gold(str(scenario[0]))
    predictions = nq_eval.read_predictions(str(scenario[1]))
    del predictions[BIG_NEGATIVE_ID]
    with pytest.raises(NQEvalError, match=f"example_id {BIG_NEGATIVE_ID}"):
        nq_eval.score(gold, predictions)


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda e: e[1].update(yes_no_answer="YES"),
            "prediction 1 (example_id 2): yes/no prediction and short answers cannot coexist",
        ),
        (lambda e: e[0].update(long_answer=span_record((200, 100, -1, -1))), "start_byte 200 >= end_byte 100"),
        (lambda e: e[0].update(long_answer=span_record((100, 100, -1, -1))), "start_byte 100 >= end_byte 100"),
        (lambda e: e[0]["short_answers"].append(span_record((-1, -1, 5, 3))), "short_answers[1]: invalid token span"),
        (lambda e: e[0].update(long_answer=span_record((-1, 5, -1, -1))), "inconsistent null byte span"),
        (lambda e: e[0].update(long_answer=span_record((-1, -1, 3, -1))), "inconsistent null token span"),
        (lambda e: e[0]["long_answer"].pop("start_token"), "the span has no 'start_token'"),
        (lambda e: e[0]["long_answer"].update(start_byte=100.0), "start_byte must be an integer"),
        (lambda e: e[2].update(yes_no_answer="maybe"), "invalid yes_no_answer 'maybe'"),
        (lambda e: e[2].pop("long_answer_score"), "prediction 2 (example_id 3): no 'long_answer_score'"),
        (lambda e: e[2].update(short_answers_score="high"), "short_answers_score must be a number"),
        (lambda e: e[4].update(example_id=float(BIG_NEGATIVE_ID)), "example_id must be a JSON integer"),
        (lambda e: e.append(prediction(7)), "example_id 7 is also prediction 6"),
    ],
)
def test_bad_predictions_name_the_example(tmp_path, scenario, change, expected):
    assert expected in _bad(tmp_path, scenario, change)


def test_yes_no_with_only_null_short_spans_is_allowed(tmp_path, scenario):
    entries = scenario_predictions()
    entries[4]["short_answers"] = [span_record(NULL)]  # E5 says "no" and lists a null span
    metrics = nq_eval.evaluate(str(scenario[0]), str(write_predictions(tmp_path / "p.json", entries)))
    assert metrics["short-best-threshold-f1"] == 0.75


def test_bad_gold_is_named(tmp_path):
    records = scenario_gold()
    records[1]["annotations"][0]["long_answer"]["end_byte"] = 900
    path = write_gold(tmp_path / "bad.jsonl.gz", records)
    with pytest.raises(NQEvalError, match=r"bad.jsonl.gz line 2 \(example_id 2\) annotation 0 long_answer: invalid byte span"):
        nq_eval.read_gold(str(path))
    duplicate = write_gold(tmp_path / "dup.jsonl.gz", [records[0], records[0]])
    with pytest.raises(NQEvalError, match="line 2: example_id 1 is already at .*line 1"):
        nq_eval.read_gold(str(duplicate))
    float_id = write_gold(tmp_path / "float.jsonl", [full_record(1.5, [annotation()])], compress=False)
    with pytest.raises(NQEvalError, match="line 1: example_id must be an integer, got 1.5"):
        nq_eval.read_gold(str(float_id))
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(write_gold(tmp_path / "whole.jsonl.gz", scenario_gold()).read_bytes()[:-20])
    with pytest.raises(NQEvalError, match="cut.jsonl.gz: cannot be read"):
        nq_eval.read_gold(str(truncated))


# ---------------------------------------------------------------------------------------------
# Reading gold: the two-field fast path, formats, shards, cache
# ---------------------------------------------------------------------------------------------
def test_fast_path_is_not_fooled_by_quoted_keys():
    record = full_record(42, [annotation(L1)], question='what is "example_id": 99 and "annotations": []')
    line = json.dumps(record, separators=(",", ":")).encode()
    assert nq_eval.extract_gold_fields(line) == (42, record["annotations"], True)
    # json.dumps' default ", " / ": " separators work as well.
    assert nq_eval.extract_gold_fields(json.dumps(record).encode()) == (42, record["annotations"], True)
    # A key whose own text ends in "example_id leaves a backslash before the match: full parse.
    tricky = json.dumps({**record, 'x"example_id': 7}, separators=(",", ":")).encode()
    assert nq_eval.extract_gold_fields(tricky) is None
    assert nq_eval.parse_gold_line(tricky, "t")[0] == 42
    # A simplified record (no document_tokens / document_html key) whose key text merely ends in one.
    simplified = {"annotations": [], 'x"document_html': 1, "document_text": "x", "example_id": 5}
    assert nq_eval.extract_gold_fields(json.dumps(simplified).encode()) is None  # unsure: the full parse decides
    assert nq_eval.parse_gold_line(json.dumps(simplified).encode(), "t") == (5, ())
    assert nq_eval.extract_gold_fields(json.dumps({**simplified, "x": 0}, separators=(",", ":")).encode()) is None


def _without(record, annotation_index, *keys):
    """The record with offsets removed from one annotation's long answer."""
    record = json.loads(json.dumps(record))
    for key in keys:
        del record["annotations"][annotation_index]["long_answer"][key]
    return record


@pytest.mark.parametrize("fast_path", [True, False])
def test_full_format_gold_needs_every_offset_simplified_does_not(tmp_path, fast_path):
    damaged = _without(full_record(8, [annotation(L1)] * 2), 1, "start_byte")
    # A key whose text ends in "example_id leaves a backslash before the match: the whole line is parsed.
    extra = {} if fast_path else {'x"example_id': 7}
    path = write_gold(tmp_path / "damaged.jsonl", [{**damaged, **extra}], compress=False)
    assert (nq_eval.extract_gold_fields(path.read_bytes().splitlines()[0]) is None) is not fast_path
    # The official reader raises (KeyError) here; a silent -1 would make the gold span byte-less.
    with pytest.raises(NQEvalError, match=r"damaged.jsonl line 1 \(example_id 8\) annotation 1 long_answer: "
                                          r"the span has no 'start_byte'"):
        nq_eval.read_gold(str(path))
    # A simplified record (no document_tokens / document_html) has no byte offsets: they are -1.
    no_bytes = _without(damaged, 1, "end_byte")
    simplified = {"annotations": no_bytes["annotations"], "document_text": "x", "example_id": 8, "question_text": "q", **extra}
    gold = nq_eval.read_gold(str(write_gold(tmp_path / "simplified.jsonl", [simplified], compress=False)))
    assert gold[8][1].long_answer == Span(-1, -1, L1[2], L1[3]) and gold[8][0].long_answer == Span(*L1)


def test_simplified_gold_and_plain_jsonl(tmp_path):
    # The simplified format: token offsets only, example_id before annotations.
    simplified = []
    for record in scenario_gold():
        annotations = []
        for a in record["annotations"]:
            long_answer = {k: a["long_answer"][k] for k in ("candidate_index", "end_token", "start_token")}
            shorts = [{k: s[k] for k in ("end_token", "start_token")} for s in a["short_answers"]]
            annotations.append({**a, "long_answer": long_answer, "short_answers": shorts})
        simplified.append(
            {"question_text": "q", "example_id": record["example_id"], "document_text": "x", "annotations": annotations}
        )
    path = write_gold(tmp_path / "simplified.jsonl", simplified, compress=False)
    # E1's byte-only long and E2's byte-only short spans have nothing to compare with token-only gold:
    # long E1 becomes wrong, short E2 becomes wrong.
    metrics = nq_eval.evaluate(str(path), str(write_predictions(tmp_path / "p.json", scenario_predictions())))
    # Long: 0.9 (g,p,-) P 0 R 0; 0.5 c1 p4 P 1/4 R 1/4 F1 1/4; 0.3 c1 p5 P 1/5 R 1/4 F1 2/9.
    assert metrics["long-best-threshold-f1"] == pytest.approx(0.25)
    assert metrics["long-best-threshold"] == 0.5
    # Short: 2.0 c1 p1 (token spans match); 1.5 c1 p3; 1.0 c2 p4 P 1/2 R 1/2 F1 0.5; 0.5 c2 p5 F1 4/9.
    assert metrics["short-best-threshold-f1"] == pytest.approx(0.5)
    assert metrics["short-recall-at-precision>=0.9"] == 0.25


def test_shards_read_in_parallel_equal_serial_and_duplicates_across_shards_fail(tmp_path):
    records = scenario_gold()
    write_gold(tmp_path / "nq-dev-00.jsonl.gz", records[:4])
    write_gold(tmp_path / "nq-dev-01.jsonl.gz", records[4:])
    pattern = str(tmp_path / "nq-dev-*.jsonl.gz")
    serial = nq_eval.read_gold(pattern, num_threads=1)
    parallel = nq_eval.read_gold(pattern, num_threads=2)
    assert parallel == serial
    assert list(serial) == [1, 2, 3, 4, BIG_NEGATIVE_ID, 6, 7]
    assert serial[2][0].short_answers == (Span(*L2_SHORT_A), Span(*L2_SHORT_B))
    assert serial[BIG_NEGATIVE_ID][1].yes_no_answer == "no"
    write_gold(tmp_path / "nq-dev-02.jsonl.gz", records[6:])
    with pytest.raises(NQEvalError, match="nq-dev-02.jsonl.gz line 1: example_id 7 is already at .*nq-dev-01"):
        nq_eval.read_gold(pattern, num_threads=2)


def test_parallel_readers_are_spawned_not_forked(tmp_path, monkeypatch):
    """A fork after CUDA / torch threads started can hang the child (scripts/predict_nq.py scores right
    after its model ran): read_gold must start its readers with spawn."""
    records = scenario_gold()
    write_gold(tmp_path / "nq-dev-00.jsonl.gz", records[:4])
    write_gold(tmp_path / "nq-dev-01.jsonl.gz", records[4:])
    real_pool = nq_eval.concurrent.futures.ProcessPoolExecutor
    start_methods = []

    def recording_pool(*args, **kwargs):
        start_methods.append(kwargs["mp_context"].get_start_method() if kwargs.get("mp_context") else None)
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(nq_eval.concurrent.futures, "ProcessPoolExecutor", recording_pool)
    gold = nq_eval.read_gold(str(tmp_path / "nq-dev-*.jsonl.gz"), num_threads=2)
    assert start_methods == ["spawn"]
    assert gold == nq_eval.read_gold(str(tmp_path / "nq-dev-*.jsonl.gz"), num_threads=1)
    assert start_methods == ["spawn"]  # one reader: no pool at all


def test_a_folder_is_its_jsonl_gz_and_jsonl_files(tmp_path, scenario):
    records = scenario_gold()
    folder = tmp_path / "dev"
    folder.mkdir()
    write_gold(folder / "nq-dev-00.jsonl.gz", records[:3])
    write_gold(folder / "nq-dev-01.jsonl", records[3:], compress=False)
    (folder / "README.txt").write_text("not gold")
    assert nq_eval.expand_gold_paths(str(folder)) == [str(folder / "nq-dev-00.jsonl.gz"), str(folder / "nq-dev-01.jsonl")]
    assert nq_eval.read_gold(f"{folder}/", num_threads=2) == nq_eval.read_gold(str(scenario[0]))
    result = _cli("--gold_path", f"{folder}/", "--predictions_path", str(scenario[1]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == pytest.approx(SCENARIO_METRICS, abs=1e-12)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    result = _cli("--gold_path", str(empty), "--predictions_path", str(scenario[1]))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{empty}: a folder without *.jsonl.gz, *.jsonl or *.parquet files" in result.stderr and "glob" in result.stderr
    assert "download it again" not in result.stderr


def test_gold_cache_is_reused_only_for_the_same_files(tmp_path, monkeypatch):
    path = write_gold(tmp_path / "nq-dev-00.jsonl.gz", scenario_gold())
    first = nq_eval.read_gold_cached(str(path), num_threads=1)
    caches = list(tmp_path.glob("nq_eval_gold_cache-*.pkl"))
    assert len(caches) == 1
    with monkeypatch.context() as patch:  # a second call must not parse the shard again
        patch.setattr(nq_eval, "read_gold", lambda *a: pytest.fail("the cache was not used"))
        assert nq_eval.read_gold_cached(str(path), num_threads=1) == first
    write_gold(path, scenario_gold()[:2])  # the shard changes: a new key, never the stale cache
    assert list(nq_eval.read_gold_cached(str(path), num_threads=1)) == [1, 2]
    assert len(list(tmp_path.glob("nq_eval_gold_cache-*.pkl"))) == 2


def test_gold_and_predictions_streamed_from_s3(s3, scenario):  # noqa: F811  (the fixture)
    s3.create_bucket(Bucket="nq-gold")
    records = scenario_gold()
    for shard, part in enumerate((records[:4], records[4:])):
        body = gzip.compress("".join(json.dumps(r) + "\n" for r in part).encode())
        s3.put_object(Bucket="nq-gold", Key=f"dev/nq-dev-0{shard}.jsonl.gz", Body=body)
    s3.put_object(Bucket="nq-gold", Key="predictions.json", Body=scenario[1].read_bytes())
    metrics = nq_eval.evaluate("s3://nq-gold/dev/", "s3://nq-gold/predictions.json", num_threads=2)
    assert metrics == pytest.approx(SCENARIO_METRICS, abs=1e-12)
    with pytest.raises(NQEvalError, match="--cache_gold_data needs local gold files"):
        nq_eval.evaluate("s3://nq-gold/dev/", "s3://nq-gold/predictions.json", cache_gold_data=True)


def test_benchmark_shows_the_two_field_parse_beats_whole_line_parsing():
    done = subprocess.run([sys.executable, "benchmarks/bench_nq_eval.py", str(shared_file("nq", "nq-dev-10.full.jsonl.gz")),
                           "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["records"] == 10 and result["megabytes"] == 7.4
    # Measured about 13,400 vs 312 records/s; 5x leaves room for a busy machine.
    assert result["two_fields_records_per_s"] > 5 * result["orjson_whole_line_records_per_s"]


# ---------------------------------------------------------------------------------------------
# The real dev records (first 10 of nq-dev-00)
# ---------------------------------------------------------------------------------------------
# Per record (5 annotators): long answers by annotators / short answers by annotators
#   0: long 4,5 (same span) / short 4           -> gold long, no gold short
#   2: long 1 (39414-342045), 2-5 (37786-39086) / short 2,3 (37907-37946), 4,5 (37907-37930)
#   4: long 1-5 (same) / short 1-5 (same)        -> gold long and short
#   7: long 2 and 5 (different) / short 2        -> gold long, no gold short
#   9: long 3 only                              -> no gold long
#   1, 3, 5, 6, 8: nothing
# Gold long: 0, 2, 4, 7 (4); gold short: 2, 4 (2).
def _real_records():
    with gzip.open(shared_file("nq", "nq-dev-10.full.jsonl.gz"), "rb") as f:
        return [json.loads(line) for line in f]


def _first(annotations, has):
    return next((a for a in annotations if has(a)), None)


def test_real_lines_take_the_fast_path_and_equal_a_full_parse():
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    with gzip.open(path, "rb") as f:
        for line in f:
            record = json.loads(line)
            assert nq_eval.extract_gold_fields(line) == (record["example_id"], record["annotations"], True)
    gold = nq_eval.read_gold(str(path))
    assert list(gold)[:3] == [5225754983651766092, 6986236841860957647, -3290814144789249484]
    assert all(len(annotations) == 5 for annotations in gold.values())


def test_real_gold_as_prediction_first_annotator(tmp_path):
    records = _real_records()
    entries = []
    for record in records:
        first = record["annotations"][0]
        long = first["long_answer"]
        entries.append(
            prediction(
                record["example_id"],
                tuple(long[k] for k in ("start_byte", "end_byte", "start_token", "end_token")),
                1.0,
                [tuple(s[k] for k in ("start_byte", "end_byte", "start_token", "end_token")) for s in first["short_answers"]],
                1.0,
                first["yes_no_answer"],
            )
        )
    path = write_predictions(tmp_path / "first.json", entries)
    metrics = nq_eval.evaluate(str(shared_file("nq", "nq-dev-10.full.jsonl.gz")), str(path))
    # Annotator 1 gives long answers on records 2 and 4 only (both right), of 4 gold: P 1, R 1/2.
    # Short: only record 4 (right), of 2 gold: P 1, R 1/2. One threshold, 1.0.
    for prefix in ("long-", "short-"):
        assert metrics[prefix + "best-threshold-f1"] == pytest.approx(2 / 3)
        assert metrics[prefix + "best-threshold-precision"] == 1.0
        assert metrics[prefix + "best-threshold-recall"] == 0.5
        assert metrics[prefix + "best-threshold"] == 1.0
        assert metrics[prefix + "recall-at-precision>=0.9"] == 0.5


def _mixed_predictions(records):
    """The first non-null annotator's long and short answer, with scores that make a curve."""
    long_scores = {0: 0.9, 2: 0.8, 4: 0.7, 9: 0.6, 7: 0.2}
    short_scores = {2: 0.9, 0: 0.5, 4: 0.4, 7: 0.3}
    entries = []
    for i, record in enumerate(records):
        keys = ("start_byte", "end_byte", "start_token", "end_token")
        with_long = _first(record["annotations"], lambda a: a["long_answer"]["start_byte"] >= 0)
        with_short = _first(record["annotations"], lambda a: a["short_answers"])
        entries.append(
            prediction(
                record["example_id"],
                tuple(with_long["long_answer"][k] for k in keys) if with_long else NULL,
                long_scores.get(i, 0.0),
                [tuple(s[k] for k in keys) for s in with_short["short_answers"]] if with_short else [],
                short_scores.get(i, 0.0),
            )
        )
    return entries


# Long, sorted: r0 0.9 (g,p,c) | r2 0.8 (g,p,c) | r4 0.7 (g,p,c) | r9 0.6 (-,p,-) | r7 0.2 (g,p,c) | 5 nulls 0.0.
#   0.7: P 1 R 3/4 F1 6/7; 0.6: P 3/4 R 3/4; 0.2: P 4/5 R 1 F1 8/9 (best).
# Short: r2 0.9 (g,p,c) | r0 0.5 (-,p,-) | r4 0.4 (g,p,c) | r7 0.3 (-,p,-) | 6 nulls 0.0.
#   0.9: P 1 R 1/2; 0.5: P 1/2 R 1/2; 0.4: P 2/3 R 1 F1 0.8 (best); 0.3: P 1/2 R 1.
REAL_MIXED_METRICS = {
    "long-best-threshold-f1": 8 / 9,
    "long-best-threshold-precision": 0.8,
    "long-best-threshold-recall": 1.0,
    "long-best-threshold": 0.2,
    "long-recall-at-precision>=0.5": 1.0,
    "long-precision-at-precision>=0.5": 0.8,
    "long-recall-at-precision>=0.75": 1.0,
    "long-precision-at-precision>=0.75": 0.8,
    "long-recall-at-precision>=0.9": 0.75,
    "long-precision-at-precision>=0.9": 1.0,
    "short-best-threshold-f1": 0.8,
    "short-best-threshold-precision": 2 / 3,
    "short-best-threshold-recall": 1.0,
    "short-best-threshold": 0.4,
    "short-recall-at-precision>=0.5": 1.0,
    "short-precision-at-precision>=0.5": 2 / 3,
    "short-recall-at-precision>=0.75": 0.5,
    "short-precision-at-precision>=0.75": 1.0,
    "short-recall-at-precision>=0.9": 0.5,
    "short-precision-at-precision>=0.9": 1.0,
}


def test_real_mixed_predictions_full_and_simplified_gold(tmp_path):
    path = write_predictions(tmp_path / "mixed.json", _mixed_predictions(_real_records()))
    full = nq_eval.evaluate(str(shared_file("nq", "nq-dev-10.full.jsonl.gz")), str(path))
    for key, expected in REAL_MIXED_METRICS.items():
        assert full[key] == pytest.approx(expected, abs=1e-12), key
    # The simplified gold has token offsets only; the predictions carry both: the same metrics.
    assert nq_eval.evaluate(str(shared_file("nq", "nq-dev-10.simplified.jsonl")), str(path)) == full


def test_real_all_null_predictions(tmp_path):
    entries = [{"example_id": r["example_id"], "long_answer_score": 0, "short_answers_score": 0} for r in _real_records()]
    metrics = nq_eval.evaluate(
        str(shared_file("nq", "nq-dev-10.full.jsonl.gz")), str(write_predictions(tmp_path / "n.json", entries))
    )
    assert set(metrics.values()) == {0}  # 0 and 0.0: no prediction, no point above F1 0
    assert metrics["long-best-threshold"] == 0.0 and metrics["short-recall-at-precision>=0.5"] == 0


# ---------------------------------------------------------------------------------------------
# The command line, in a subprocess
# ---------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "qa.nq_eval", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_json_line_and_pretty_print(scenario):
    gold_path, predictions_path = map(str, scenario)
    result = _cli("--gold_path", gold_path, "--predictions_path", predictions_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    metrics = json.loads(result.stdout)
    assert list(metrics) == list(SCENARIO_METRICS)
    assert metrics == pytest.approx(SCENARIO_METRICS, abs=1e-12)
    pretty = _cli(f"--gold_path={gold_path}", f"--predictions_path={predictions_path}", "--pretty_print")
    assert pretty.returncode == 0, pretty.stderr
    assert pretty.stdout == SCENARIO_PRETTY
    # absl spellings of a false boolean flag give the JSON line again.
    for flag in ("--pretty_print=false", "--nopretty_print"):
        assert json.loads(_cli("--gold_path", gold_path, "--predictions_path", predictions_path, flag).stdout) == metrics


def test_cli_thresholds_and_threads(tmp_path, scenario):
    records = scenario_gold()
    write_gold(tmp_path / "nq-dev-00.jsonl.gz", records[:3])
    write_gold(tmp_path / "nq-dev-01.jsonl.gz", records[3:])
    pattern = str(tmp_path / "nq-dev-0*.jsonl.gz")
    threads = ("--num_threads", "2", "--long_non_null_threshold", "3")
    result = _cli("--gold_path", pattern, "--predictions_path", str(scenario[1]), *threads)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["long-best-threshold"] == 0.9  # as in test_non_null_thresholds_change_what_gold_has


def test_cli_bad_input_exits_2_with_one_line(tmp_path, scenario):
    entries = scenario_predictions()
    entries[0]["yes_no_answer"] = "YES"
    bad = write_predictions(tmp_path / "bad.json", entries)
    result = _cli("--gold_path", str(scenario[0]), "--predictions_path", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "prediction 0 (example_id 1): yes/no prediction and short answers cannot coexist" in result.stderr
    missing = _cli("--gold_path", str(tmp_path / "none-*.jsonl.gz"), "--predictions_path", str(scenario[1]))
    assert missing.returncode == 2 and "no file matches this pattern" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"predictions": [')
    result = _cli("--gold_path", str(scenario[0]), "--predictions_path", str(broken))
    assert result.returncode == 2 and "broken.json: not valid JSON" in result.stderr
    threads = _cli("--gold_path", str(scenario[0]), "--predictions_path", str(scenario[1]), "--num_threads", "0")
    assert threads.returncode == 2 and "--num_threads must be at least 1" in threads.stderr
