"""SQuAD 2.0 metrics, exactly as the official evaluation script computes them, plus a correct
tuning of the null-answer threshold.

    # the official script's command line and output (same arguments, same JSON):
    python -m qa.metrics data/squad/dev-v2.0.json outputs/run/predictions_.json
    python -m qa.metrics data/squad/dev-v2.0.json preds.json --na-prob-file null_odds.json -o eval.json
    python -m qa.metrics dev.json preds.json -n null_odds.json -p outputs/run/plots   # PR curves

    # from Python (run_squad.py's evaluation):
    from qa.metrics import evaluate_predictions
    results = evaluate_predictions(examples, predictions, null_score_diff=null_odds,
                                   best_non_null=best_non_null_texts)

Scores (official v2.0 definitions): answers are normalised (lower case, punctuation of
`string.punctuation` removed, the articles a/an/the removed, whitespace collapsed); exact
match is 1 when the normalised texts are equal; F1 is the harmonic mean of token precision
and recall of the normalised texts; each prediction takes the best score over the gold
answers, and an unanswerable question has the single gold answer "". Totals are percentages
(100.0 * sum / count) over all questions, and separately over HasAns and NoAns questions.

Null threshold: the legacy HuggingFace run_squad.py predicted "" when
`null_score_diff = score_null - best_non_null_score > null_score_diff_threshold`, then called
the evaluation with predictions that were *already* thresholded at 0.0 and with every
no-answer probability set to 0.0. The sweep behind best_exact/best_f1 therefore had a single
value to try, and reported a threshold of 0.0 on every run, and best_* scores of predictions
that had already lost their non-null answers. `tune_null_threshold` sweeps over the real
null_score_diff values and scores the best NON-NULL answer of every question, so the threshold
it returns, applied with `apply_null_threshold`, reproduces best_f1 (or best_exact).

Standard library only (no torch, no transformers); matplotlib only for --out-image-dir.
"""

import argparse
import collections
import json
import os
import re
import string
import sys

from qa.squad_io import SquadExample, SquadFormatError, read_json, read_squad
from qa.storage import atomic_write

PUNCTUATION = frozenset(string.punctuation)
ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


# ---------------------------------------------------------------------------------------------
# Per-answer scores (official definitions)
# ---------------------------------------------------------------------------------------------
def normalize_answer(text):
    """Lower case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in PUNCTUATION)
    text = ARTICLES.sub(" ", text)
    return " ".join(text.split())


def get_tokens(text):
    return normalize_answer(text).split() if text else []


def compute_exact(gold, prediction):
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold, prediction):
    gold_tokens, pred_tokens = get_tokens(gold), get_tokens(prediction)
    if not gold_tokens or not pred_tokens:
        # A no-answer on either side: F1 is 1 when both are no-answer, else 0.
        return int(gold_tokens == pred_tokens)
    num_same = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


# ---------------------------------------------------------------------------------------------
# Gold answers
# ---------------------------------------------------------------------------------------------
def gold_answers(examples_or_gold):
    """{qid: raw gold answer texts} in data order, from SquadExamples or such a mapping.

    A question is answerable (HasAns) when its list is non-empty, as in the official script;
    the texts are filtered by `scoring_golds` when scored."""
    if isinstance(examples_or_gold, dict):
        return {str(qid): list(texts) for qid, texts in examples_or_gold.items()}
    gold = {}
    for example in examples_or_gold:
        if not isinstance(example, SquadExample):
            raise TypeError(f"expected SquadExample objects or a {{qid: [answer texts]}} dict, got {type(example).__name__}")
        gold[example.qas_id] = [a.text for a in example.answers]
    return gold


def scoring_golds(texts):
    """Gold answers with non-empty normalised text; [""] when none (the no-answer)."""
    return [t for t in texts if normalize_answer(t)] or [""]


def make_qid_to_has_ans(gold):
    return {qid: bool(texts) for qid, texts in gold.items()}


# ---------------------------------------------------------------------------------------------
# The official evaluation, step by step
# ---------------------------------------------------------------------------------------------
def get_raw_scores(examples_or_gold, predictions, report_missing=True):
    """({qid: exact}, {qid: f1}) of every question in the data, in data order.

    Predictions for ids not in the data are ignored. A question without a prediction prints
    "Missing prediction for ID" (as the official script) and scores 0 in both."""
    gold = gold_answers(examples_or_gold)
    exact_scores, f1_scores = {}, {}
    for qid, texts in gold.items():
        if qid not in predictions:
            if report_missing:
                print(f"Missing prediction for {qid}")
            exact_scores[qid] = f1_scores[qid] = 0
            continue
        prediction = predictions[qid]
        golds = scoring_golds(texts)
        exact_scores[qid] = max(compute_exact(g, prediction) for g in golds)
        f1_scores[qid] = max(compute_f1(g, prediction) for g in golds)
    return exact_scores, f1_scores


def apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    """Scores after predicting no-answer wherever na_prob > na_prob_thresh.

    A question without an na_prob (only possible for a missing prediction) keeps its score."""
    new_scores = {}
    for qid, score in scores.items():
        if qid in na_probs and na_probs[qid] > na_prob_thresh:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = score
    return new_scores


def make_eval_dict(exact_scores, f1_scores, qid_list=None):
    """OrderedDict(exact, f1, total) in percent, over qid_list or all questions."""
    if qid_list is None:
        qid_list = list(exact_scores)
    total = len(qid_list)
    if total == 0:
        raise ValueError("no questions to score: the data has no questions")
    return collections.OrderedDict(
        [
            ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
            ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
            ("total", total),
        ]
    )


def merge_eval(main_eval, new_eval, prefix):
    for key, value in new_eval.items():
        main_eval[f"{prefix}_{key}"] = value


def null_threshold_sweep(qids, null_score_diff, has_answer, scores, predicted, ties_together=True):
    """[(threshold, total)]: the summed score of the questions `qids` when a question is answered "" iff
    its null_score_diff > threshold, for each threshold worth trying, lowest first.

    The one sweep behind the official best_* thresholds, `tune_null_threshold` and the report's curve:
    start from "" for every question (each unanswerable one scores 1); in order of increasing diff,
    switch questions to their prediction: an answerable one gains its score, an unanswerable one
    loses 1 if the prediction is non-empty. With ties_together a point is made after each group of
    equal diffs (a threshold cannot separate them); without, after each question, as the official
    script does. The first point is (None, total for "" everywhere)."""
    total = sum(1 for qid in qids if not has_answer[qid])
    points = [(None, total)]
    ordered = sorted(qids, key=lambda qid: null_score_diff[qid])
    for i, qid in enumerate(ordered):
        total += scores[qid] if has_answer[qid] else (-1 if predicted[qid] else 0)
        if not ties_together or i + 1 == len(ordered) or null_score_diff[ordered[i + 1]] != null_score_diff[qid]:
            points.append((null_score_diff[qid], total))
    return points


def find_best_thresh(predictions, scores, na_probs, qid_to_has_ans):
    """(best score in percent, na_prob threshold) of the official sweep.

    Equal na_probs are visited one at a time and the threshold is 0.0 when "" everywhere is best, as
    in the official script (kept for `python -m qa.metrics`); `tune_null_threshold` is the tie-safe one."""
    qids = [qid for qid in na_probs if qid in scores]
    best_score, best_thresh = None, 0.0
    for threshold, total in null_threshold_sweep(qids, na_probs, qid_to_has_ans, scores, predictions, ties_together=False):
        if best_score is None or total > best_score:
            best_score, best_thresh = total, (best_thresh if threshold is None else threshold)
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(main_eval, predictions, exact_raw, f1_raw, na_probs, qid_to_has_ans):
    best_exact, exact_thresh = find_best_thresh(predictions, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(predictions, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def check_predictions(predictions, na_probs=None, where="predictions"):
    """Clear errors for prediction / na-prob files that are not {qid: text} / {qid: number}."""
    if not isinstance(predictions, dict):
        raise SquadFormatError(f"{where}: expected a JSON object {{question id: answer text}}")
    for qid, text in predictions.items():
        if not isinstance(text, str):
            raise SquadFormatError(f"{where}: the prediction for {qid!r} is {text!r:.60}, not a string (use \"\" for no answer)")
    if na_probs is not None:
        if not isinstance(na_probs, dict):
            raise SquadFormatError(f"{where}: the no-answer probabilities should be a JSON object {{question id: number}}")
        for qid, value in na_probs.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SquadFormatError(f"{where}: the no-answer probability of {qid!r} is {value!r:.60}, not a number")


def evaluate(examples_or_gold, predictions, na_probs=None, na_prob_thresh=1.0, report_missing=True):
    """The official evaluation: the same OrderedDict the official script prints.

    na_probs: {qid: no-answer probability (or null score diff)}; when given, predictions with
    na_prob > na_prob_thresh count as no-answer and best_exact/best_f1 with their thresholds
    are added. Every predicted question of the data needs an na_prob then."""
    gold = gold_answers(examples_or_gold)
    qid_to_has_ans = make_qid_to_has_ans(gold)
    exact_raw, f1_raw = get_raw_scores(gold, predictions, report_missing=report_missing)
    given_na_probs = na_probs is not None
    if given_na_probs:
        missing = [qid for qid in gold if qid in predictions and qid not in na_probs]
        if missing:
            raise SquadFormatError(
                f"no-answer probabilities are missing for {len(missing)} predicted question(s), e.g. {missing[0]!r}; "
                "the null odds file must cover every prediction"
            )
        # A question without a prediction scores 0 whatever its na_prob says.
        na_probs = {qid: value for qid, value in na_probs.items() if qid in predictions}
    else:
        na_probs = {qid: 0.0 for qid in predictions}
    exact_thresh = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    has_ans_qids = [qid for qid, has in qid_to_has_ans.items() if has]
    no_ans_qids = [qid for qid, has in qid_to_has_ans.items() if not has]
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if given_na_probs:
        find_all_best_thresh(out_eval, predictions, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    return out_eval


# ---------------------------------------------------------------------------------------------
# Precision-recall analysis (the official --out-image-dir)
# ---------------------------------------------------------------------------------------------
def precision_recall_ap(scores, na_probs, qid_to_has_ans):
    """(average precision in percent, precisions, recalls) when answering in order of na_prob.

    Points are only placed between distinct na_probs, where a threshold can separate them."""
    qid_list = sorted((qid for qid in na_probs if qid in scores), key=lambda k: na_probs[k])
    num_true_pos = sum(1 for has in qid_to_has_ans.values() if has)
    true_pos, avg_prec = 0.0, 0.0
    precisions, recalls = [1.0], [0.0]
    for i, qid in enumerate(qid_list):
        if qid_to_has_ans[qid]:
            true_pos += scores[qid]
        precision, recall = true_pos / float(i + 1), true_pos / float(num_true_pos)
        if i == len(qid_list) - 1 or na_probs[qid] != na_probs[qid_list[i + 1]]:
            avg_prec += precision * (recall - recalls[-1])
            precisions.append(precision)
            recalls.append(recall)
    return 100.0 * avg_prec, precisions, recalls


def run_precision_recall_analysis(main_eval, exact_raw, f1_raw, na_probs, qid_to_has_ans, out_image_dir):
    """Adds pr_exact_ap, pr_f1_ap, pr_oracle_ap (as the official script) and saves the PR curves
    and na_prob histograms as PNGs in out_image_dir. As there, data without an answerable
    question gets no PR curves (recall is undefined) but still gets its histogram."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    os.makedirs(out_image_dir, exist_ok=True)
    oracle = {qid: float(has) for qid, has in qid_to_has_ans.items()}
    curves = (
        ("exact", exact_raw, "Precision-Recall curve for Exact Match score"),
        ("f1", f1_raw, "Precision-Recall curve for F1 score"),
        ("oracle", oracle, "Oracle Precision-Recall curve (binary task of HasAns vs. NoAns)"),
    )
    for name, scores, title in curves if any(qid_to_has_ans.values()) else ():
        ap, precisions, recalls = precision_recall_ap(scores, na_probs, qid_to_has_ans)
        main_eval[f"pr_{name}_ap"] = ap
        plt.step(recalls, precisions, color="b", alpha=0.2, where="post")
        plt.fill_between(recalls, precisions, step="post", alpha=0.2, color="b")
        plt.xlabel("Recall")
        plt.ylabel("Precision")
        plt.xlim([0.0, 1.05])
        plt.ylim([0.0, 1.05])
        plt.title(title)
        plt.savefig(os.path.join(out_image_dir, f"pr_{name}.png"))
        plt.clf()
    for name, wanted in (("hasAns", True), ("noAns", False)):
        values = [na_probs[qid] for qid, has in qid_to_has_ans.items() if has == wanted and qid in na_probs]
        if not values:
            continue
        plt.hist(values, weights=[1.0 / len(values)] * len(values), bins=20, range=(0.0, 1.0))
        plt.xlabel("Model probability of no-answer")
        plt.ylabel("Proportion of dataset")
        plt.title(f"Histogram of no-answer probability: {name}")
        plt.savefig(os.path.join(out_image_dir, f"na_prob_hist_{name}.png"))
        plt.clf()


# ---------------------------------------------------------------------------------------------
# Null threshold tuning (what the legacy run_squad.py got wrong)
# ---------------------------------------------------------------------------------------------
def apply_null_threshold(best_non_null, null_score_diff, threshold):
    """{qid: text}: "" where null_score_diff > threshold, else the best non-null answer.

    This is the legacy post-processing rule (`score_null - best_non_null_score > threshold`)."""
    return {qid: ("" if null_score_diff[qid] > threshold else text) for qid, text in best_non_null.items()}


def tune_null_threshold(examples_or_gold, best_non_null, null_score_diff):
    """The null_score_diff thresholds that maximise exact match and F1.

    best_non_null: {qid: the best non-empty answer text}, before any thresholding.
    null_score_diff: {qid: score_null - best_non_null_score} (the null odds file).
    Returns {best_exact, best_exact_thresh, best_f1, best_f1_thresh}, scores in percent over all
    questions of the data (a question without a prediction scores 0).

    Why not the legacy numbers: the legacy run_squad.py scored predictions that were already
    thresholded at 0.0 (a question predicted "" has lost its non-null answer, so moving the
    threshold cannot bring it back) and gave the sweep an na_prob of 0.0 for every question, so
    the only threshold it could report was 0.0. Here every question is scored on its best
    non-null answer, and the sweep walks the real null_score_diff values.

    The sweep: start with "" for every question (threshold below the smallest diff); in order of
    increasing diff switch questions to their non-null answer, one group of equal diffs at a
    time (a threshold cannot separate equal diffs); the threshold reported is the diff of the
    last question switched, so `apply_null_threshold(best_non_null, null_score_diff, thresh)`
    gives exactly the reported score. If "" everywhere is best, the threshold is 1.0 below the
    smallest diff.
    """
    gold = gold_answers(examples_or_gold)
    qid_to_has_ans = make_qid_to_has_ans(gold)
    missing = [qid for qid in gold if qid in best_non_null and qid not in null_score_diff]
    if missing:
        raise ValueError(f"null_score_diff has no value for {len(missing)} question(s), e.g. {missing[0]!r}")
    exact_raw, f1_raw = get_raw_scores(gold, best_non_null, report_missing=False)
    swept = [qid for qid in gold if qid in best_non_null]
    if not swept:
        raise ValueError("no question of the data has a best non-null answer to tune on")
    results = collections.OrderedDict()
    for name, scores in (("exact", exact_raw), ("f1", f1_raw)):
        points = null_threshold_sweep(swept, null_score_diff, qid_to_has_ans, scores, best_non_null)
        best_thresh, best_score = points[0][0], points[0][1]
        for threshold, total in points[1:]:
            if total > best_score:
                best_score, best_thresh = total, threshold
        if best_thresh is None:  # "" everywhere is best: a threshold below every diff
            best_thresh = min(null_score_diff[qid] for qid in swept) - 1.0
        results[f"best_{name}"] = 100.0 * best_score / len(gold)
        results[f"best_{name}_thresh"] = float(best_thresh)
    return results


def null_threshold_curve(examples_or_gold, best_non_null, null_score_diff):
    """(thresholds, f1, exact) in percent over the questions that have a null_score_diff: the score of
    answering "" when null_score_diff > threshold, at every threshold of the sweep (the first point,
    1.0 below the smallest diff, is "" everywhere). What `make report` draws."""
    gold = gold_answers(examples_or_gold)
    qids = [qid for qid in gold if qid in null_score_diff]
    if not qids:
        return [], [], []
    answers = {qid: best_non_null.get(qid, "") for qid in qids}
    exact_raw, f1_raw = get_raw_scores({q: gold[q] for q in qids}, answers, report_missing=False)
    has_answer = make_qid_to_has_ans(gold)
    curves = [null_threshold_sweep(qids, null_score_diff, has_answer, raw, answers) for raw in (f1_raw, exact_raw)]
    lowest = min(null_score_diff[q] for q in qids) - 1.0
    thresholds = [lowest if t is None else t for t, _ in curves[0]]
    f1s, exacts = ([100.0 * total / len(qids) for _, total in curve] for curve in curves)
    return thresholds, f1s, exacts


def evaluate_predictions(examples, predictions, null_score_diff=None, best_non_null=None, report_missing=False):
    """The eval_results of a run: exact, f1, total, HasAns_*, NoAns_* of `predictions` (as they
    are, already thresholded), plus best_exact/best_exact_thresh/best_f1/best_f1_thresh from
    `tune_null_threshold` when both null_score_diff and best_non_null are given."""
    results = evaluate(examples, predictions, report_missing=report_missing)
    if (null_score_diff is None) != (best_non_null is None):
        raise ValueError("give both null_score_diff and best_non_null to tune the null threshold, or neither")
    if null_score_diff is not None:
        results.update(tune_null_threshold(examples, best_non_null, null_score_diff))
    return results


# ---------------------------------------------------------------------------------------------
# Command line: the official script's arguments
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m qa.metrics",
        description="The official SQuAD 2.0 evaluation (same arguments, same JSON), re-implemented.",
    )
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file (SQuAD JSON or JSON Lines).")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions: {question id: answer text}.")
    parser.add_argument("--out-file", "-o", metavar="eval.json", help="Write accuracy metrics to file (default is stdout).")
    parser.add_argument("--na-prob-file", "-n", metavar="na_prob.json", help="Model estimates of probability of no answer.")
    parser.add_argument(
        "--na-prob-thresh", "-t", type=float, default=1.0,
        help='Predict "" if no-answer probability exceeds this (default = 1.0).',
    )
    parser.add_argument(
        "--out-image-dir", "-p", metavar="out_images", default=None,
        help="Save precision-recall curves to directory (needs --na-prob-file).",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true",
        help="Also say on stderr how many questions and predictions were read, and how many predictions were ignored.",
    )
    args = parser.parse_args(argv)
    for name in ("data_file", "pred_file", "na_prob_file"):
        path = getattr(args, name)
        if path and not path.startswith("s3://") and not os.path.exists(path):
            parser.error(f"{path}: no such file (argument {name})")
    if args.out_image_dir and not args.na_prob_file:
        print("note: --out-image-dir needs --na-prob-file; no plots are made (as in the official script)", file=sys.stderr)
    return args


def main(argv=None):
    args = parse_args(argv)
    examples = read_squad(args.data_file, check_answers=False)
    predictions = read_json(args.pred_file)
    na_probs = read_json(args.na_prob_file) if args.na_prob_file else None
    check_predictions(predictions, where=args.pred_file)
    if na_probs is not None:
        check_predictions({}, na_probs, where=args.na_prob_file)
    if args.verbose:
        answerable = sum(ex.has_answer for ex in examples)
        ids = {ex.qas_id for ex in examples}
        print(
            f"{args.data_file}: {len(examples)} questions ({answerable} HasAns, {len(examples) - answerable} NoAns); "
            f"{args.pred_file}: {len(predictions)} predictions, {sum(q not in ids for q in predictions)} ignored "
            f"(not in the data), {sum(q not in predictions for q in ids)} questions without a prediction",
            file=sys.stderr,
        )
    out_eval = evaluate(examples, predictions, na_probs=na_probs, na_prob_thresh=args.na_prob_thresh)
    if na_probs is not None and args.out_image_dir:
        gold = gold_answers(examples)
        exact_raw, f1_raw = get_raw_scores(gold, predictions, report_missing=False)
        run_precision_recall_analysis(out_eval, exact_raw, f1_raw, na_probs, make_qid_to_has_ans(gold), args.out_image_dir)
    if args.out_file:
        with atomic_write(args.out_file, "w", encoding="utf-8") as f:
            json.dump(out_eval, f)
    else:
        print(json.dumps(out_eval, indent=2))
    return out_eval


if __name__ == "__main__":
    try:
        main()
    except SquadFormatError as exc:
        sys.exit(f"error: {exc}")
