"""From start/end logits per window to answers: predictions, n-best lists and null odds.

    result = postprocess_predictions(examples, features, start_logits, end_logits,
                                     n_best_size=20, max_answer_length=30,
                                     version_2_with_negative=True, null_score_diff_threshold=0.0)
    paths = write_prediction_files(result, "outputs/run1", step=1500)
    # -> predictions_1500.json, nbest_predictions_1500.json, null_odds_1500.json

The decisions are the legacy `run_squad.py` ones (`compute_predictions_logits`), computed with
numpy instead of a Python double loop per window (10,000 windows of 384 tokens: 1.6 s against
23 s for the legacy loop on 2 busy cores, see benchmarks/bench_postprocess.py):

- per window, the `n_best_size` best start positions and the `n_best_size` best end positions
  by logit (ties go to the lower position, as the legacy stable sort does); every pair of them
  is a candidate when both tokens are context tokens (offset != -1), end >= start,
  end - start + 1 <= max_answer_length and the start token has its maximum context in this
  window; its score is start_logit + end_logit;
- the null score of an example is the smallest CLS score (start + end logit at `cls_index`)
  over its windows;
- the candidates of all windows of an example, best first, give the n-best list: one entry
  per distinct text, the null ("") entry placed by its score when version_2_with_negative
  (and appended when it did not make the cut), probabilities a softmax over the list;
- the answer text is cut from the ORIGINAL context with the character offsets of the start
  and end tokens, so spacing, casing and accents are the context's own; its end extends over
  the combining marks that follow it (qa.text: a tokenizer that strips accents ends "Cafe"
  before the U+0301 of a decomposed "é");
- prediction = "" when score_null - best_non_null_score > null_score_diff_threshold, else the
  best non-null text; that difference is the "null odds" value.

Deliberate differences from the legacy script (documented because they change outputs):
- Padding positions (>= lengths[i], or beyond the logits' width when a batch was trimmed)
  never take one of the top-n slots; the legacy script ranked the padding logits too.
  This makes the result independent of how evaluation batches were padded.
- Leading/trailing whitespace of a cut span is trimmed (start_char/end_char follow), and a
  span whose text is empty after trimming is not a candidate.
- An example without any valid span: the legacy script inserted a fake answer "empty" with
  score 0 and could predict the text "empty". Here its prediction and best_non_null are "",
  its n-best list is the null entry alone, and its null_score_diff is score_null - 0.0
  (the value the legacy script wrote for it), so threshold sweeps see the same number.
- n-best entries also carry start_char/end_char (end exclusive: context[start_char:end_char]
  is the text); -1 for the null entry.
- null_score_diff is filled in also when version_2_with_negative is False (informative; the
  prediction is then always the best non-null text).
- Ties in score are ordered by window, then start, then end position; the null entry goes
  after the spans it ties with (as in the legacy script).

Inputs: `features` needs numpy attributes example_index int [N], cls_index int [N],
offsets int [N, L, 2] (character offsets into the example's context; -1 for question,
special and padding tokens), token_is_max_context bool [N, L], lengths int [N]. Logits are
[N, L'] with L' <= L. numpy only: no torch import here.
"""

import dataclasses
import heapq
import math

import numpy as np
import orjson

from qa.storage import atomic_write
from qa.text import extend_over_marks

# Windows handled at once when scoring span candidates: memory is about
# CHUNK_FEATURES * n_best_size**2 * 30 bytes (about 25 MB for 2048 windows and n_best_size 20).
CHUNK_FEATURES = 2048


class NonFiniteLogits(ValueError):
    """The logits hold NaN (or the CLS logits inf): the model diverged (qa.divergence stops a training on it)."""


@dataclasses.dataclass
class PostprocessResult:
    predictions: dict  # qas_id -> answer text ("" = no answer) at the given threshold
    nbest: dict  # qas_id -> [{"text", "probability", "start_logit", "end_logit", "start_char", "end_char"}], best first
    null_score_diff: dict  # qas_id -> score_null - best_non_null_score (the "null odds" file)
    best_non_null: dict  # qas_id -> best non-null answer text (for threshold tuning)


def postprocess_predictions(
    examples,
    features,
    start_logits,
    end_logits,
    n_best_size=20,
    max_answer_length=30,
    version_2_with_negative=True,
    null_score_diff_threshold=0.0,
):
    """Logits of every window -> PostprocessResult (see the module docstring for the rules)."""
    f = _check_inputs(examples, features, start_logits, end_logits, n_best_size, max_answer_length)
    result = PostprocessResult({}, {}, {}, {})
    if f["n"] == 0:
        return result
    start, end = f["start"], f["end"]
    n, width = start.shape

    # Null score per example: the smallest CLS score over its windows (first window on ties).
    rows = np.arange(n)
    null_start_all = start[rows, f["cls_index"]].astype(np.float64)
    null_end_all = end[rows, f["cls_index"]].astype(np.float64)
    # Windows ordered by example, and within an example by null score (stable: window order on ties).
    order = np.lexsort((null_start_all + null_end_all, f["example_index"]))
    sorted_examples = f["example_index"][order]
    group_starts = np.flatnonzero(np.r_[True, sorted_examples[1:] != sorted_examples[:-1]])
    group_ends = np.r_[group_starts[1:], n]
    group_example = sorted_examples[group_starts]
    min_null_window = order[group_starts]

    # Positions a span may start or end at: context tokens inside the real (unpadded) length.
    positions = np.arange(width)
    in_context = (f["offsets"][:, :width, 0] >= 0) & (positions[None, :] < f["lengths"][:, None])
    can_start = in_context & f["token_is_max_context"][:, :width]
    # Padding never competes for the top-n slots (see module docstring).
    real = positions[None, :] < np.minimum(f["lengths"], width)[:, None]

    # Chunks of whole examples, at most CHUNK_FEATURES windows each (an example with more windows: a chunk of its
    # own, itself scored a chunk of windows at a time), so memory stays bounded.
    arrays = (start, end, real, in_context, can_start, f["offsets"], f["example_index"], n_best_size, max_answer_length)
    g = 0
    while g < len(group_starts):
        g_end = int(np.searchsorted(group_ends, group_starts[g] + CHUNK_FEATURES, side="right"))
        g_end = max(g_end, g + 1)
        windows = order[group_starts[g] : group_ends[g_end - 1]]
        if len(windows) > CHUNK_FEATURES:  # one example, a long document
            cand = _long_example_candidates(windows, examples[group_example[g]].context, arrays)
        else:
            cand = _span_candidates(windows, *arrays)
        chunk_examples = group_example[g:g_end]
        bounds_lo = np.searchsorted(cand["ex"], chunk_examples, side="left").tolist()
        bounds_hi = np.searchsorted(cand["ex"], chunk_examples, side="right").tolist()
        null_windows = min_null_window[g:g_end]
        nulls = zip(null_start_all[null_windows].tolist(), null_end_all[null_windows].tolist())
        for example_idx, lo, hi, null in zip(chunk_examples.tolist(), bounds_lo, bounds_hi, nulls):
            _finish_example(
                examples[example_idx], cand, lo, hi, null, n_best_size,
                version_2_with_negative, null_score_diff_threshold, result,
            )
        g = g_end
    # Output dicts in the order of `examples`, whatever the order of the windows.
    ids = [e.qas_id for e in examples]
    result.predictions = {q: result.predictions[q] for q in ids}
    result.nbest = {q: result.nbest[q] for q in ids}
    result.null_score_diff = {q: result.null_score_diff[q] for q in ids}
    result.best_non_null = {q: result.best_non_null[q] for q in ids}
    return result


def write_prediction_files(result, output_dir, step):
    """Write predictions_{step}.json, nbest_predictions_{step}.json and null_odds_{step}.json
    atomically into output_dir; returns {"predictions": path, "nbest": path, "null_odds": path}."""
    from qa.run_dir import eval_file

    paths = {"predictions": eval_file(output_dir, "predictions", step), "nbest": eval_file(output_dir, "nbest_predictions", step),
             "null_odds": eval_file(output_dir, "null_odds", step)}
    contents = {"predictions": result.predictions, "nbest": result.nbest, "null_odds": result.null_score_diff}
    for key, path in paths.items():
        # orjson: the n-best file of the NQ dev set (about 7,800 questions x 20 entries) in well under a second.
        with atomic_write(path, "wb") as handle:
            handle.write(orjson.dumps(contents[key], option=orjson.OPT_INDENT_2))
    return paths


# ---------------------------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------------------------


def _check_inputs(examples, features, start_logits, end_logits, n_best_size, max_answer_length):
    """Every argument checked in one place; returns the arrays, converted."""
    if not isinstance(n_best_size, (int, np.integer)) or n_best_size < 1:
        raise ValueError(f"n_best_size must be a positive integer, got {n_best_size!r}")
    if not isinstance(max_answer_length, (int, np.integer)) or max_answer_length < 1:
        raise ValueError(f"max_answer_length must be a positive integer (in tokens), got {max_answer_length!r}")
    arrays = _feature_arrays(features)
    n, seq_len = arrays["n"], arrays["offsets"].shape[1]
    start = _checked_logits("start_logits", start_logits, n, seq_len)
    end = _checked_logits("end_logits", end_logits, n, seq_len)
    if start.shape != end.shape:
        raise ValueError(f"start_logits {start.shape} and end_logits {end.shape} must have the same shape")
    _check_windows_fit(examples, arrays["example_index"], arrays["cls_index"], start, end)
    return dict(arrays, start=start, end=end)


def _feature_arrays(features):
    """The arrays of `features` that post-processing reads, converted, their shapes checked against each other."""
    names = ("example_index", "cls_index", "offsets", "token_is_max_context", "lengths")
    missing = [name for name in names if not hasattr(features, name)]
    if missing:
        raise ValueError(f"features lacks {', '.join(missing)}: pass the object made by qa.features")
    example_index = np.asarray(features.example_index).astype(np.int64)
    cls_index = np.asarray(features.cls_index).astype(np.int64)
    offsets = np.asarray(features.offsets)
    max_context = np.asarray(features.token_is_max_context).astype(bool)
    lengths = np.asarray(features.lengths).astype(np.int64)
    n = len(example_index)
    if offsets.ndim != 3 or offsets.shape[0] != n or offsets.shape[2] != 2:
        raise ValueError(f"features.offsets must be [N, L, 2] with N={n} windows, got shape {offsets.shape}")
    seq_len = offsets.shape[1]
    for name, arr, shape in (("cls_index", cls_index, (n,)), ("lengths", lengths, (n,)),
                             ("token_is_max_context", max_context, (n, seq_len))):
        if arr.shape != shape:
            raise ValueError(f"features.{name} must have shape {shape} (N windows, L tokens), got {arr.shape}")
    return dict(n=n, example_index=example_index, cls_index=cls_index, offsets=offsets,
                token_is_max_context=max_context, lengths=lengths)


def _checked_logits(name, arr, n, seq_len):
    """One of the logits arrays as float32/float64 [n, L'] (1 <= L' <= seq_len), without NaN."""
    arr = np.asarray(arr)
    if arr.dtype not in (np.float32, np.float64):  # float16, ints: ranked and summed as float32
        arr = arr.astype(np.float32)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] > seq_len or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must be [N, L'] with N={n} windows and 1 <= L' <= L={seq_len}, got shape {arr.shape}"
        )
    bad = np.flatnonzero(np.isnan(arr).any(axis=1))
    if len(bad):
        raise NonFiniteLogits(f"{name} of window {bad[0]} (and {len(bad) - 1} more) contain NaN: the model diverged "
                         "(with --fp16, try --bf16 or a lower learning rate)")
    return arr


def _check_windows_fit(examples, example_index, cls_index, start, end):
    """Each window names an example given and a CLS position inside its finite logits; each example has a window."""
    n = len(example_index)
    if n and (example_index.min() < 0 or example_index.max() >= len(examples)):
        raise ValueError(f"features.example_index must lie in [0, {len(examples)}) (one per example given), "
                         f"got values in [{example_index.min()}, {example_index.max()}]: features and examples "
                         "do not belong together")
    bad = np.flatnonzero((cls_index < 0) | (cls_index >= start.shape[1]))
    if len(bad):
        raise ValueError(f"window {bad[0]}: cls_index {cls_index[bad[0]]} is outside the logits (width {start.shape[1]})")
    rows = np.arange(n)
    bad = np.flatnonzero(~np.isfinite(start[rows, cls_index] + end[rows, cls_index]))
    if len(bad):
        raise NonFiniteLogits(f"window {bad[0]}: the CLS logits are not finite; the null score needs them")
    covered = np.zeros(len(examples), dtype=bool)
    covered[example_index] = True
    if not covered.all():
        i = int(np.flatnonzero(~covered)[0])
        raise ValueError(f"example {i} (qas_id {examples[i].qas_id!r}) has no window in features: "
                         "build the features from these same examples")


def _top_k_positions(x, k):
    """Positions of the k largest values of each row, in position order [rows, k].

    Ties at the k-th value go to the lower positions, as a stable descending sort would pick."""
    rows, width = x.shape
    if k >= width:
        return np.broadcast_to(np.arange(width), (rows, width))
    kth = -np.partition(-x, k - 1, axis=1)[:, k - 1 : k]
    above = x > kth
    tied = x == kth
    take = above | tied
    # Rows where values equal to the k-th one do not all fit (rare with real logits; padding
    # at -inf in short windows): keep the lowest positions among them.
    room = k - above.sum(axis=1)
    crowded = np.flatnonzero(tied.sum(axis=1) > room)
    if len(crowded):
        fits = np.cumsum(tied[crowded], axis=1) <= room[crowded, None]
        take[crowded] = above[crowded] | (tied[crowded] & fits)
    return np.nonzero(take)[1].reshape(rows, k)


def _span_candidates(windows, start, end, real, in_context, can_start, offsets, example_index, k, max_len,
                     with_positions=False):
    """Every valid (start, end) pair among the top-k starts x top-k ends of the given windows,
    sorted by example, then score (best first), then window, start, end; as plain lists (with_positions:
    also the window and the start and end token of each)."""
    s_logit = np.where(real[windows], start[windows], -np.inf)
    e_logit = np.where(real[windows], end[windows], -np.inf)
    s_pos = _top_k_positions(s_logit, k)
    e_pos = _top_k_positions(e_logit, k)
    s_val = np.take_along_axis(s_logit, s_pos, axis=1)
    e_val = np.take_along_axis(e_logit, e_pos, axis=1)
    # Scores in float64, as the legacy script summed Python floats.
    scores = s_val.astype(np.float64)[:, :, None] + e_val.astype(np.float64)[:, None, :]  # [windows, k, k]
    span = e_pos[:, None, :] - s_pos[:, :, None]  # end - start
    valid = (
        np.take_along_axis(can_start[windows], s_pos, axis=1)[:, :, None]
        & np.take_along_axis(in_context[windows], e_pos, axis=1)[:, None, :]
        & (span >= 0)
        & (span < max_len)
        & np.isfinite(scores)
    )
    w, a, b = np.nonzero(valid)
    window = windows[w]
    s_tok = s_pos[w, a]
    e_tok = e_pos[w, b]
    score = scores[w, a, b]
    ex = example_index[window]
    order = np.lexsort((e_tok, s_tok, window, -score, ex))
    window, s_tok, e_tok, score, ex = window[order], s_tok[order], e_tok[order], score[order], ex[order]
    cand = {
        "ex": ex,
        "score": score.tolist(),
        "start_logit": start[window, s_tok].tolist(),
        "end_logit": end[window, e_tok].tolist(),
        "start_char": offsets[window, s_tok, 0].tolist(),
        "end_char": offsets[window, e_tok, 1].tolist(),
    }
    if with_positions:
        cand.update(window=window.tolist(), s_tok=s_tok.tolist(), e_tok=e_tok.tolist())
    return cand


CANDIDATE_FIELDS = ("score", "start_logit", "end_logit", "start_char", "end_char")


def _long_example_candidates(windows, context, arrays):
    """The candidates of one example with more than CHUNK_FEATURES windows (a long document), scored a chunk
    of windows at a time. Between chunks only the best candidate of each of the n_best_size best distinct
    texts is kept: all that _finish_example can use (it takes the first n_best_size distinct non-empty texts
    in score order), so the result is the same as scoring every window at once, in the memory of one chunk
    (a 5 MB context, 30,000 windows: 537 MB at once)."""
    n_best_size = arrays[-2]
    kept = []  # rows (-score, window, start token, end token, *CANDIDATE_FIELDS), in candidate order
    for first in range(0, len(windows), CHUNK_FEATURES):
        cand = _span_candidates(windows[first : first + CHUNK_FEATURES], *arrays, with_positions=True)
        rows = zip(*([-x for x in cand["score"]], cand["window"], cand["s_tok"], cand["e_tok"],
                     *(cand[name] for name in CANDIDATE_FIELDS)))
        kept = _best_distinct(heapq.merge(kept, _best_distinct(rows, context, n_best_size)), context, n_best_size)
    columns = list(zip(*kept)) or [()] * (4 + len(CANDIDATE_FIELDS))
    example_index = np.full(len(kept), arrays[6][windows[0]])  # every window is of the same example
    return {name: list(column) for name, column in zip(CANDIDATE_FIELDS, columns[4:])} | {"ex": example_index}


def _best_distinct(rows, context, n):
    """The first row of each of the first n distinct non-empty texts among `rows` (in candidate order)."""
    kept, seen = [], set()
    for row in rows:
        text = _span_text(context, row[-2], row[-1])[0]
        if text and text not in seen:
            seen.add(text)
            kept.append(row)
            if len(kept) == n:
                break
    return kept


def _span_text(context, start_char, end_char):
    """(text, start_char) of a span cut from the context: its end past the combining marks after it (qa.text:
    "Cafe" + U+0301 -> "Café"), surrounding whitespace trimmed."""
    raw = context[start_char : extend_over_marks(context, end_char)]
    text = raw.strip()
    return text, start_char + len(raw) - len(raw.lstrip())


def _softmax(scores):
    top = max(scores)
    exps = [math.exp(x - top) for x in scores]
    total = sum(exps)
    return [x / total for x in exps]


def _finish_example(example, cand, lo, hi, null, n_best_size, with_null, threshold, result):
    """Walk one example's sorted candidates cand[lo:hi] into its n-best list, prediction and null odds."""
    null_score = null[0] + null[1]
    null_entry = ("", null[0], null[1], -1, -1)
    context = example.context
    score, start_char, end_char = cand["score"], cand["start_char"], cand["end_char"]
    start_logit, end_logit = cand["start_logit"], cand["end_logit"]
    nbest, seen, null_added = [], set(), not with_null
    best = None  # the best non-null span: the first span with text
    for j in range(lo, hi):
        if len(nbest) >= n_best_size and best is not None:
            break
        if not null_added and score[j] < null_score and len(nbest) < n_best_size:
            nbest.append(null_entry)
            null_added = True
        text, a = _span_text(context, start_char[j], end_char[j])
        if not text:  # a span of whitespace only is no answer
            continue
        if best is None:
            best = (text, score[j])
        if len(nbest) < n_best_size and text not in seen:
            seen.add(text)
            nbest.append((text, start_logit[j], end_logit[j], a, a + len(text)))
    if not null_added or not nbest:
        nbest.append(null_entry)
    probs = _softmax([e[1] + e[2] for e in nbest])
    qas_id = example.qas_id
    result.nbest[qas_id] = [
        {"text": e[0], "probability": p, "start_logit": e[1], "end_logit": e[2], "start_char": e[3], "end_char": e[4]}
        for e, p in zip(nbest, probs)
    ]
    best_text, best_score = best if best else ("", 0.0)
    diff = null_score - best_score
    result.best_non_null[qas_id] = best_text
    result.null_score_diff[qas_id] = diff
    result.predictions[qas_id] = "" if with_null and diff > threshold else best_text
