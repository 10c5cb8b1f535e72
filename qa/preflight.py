"""Checks before a long run: will the checkpoints fit on disk, the features in RAM, is there a GPU?

    from qa.preflight import preflight, features_bytes, planned_checkpoints
    warnings = preflight(args.output_dir, model_num_params=model.num_parameters(),
                         save_total_limit=args.save_total_limit,
                         expected_features_bytes=features_bytes(num_features, args.max_seq_length),
                         need_cuda=args.fp16 and not args.no_cuda, log=logger.warning,
                         model_name=args.model_name_or_path,
                         checkpoints_planned=planned_checkpoints(total_steps, args.save_steps, args.logging_steps,
                                                                 args.evaluate_during_training))
    planned_checkpoints(1000, save_steps=0)                   # 0: --save_steps 0 writes none
    planned_checkpoints(1000, 300, 100, True)                 # 10: steps 100, 200, ..., 1000 may each be a new best

Problems that only make the run risky come back as warnings with the numbers in them (and are
passed to `log`); only what cannot work raises PreflightError (its message passed to `log` first):
CUDA asked for and absent, or not even one checkpoint fits on the disk (not even the final model, when the
run writes no checkpoint). The sizes are estimates, on purpose on the safe side:

- a checkpoint holds the fp32 weights (4 bytes per parameter) and AdamW's two moments (8 bytes
  per parameter), so about 12 bytes per parameter: ~0.7 GB for albert-xlarge-v2 (59M parameters,
  shared across layers), ~4.1 GB for bert-large (335M);
- rotation writes the new checkpoint before deleting the oldest and never deletes the best, so
  save_total_limit + 1 checkpoints can be on disk at once (3 with a limit of 1: the newest and an
  older best are both kept), plus the final model's weights; never more than the run writes
  (planned_checkpoints: none with --save_steps 0 and no evaluation during training);
- the training features are the arrays of qa/features.py (14 bytes per token: int32 ids, int8
  token types, two int32 offsets, a bool max-context flag; 20 bytes per window of int32 scalars),
  memory-mapped from the cache: when they do not fit in RAM, batches are read from disk (slower,
  not fatal), so this is a warning only.
"""

import logging
import math
import os
import shutil

from qa import storage

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
    return max(estimate, storage.folder_bytes(previous)) if previous else estimate


def features_bytes(num_features, max_seq_length, training=True):
    """Bytes of `num_features` cached feature windows of `max_seq_length` tokens (the arrays of qa.features)."""
    import numpy as np

    from qa.features import ARRAY_SPECS, LABEL_ARRAYS

    per_feature = 0
    for name, (dtype, shape_of) in ARRAY_SPECS.items():
        if training or name not in LABEL_ARRAYS:
            per_feature += np.dtype(dtype).itemsize * int(np.prod(shape_of(max_seq_length), dtype=np.int64))
    return num_features * per_feature


def _multiples(interval, first_step, last_step):
    """Steps first_step + 1 .. last_step that are multiples of `interval` (0: none, as qa.trainer.every)."""
    return last_step // interval - first_step // interval if interval > 0 else 0


def planned_checkpoints(total_steps, save_steps, logging_steps=0, evaluate_during_training=False, first_step=0):
    """The most checkpoints a run of steps first_step + 1 .. total_steps writes, by qa.trainer.train's rule.

    - one at every step that is a multiple of save_steps (--save_steps 0: none; the last step of the run is
      not saved unless it is one: the final model is written instead);
    - with --evaluate_during_training, one at each evaluation that sets a new best (so the best is on disk);
      evaluations run at the multiples of logging_steps and of save_steps, and any of them can be a new
      best, so every one of them is counted: an upper bound, as the preflight's sizes are. An early stop
      happens at an evaluation step, so its checkpoint is among those.
    Not counted: the one a SIGTERM/SIGINT saves (one per interruption, not planned; its save checks the
    disk itself). first_step: where a resumed run starts (its earlier checkpoints are on disk already)."""
    if total_steps <= first_step:
        return 0
    saves = _multiples(save_steps, first_step, total_steps)
    if not evaluate_during_training or logging_steps <= 0:
        return saves
    both = math.lcm(save_steps, logging_steps) if save_steps > 0 else 0
    return saves + _multiples(logging_steps, first_step, total_steps) - _multiples(both, first_step, total_steps)


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


def warn_if_rotation_does_not_fit(warn, free, per_checkpoint, final_model, what, save_total_limit, checkpoints_planned):
    """With --save_total_limit: the checkpoints on disk at once (never more than the run writes) + the final model."""
    # The new one is written before the oldest is removed; a limit of 1 still keeps the newest
    # and the best (qa.checkpoints.rotate_checkpoints).
    on_disk = max(save_total_limit, 2) + 1
    why = f"--save_total_limit {save_total_limit}" + (" keeps the newest and the best" if save_total_limit == 1 else "")
    why += " + the one being written"
    if checkpoints_planned is not None and checkpoints_planned < on_disk:
        on_disk, why = checkpoints_planned, f"all the run writes, within --save_total_limit {save_total_limit}"
    needed = on_disk * per_checkpoint + final_model
    if free < needed:
        warn(
            f"free disk {_gb(free)} < ~{_gb(needed)} needed for {on_disk} checkpoint{'s' if on_disk > 1 else ''} of "
            f"{what} ({why}) and the final model; lower --save_total_limit or free space"
        )


def preflight(output_dir, model_num_params=None, save_total_limit=None, expected_features_bytes=0,
              need_cuda=False, log=None, *, model_bytes=None, model_name="the model", checkpoints_planned=None):
    """Return a list of warning strings (also passed to `log`); raise PreflightError when the run cannot work.

    output_dir: where checkpoints go (need not exist yet).
    model_num_params or model_bytes: the model's size; model_bytes is the size of its fp32 weights
        (e.g. model.safetensors), used when the parameter count is not known.
    save_total_limit: checkpoints kept (None or <= 0: no limit, the legacy default).
    expected_features_bytes: memory the training features will take (see features_bytes()).
    need_cuda: the run asked for a GPU (e.g. --fp16 without --no_cuda).
    log: a callable such as logger.warning, or a logging.Logger; None: not logged.
    checkpoints_planned: how many checkpoints the run will write (planned_checkpoints()); None: not known,
        then as many as --save_total_limit allows (no limit: a warning that every one is kept). 0 (e.g.
        --save_steps 0): only the final model's weights must fit.
    """
    if model_num_params is None and model_bytes is None:
        raise ValueError("preflight needs model_num_params or model_bytes")
    if model_num_params is None:
        model_num_params = model_bytes // BYTES_PER_PARAM_WEIGHTS
    emit = _emitter(log)
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
            "check nvidia-smi and that the CUDA build of torch is installed, or "
            + ("run on the CPU with NGPUS=0" if os.environ.get("QA_VIA_MAKE") == "1" else "pass --no_cuda to run on CPU")
        )
    _check_disk(warn, fail, output_dir, model_num_params, model_name, save_total_limit, checkpoints_planned)
    _check_ram(warn, expected_features_bytes)
    return warnings


def _emitter(log):
    """`log` (None, a logging.Logger or a callable) as a callable taking one message."""
    if log is None:
        return lambda message: None
    if isinstance(log, logging.Logger):
        return log.warning
    return log


def _check_disk(warn, fail, output_dir, model_num_params, model_name, save_total_limit, checkpoints_planned):
    """Disk: checkpoints, then the final model (preflight's parameters)."""
    if checkpoints_planned is not None and checkpoints_planned < 0:
        raise ValueError(f"checkpoints_planned must be 0 or more, got {checkpoints_planned}")
    per_checkpoint = checkpoint_bytes(model_num_params)
    final_model = model_num_params * BYTES_PER_PARAM_WEIGHTS
    free = disk_free_bytes(output_dir)
    what = f"~{_gb(per_checkpoint)} ({model_name}, {model_num_params / 1e6:.3g}M parameters + Adam state)"
    if checkpoints_planned == 0:
        # No checkpoint is planned (--save_steps 0, no evaluation during training): the run only needs room
        # for its result, the fp32 weights (a third of a checkpoint).
        if free < final_model:
            fail(
                f"free disk {_gb(free)} at {output_dir} < the final model's ~{_gb(final_model)} ({model_name}, "
                f"{model_num_params / 1e6:.3g}M parameters): free space or choose another --output_dir"
            )
        return
    if free < per_checkpoint:
        fail(
            f"free disk {_gb(free)} at {output_dir} < one checkpoint of {what}: "
            "free space or choose another --output_dir"
        )
    if save_total_limit is not None and save_total_limit > 0:
        warn_if_rotation_does_not_fit(warn, free, per_checkpoint, final_model, what, save_total_limit,
                                      checkpoints_planned)
    else:
        warn_if_all_kept_do_not_fit(warn, free, per_checkpoint, final_model, what, checkpoints_planned)


def warn_if_all_kept_do_not_fit(warn, free, per_checkpoint, final_model, what, checkpoints_planned):
    """No --save_total_limit: every checkpoint stays on disk; warn when they may not all fit (or may not be
    known to)."""
    fits = int((free - final_model) // per_checkpoint)
    if checkpoints_planned is None:
        warn(
            f"no --save_total_limit: every checkpoint is kept, {what} each; free disk {_gb(free)} holds "
            f"about {fits}; set --save_total_limit (e.g. 3) so old ones are rotated out"
        )
    elif fits < checkpoints_planned:
        needed = checkpoints_planned * per_checkpoint + final_model
        warn(
            f"no --save_total_limit: all {checkpoints_planned} checkpoints this run writes are kept, "
            f"{what} each: ~{_gb(needed)} with the final model, but free disk {_gb(free)} holds about "
            f"{fits}; set --save_total_limit (e.g. 3) so old ones are rotated out, or free space"
        )


def _check_ram(warn, expected_features_bytes):
    """RAM: the features are memory-mapped; training reads a random batch of them at every step."""
    if expected_features_bytes:
        available = ram_available_bytes()
        if available < expected_features_bytes:
            warn(
                f"available RAM {_gb(available)} < {_gb(expected_features_bytes)} of training features: "
                "they are memory-mapped from the feature cache, so batches will be read from disk "
                "instead of memory (slower); a machine with more RAM, a smaller --max_seq_length or a "
                "subset of the data (--max_train_samples) avoids it"
            )


# Models whose position table starts after the padding index (fairseq's convention): max_position_embeddings
# 514 with pad_token_id 1 leaves 512 usable positions.
PADDED_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl", "data2vec-text")


def model_config(source, cache_dir=None):
    """The config.json of a model folder, or of a hub id already in the local cache, as a dict; None when
    there is none to read here (nothing is downloaded: validation runs before anything else)."""
    if not source:
        return None
    path = os.path.join(source, "config.json")
    if not os.path.isdir(source):
        try:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(source, "config.json", cache_dir=cache_dir or None)
        except Exception:  # not a repo id either (a typo is reported by the model checks)
            return None
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    import json

    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None  # a damaged config is named by the model checks
    return config if isinstance(config, dict) else None


def usable_positions(config):
    """How many tokens one window may have with this model config (None: the config does not say)."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    if config.get("model_type") in PADDED_POSITION_MODELS and isinstance(config.get("pad_token_id"), int):
        positions -= config["pad_token_id"] + 1
    return positions


def position_problem(source, max_seq_length, cache_dir=None, flag="--max_seq_length"):
    """A one-line error when windows of max_seq_length tokens are longer than the model's position table (the
    run would build its features, then fail at its first step with an index error), else ''."""
    config = model_config(source, cache_dir)
    positions = usable_positions(config) if config else None
    if positions is None or max_seq_length <= positions:
        return ""
    return (f"{setting(flag, max_seq_length)} is longer than the {positions} positions of the model ({source}: "
            f"max_position_embeddings {config['max_position_embeddings']}): use {setting(flag, positions)} or less")


def setting(flag, value):
    """How a setting is written: `--max_seq_length 512` for a flag, `MAX_SEQ_LENGTH=512` for a make variable."""
    return f"{flag} {value}" if flag.startswith("-") else f"{flag}={value}"
