"""qa.postprocess: logits per window -> predictions, n-best lists, null odds.

    .venv/bin/pytest -q tests/test_postprocess.py

Hand-made windows (whitespace tokens with character offsets, logits set by hand) check each
rule; a plain-Python copy of the legacy loop (`legacy_postprocess`, also timed by
benchmarks/bench_postprocess.py) must agree with the vectorised code on random logits.
"""

import collections
import json
import math
import os
import re
import types

import numpy as np
import pytest

from qa.postprocess import postprocess_predictions, write_prediction_files
from qa.squad_io import SquadExample

LOW = -8.0  # logit of every position not set by a test


# ---------------------------------------------------------------------------------------------
# Building windows by hand
# ---------------------------------------------------------------------------------------------


def word_offsets(text):
    """(start, end) character offsets of the whitespace-separated words of `text`."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def example(context, qas_id="q1"):
    return SquadExample(qas_id, "title", "a question?", context, (), False)


class Windows:
    """Windows laid out as [CLS] q * n_question [SEP] context tokens [SEP] padding."""

    def __init__(self, seq_len=16, n_question=3):
        self.seq_len, self.n_question = seq_len, n_question
        self.rows = []

    def add(self, example_index, token_offsets, max_context=None, cls_index=0):
        """Add a window over the given context tokens; returns its row number."""
        self.rows.append((example_index, list(token_offsets), max_context, cls_index))
        return len(self.rows) - 1

    def pos(self, i):
        """Sequence position of context token i."""
        return self.n_question + 2 + i

    def build(self):
        n, L = len(self.rows), self.seq_len
        offsets = np.full((n, L, 2), -1, dtype=np.int32)
        max_ctx = np.zeros((n, L), dtype=bool)
        lengths = np.zeros(n, dtype=np.int32)
        for r, (_, toks, mc, _) in enumerate(self.rows):
            assert self.pos(len(toks)) < L, "window too long for seq_len"
            for i, (a, b) in enumerate(toks):
                offsets[r, self.pos(i)] = (a, b)
                max_ctx[r, self.pos(i)] = True if mc is None else mc[i]
            lengths[r] = self.pos(len(toks)) + 1
        features = types.SimpleNamespace(
            example_index=np.array([row[0] for row in self.rows], dtype=np.int32),
            cls_index=np.array([row[3] for row in self.rows], dtype=np.int32),
            offsets=offsets,
            token_is_max_context=max_ctx,
            lengths=lengths,
        )
        start = np.full((n, L), LOW, dtype=np.float32)
        end = np.full((n, L), LOW, dtype=np.float32)
        return features, start, end


def one_window(context, seq_len=16, **kw):
    w = Windows(seq_len=seq_len)
    w.add(0, word_offsets(context), **kw)
    features, start, end = w.build()
    return w, features, start, end


# ---------------------------------------------------------------------------------------------
# The rules, one by one
# ---------------------------------------------------------------------------------------------


def test_highest_scoring_valid_span_is_picked_with_char_offsets():
    context = "The Normans came from Normandy in France ."
    w, features, start, end = one_window(context)
    start[0, w.pos(4)], end[0, w.pos(6)] = 5.0, 4.0  # "Normandy in France": 9
    start[0, w.pos(1)], end[0, w.pos(1)] = 4.5, 3.0  # "Normans": 7.5
    res = postprocess_predictions([example(context)], features, start, end, null_score_diff_threshold=0.0)
    assert res.predictions == {"q1": "Normandy in France"}
    assert res.best_non_null == {"q1": "Normandy in France"}
    top = res.nbest["q1"][0]
    assert (top["start_logit"], top["end_logit"]) == (5.0, 4.0)
    assert context[top["start_char"] : top["end_char"]] == "Normandy in France"
    # CLS score = 2 * LOW = -16; best = 9 -> diff exactly -25.
    assert res.null_score_diff == {"q1": -25.0}


@pytest.mark.parametrize("kind", ["end_before_start", "too_long", "question_tokens", "not_max_context"])
def test_invalid_spans_are_skipped_even_with_the_highest_logits(kind):
    context = "one two three four five six seven eight"
    max_context = [True] * 8
    if kind == "not_max_context":
        max_context[0] = False
    w, features, start, end = one_window(context, max_context=max_context)
    # The valid answer, with modest logits: "six seven" (tokens 5..6), score 4; "four five"
    # (tokens 3..4) for too_long. Every other valid pair scores at most 9 + LOW = 1.
    answer = "four five" if kind == "too_long" else "six seven"
    first = 3 if kind == "too_long" else 5
    start[0, w.pos(first)], end[0, w.pos(first + 1)] = 2.0, 2.0
    if kind == "end_before_start":
        start[0, w.pos(7)], end[0, w.pos(2)] = 9.0, 9.0
    elif kind == "too_long":  # tokens 0..7 = 8 tokens > max_answer_length 4
        start[0, w.pos(0)], end[0, w.pos(7)] = 9.0, 9.0
    elif kind == "question_tokens":  # positions 1..3 are the question, 4 is [SEP]
        start[0, 1], end[0, 2] = 9.0, 9.0
        start[0, 4], end[0, 4] = 9.0, 9.0
    else:  # token 0 is not max-context here: a span may not start there (but may end there)
        start[0, w.pos(0)], end[0, w.pos(1)] = 9.0, 9.0
    res = postprocess_predictions([example(context)], features, start, end, max_answer_length=4)
    assert res.predictions["q1"] == answer
    assert res.nbest["q1"][0]["text"] == answer


def test_a_span_may_end_on_a_token_that_is_not_max_context():
    context = "alpha beta gamma"
    w, features, start, end = one_window(context, max_context=[True, True, False])
    start[0, w.pos(1)], end[0, w.pos(2)] = 3.0, 3.0
    res = postprocess_predictions([example(context)], features, start, end)
    assert res.predictions["q1"] == "beta gamma"


@pytest.mark.parametrize(
    "threshold, with_null, expected",
    [(0.0, True, ""), (0.5, True, ""), (1.0, True, "cat"), (2.0, True, "cat"), (0.0, False, "cat")],
)
def test_null_answer_when_the_null_score_beats_the_best_by_more_than_the_threshold(threshold, with_null, expected):
    context = "the cat sat"
    w, features, start, end = one_window(context)
    start[0, 0], end[0, 0] = 1.5, 1.5  # null score 3
    start[0, w.pos(1)], end[0, w.pos(1)] = 1.25, 0.75  # best span "cat": 2
    res = postprocess_predictions([example(context)], features, start, end, version_2_with_negative=with_null,
                                  null_score_diff_threshold=threshold)
    assert res.predictions["q1"] == expected
    assert res.null_score_diff["q1"] == 1.0
    assert res.best_non_null["q1"] == "cat"
    texts = [e["text"] for e in res.nbest["q1"]]
    assert ("" in texts) == with_null
    if with_null:
        assert texts[0] == ""  # the null entry is ranked by its score (3 > 2)


def test_a_span_tied_with_the_null_score_ranks_before_the_null_entry():
    context = "the cat sat"
    w, features, start, end = one_window(context)
    start[0, 0], end[0, 0] = 1.0, 1.0
    start[0, w.pos(2)], end[0, w.pos(2)] = 0.5, 1.5  # "sat": 2, as the null score
    res = postprocess_predictions([example(context)], features, start, end)
    assert [e["text"] for e in res.nbest["q1"]][:2] == ["sat", ""]
    assert res.predictions["q1"] == "sat" and res.null_score_diff["q1"] == 0.0


def test_ties_at_the_nth_logit_go_to_the_lower_positions_like_the_legacy_stable_sort():
    context = "a b c"
    w, features, start, end = one_window(context)
    start[0, w.pos(0) : w.pos(3)] = 0.0  # three starts tie for the 2 slots: tokens 0 and 1 win
    end[0, w.pos(2)] = 1.0
    res = postprocess_predictions([example(context)], features, start, end, n_best_size=2)
    # Equal scores (1.0): ordered by start position. "c" alone is no candidate.
    assert [e["text"] for e in res.nbest["q1"]] == ["a b c", "b c", ""]
    windows = legacy_inputs(features, start, end)
    assert legacy_postprocess([example(context)], windows, 2, 30, True, 0.0)[1]["q1"] == [
        {k: v for k, v in e.items() if k not in ("start_char", "end_char")} for e in res.nbest["q1"]]


def test_null_score_is_the_minimum_over_the_windows_of_an_example():
    context = "w0 w1 w2 w3 w4 w5"
    toks = word_offsets(context)
    w = Windows(seq_len=12)
    w.add(0, toks[:4])
    w.add(0, toks[2:])
    features, start, end = w.build()
    start[0, 0], end[0, 0] = 3.0, 3.0  # window 0: CLS score 6
    start[1, 0], end[1, 0] = 0.25, 0.75  # window 1: CLS score 1 (the minimum)
    start[1, w.pos(1)], end[1, w.pos(1)] = 2.0, 1.0  # "w3" scores 3
    res = postprocess_predictions([example(context)], features, start, end)
    assert res.null_score_diff["q1"] == 1.0 - 3.0
    assert res.predictions["q1"] == "w3"  # with the maximum (6) the answer would be null
    null = [e for e in res.nbest["q1"] if e["text"] == ""]
    assert len(null) == 1 and (null[0]["start_logit"], null[0]["end_logit"]) == (0.25, 0.75)
    # Same windows, listed in the other order and for the second of two examples: same answer.
    w2 = Windows(seq_len=12)
    w2.add(0, word_offsets("x y"))
    w2.add(1, toks[2:])
    w2.add(1, toks[:4])
    f2, s2, e2 = w2.build()
    s2[1], e2[1], s2[2], e2[2] = start[1], end[1], start[0], end[0]
    res2 = postprocess_predictions([example("x y", "other"), example(context)], f2, s2, e2)
    assert list(res2.predictions) == ["other", "q1"]
    assert res2.predictions["q1"] == "w3" and res2.null_score_diff["q1"] == -2.0


def test_cls_index_need_not_be_position_zero():
    context = "red green blue"
    w, features, start, end = one_window(context, cls_index=8)  # position 8: the [SEP] after the context
    start[0, 8], end[0, 8] = 4.0, 4.0
    start[0, w.pos(0)], end[0, w.pos(0)] = 2.0, 2.0
    res = postprocess_predictions([example(context)], features, start, end)
    assert res.null_score_diff["q1"] == 8.0 - 4.0
    assert res.predictions["q1"] == ""


def test_text_comes_from_the_original_context_spacing_casing_and_accents_kept():
    context = "Discovered by  Wilhelm\u00a0Conrad   RÖNTGEN\tin 1895."
    toks = [m.span() for m in re.finditer(r"[^\s\u00a0]+", context)]
    w, features, start, end = one_window(context, seq_len=16)
    features.offsets[:] = -1
    for i, (a, b) in enumerate(toks):
        features.offsets[0, w.pos(i)] = (a, b)
    start[0, w.pos(2)], end[0, w.pos(4)] = 3.0, 3.0
    res = postprocess_predictions([example(context)], features, start, end)
    assert res.predictions["q1"] == "Wilhelm\u00a0Conrad   RÖNTGEN"


def test_nbest_is_sorted_deduplicated_and_its_probabilities_are_a_softmax():
    context = "the cat and the cat sat"
    toks = word_offsets(context)
    w = Windows(seq_len=14)
    w.add(0, toks[:5], max_context=[True, True, True, False, False])
    w.add(0, toks[1:], max_context=[False, False, True, True, True])
    features, start, end = w.build()
    # Window 0: "cat" (token 1) scores 5; window 1 sees the same "cat" at its token 0 with 6,
    # but it is not max-context there, so it is no candidate; "the cat" (tokens 3-4) in window 1: 4.
    start[0, w.pos(1)], end[0, w.pos(1)] = 2.5, 2.5
    start[1, w.pos(0)], end[1, w.pos(0)] = 3.0, 3.0
    # The second "cat" (token 4; window 1 token 3, max-context) scores 4.5: same text, dropped.
    start[1, w.pos(3)], end[1, w.pos(3)] = 2.0, 2.5
    start[1, w.pos(2)] = 1.0  # "the" (token 3) as a start: "the cat" = 1.0 + 2.5 = 3.5
    end[0, w.pos(2)] = 0.5  # "cat and" = 3.0
    end[1, w.pos(4)] = 0.25  # "cat sat" = 2.25, cut by n_best_size 3
    res = postprocess_predictions([example(context)], features, start, end, n_best_size=3)
    nbest = res.nbest["q1"]
    texts = [e["text"] for e in nbest]
    assert texts == ["cat", "the cat", "cat and", ""]
    assert len(texts) == len(set(texts))
    cat = nbest[0]
    assert (cat["start_char"], cat["end_char"]) == (4, 7)  # the first "cat" scored 5 > 4.5
    scores = [e["start_logit"] + e["end_logit"] for e in nbest]
    assert scores == sorted(scores, reverse=True)
    probs = [e["probability"] for e in nbest]
    assert math.isclose(sum(probs), 1.0, rel_tol=1e-12)
    expected = np.exp(np.array(scores) - max(scores))
    np.testing.assert_allclose(probs, expected / expected.sum(), rtol=1e-12)
    # n_best_size spans, then the null entry (-16) appended after the cut (legacy behaviour).


def test_example_without_any_valid_span_predicts_null():
    context = "only words"
    w, features, start, end = one_window(context, max_context=[False, False])
    start[0, 0], end[0, 0] = -1.0, -2.0
    start[0, w.pos(0)], end[0, w.pos(1)] = 9.0, 9.0
    for with_null in (True, False):
        res = postprocess_predictions([example(context)], features, start, end, version_2_with_negative=with_null,
                                      null_score_diff_threshold=100.0)
        assert res.predictions["q1"] == "" and res.best_non_null["q1"] == ""
        assert [e["text"] for e in res.nbest["q1"]] == [""]
        assert res.nbest["q1"][0]["probability"] == 1.0
        assert res.null_score_diff["q1"] == -3.0  # score_null - 0.0, as the legacy null odds


def test_logits_narrower_than_the_windows_treat_missing_positions_as_invalid():
    context = "a b c d e f g h i j"
    w, features, start, end = one_window(context, seq_len=16)
    start[0, w.pos(2)], end[0, w.pos(3)] = 1.0, 1.0  # "c d" = 2, within the first 9 positions
    start[0, w.pos(6)], end[0, w.pos(6)] = 5.0, 5.0  # "g" at position 11: cut off below
    full = postprocess_predictions([example(context)], features, start, end)
    assert full.predictions["q1"] == "g"
    narrow = postprocess_predictions([example(context)], features, start[:, :9], end[:, :9])
    assert narrow.predictions["q1"] == "c d"
    # Padding logits as the trainer does (-inf beyond the width) gives the same result.
    padded_start, padded_end = start.copy(), end.copy()
    padded_start[:, 9:], padded_end[:, 9:] = -np.inf, -np.inf
    assert postprocess_predictions([example(context)], features, padded_start, padded_end) == narrow


def test_padding_never_takes_a_top_n_slot():
    # One context token; the padding logits are the highest. The legacy script ranked them too,
    # which with n_best_size=1 would leave no candidate at all.
    context = "answer"
    w, features, start, end = one_window(context, seq_len=12)
    start[0, w.pos(0)], end[0, w.pos(0)] = 1.0, 1.0
    start[0, w.pos(1) :], end[0, w.pos(1) :] = 7.0, 7.0  # [SEP] and padding
    start[0, w.pos(1)], end[0, w.pos(1)] = LOW, LOW  # [SEP] itself stays low
    res = postprocess_predictions([example(context)], features, start, end, n_best_size=1)
    assert res.predictions["q1"] == "answer"


def test_write_prediction_files(tmp_path):
    context = "Zürich is in Switzerland"
    w, features, start, end = one_window(context)
    start[0, w.pos(0)], end[0, w.pos(0)] = 3.0, 3.0
    res = postprocess_predictions([example(context)], features, start, end)
    paths = write_prediction_files(res, str(tmp_path / "run"), step=1500)
    assert sorted(os.path.basename(p) for p in paths.values()) == [
        "nbest_predictions_1500.json", "null_odds_1500.json", "predictions_1500.json"]
    assert sorted(os.listdir(tmp_path / "run")) == sorted(os.path.basename(p) for p in paths.values())
    load = lambda key: json.loads(open(paths[key], encoding="utf-8").read())  # noqa: E731
    assert load("predictions") == {"q1": "Zürich"}
    assert load("null_odds") == {"q1": -16.0 - 6.0}
    assert load("nbest") == res.nbest
    assert load("nbest")["q1"][0] == {"text": "Zürich", "probability": res.nbest["q1"][0]["probability"],
                                      "start_logit": 3.0, "end_logit": 3.0, "start_char": 0, "end_char": 6}


def test_bad_inputs_name_the_problem():
    context = "a b"
    _, features, start, end = one_window(context)
    bad = start.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="window 0.*NaN"):
        postprocess_predictions([example(context)], features, bad, end)
    with pytest.raises(ValueError, match="'q2'.*no window"):
        postprocess_predictions([example(context), example(context, "q2")], features, start, end)
    with pytest.raises(ValueError, match=r"L' <= L"):
        postprocess_predictions([example(context)], features, np.zeros((1, 20)), np.zeros((1, 20)))
    with pytest.raises(ValueError, match="n_best_size"):
        postprocess_predictions([example(context)], features, start, end, n_best_size=0)
    with pytest.raises(ValueError, match="lacks lengths"):
        del features.lengths
        postprocess_predictions([example(context)], features, start, end)


# ---------------------------------------------------------------------------------------------
# The legacy loop, in plain Python, and random windows (also used by benchmarks/bench_postprocess.py)
# ---------------------------------------------------------------------------------------------

VOCAB = "the a of Normans Rhine Normandy river café Röntgen 1895 in and was is France".split()


def random_case(rng, n_features, seq_len=64, max_windows=4, trim=True):
    """Random examples and windows: contexts of words from a small vocabulary (so the same
    text occurs at several positions), 1..max_windows overlapping windows per example,
    questions of 3..10 tokens, random max-context masks, CLS at the start or at the end,
    logits ~ N(0, 2) trimmed to the longest window when `trim`."""
    examples, rows = [], []
    while len(rows) < n_features:
        n_windows = int(rng.integers(1, max_windows + 1))
        n_question = int(rng.integers(3, 11))
        room = seq_len - n_question - 3
        stride = max(1, room // 2)
        n_words = int(rng.integers(1, room + 1)) + stride * (n_windows - 1)
        context = " ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), n_words))
        toks = word_offsets(context)
        e = len(examples)
        examples.append(SquadExample(f"q{e}", "t", "q?", context, (), False))
        for begin in range(0, max(1, len(toks) - room + stride), stride):
            rows.append((e, n_question, toks[begin : begin + room]))
            if begin + room >= len(toks) or len(rows) == n_features:
                break
    n = len(rows)
    offsets = np.full((n, seq_len, 2), -1, dtype=np.int32)
    max_ctx = rng.random((n, seq_len)) < 0.8
    lengths = np.zeros(n, dtype=np.int32)
    cls_index = np.zeros(n, dtype=np.int32)
    for r, (_, nq, toks) in enumerate(rows):
        offsets[r, nq + 2 : nq + 2 + len(toks)] = toks
        lengths[r] = nq + 3 + len(toks)
        cls_index[r] = 0 if rng.random() < 0.8 else lengths[r] - 1
    max_ctx &= offsets[:, :, 0] >= 0
    features = types.SimpleNamespace(example_index=np.array([row[0] for row in rows], dtype=np.int32),
                                     cls_index=cls_index, offsets=offsets, token_is_max_context=max_ctx,
                                     lengths=lengths)
    width = int(lengths.max()) if trim else seq_len
    start = rng.normal(0, 2, (n, width)).astype(np.float32)
    end = rng.normal(0, 2, (n, width)).astype(np.float32)
    return examples, features, start, end


def legacy_inputs(features, start_logits, end_logits):
    """Per-window Python objects as the legacy script held them (lists and dicts)."""
    out = []
    width = start_logits.shape[1]
    for i in range(len(features.example_index)):
        length = min(int(features.lengths[i]), width)
        offs = features.offsets[i, :length].tolist()
        out.append({
            "example_index": int(features.example_index[i]),
            "cls_index": int(features.cls_index[i]),
            "length": length,
            "token_to_orig_map": {p: o for p, o in enumerate(offs) if o[0] != -1},
            "token_is_max_context": {p: bool(m) for p, m in enumerate(features.token_is_max_context[i, :length])},
            "start_logits": start_logits[i].tolist(),
            "end_logits": end_logits[i].tolist(),
        })
    return out


def _get_best_indexes(logits, length, n_best_size):
    ranked = sorted(enumerate(logits[:length]), key=lambda x: x[1], reverse=True)
    return [i for i, _ in ranked[:n_best_size]]


# Exempt from C901 (complexity 16 > 12): a copy of the legacy compute_predictions_logits loop, kept whole on purpose.
def legacy_postprocess(examples, windows, n_best_size, max_answer_length, version_2_with_negative,  # noqa: C901
                       null_score_diff_threshold):
    """The legacy `compute_predictions_logits` loop, with the documented deviations of
    qa.postprocess (padding not ranked, no fake "empty" answer, text cut by char offsets)."""
    by_example = collections.defaultdict(list)
    for w in windows:
        by_example[w["example_index"]].append(w)
    predictions, nbest_out, diffs, best_out = {}, {}, {}, {}
    for example_index, ex in enumerate(examples):
        prelim = []
        score_null, null_logits = 1e6, (0.0, 0.0)
        for w in by_example[example_index]:
            sl, el = w["start_logits"], w["end_logits"]
            c = w["cls_index"]
            if sl[c] + el[c] < score_null:
                score_null, null_logits = sl[c] + el[c], (sl[c], el[c])
            for s in _get_best_indexes(sl, w["length"], n_best_size):
                for e in _get_best_indexes(el, w["length"], n_best_size):
                    if s not in w["token_to_orig_map"] or e not in w["token_to_orig_map"]:
                        continue
                    if not w["token_is_max_context"].get(s, False):
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    text = ex.context[w["token_to_orig_map"][s][0] : w["token_to_orig_map"][e][1]].strip()
                    prelim.append((sl[s] + el[e], text, sl[s], el[e]))
        if version_2_with_negative:
            prelim.append((score_null, "", null_logits[0], null_logits[1]))
        prelim.sort(key=lambda p: p[0], reverse=True)
        nbest, seen = [], set()
        for score, text, s_logit, e_logit in prelim:
            if len(nbest) >= n_best_size:
                break
            if text in seen:
                continue
            seen.add(text)
            nbest.append((text, s_logit, e_logit))
        if (version_2_with_negative and "" not in seen) or not nbest:
            nbest.append(("", null_logits[0], null_logits[1]))
        scores = [s + e for _, s, e in nbest]
        m = max(scores)
        exps = [math.exp(x - m) for x in scores]
        nbest_out[ex.qas_id] = [{"text": t, "probability": x / sum(exps), "start_logit": s, "end_logit": e}
                                for (t, s, e), x in zip(nbest, exps)]
        best = next(((t, s + e) for t, s, e in nbest if t), ("", 0.0))
        diffs[ex.qas_id] = score_null - best[1]
        best_out[ex.qas_id] = best[0]
        if version_2_with_negative and diffs[ex.qas_id] > null_score_diff_threshold:
            predictions[ex.qas_id] = ""
        else:
            predictions[ex.qas_id] = best[0]
    return predictions, nbest_out, diffs, best_out


@pytest.mark.parametrize(
    "seed, n_best_size, max_answer_length, with_null, threshold",
    [(0, 20, 30, True, 0.0), (1, 5, 4, True, -1.5), (2, 3, 10, False, 0.0), (3, 20, 2, True, 2.0),
     (4, 64, 30, True, 0.0)],
)
def test_vectorised_agrees_with_the_legacy_loop_on_random_logits(seed, n_best_size, max_answer_length,
                                                                   with_null, threshold):
    rng = np.random.default_rng(seed)
    examples, features, start, end = random_case(rng, 400, seq_len=48)
    res = postprocess_predictions(examples, features, start, end, n_best_size=n_best_size,
                                  max_answer_length=max_answer_length, version_2_with_negative=with_null,
                                  null_score_diff_threshold=threshold)
    preds, nbest, diffs, best = legacy_postprocess(examples, legacy_inputs(features, start, end), n_best_size,
                                                   max_answer_length, with_null, threshold)
    assert res.predictions == preds
    assert res.best_non_null == best
    assert {q: [e["text"] for e in v] for q, v in res.nbest.items()} == {q: [e["text"] for e in v]
                                                                       for q, v in nbest.items()}
    for q in preds:
        assert res.null_score_diff[q] == pytest.approx(diffs[q], abs=1e-6)
        np.testing.assert_allclose([e["probability"] for e in res.nbest[q]], [e["probability"] for e in nbest[q]],
                                   atol=1e-9)
    # The cases are not degenerate: both kinds of answers occur, and duplicates were removed.
    assert any(preds.values()) and (not with_null or not all(preds.values()))
    if with_null:
        assert len({len(v) for v in nbest.values()}) > 1


def test_chunking_over_many_windows_gives_the_same_answers(monkeypatch):
    import qa.postprocess as pp

    rng = np.random.default_rng(7)
    examples, features, start, end = random_case(rng, 300, seq_len=40)
    whole = postprocess_predictions(examples, features, start, end)
    monkeypatch.setattr(pp, "CHUNK_FEATURES", 7)
    assert postprocess_predictions(examples, features, start, end) == whole


@pytest.mark.parametrize("n_best_size", [1, 3, 20])
@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_an_example_with_more_windows_than_a_chunk_gives_the_same_answers(monkeypatch, n_best_size, chunk):
    """Long documents (examples of up to 60 windows, words from a small vocabulary so texts repeat across
    windows) scored a chunk of windows at a time keep exactly the n-best lists of scoring them all at once."""
    import qa.postprocess as pp

    rng = np.random.default_rng(11)
    examples, features, start, end = random_case(rng, 400, seq_len=40, max_windows=60)
    assert max(collections.Counter(features.example_index.tolist()).values()) > 20
    whole = postprocess_predictions(examples, features, start, end, n_best_size=n_best_size)
    monkeypatch.setattr(pp, "CHUNK_FEATURES", chunk)
    assert postprocess_predictions(examples, features, start, end, n_best_size=n_best_size) == whole


def test_memory_of_one_long_document_does_not_grow_with_its_windows(monkeypatch):
    """One example of 4x more windows than another takes about the memory of one chunk of windows, not 4x
    (a 5 MB document, 30,000 windows, took 537 MB at once)."""
    import tracemalloc

    import qa.postprocess as pp

    monkeypatch.setattr(pp, "CHUNK_FEATURES", 64)

    def peak(n_windows):
        seq_len, room = 48, 40
        words = " ".join(VOCAB[i % len(VOCAB)] for i in range(room * n_windows))
        toks = word_offsets(words)
        w = Windows(seq_len=seq_len, n_question=3)
        for k in range(n_windows):
            w.add(0, toks[k * room : (k + 1) * room])
        features, start, end = w.build()
        rng = np.random.default_rng(0)
        start[:], end[:] = rng.normal(0, 2, start.shape), rng.normal(0, 2, end.shape)
        tracemalloc.start()
        try:
            postprocess_predictions([example(words)], features, start, end)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(256), peak(1024)
    assert large < 1.5 * small, (small, large)


# ---------------------------------------------------------------------------------------------
# Real records: windows made by qa.features from the real SQuAD 2.0 dev subset
# ---------------------------------------------------------------------------------------------


def test_logits_on_the_labelled_tokens_give_back_the_real_answers():
    pytest.importorskip("transformers")
    import make_tiny_model
    from conftest import shared_file
    from qa.features import FeatureParams, build_features
    from qa.squad_io import read_squad

    path = shared_file("squad", "squad2-dev-normans-rhine.json")
    examples = read_squad(path)[:150]
    tokenizer = make_tiny_model.train_tokenizer(make_tiny_model.squad_texts(path), vocab_size=1500)  # lowercases
    feats = build_features(examples, tokenizer, FeatureParams(max_seq_length=64, doc_stride=24, max_query_length=16),
                           training=True)
    assert len(feats) > 1.5 * len(examples)  # several windows per example
    n = len(feats)
    start = np.full((n, 64), -10.0, dtype=np.float32)
    end = np.full((n, 64), -10.0, dtype=np.float32)
    rows = np.arange(n)
    impossible = np.array([examples[i].is_impossible for i in feats.example_index])
    start[rows, feats.cls_index] = end[rows, feats.cls_index] = np.where(impossible, 5.0, 0.0)
    labelled = feats.start_positions != feats.cls_index
    start[rows[labelled], feats.start_positions[labelled]] = 5.0
    end[rows[labelled], feats.end_positions[labelled]] = 5.0
    width = int(feats.lengths.max())  # batches trimmed to their longest window
    res = postprocess_predictions(examples, feats, start[:, :width], end[:, :width])
    answerable = [ex for ex in examples if not ex.is_impossible]
    assert answerable and len(answerable) < len(examples)
    for ex in examples:
        if ex.is_impossible:
            assert res.predictions[ex.qas_id] == "" and res.null_score_diff[ex.qas_id] == 10.0 - (-20.0)
        else:  # the original text, casing kept although the tokenizer lowercases
            assert res.predictions[ex.qas_id] == ex.answers[0].text.strip(), ex.qas_id
            top = res.nbest[ex.qas_id][0]
            assert ex.context[top["start_char"] : top["end_char"]] == top["text"]


def test_a_span_extends_over_the_combining_marks_after_it():
    """Offsets that end before a combining mark (a tokenizer that strips accents; a feature cache or NQ window made
    without qa.features' own extension) still give the whole "Café", and only the marks: not the next word."""
    context = "Cafe\u0301\u0323 au lait"
    w = Windows()
    w.add(0, [(0, 4), (6, 8), (9, 13)])  # "Cafe" ends before U+0301 U+0323
    features, start, end = w.build()
    start[0, w.pos(0)], end[0, w.pos(0)] = 5.0, 5.0
    res = postprocess_predictions([example(context)], features, start, end)
    assert res.predictions == {"q1": "Cafe\u0301\u0323"}
    top = res.nbest["q1"][0]
    assert (top["start_char"], top["end_char"]) == (0, 6) and context[0:6] == top["text"]


def test_text_helpers_are_standard_library_only():
    """qa.text is shared with qa/nq, which must run without numpy: it imports nothing else."""
    import ast

    from qa import text

    tree = ast.parse(open(text.__file__, encoding="utf-8").read())
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"functools", "sys", "unicodedata"}
    assert text.extend_over_marks("Cafe\u0301", 4) == 5 and text.extend_over_marks("Cafe\u0301", 3) == 3
    assert text.extend_over_marks("\u0301x", 0) == 0  # a span that ends at 0 is empty: nothing to extend
    assert text.is_mark("\u093f") and text.is_mark("\u20dd") and not text.is_mark("e")  # Mc, Me
