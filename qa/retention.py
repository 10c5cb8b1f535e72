"""What a run keeps: the best model's record, rotation of old checkpoints, and a clean slate for a fresh run.

    if rank == 0:
        record_best(args.output_dir, path, "f1", metrics["f1"])      # best_checkpoint.json, if it beats the record
        record_best(args.output_dir, args.output_dir, "f1", final)   # the final model's evaluation takes part too
        rotate_checkpoints(args.output_dir, args.save_total_limit)   # never deletes the best nor the newest
    clear_previous_run(args.output_dir)                              # --overwrite_output_dir
"""

import json
import logging
import math
import os

from qa import storage
from qa.run_dir import (
    BEST_FILE,
    CHECKPOINT_PREFIX,
    FINAL,
    RUN_STATE_DIRS,
    CheckpointError,
    best_checkpoint,
    has_final_model,
    is_complete,
    is_previous_run_file,
    list_checkpoints,
    model_step,
)

logger = logging.getLogger(__name__)


def improves(value, best_value, greater_is_better=True):
    """Whether `value` beats `best_value` (None: nothing recorded yet); NaN never does. The one rule of "better",
    for the best record here and the trainer's early-stopping count (TrainState.record_eval)."""
    if value != value:  # NaN
        return False
    if best_value is None:
        return True
    return value > best_value if greater_is_better else value < best_value


def best_entry(output_dir, model_path):
    """(name, step) that best_checkpoint.json records for `model_path`: a complete checkpoint, or the final model
    (the run folder itself: run_dir.FINAL). CheckpointError for anything else."""
    if os.path.realpath(model_path) == os.path.realpath(output_dir):
        if not has_final_model(output_dir):
            raise CheckpointError(f"{output_dir} holds no final model: save it before recording it as best")
        return FINAL, model_step(output_dir, default=FINAL)
    if not is_complete(model_path):
        raise CheckpointError(f"{model_path} is not a complete checkpoint: save it before recording it as best")
    return os.path.basename(os.path.normpath(model_path)), model_step(model_path)


def record_best(output_dir, model_path, metric_name, value, greater_is_better=True):
    """Record `model_path` (a checkpoint, or output_dir itself for the final model) in output_dir/best_checkpoint.json
    if `value` beats the recorded best.

    Returns True if it is the new best. NaN is never the best. A best recorded for another metric, or whose model
    is gone, is replaced (comparing f1 with exact would be meaningless), the former with a warning."""
    value = float(value)
    if math.isnan(value):
        return False
    name, step = best_entry(output_dir, model_path)
    current = best_checkpoint(output_dir)
    if current is not None:
        if current.get("metric") != metric_name:
            logger.warning("%s tracked %s; now tracking %s instead", BEST_FILE, current.get("metric"), metric_name)
        elif _still_there(output_dir, current["checkpoint"]) and not improves(value, current["value"], greater_is_better):
            return False
    record = {"checkpoint": name, "step": step, "metric": metric_name, "value": value,
              "greater_is_better": bool(greater_is_better)}
    with storage.atomic_write(os.path.join(output_dir, BEST_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return True


def _still_there(output_dir, name):
    return has_final_model(output_dir) if name == FINAL else os.path.isdir(os.path.join(output_dir, name))


def clear_previous_run(output_dir):
    """Remove what an earlier run left in `output_dir` that a fresh run would mistake for its own.

    For a fresh training with --overwrite_output_dir: the earlier run's checkpoint-* folders (else
    resume picks its newest one and rotation keeps it while deleting the new run's), the best
    record (else the new run is compared with the old best), training_summary.json, metrics.jsonl,
    the plan, tensorboard's runs/, the wandb run id, its final model (else an evaluation before the new
    one is saved would take it for this run's) and its evaluation files and eval/ folder (else the
    report would show them as this run's). Files of other names are left alone. Returns the removed paths."""
    if not os.path.isdir(output_dir):
        return []
    removed = []
    stale = set(storage.abandoned_folders(output_dir))  # half-written or half-deleted by a dead process; a live one's stay
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        is_checkpoint = os.path.isdir(path) and (name.startswith(CHECKPOINT_PREFIX) or path in stale)
        if is_checkpoint or (name in RUN_STATE_DIRS and os.path.isdir(path)):
            storage.remove_tree(path)
        elif is_previous_run_file(name) and os.path.isfile(path):
            os.remove(path)
        else:
            continue
        removed.append(path)
    return removed


def rotate_checkpoints(output_dir, save_total_limit):
    """Delete the oldest complete checkpoints so at most `save_total_limit` remain, never the best.

    The best counts towards the limit: with a limit of 3 you keep the best and the 2 newest. The
    newest is always kept too (it is what a resume continues from), so a limit of 1 keeps 2 folders
    when the best is older. None or <= 0 keeps everything. Also removes `.tmp-checkpoint-*` and
    `.trash-checkpoint-*` folders left by dead processes. Returns the deleted paths."""
    if not os.path.isdir(output_dir):
        return []
    deleted = storage.reap_abandoned(output_dir)
    if not save_total_limit or save_total_limit <= 0:
        return deleted
    paths = [p for _, p in list_checkpoints(output_dir)]
    best = best_checkpoint(output_dir)
    best_path = os.path.join(output_dir, best["checkpoint"]) if best else None
    keep = {paths[-1]} if paths else set()
    if best_path in paths:
        keep.add(best_path)
    for path in reversed(paths):
        if len(keep) >= save_total_limit:
            break
        keep.add(path)
    for path in paths:
        if path not in keep:
            logger.info("deleting %s (--save_total_limit %d)", path, save_total_limit)
            storage.remove_tree(path)
            deleted.append(path)
    return deleted
