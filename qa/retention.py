"""What a run keeps: the best checkpoint's record, rotation of old checkpoints, and a clean slate for a fresh run.

    if rank == 0:
        record_best(args.output_dir, path, "f1", metrics["f1"])      # best_checkpoint.json, if it beats the record
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
    RUN_STATE_DIRS,
    CheckpointError,
    best_checkpoint,
    is_complete,
    is_previous_run_file,
    list_checkpoints,
    load_train_state,
)

logger = logging.getLogger(__name__)


def record_best(output_dir, checkpoint_path, metric_name, value, greater_is_better=True):
    """Record checkpoint_path in output_dir/best_checkpoint.json if `value` beats the recorded best.

    Returns True if it is the new best. NaN is never the best. A best recorded for another metric
    is replaced (comparing f1 with exact would be meaningless) with a warning."""
    value = float(value)
    if math.isnan(value):
        return False
    if not is_complete(checkpoint_path):
        raise CheckpointError(f"{checkpoint_path} is not a complete checkpoint: save it before recording it as best")
    current = best_checkpoint(output_dir)
    if current is not None:
        if current.get("metric") != metric_name:
            logger.warning("%s tracked %s; now tracking %s instead", BEST_FILE, current.get("metric"), metric_name)
        elif os.path.isdir(os.path.join(output_dir, current["checkpoint"])):
            better = value > current["value"] if greater_is_better else value < current["value"]
            if not better:
                return False
    record = {
        "checkpoint": os.path.basename(os.path.normpath(checkpoint_path)),
        "step": load_train_state(checkpoint_path)["global_step"],
        "metric": metric_name,
        "value": value,
        "greater_is_better": bool(greater_is_better),
    }
    with storage.atomic_write(os.path.join(output_dir, BEST_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return True


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
