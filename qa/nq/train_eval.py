"""Whole-page NQ scores of a model being trained, and the rule that ranks a model's windows by default.

    metrics = add_whole_page_scores(metrics, model, tokenizer, args, runtime, log, step, output_dir)
    metrics["nq_long_f1"], metrics["nq_short_f1"]      # 0-100: the official best-threshold F1 x 100
    rank, why = auto_rank(has_answer_type_head)         # predict_nq --rank auto, and the scores above

With `--nq_dev_file GLOB` (raw NQ dev records), every evaluation during training and the evaluation of
the final model also answer the whole pages of those records exactly as scripts/predict_nq.py does (the
same qa.nq.predict functions: top-level candidates, one chunk of RECORDS_PER_CHUNK records at a time,
each window its own question) and score them with the official metrics (qa.nq.evaluate). The two F1s join
that step's eval_results_<step>.json, metrics.jsonl and tensorboard (eval/nq_long_f1, eval/nq_short_f1), so
`--metric_for_best_model nq_long_f1` (or nq_short_f1; greater is better, as every metric:
qa.retention.improves) chooses the best checkpoint and drives early stopping. The prediction file and the
official metrics go to <output_dir>/eval/nq-<step>/, where `predict_nq --checkpoint checkpoint-<step>`
writes the same predictions. Under torchrun every rank reads the records and computes its share of the
windows (qa.inference.predict_logits, as predict_nq); rank 0 writes and scores, and the scores are
broadcast.

The window score (predict_nq --rank, qa.nq.predict.best_candidate): a model trained the guide's way (gold
paragraphs only, no answer types) learns "no answer" only on paragraphs that hold the answer, so its null
score says little about which candidate holds it: on the demo its margin rank gives NQ long / short F1
6.56 / 5.50, the log-probability rank 57.01 / 59.71. A model trained on candidate-mode data (which carries
answer types, so it has the answer-type head by default) scores the same with both (about 77.9 / 76). So
"auto" is logprob for a model without the answer-type head, margin for one with it.
"""

import os

from qa import run_dir
from qa.nq.annotation import LONG_NON_NULL_THRESHOLD

NQ_METRICS = ("nq_long_f1", "nq_short_f1")  # --metric_for_best_model choices that need --nq_dev_file
AUTO = "auto"


def auto_rank(has_answer_type_head):
    """(rank, why) that --rank auto takes for a model with or without the answer-type head."""
    if has_answer_type_head:
        return "margin", "the model has the answer-type head (trained on data with answer types, candidate mode)"
    return "logprob", "the model has no answer-type head (trained on data without answer types, the guide's way)"


def resolve_rank(rank, model_dir):
    """(rank, why) for predict_nq's --rank: as given, or auto_rank of the folder's model."""
    if rank != AUTO:
        return rank, "as given (--rank)"
    from qa.answer_type_head import has_head

    return auto_rank(has_head(model_dir))


# ---------------------------------------------------------------------------------------------
# Checks at parse time
# ---------------------------------------------------------------------------------------------
def nq_dev_file_errors(args, flag_name=lambda flag: flag):
    """Problems with --nq_dev_file and --metric_for_best_model nq_* (messages; empty when fine)."""
    given = getattr(args, "nq_dev_file", None)
    if args.metric_for_best_model in NQ_METRICS and not given:
        return [f"--metric_for_best_model {args.metric_for_best_model} ranks checkpoints by whole-page NQ scores: give "
                "--nq_dev_file with the raw NQ dev records (e.g. --nq_dev_file 'data/nq/raw/dev/nq-dev-*.jsonl.gz') "
                "and --evaluate_during_training, or choose f1"]
    if not given:
        return []
    if not (args.do_eval or (args.do_train and args.evaluate_during_training)):
        return [f"--nq_dev_file {given} is used by evaluations only: add --evaluate_during_training (with --do_train) "
                "or --do_eval, or leave it out"]
    return _first_record_errors(given)


def _first_record_errors(pattern):
    """The files of `pattern` exist and their first record can be scored (local files; s3:// is read later)."""
    from qa.nq.evaluate import NQEvalError
    from qa.nq.predict import InputError, input_lines, parse_record

    if str(pattern).startswith("s3://"):
        return []
    try:
        line, where = next(input_lines(pattern, max_examples=1), (None, None))
        if line is None:
            return [f"--nq_dev_file {pattern}: no NQ records in it"]
        annotations = parse_record(line, where).get("annotations")
    except (InputError, NQEvalError, OSError) as exc:
        return [f"--nq_dev_file {pattern}: {exc}"]
    if not isinstance(annotations, list) or len(annotations) < LONG_NON_NULL_THRESHOLD:  # simplified ones too
        return [f"--nq_dev_file {pattern}: {where} has fewer than {LONG_NON_NULL_THRESHOLD} annotations (a train "
                "record?): gold has an answer only when that many annotators give one, so every F1 would be 0; give "
                "the dev records (5 annotations each)"]
    return []


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
def score_whole_pages(model, tokenizer, args, runtime, step, output_dir, should_stop=None):
    """{"nq_long_f1", "nq_short_f1"} (0-100) of `model` on the records of args.nq_dev_file, on every rank, plus
    the folder its predictions and official metrics were written to and the rank rule used (rank 0's values).
    should_stop: asked before every batch; when it says so, every rank raises qa.inference.EvaluationAbandoned."""
    from qa.features import FeatureParams
    from qa.nq.predict import RECORDS_PER_CHUNK, chunked_documents, input_lines, predict_chunk, prefetched

    params = FeatureParams(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                           max_query_length=args.max_query_length)
    config = {"n_best_size": args.n_best_size, "max_answer_length": args.max_answer_length}
    from qa.answer_type_head import has_type_output

    rank, _ = auto_rank(has_type_output(model))  # as predict_nq --rank auto decides for this model's folder
    stats = {"records": 0, "simplified": 0, "few_annotations": 0}
    predictions = []
    chunks = chunked_documents(input_lines(args.nq_dev_file), True, RECORDS_PER_CHUNK, stats)
    for documents in prefetched(chunks):
        chunk, _ = predict_chunk(documents, model, tokenizer, params, config, runtime,
                                 batch_size=args.per_gpu_eval_batch_size, threads=args.threads, rank=rank,
                                 should_stop=should_stop)
        predictions += chunk or []
    scores = _write_and_score(predictions, args, step, output_dir, rank) if runtime.is_main else None
    if runtime.distributed:
        import torch.distributed as dist

        box = [scores]
        dist.broadcast_object_list(box, src=0)
        scores = box[0]
    return scores


def _write_and_score(predictions, args, step, output_dir, rank):
    """Rank 0: the prediction file and nq_eval_results_<step>.json in eval/nq-<step>/; the scores."""
    import orjson

    from qa.nq.predict import score_nq_predictions
    from qa.storage import atomic_write

    if not predictions:
        raise ValueError(f"--nq_dev_file {args.nq_dev_file}: no NQ records in it")
    folder = run_dir.nq_eval_dir(output_dir, step)
    os.makedirs(folder, exist_ok=True)
    path = run_dir.nq_predictions_file(folder)
    with atomic_write(path, "wb") as f:
        f.write(orjson.dumps({"predictions": predictions}, option=orjson.OPT_INDENT_2))
    official = score_nq_predictions(args.nq_dev_file, path)
    with atomic_write(run_dir.nq_eval_results_file(folder, step), "wb") as f:
        f.write(orjson.dumps({**official, "step": step, "candidates": "top", "examples": len(predictions), "rank": rank},
                             option=orjson.OPT_INDENT_2))
    return {"nq_long_f1": 100.0 * official["long-best-threshold-f1"],
            "nq_short_f1": 100.0 * official["short-best-threshold-f1"], "rank": rank, "folder": folder}


def add_whole_page_scores(metrics, model, tokenizer, args, runtime, log, step, output_dir, should_stop=None):
    """`metrics` (an evaluation's, on every rank) with nq_long_f1 and nq_short_f1 added when --nq_dev_file is given;
    rank 0 rewrites eval_results_<step>.json with them and logs them (metrics.jsonl, tensorboard). A stop signal
    (should_stop) abandons it as it does the evaluation (EvaluationAbandoned: it runs again after resume)."""
    if not getattr(args, "nq_dev_file", None):
        return metrics
    scores = score_whole_pages(model, tokenizer, args, runtime, step, output_dir, should_stop)
    nq = {name: scores[name] for name in NQ_METRICS}
    metrics = {**metrics, **nq}
    if runtime.is_main:
        from qa.inference import write_json

        write_json(run_dir.eval_file(output_dir, "eval_results", step), metrics)
        log.log(step if isinstance(step, int) else 0, {f"eval/{name}": value for name, value in nq.items()})
        log.info(f"whole-page NQ at step {step} ({args.nq_dev_file}, --rank {scores['rank']}): long F1 "
                 f"{nq['nq_long_f1']:.2f}, short F1 {nq['nq_short_f1']:.2f}; predictions in {scores['folder']}")
    return metrics
