"""The checkpoint format: an atomic save of everything needed to continue exactly, and its restore.

A checkpoint is a folder `OUTPUT_DIR/checkpoint-N/` that `AutoModelForQuestionAnswering` and
`AutoTokenizer` load as it is, plus everything needed to continue exactly where it stopped:

    config.json, model.safetensors       the weights (safetensors: loading runs no code)
    tokenizer.json, tokenizer_config.json ...
    optimizer.pt, scheduler.pt, scaler.pt  state dicts, loaded with torch.load(weights_only=True)
    rng_state_{rank}.pth                 python/numpy/torch/CUDA generator states, one per rank (qa/rng.py)
    trainer_state.json                   qa.trainer.TrainState.SAVED (global_step, epoch, step_in_epoch,
                                         best_value, evals_since_best, eval_pending, best_metric),
                                         the run's args, checkpoint_info
    COMPLETE                             written last: every file's size and blake2b hash

How it is made safe:
- Everything is written through `qa.storage.atomic_folder` (`OUTPUT_DIR/.tmp-checkpoint-N-PID/`,
  fsynced, the marker last, then renamed). A kill at any moment leaves either the previous
  checkpoints alone or a `.tmp-*` folder that nothing reads (removed at the next start).
- Before anything is loaded from a checkpoint (`verify_checkpoint`) every file is hashed and
  compared with the marker: a file zeroed in place, truncated or copied partly is refused with
  its name, never trained from.
- The step is read from `trainer_state.json`, never parsed from the folder name (qa/run_dir.py reads it).
- Free disk is checked before writing (qa.preflight.checkpoint_bytes, the estimate the preflight uses
  too); a full disk while writing removes the temporary folder. Both raise `DiskFullError` with what
  to do, and the previous checkpoints are untouched.
- Loading never unpickles arbitrary objects: every .pt file is read with weights_only=True.

Several processes (torchrun): every rank calls `save_checkpoint` at the same step. The RNG states
are gathered to rank 0 with `torch.distributed.gather_object`; rank 0 alone writes the folder
and broadcasts the outcome, so a full disk raises the same error on every rank. To resume, every
rank reads the checkpoint (shared filesystem, a copy on each node, or `--sync_checkpoints`) and
calls `restore_training_state(path, ..., rank=rank)`, which reads its own `rng_state_{rank}.pth`.

    path = save_checkpoint(args.output_dir, model, tokenizer, optimizer, scheduler, scaler,
                           {"global_step": step, "epoch": epoch, "step_in_epoch": k, "args": vars(args)},
                           rank=rank, world_size=world_size)
    ckpt = run_dir.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)  # "auto", "best", a name, a path
    verify_checkpoint(ckpt)
    model = AutoModelForQuestionAnswering.from_pretrained(ckpt)
    state = restore_training_state(ckpt, optimizer, scheduler, scaler, rank=rank)
"""

import contextlib
import errno
import json
import logging
import os
import shutil
import time

from qa import storage
from qa.rng import capture_rng_state, restore_rng_state
from qa.run_dir import COMPLETE, STATE_FILE, CheckpointError, checkpoint_path, checkpoint_problem, load_train_state

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
FORMAT_VERSION = 2  # 2: COMPLETE lists a blake2b hash of every file (1: sizes only, still read)
# Test hook: seconds to sleep right after the weights are written (to kill a save halfway).
TEST_SLEEP_ENV = "QA_CHECKPOINT_TEST_SLEEP_AFTER_MODEL"

logger = logging.getLogger(__name__)


class DiskFullError(CheckpointError):
    """Not enough free disk to write a checkpoint; previous checkpoints are intact."""


def rng_file(rank):
    """The file of a checkpoint that holds rank `rank`'s generator states."""
    return f"rng_state_{rank}.pth"


def verify_checkpoint(path):
    """Raise CheckpointError naming the damaged file unless every file of `path` matches its COMPLETE marker."""
    problem = checkpoint_problem(path, check_hashes=True)
    if problem is not None:
        raise CheckpointError(f"{path} cannot be trusted: {problem}; use another checkpoint "
                              f"(or restore this one from a copy)")
    marker = storage.read_marker(path, COMPLETE) or {"files": {}}
    unhashed = sorted(name for name, entry in marker["files"].items() if not (isinstance(entry, dict) and "blake2b" in entry))
    if unhashed:  # a marker of the first format (sizes only): checked as far as it goes, and said so
        logger.warning("%s: %d file(s) checked by size only (written before hashes were recorded): %s", path,
                       len(unhashed), ", ".join(unhashed[:3]))
    return path


def is_disk_full(exc):
    """ENOSPC/EDQUOT as an OSError, or the same inside torch's ("unexpected pos") or safetensors' error text."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return isinstance(exc, Exception) and (
        "StorageFull" in text or os.strerror(errno.ENOSPC) in text or "unexpected pos" in text
        or any(is_disk_full(inner) for inner in (exc.__cause__, exc.__context__) if inner is not None and inner is not exc))


def disk_full_message(output_dir, needed_bytes, free_bytes):
    from qa.run_dir import list_checkpoints

    previous = [p for _, p in list_checkpoints(output_dir)]
    where = ", ".join(previous) if previous else "(none saved yet)"
    have = "an unknown amount" if free_bytes is None else storage.human_size(free_bytes)
    return (f"not enough free disk in {output_dir}: need ~{storage.human_size(needed_bytes)}, have {have}; "
            f"free space or lower --save_total_limit; previous checkpoints are intact at {where}")


def check_free_disk(output_dir, needed_bytes):
    """Raise DiskFullError if the filesystem holding output_dir has less than needed_bytes free."""
    os.makedirs(output_dir, exist_ok=True)
    free = shutil.disk_usage(output_dir).free
    if free < needed_bytes:
        raise DiskFullError(disk_full_message(output_dir, needed_bytes, free))
    return free


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------
def _save_torch(obj, path):
    import torch

    torch.save(obj, path)


def _check_train_state(train_state):
    if not isinstance(train_state, dict):
        raise TypeError(f"train_state must be a dict, got {type(train_state).__name__}")
    step = train_state.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"train_state['global_step'] must be an integer >= 0, got {step!r}")
    if "checkpoint_info" in train_state:
        raise ValueError("train_state['checkpoint_info'] is reserved: it is written by save_checkpoint")
    for key, value in train_state.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"train_state[{key!r}] is not JSON-serialisable ({exc}); pass plain values") from exc


def _write_files(folder, model, tokenizer, optimizer, scheduler, scaler, train_state, rng_states, world_size):
    """Every file of a checkpoint but the marker (storage.atomic_folder writes that last)."""
    model.save_pretrained(folder)  # model.safetensors + config.json (safetensors is the default in transformers 5)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    sleep = os.environ.get(TEST_SLEEP_ENV)
    if sleep:
        time.sleep(float(sleep))
    _save_torch(optimizer.state_dict() if optimizer is not None else {}, os.path.join(folder, OPTIMIZER_FILE))
    _save_torch(scheduler.state_dict() if scheduler is not None else {}, os.path.join(folder, SCHEDULER_FILE))
    _save_torch(scaler.state_dict() if scaler is not None else {}, os.path.join(folder, SCALER_FILE))
    rng_files = []
    for rank, state in enumerate(rng_states):
        rng_files.append(rng_file(rank))
        _save_torch(state, os.path.join(folder, rng_files[-1]))
    info = {"format": FORMAT_VERSION, "world_size": world_size, "rng_files": rng_files,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump({**train_state, "checkpoint_info": info}, f, indent=2, sort_keys=True)


def _save_on_rank0(output_dir, model, tokenizer, optimizer, scheduler, scaler, train_state, rng_states, world_size):
    from qa.preflight import estimate_checkpoint_bytes

    os.makedirs(output_dir, exist_ok=True)
    needed = estimate_checkpoint_bytes(model, optimizer, output_dir)
    check_free_disk(output_dir, needed)
    final = checkpoint_path(output_dir, train_state["global_step"])
    placed = {}  # a read-only checkpoint-N of the same step (a mount) cannot be replaced: saved beside it
    try:
        with storage.atomic_folder(final, COMPLETE, extra={"global_step": train_state["global_step"]},
                                   placed=placed) as tmp:
            _write_files(tmp, model, tokenizer, optimizer, scheduler, scaler, train_state, rng_states, world_size)
    except BaseException as exc:
        if is_disk_full(exc):
            free = None
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(output_dir).free
            raise DiskFullError(f"disk full while writing {final} ({str(exc).splitlines()[0]}); "
                                + disk_full_message(output_dir, needed, free)) from exc
        raise
    return placed.get("path", final)


def save_checkpoint(output_dir, model, tokenizer, optimizer, scheduler, scaler, train_state, rank=0, world_size=1):
    """Write OUTPUT_DIR/checkpoint-{global_step} atomically and return its path (on every rank).

    model: the unwrapped model (a DDP wrapper is unwrapped here); tokenizer, optimizer, scheduler,
    scaler may be None. train_state: a JSON-serialisable dict with at least "global_step"; it is
    stored as trainer_state.json and returned by restore_training_state. With world_size > 1 every
    rank must call this (a collective: RNG states are gathered to rank 0, which writes the folder).
    Raises DiskFullError (every rank) when the disk is too full, leaving previous checkpoints intact."""
    _check_train_state(train_state)
    model = getattr(model, "module", model)
    distributed = world_size > 1
    rng = capture_rng_state("current" if distributed else "all")
    if not distributed:
        return _save_on_rank0(output_dir, model, tokenizer, optimizer, scheduler, scaler, train_state, [rng], 1)

    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"save_checkpoint(world_size={world_size}) needs torch.distributed to be initialised")
    gathered = [None] * world_size if rank == 0 else None
    dist.gather_object(rng, gathered, dst=0)
    outcome, error = [None], None
    if rank == 0:
        try:
            outcome[0] = ("ok", _save_on_rank0(output_dir, model, tokenizer, optimizer, scheduler, scaler,
                                               train_state, gathered, world_size))
        except DiskFullError as exc:
            outcome[0], error = ("disk", str(exc)), exc
        except Exception as exc:  # tell the other ranks, then re-raise here with the traceback
            outcome[0], error = ("error", f"rank 0 failed to save the checkpoint: {exc!r}"), exc
    dist.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if error is not None:
        raise error
    if kind == "disk":
        raise DiskFullError(value)
    if kind == "error":
        raise CheckpointError(value)
    return value



# ---------------------------------------------------------------------------------------------
# Restoring
# ---------------------------------------------------------------------------------------------
def _load_torch(path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is damaged, use another one") from None
    except Exception as exc:  # noqa: BLE001 (random bytes also give IndexError, KeyError, struct.error, ...)
        # PyTorch's own text advises weights_only=False, which would run whatever the file holds: not repeated.
        raise CheckpointError(
            f"{path}: refused or unreadable by torch.load(weights_only=True): damaged, or it holds something other "
            "than tensors and plain values. Do not trust it: use another checkpoint"
        ) from exc


def restore_training_state(path, optimizer, scheduler, scaler, rank=0, verified=False):
    """Load optimizer, scheduler, scaler and this rank's RNG states from checkpoint `path`; return
    its train_state dict. Any of optimizer/scheduler/scaler may be None (then it is skipped).

    The model weights are not loaded here: use from_pretrained(path) before building the optimizer.
    Tensors are loaded on the CPU; optimizer.load_state_dict moves them to the parameters' device."""
    if not verified:  # the caller hashed every file already (run_squad.py does, before loading the model)
        verify_checkpoint(path)
    state = load_train_state(path)
    if optimizer is not None:
        optimizer.load_state_dict(_load_torch(os.path.join(path, OPTIMIZER_FILE)))
    if scheduler is not None:
        scheduler.load_state_dict(_load_torch(os.path.join(path, SCHEDULER_FILE)))
    if scaler is not None:
        scaler_state = _load_torch(os.path.join(path, SCALER_FILE))
        if scaler_state or not scaler.is_enabled():
            scaler.load_state_dict(scaler_state)
        else:
            logger.warning("%s was saved without fp16 loss scaling: the grad scaler starts afresh", path)
    rng_path = os.path.join(path, rng_file(rank))
    if os.path.exists(rng_path):
        restore_rng_state(_load_torch(rng_path))
    else:
        saved = state.get("checkpoint_info", {}).get("world_size")
        logger.warning("%s: no RNG state for rank %d (saved with %s processes): random draws will differ "
                       "from an uninterrupted run", path, rank, saved)
    return state


