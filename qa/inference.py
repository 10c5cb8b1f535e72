"""Running a QA model over feature windows: logits on every rank, and a scored evaluation of a run's model.

    model, tokenizer = load_inference_model("outputs/run", runtime.device)               # final model or checkpoint-N
    starts, ends = predict_logits(model, features, batch_size=64, runtime=runtime)       # [N, L] in feature order
    metrics = evaluate_model(model, examples, features, args, runtime, log, step=900, output_dir=args.output_dir)

Windows go through the model in length order (longest first), each batch padded only to its own
longest window (rounded up to --pad_to_multiple_of), and the logits are put back in feature
order: on SQuAD-like data, where windows average ~160 of 384 tokens, that computes a fraction of
the padded tokens of feature order (benchmarks/bench_train.py measures it). Under torchrun each rank
takes every world_size-th window of that order, so every rank gets the same mix of lengths.

Used by training (evaluation during training), `run_squad.py --do_eval`, `scripts/ask.py` and the
whole-document NQ prediction (`scripts/predict_nq.py`).
"""

import json
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from qa import run_dir
from qa.answer_type import TYPES
from qa.run_dir import CheckpointError
from qa.runtime import ModelFeed
from qa.storage import folder_problem

# Logits of padding positions: far below any real score, and still finite in float16.
PAD_LOGIT = -10000.0
# Test hook: seconds slept after each evaluation batch (tests/test_sigterm_eval.py: a SIGTERM during a long one).
SLEEP_ENV = "QA_TEST_SLEEP_PER_EVAL_BATCH"


class EvaluationAbandoned(Exception):
    """A stop signal arrived during an evaluation: it was given up so a checkpoint can be saved at once
    (torchrun kills workers about 30 s after forwarding SIGTERM)."""


def load_inference_model(model_dir, device=None):
    """(model, tokenizer) of a model folder (a final model or a checkpoint-N), ready to predict on `device`.

    The one place inference loads a model (scripts/ask.py, scripts/predict_nq.py, evaluation alone): the
    tokenizer saved with the model (fast: features need its offsets) and the model, either
    AutoModelForQuestionAnswering (without transformers' "Loading weights" progress bar between a question
    and its answer) or, for a folder written by scripts/export_onnx.py (model.onnx), an onnxruntime runner
    called the same way (qa.onnx_export.OnnxQAModel, CPU); an export is refused when incomplete or changed
    since it was written (the hashes of its ONNX_COMPLETE marker)."""
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa import onnx_export
    from qa.answer_type_head import attach

    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    if onnx_export.is_onnx_model(model_dir):
        problem = folder_problem(model_dir, onnx_export.ONNX_MARKER, check_hashes=True)  # ~0.5 s for albert-xlarge's
        if problem is not None:
            raise CheckpointError(f"{model_dir}: an incomplete or changed ONNX export ({problem}); export it again "
                                  "(make export)")
        return onnx_export.OnnxQAModel(model_dir), tokenizer
    model = attach(AutoModelForQuestionAnswering.from_pretrained(model_dir), model_dir)  # the answer-type head too
    model.eval()
    return (model.to(device) if device is not None else model), tokenizer


def length_order(lengths):
    """Window indices sorted by length, longest first (stable: equal lengths keep feature order)."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def predict_logits(model, features, batch_size, runtime, pad_to_max_length=False, lang_id=0, pad_to_multiple_of=1,
                   should_stop=None, with_types=False):
    """Start/end logits [N, L] (float32, L = the windows' max_seq_length) in feature order, on rank 0
    ((None, None) on the others: only rank 0 post-processes, so only it receives every share).
    with_types: a third value, the answer-type logits [N, 5] (qa/answer_type_head.py), None for a model without
    the head (and on ranks other than 0).

    Each rank computes its share of the length order. `should_stop()` is asked before every batch; when
    it says so on any rank, every rank raises EvaluationAbandoned (after agreeing, so none waits forever)."""
    length = features.input_ids.shape[1]
    mine = length_order(features.lengths)[runtime.rank :: runtime.world_size]
    starts = np.full((len(mine), length), PAD_LOGIT, dtype=np.float32)
    ends = np.full((len(mine), length), PAD_LOGIT, dtype=np.float32)
    types = None
    if with_types:  # imported here: the head's module imports transformers
        from qa.answer_type_head import has_type_output

        types = np.zeros((len(mine), len(TYPES)), dtype=np.float32) if has_type_output(model) else None
    abandoned = _predict_share(model, features, mine, batch_size, runtime, (starts, ends, types), pad_to_max_length,
                               lang_id, pad_to_multiple_of, should_stop)
    if _any_rank(abandoned, runtime):
        raise EvaluationAbandoned("evaluation abandoned: a stop signal arrived")
    gathered = _gather_shares(features, mine, (starts, ends, types), runtime)
    return gathered if with_types else gathered[:2]


def _predict_share(model, features, mine, batch_size, runtime, outputs, pad_to_max_length, lang_id, pad_to_multiple_of,
                   should_stop):
    """Fill `outputs` (starts, ends, types or None), row i for window mine[i], batch by batch, the model in eval
    mode (its training mode restored after). True when `should_stop()` said so before a batch."""
    starts, ends, types = outputs
    feed = ModelFeed(model, runtime, lang_id)
    was_training = model.training
    model.eval()
    sleep = float(os.environ.get(SLEEP_ENV, "0") or 0)
    try:
        with torch.no_grad():
            for first in range(0, len(mine), batch_size):
                if should_stop is not None and should_stop():
                    return True
                indices = mine[first : first + batch_size]
                batch = features.batch(indices, pad_to_max_length, pad_to_multiple_of)
                batch.pop("start_positions", None), batch.pop("end_positions", None), batch.pop("answer_types", None)
                with runtime.autocast():
                    out = model(**feed(batch))
                width = out.start_logits.shape[1]
                starts[first : first + len(indices), :width] = out.start_logits.float().cpu().numpy()
                ends[first : first + len(indices), :width] = out.end_logits.float().cpu().numpy()
                if types is not None:
                    types[first : first + len(indices)] = out.answer_type_logits.float().cpu().numpy()
                if sleep:
                    time.sleep(sleep)
    finally:
        model.train(was_training)
    return False


def _any_rank(flag, runtime):
    """True when `flag` is True on any rank (every rank takes part, so none waits forever)."""
    if not runtime.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=runtime.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _gather_shares(features, mine, share, runtime):
    """(starts, ends, types) of every window in feature order on rank 0, from each rank's `share` (its rows for the
    windows `mine`); (None, None, None) on the other ranks. types is None for a model without the answer-type head."""
    starts, ends, types = share
    length = starts.shape[1]
    all_starts = np.empty((len(features), length), dtype=np.float32) if runtime.is_main else None
    all_ends = np.empty((len(features), length), dtype=np.float32) if runtime.is_main else None
    all_types = np.empty((len(features), len(TYPES)), dtype=np.float32) if runtime.is_main and types is not None else None
    if not runtime.distributed:
        all_starts[mine], all_ends[mine] = starts, ends
        if all_types is not None:
            all_types[mine] = types
        return all_starts, all_ends, all_types
    shares = [None] * runtime.world_size if runtime.is_main else None
    dist.gather_object((mine, starts, ends, types), shares, dst=0)
    if not runtime.is_main:
        return None, None, None
    for indices, share_starts, share_ends, share_types in shares:
        all_starts[indices], all_ends[indices] = share_starts, share_ends
        if all_types is not None:
            all_types[indices] = share_types
    return all_starts, all_ends, all_types


def evaluate_model(model, examples, features, args, runtime, log, step, output_dir, should_stop=None):
    """Predict on every rank, post-process and score on rank 0; the metrics are returned on every rank.

    `step`: the global step of the weights (an int), or a label for a model not trained here
    ("pretrained"). Writes run_dir's evaluation files for `step` into output_dir: predictions,
    nbest_predictions, null_odds, eval_results and (SQuAD 2.0) the predictions at the null threshold
    that maximised F1, which eval_results records as tuned_null_score_diff_threshold."""
    from qa.metrics import apply_null_threshold, evaluate_predictions
    from qa.postprocess import postprocess_predictions, write_prediction_files

    starts, ends = predict_logits(model, features, args.per_gpu_eval_batch_size, runtime, args.pad_to_max_length,
                                  args.lang_id, args.pad_to_multiple_of, should_stop)
    metrics = None
    if runtime.is_main:
        result = postprocess_predictions(examples, features, starts, ends, args.n_best_size, args.max_answer_length,
                                         args.version_2_with_negative, args.null_score_diff_threshold)
        write_prediction_files(result, output_dir, step)
        null_diff = result.null_score_diff if args.version_2_with_negative else None
        best_non_null = result.best_non_null if args.version_2_with_negative else None
        metrics = dict(evaluate_predictions(examples, result.predictions, null_diff, best_non_null))
        metrics["null_score_diff_threshold"] = args.null_score_diff_threshold
        if args.version_2_with_negative and "best_f1_thresh" in metrics:
            metrics["tuned_null_score_diff_threshold"] = metrics["best_f1_thresh"]
            tuned = apply_null_threshold(result.best_non_null, result.null_score_diff, metrics["best_f1_thresh"])
            write_json(run_dir.eval_file(output_dir, "best_thresh", step), tuned)
        metrics["step"] = step
        write_json(run_dir.eval_file(output_dir, "eval_results", step), metrics)
        # A label instead of a step ("pretrained": a model not trained here) is logged at step 0.
        log.log(step if isinstance(step, int) else 0, {f"eval/{k}": v for k, v in metrics.items() if k != "step"})
        log.info(f"eval at step {step}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in metrics.items()))
    if runtime.distributed:
        box = [metrics]
        dist.broadcast_object_list(box, src=0)
        metrics = box[0]
    return metrics


def write_json(path, obj):
    from qa.storage import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)

