"""Checks before a long run: will the checkpoints fit on disk, the features in RAM, is there a GPU?

    from qa.preflight import preflight, features_bytes
    warnings = preflight(args.output_dir, model_num_params=model.num_parameters(),
                         save_total_limit=args.save_total_limit,
                         expected_features_bytes=features_bytes(num_features, args.max_seq_length),
                         need_cuda=args.fp16 and not args.no_cuda, log=logger.warning,
                         model_name=args.model_name_or_path)

Problems that only make the run risky come back as warnings with the numbers in them (and are
passed to `log`); only what cannot work raises PreflightError (its message passed to `log` first):
CUDA asked for and absent, or not even one checkpoint fits on the disk. The sizes are estimates, on purpose on the safe side:

- a checkpoint holds the fp32 weights (4 bytes per parameter) and AdamW's two moments (8 bytes
  per parameter), so about 12 bytes per parameter: ~0.7 GB for albert-xlarge-v2 (59M parameters,
  shared across layers), ~4.1 GB for bert-large (335M);
- rotation writes the new checkpoint before deleting the oldest and never deletes the best, so
  save_total_limit + 1 checkpoints can be on disk at once (3 with a limit of 1: the newest and an
  older best are both kept), plus the final model's weights;
- the training features are the arrays of qa/features.py (14 bytes per token: int32 ids, int8
  token types, two int32 offsets, a bool max-context flag; 20 bytes per window of int32 scalars),
  memory-mapped from the cache: when they do not fit in RAM, batches are read from disk (slower,
  not fatal), so this is a warning only.
"""

import contextlib
import logging
import os
import shutil

BYTES_PER_PARAM_WEIGHTS = 4  # fp32 weights, also under --fp16/--bf16 (autocast keeps fp32 masters)
BYTES_PER_PARAM_ADAM = 8  # AdamW exp_avg + exp_avg_sq, fp32, per trainable parameter


class PreflightError(RuntimeError):
    """The run cannot work as configured; the message says what to change."""


def checkpoint_bytes(num_params, num_trainable=None, optimizer_bytes=None):
    """Size of one checkpoint-N/ folder: fp32 weights + the optimizer's state (AdamW's two fp32 moments per
    trainable parameter unless `optimizer_bytes` is known). The small files (tokenizer, config, RNG states:
    ~3 MB for albert) are left out; once a checkpoint exists, estimate_checkpoint_bytes uses its real size.

    The one estimate of a checkpoint's size: the preflight and the free-disk check before each save use it."""
    num_trainable = num_params if num_trainable is None else num_trainable
    if optimizer_bytes is None:
        optimizer_bytes = num_trainable * BYTES_PER_PARAM_ADAM
    return num_params * BYTES_PER_PARAM_WEIGHTS + optimizer_bytes


def _folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _tensor_bytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.dtype, tuple(t.shape), t.storage_offset())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def estimate_checkpoint_bytes(model, optimizer=None, output_dir=None):
    """checkpoint_bytes() of `model` (with the optimizer's real state once it has some; AdamW's before its
    first step), or the size of the newest checkpoint in output_dir when that is bigger."""
    import torch

    from qa.run_dir import latest_checkpoint

    state = [v for per_param in (optimizer.state.values() if optimizer is not None else ())
             for v in per_param.values() if torch.is_tensor(v)]
    estimate = checkpoint_bytes(sum(p.numel() for p in model.parameters()),
                                sum(p.numel() for p in model.parameters() if p.requires_grad),
                                _tensor_bytes(state) if state else None)
    previous = latest_checkpoint(output_dir) if output_dir else None
    return max(estimate, _folder_bytes(previous)) if previous else estimate


def features_bytes(num_features, max_seq_length, training=True):
    """Bytes of `num_features` cached feature windows of `max_seq_length` tokens (the arrays of qa.features)."""
    import numpy as np

    from qa.features import ARRAY_SPECS, LABEL_ARRAYS

    per_feature = 0
    for name, (dtype, shape_of) in ARRAY_SPECS.items():
        if training or name not in LABEL_ARRAYS:
            per_feature += np.dtype(dtype).itemsize * int(np.prod(shape_of(max_seq_length), dtype=np.int64))
    return num_features * per_feature


def _gb(n):
    """Decimal units, GB from 0.1 GB up (the sizes these checks are about), smaller ones in MB/kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale / 10:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


# The machine's numbers, one function each so tests can replace them.
def disk_free_bytes(path):
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return shutil.disk_usage(path).free


def ram_available_bytes():
    import psutil

    return psutil.virtual_memory().available


def cuda_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def preflight(output_dir, model_num_params=None, save_total_limit=None, expected_features_bytes=0,
              need_cuda=False, log=None, *, model_bytes=None, model_name="the model"):
    """Return a list of warning strings (also passed to `log`); raise PreflightError when the run cannot work.

    output_dir: where checkpoints go (need not exist yet).
    model_num_params or model_bytes: the model's size; model_bytes is the size of its fp32 weights
        (e.g. model.safetensors), used when the parameter count is not known.
    save_total_limit: checkpoints kept (None or <= 0: no limit, the legacy default).
    expected_features_bytes: memory the training features will take (see features_bytes()).
    need_cuda: the run asked for a GPU (e.g. --fp16 without --no_cuda).
    log: a callable such as logger.warning, or a logging.Logger; None: not logged.
    """
    if model_num_params is None and model_bytes is None:
        raise ValueError("preflight needs model_num_params or model_bytes")
    if model_num_params is None:
        model_num_params = model_bytes // BYTES_PER_PARAM_WEIGHTS
    if log is None:
        emit = lambda message: None  # noqa: E731
    elif isinstance(log, logging.Logger):
        emit = log.warning
    else:
        emit = log
    warnings = []

    def warn(message):
        warnings.append(message)
        emit(message)

    def fail(message):
        # Logged too: a detached run's train.log then says why it stopped (make logs).
        emit(message)
        raise PreflightError(message)

    # CUDA: nothing else matters if the run cannot start.
    if need_cuda and not cuda_available():
        fail(
            "CUDA was asked for (--fp16/--bf16 or a GPU run) but torch.cuda.is_available() is False: "
            "check nvidia-smi and that the CUDA build of torch is installed, or pass --no_cuda to run on CPU"
        )

    # Disk: checkpoints, then the final model.
    per_checkpoint = checkpoint_bytes(model_num_params)
    final_model = model_num_params * BYTES_PER_PARAM_WEIGHTS
    free = disk_free_bytes(output_dir)
    what = f"~{_gb(per_checkpoint)} ({model_name}, {model_num_params / 1e6:.3g}M parameters + Adam state)"
    if free < per_checkpoint:
        fail(
            f"free disk {_gb(free)} at {output_dir} < one checkpoint of {what}: "
            "free space or choose another --output_dir"
        )
    if save_total_limit is not None and save_total_limit > 0:
        # The new one is written before the oldest is removed; a limit of 1 still keeps the newest
        # and the best (qa.checkpoints.rotate_checkpoints).
        kept = max(save_total_limit, 2)
        on_disk = kept + 1
        needed = on_disk * per_checkpoint + final_model
        if free < needed:
            why = f"--save_total_limit {save_total_limit}" + (" keeps the newest and the best" if save_total_limit == 1 else "")
            warn(
                f"free disk {_gb(free)} < ~{_gb(needed)} needed for {on_disk} checkpoints of {what} "
                f"({why} + the one being written) and the final model; "
                "lower --save_total_limit or free space"
            )
    else:
        fits = int((free - final_model) // per_checkpoint)
        warn(
            f"no --save_total_limit: every checkpoint is kept, {what} each; free disk {_gb(free)} holds "
            f"about {fits}; set --save_total_limit (e.g. 3) so old ones are rotated out"
        )

    # RAM: the features are memory-mapped; training reads a random batch of them at every step.
    if expected_features_bytes:
        available = ram_available_bytes()
        if available < expected_features_bytes:
            warn(
                f"available RAM {_gb(available)} < {_gb(expected_features_bytes)} of training features: "
                "they are memory-mapped from the feature cache, so batches will be read from disk "
                "instead of memory (slower); a machine with more RAM, a smaller --max_seq_length or a "
                "subset of the data (--max_train_samples) avoids it"
            )
    return warnings
