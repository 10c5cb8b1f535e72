"""Checkpoints that are complete or absent: atomic save, exact resume state, rotation, disk checks.

A checkpoint is a folder `OUTPUT_DIR/checkpoint-N/` that `AutoModelForQuestionAnswering` and
`AutoTokenizer` load as it is, plus everything needed to continue exactly where it stopped:

    config.json, model.safetensors       the weights (safetensors: loading runs no code)
    tokenizer.json, tokenizer_config.json ...
    optimizer.pt, scheduler.pt, scaler.pt  state dicts, loaded with torch.load(weights_only=True)
    rng_state_{rank}.pth                 python/numpy/torch/CUDA generator states, one per rank
    trainer_state.json                   the trainer's dict: global_step, epoch, step_in_epoch, seed, ...
    COMPLETE                             written last: the file names and sizes of the above

How it is made safe:
- Everything is written to `OUTPUT_DIR/.tmp-checkpoint-N-PID/`, fsynced, the COMPLETE marker is
  written last, and only then is the folder renamed to `checkpoint-N`. A kill at any moment leaves
  either the previous checkpoints alone or a `.tmp-*` folder that nothing reads (and that
  `rotate_checkpoints` removes once its process is dead). A folder without COMPLETE, or whose
  files do not match the sizes COMPLETE lists, is never used.
- The step is read from `trainer_state.json`, never parsed from the folder name.
- Free disk is checked before writing (an ALBERT-xlarge checkpoint with AdamW state is about
  0.7 GB: 59 M params x 4 bytes x 3); a full disk mid-write removes the temporary folder. Both
  raise `DiskFullError` with what to do, and the previous checkpoints are untouched.
- Loading never unpickles arbitrary objects: numpy and python RNG states are stored as plain
  ints/lists so that `torch.load(weights_only=True)` reads every file.

Several processes (torchrun): every rank calls `save_checkpoint` at the same step. The RNG states
are gathered to rank 0 with `torch.distributed.gather_object`; rank 0 alone writes the folder
(so the output dir need only be on rank 0's disk while saving) and broadcasts the outcome, so a
full disk raises the same error on every rank instead of leaving the others waiting. To resume,
every rank needs to read the checkpoint (shared filesystem, or a copy on each node) and calls
`restore_training_state(path, ..., rank=rank)`, which reads its own `rng_state_{rank}.pth`.

Usage (the trainer):

    path = save_checkpoint(args.output_dir, model, tokenizer, optimizer, scheduler, scaler,
                           {"global_step": step, "epoch": epoch, "step_in_epoch": k, "seed": args.seed,
                            "best_metric": best, "args": vars(args), "metrics": metrics},
                           rank=rank, world_size=world_size)
    if rank == 0:
        record_best(args.output_dir, path, "f1", metrics["f1"])
        rotate_checkpoints(args.output_dir, args.save_total_limit)
    ...
    ckpt = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)   # "auto", "best", a name, a path
    model = AutoModelForQuestionAnswering.from_pretrained(ckpt)
    state = restore_training_state(ckpt, optimizer, scheduler, scaler, rank=rank)
"""

import contextlib
import errno
import json
import logging
import math
import os
import random
import shutil
import time

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-" + CHECKPOINT_PREFIX      # .tmp-checkpoint-N-PID: being written
TRASH_PREFIX = ".trash-" + CHECKPOINT_PREFIX  # .trash-checkpoint-N-PID: being deleted
COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_checkpoint.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
FORMAT_VERSION = 1
# Tokenizer files, config.json, trainer_state.json and filesystem slack on top of the tensors.
SIZE_MARGIN_BYTES = 32 * 2**20
SIZE_MARGIN_FRACTION = 0.05
# Test hook: seconds to sleep right after the weights are written (to kill a save halfway).
TEST_SLEEP_ENV = "QA_CHECKPOINT_TEST_SLEEP_AFTER_MODEL"

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable; the message says which and what to do."""


class DiskFullError(CheckpointError):
    """Not enough free disk to write a checkpoint; previous checkpoints are intact."""


# ---------------------------------------------------------------------------------------------
# Reading what is on disk
# ---------------------------------------------------------------------------------------------
def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_complete(path):
    """True if `path` has a COMPLETE marker and every file it lists is there with its size."""
    marker = os.path.join(path, COMPLETE)
    try:
        files = _read_json(marker)["files"]
        return all(os.path.getsize(os.path.join(path, name)) == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def load_train_state(path):
    """The dict the trainer saved (plus "checkpoint_info"), from `path/trainer_state.json`."""
    state_path = os.path.join(path, STATE_FILE)
    try:
        state = _read_json(state_path)
    except FileNotFoundError:
        raise CheckpointError(f"{state_path}: missing; {path} is not a checkpoint written by this tool") from None
    except ValueError as exc:
        raise CheckpointError(f"{state_path}: not valid JSON ({exc}); use another checkpoint") from exc
    step = state.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{state_path}: global_step is {step!r}, expected an integer >= 0")
    return state


def list_checkpoints(output_dir):
    """[(global_step, path)] of the complete checkpoints in `output_dir`, oldest step first.

    The step comes from each folder's trainer_state.json, not from its name."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if not name.startswith(CHECKPOINT_PREFIX) or not os.path.isdir(path) or not is_complete(path):
            continue
        try:
            found.append((load_train_state(path)["global_step"], path))
        except CheckpointError as exc:
            logger.warning("ignoring %s: %s", path, exc)
    return sorted(found)


def latest_checkpoint(output_dir):
    """Path of the complete checkpoint with the highest global step, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def best_checkpoint(output_dir):
    """The content of output_dir/best_checkpoint.json ({"checkpoint", "step", "metric", "value", ...}) or None."""
    path = os.path.join(output_dir, BEST_FILE)
    try:
        return _read_json(path)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); delete it to start tracking the best again") from exc


def _complete_names(output_dir):
    names = [os.path.basename(p) for _, p in list_checkpoints(output_dir)]
    return ", ".join(names) if names else "none"


def resolve_checkpoint(spec, output_dir):
    """The path of a complete checkpoint named by `spec`, or CheckpointError saying what to use.

    spec: None, "auto" or "latest" -> the newest complete one in output_dir; "best" -> the one in
    best_checkpoint.json; "checkpoint-1500" -> output_dir/checkpoint-1500; anything else is a path."""
    if spec is None or str(spec) in ("auto", "latest"):
        path = latest_checkpoint(output_dir)
        if path is None:
            raise CheckpointError(
                f"no complete checkpoint in {output_dir}; train first (make train) or name one with CKPT=PATH"
            )
        return path
    spec = os.fspath(spec)
    if spec == "best":
        best = best_checkpoint(output_dir)
        if best is None:
            raise CheckpointError(
                f"no {BEST_FILE} in {output_dir}: no checkpoint was evaluated yet; "
                f"use latest or checkpoint-N instead (complete ones: {_complete_names(output_dir)})"
            )
        path = os.path.join(output_dir, best["checkpoint"])
    elif os.sep not in spec and (os.path.isdir(os.path.join(output_dir, spec)) or not os.path.exists(spec)):
        path = os.path.join(output_dir, spec)  # a bare name is looked up in output_dir first
    else:
        path = spec
    if not os.path.isdir(path):
        raise CheckpointError(
            f"{path}: no such checkpoint folder; complete ones in {output_dir}: {_complete_names(output_dir)}"
        )
    if not is_complete(path):
        reason = (
            "no COMPLETE marker" if not os.path.exists(os.path.join(path, COMPLETE))
            else "its files do not match the sizes in its COMPLETE marker"
        )
        raise CheckpointError(
            f"{path} is incomplete ({reason}): it was interrupted while saving or copied partly; "
            f"use checkpoint-N instead (complete ones: {_complete_names(output_dir)})"
        )
    load_train_state(path)  # a clear error now rather than in the middle of restoring
    return path


# ---------------------------------------------------------------------------------------------
# RNG states, in a form torch.load(weights_only=True) accepts
# ---------------------------------------------------------------------------------------------
def capture_rng_state(cuda_devices="all"):
    """Every generator's state: python `random`, numpy's global one, torch CPU, and CUDA.

    cuda_devices: "all" (single process) or "current" (one device per rank under torchrun: asking
    for all would create a CUDA context on every GPU from every rank)."""
    import numpy as np
    import torch

    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": [int(x) for x in internal], "gauss_next": gauss_next},
        "numpy": {
            "kind": str(kind), "keys": [int(x) for x in keys], "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
        "cuda_devices": cuda_devices,
    }
    if torch.cuda.is_available():
        if cuda_devices == "all":
            state["cuda"] = list(torch.cuda.get_rng_state_all())
        else:
            state["cuda"] = [torch.cuda.get_rng_state()]
    return state


def restore_rng_state(state):
    """Set every generator from a `capture_rng_state()` dict."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], np.array(npy["keys"], dtype=np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if not cuda:
        return
    if not torch.cuda.is_available():
        logger.warning("the checkpoint has CUDA generator states but CUDA is not available: not restored")
    elif state.get("cuda_devices") == "current":
        torch.cuda.set_rng_state(cuda[0])
    else:
        count = min(len(cuda), torch.cuda.device_count())
        if count != len(cuda) or count != torch.cuda.device_count():
            logger.warning("CUDA generator states saved for %d devices, %d visible now: restoring %d",
                           len(cuda), torch.cuda.device_count(), count)
        for device in range(count):
            torch.cuda.set_rng_state(cuda[device], device)


# ---------------------------------------------------------------------------------------------
# Disk space
# ---------------------------------------------------------------------------------------------
def _human(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _unique_tensor_bytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.dtype, tuple(t.shape), t.storage_offset())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def estimate_checkpoint_bytes(model, optimizer=None, output_dir=None):
    """Bytes a checkpoint will take: weights + optimizer state + margin, or more if the previous
    checkpoint in output_dir was bigger.

    Before the optimizer's first step its state is empty, so AdamW is assumed: two fp32 tensors
    per trainable parameter (about 0.47 GB for albert-xlarge's 59 M parameters)."""
    import torch

    weights = _unique_tensor_bytes(model.state_dict().values())
    state_tensors = []
    if optimizer is not None:
        for per_param in optimizer.state.values():
            state_tensors.extend(v for v in per_param.values() if torch.is_tensor(v))
    if state_tensors:
        optimizer_bytes = _unique_tensor_bytes(state_tensors)
    else:
        optimizer_bytes = 2 * 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    estimate = int((weights + optimizer_bytes) * (1 + SIZE_MARGIN_FRACTION)) + SIZE_MARGIN_BYTES
    previous = latest_checkpoint(output_dir) if output_dir else None
    if previous:
        estimate = max(estimate, _folder_bytes(previous))
    return estimate


def _disk_full_message(output_dir, needed_bytes, free_bytes):
    previous = [p for _, p in list_checkpoints(output_dir)]
    where = ", ".join(previous) if previous else "(none saved yet)"
    have = "an unknown amount" if free_bytes is None else f"{_human(free_bytes)}"
    return (
        f"not enough free disk in {output_dir}: need ~{_human(needed_bytes)}, have {have}; "
        f"free space or lower --save_total_limit; previous checkpoints are intact at {where}"
    )


def check_free_disk(output_dir, needed_bytes):
    """Raise DiskFullError if the filesystem holding output_dir has less than needed_bytes free."""
    os.makedirs(output_dir, exist_ok=True)
    free = shutil.disk_usage(output_dir).free
    if free < needed_bytes:
        raise DiskFullError(_disk_full_message(output_dir, needed_bytes, free))
    return free


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------
def _fsync_path(path, directory=False):
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - directories cannot be opened on some systems
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - e.g. fsync on a directory unsupported
        if exc.errno == errno.ENOSPC:
            raise
    finally:
        os.close(fd)


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


def _write_folder(tmp, model, tokenizer, optimizer, scheduler, scaler, train_state, rng_states, world_size):
    """Write every file of a checkpoint into `tmp`, the COMPLETE marker last."""
    os.makedirs(tmp)
    model.save_pretrained(tmp)  # model.safetensors + config.json (safetensors is the default in transformers 5)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    sleep = os.environ.get(TEST_SLEEP_ENV)
    if sleep:
        time.sleep(float(sleep))
    _save_torch(optimizer.state_dict() if optimizer is not None else {}, os.path.join(tmp, OPTIMIZER_FILE))
    _save_torch(scheduler.state_dict() if scheduler is not None else {}, os.path.join(tmp, SCHEDULER_FILE))
    _save_torch(scaler.state_dict() if scaler is not None else {}, os.path.join(tmp, SCALER_FILE))
    rng_files = []
    for rank, state in enumerate(rng_states):
        rng_files.append(f"rng_state_{rank}.pth")
        _save_torch(state, os.path.join(tmp, rng_files[-1]))
    info = {"format": FORMAT_VERSION, "world_size": world_size, "rng_files": rng_files,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump({**train_state, "checkpoint_info": info}, f, indent=2, sort_keys=True)
    files = {}
    for root, _, names in os.walk(tmp):
        for name in names:
            full = os.path.join(root, name)
            _fsync_path(full)
            files[os.path.relpath(full, tmp)] = os.path.getsize(full)
    with open(os.path.join(tmp, COMPLETE), "w", encoding="utf-8") as f:
        json.dump({"global_step": train_state["global_step"], "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    _fsync_path(tmp, directory=True)


def _remove_tree(path):
    """Rename out of sight first, then delete: a half-deleted folder never looks like a checkpoint."""
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f"{TRASH_PREFIX}{name[len(CHECKPOINT_PREFIX):]}-{os.getpid()}")
    if name.startswith(CHECKPOINT_PREFIX):
        os.replace(path, trash)
        path = trash
    shutil.rmtree(path, ignore_errors=True)


def _is_disk_full(exc):
    """ENOSPC/EDQUOT as an OSError (torch.save, json) or inside safetensors' Rust error text."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return isinstance(exc, Exception) and ("StorageFull" in text or os.strerror(errno.ENOSPC) in text)


def _save_on_rank0(output_dir, model, tokenizer, optimizer, scheduler, scaler, train_state, rng_states, world_size):
    step = train_state["global_step"]
    os.makedirs(output_dir, exist_ok=True)
    check_free_disk(output_dir, estimate_checkpoint_bytes(model, optimizer, output_dir))
    final = os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")
    tmp = os.path.join(output_dir, f"{TMP_PREFIX}{step}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_folder(tmp, model, tokenizer, optimizer, scheduler, scaler, train_state, rng_states, world_size)
        if os.path.exists(final):  # same step saved twice (e.g. SIGTERM right after --save_steps)
            _remove_tree(final)
        os.replace(tmp, final)
        _fsync_path(output_dir, directory=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_disk_full(exc):
            free = None
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(output_dir).free
            needed = estimate_checkpoint_bytes(model, optimizer, output_dir)
            raise DiskFullError(
                f"disk full while writing {final} ({exc}); " + _disk_full_message(output_dir, needed, free)
            ) from exc
        raise
    return final


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
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is damaged, use another one") from None
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{path}: refused or unreadable with torch.load(weights_only=True) ({str(exc).splitlines()[0]}); "
            "it holds something other than tensors and plain values. Do not trust it: use another checkpoint"
        ) from exc


def restore_training_state(path, optimizer, scheduler, scaler, rank=0):
    """Load optimizer, scheduler, scaler and this rank's RNG states from checkpoint `path`; return
    its train_state dict. Any of optimizer/scheduler/scaler may be None (then it is skipped).

    The model weights are not loaded here: use from_pretrained(path) before building the optimizer.
    Tensors are loaded on the CPU; optimizer.load_state_dict moves them to the parameters' device."""
    if not is_complete(path):
        raise CheckpointError(f"{path} is incomplete (no COMPLETE marker or files missing): use another checkpoint")
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
    rng_path = os.path.join(path, f"rng_state_{rank}.pth")
    if os.path.exists(rng_path):
        restore_rng_state(_load_torch(rng_path))
    else:
        saved = state.get("checkpoint_info", {}).get("world_size")
        logger.warning("%s: no RNG state for rank %d (saved with %s processes): random draws will differ "
                       "from an uninterrupted run", path, rank, saved)
    return state


# ---------------------------------------------------------------------------------------------
# Best checkpoint and rotation
# ---------------------------------------------------------------------------------------------
def record_best(output_dir, checkpoint_path, metric_name, value, greater_is_better=True):
    """Record checkpoint_path in output_dir/best_checkpoint.json if `value` beats the recorded best.

    Returns True if it is the new best. NaN is never the best. A best recorded for another metric
    is replaced (comparing f1 with exact would be meaningless) with a warning."""
    from qa.storage import atomic_write

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
    with atomic_write(os.path.join(output_dir, BEST_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return True


# What a training run leaves in its output folder that a later run would read back as its own: resume
# (newest checkpoint), rotation (oldest/best), evaluation (best), status/report (metrics), wandb (run id).
RUN_STATE_FILES = (BEST_FILE, "training_summary.json", "metrics.jsonl", "wandb_run_id.txt")
RUN_STATE_DIRS = ("runs",)


def clear_previous_run(output_dir):
    """Remove what an earlier run left in `output_dir` that a fresh run would mistake for its own.

    For a fresh training with --overwrite_output_dir: the earlier run's checkpoint-* folders (else
    resume picks its newest one and rotation keeps it while deleting the new run's), the best
    record (else the new run is compared with the old best), training_summary.json, metrics.jsonl,
    tensorboard's runs/ and the wandb run id. Predictions, eval results and the final model are
    overwritten as the new run writes them. Returns the removed paths."""
    if not os.path.isdir(output_dir):
        return []
    removed = []
    stale = set(_stale_folders(output_dir))  # half-written or half-deleted by a dead process; a live one's stay
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        is_checkpoint = os.path.isdir(path) and (name.startswith(CHECKPOINT_PREFIX) or path in stale)
        if is_checkpoint or (name in RUN_STATE_DIRS and os.path.isdir(path)):
            _remove_tree(path)
        elif name in RUN_STATE_FILES and os.path.isfile(path):
            os.remove(path)
        else:
            continue
        removed.append(path)
    return removed


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _stale_folders(output_dir):
    """Temporary/trash folders whose writing process is gone (killed mid-save or mid-delete)."""
    stale = []
    for name in os.listdir(output_dir):
        if not (name.startswith(TMP_PREFIX) or name.startswith(TRASH_PREFIX)):
            continue
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            stale.append(os.path.join(output_dir, name))
    return stale


def rotate_checkpoints(output_dir, save_total_limit):
    """Delete the oldest complete checkpoints so at most `save_total_limit` remain, never the best.

    The best counts towards the limit: with a limit of 3 you keep the best and the 2 newest. The
    newest is always kept too (it is what a resume continues from), so a limit of 1 keeps 2 folders
    when the best is older. None or <= 0 keeps everything. Also removes `.tmp-checkpoint-*` and
    `.trash-checkpoint-*` folders left by dead processes. Returns the deleted paths."""
    if not os.path.isdir(output_dir):
        return []
    deleted = []
    for path in _stale_folders(output_dir):
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
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
            _remove_tree(path)
            deleted.append(path)
    return deleted
