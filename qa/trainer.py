"""The training loop, distributed evaluation, and the few helpers they need.

    runtime = init_runtime(no_cuda=False, fp16=True, bf16=False)       # torchrun env or one process
    result = train(args, model, tokenizer, train_features, runtime, log, eval_set=(examples, features))
    metrics = evaluate(model, examples, features, args, runtime, log, step=result.global_step, output_dir=args.output_dir)

One loop, nanoGPT style: its phases (forward, backward with gradient accumulation, clip, step,
schedule, log, evaluate, save) are marked by short comments. Data order is a seeded permutation
per epoch (`torch.Generator().manual_seed(seed + epoch)`) sharded by rank like DistributedSampler,
so (epoch, micro-batches consumed in it) fully determines what comes next: resuming skips the
consumed micro-batches without running them and ends with the same weights as an uninterrupted run.

Checkpoints are only written at optimizer-step boundaries, where no gradient is pending.
SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next optimizer step and returns
`stopped_by_signal`; run_squad.py then exits with 128 + the signal number (143 for SIGTERM,
130 for Ctrl-C), the shell convention for "stopped by a signal", so a job scheduler sees that
the run did not finish. A second signal does not interrupt that save (torchrun follows a Ctrl-C
with SIGTERM); only SIGKILL does, and then the previous checkpoint is still complete.

Test hook: QA_TEST_KILL_AT_MICRO_STEP=N makes the process SIGKILL itself after its N-th micro-batch
(tests/test_resume.py kills a run mid-epoch and mid-accumulation that way).
"""

import contextlib
import dataclasses
import datetime
import inspect
import math
import os
import signal

import numpy as np
import torch
import torch.distributed as dist

from qa import checkpoints

# Logits of padding positions: far below any real score, and still finite in float16.
PAD_LOGIT = -10000.0
# Test hook: the process SIGKILLs itself after this many micro-batches (a real, uncatchable kill).
KILL_ENV = "QA_TEST_KILL_AT_MICRO_STEP"


@dataclasses.dataclass
class Runtime:
    """Where and how this process computes: device, rank, precision."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype = None  # None: float32, no autocast

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)


@dataclasses.dataclass
class TrainResult:
    global_step: int
    stopped_by_signal: int = 0  # the signal number, or 0
    early_stopped: bool = False
    best_value: float = None
    last_checkpoint: str = None


def init_runtime(no_cuda=False, fp16=False, bf16=False, local_rank=-1):
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), join the process group, pick the device.

    Backend nccl on CUDA, gloo on CPU. One process without torchrun needs nothing set."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank if local_rank >= 0 else 0))
    use_cuda = torch.cuda.is_available() and not no_cuda
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        # Rank 0 builds the feature cache while the others wait at a barrier: about 20 minutes for
        # the guide's NQ subset, so the collective timeout (10 minutes by default on NCCL) is raised.
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None,
                                timeout=datetime.timedelta(hours=2))
    amp_dtype = torch.float16 if fp16 else torch.bfloat16 if bf16 else None
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank, amp_dtype=amp_dtype)


def barrier(runtime):
    if runtime.distributed:
        dist.barrier()


def set_seed(seed):
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


# ---------------------------------------------------------------------------------------------
# Data order
# ---------------------------------------------------------------------------------------------
def epoch_order(num_items, epoch, seed, rank=0, world_size=1):
    """This rank's feature indices for `epoch`: a seeded permutation, padded and sharded like DistributedSampler."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + epoch)).numpy()
    per_rank = math.ceil(num_items / world_size)
    padded = np.concatenate([order, order[: per_rank * world_size - num_items]])
    return padded[rank::world_size]


def micro_batches(indices, batch_size):
    """Consecutive chunks of `indices` (the last one may be shorter)."""
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def steps_per_epoch(num_items, batch_size, grad_accum, world_size=1):
    """Optimizer steps in one epoch; a short last group of micro-batches still makes a step."""
    micro = math.ceil(math.ceil(num_items / world_size) / batch_size)
    return math.ceil(micro / grad_accum)


def total_steps(num_items, args, world_size=1):
    """Optimizer steps of the whole run: --max_steps if given, else epochs x steps per epoch."""
    if args.max_steps > 0:
        return args.max_steps
    per_epoch = steps_per_epoch(num_items, args.per_gpu_train_batch_size, args.gradient_accumulation_steps, world_size)
    return max(1, math.ceil(per_epoch * args.num_train_epochs))


def every(step, interval):
    """True at every `interval`-th step; an interval of 0 means never (legacy --logging_steps/--save_steps 0)."""
    return interval > 0 and step % interval == 0


def model_inputs(model, batch, device, lang_id=0):
    """Numpy batch -> tensors on `device`, only the inputs model.forward accepts (DistilBERT has no token_type_ids)."""
    accepted = inspect.signature(model.forward).parameters
    tensors = {k: torch.as_tensor(v, dtype=torch.long).to(device, non_blocking=True) for k, v in batch.items() if k in accepted}
    if "langs" in accepted and getattr(model.config, "model_type", "") == "xlm":
        tensors["langs"] = torch.full_like(tensors["input_ids"], lang_id)
    return tensors


# ---------------------------------------------------------------------------------------------
# Optimizer, schedule, RNG
# ---------------------------------------------------------------------------------------------
def param_groups(model, weight_decay):
    """Legacy grouping: no weight decay on biases and LayerNorm weights.

    LayerNorm is recognised by module type, so ALBERT's `full_layer_layer_norm` is included too
    (legacy matched the name "LayerNorm.weight" only, and decayed it)."""
    no_decay = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name == "bias" or isinstance(module, torch.nn.LayerNorm):
                no_decay.add(full)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if n not in no_decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n in no_decay], "weight_decay": 0.0},
    ]


def make_optimizer(model, args, t_total):
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.learning_rate, eps=args.adam_epsilon)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=t_total)
    return optimizer, scheduler


class StopRequest:
    """SIGTERM/SIGINT handler: only sets a flag; the loop acts on it at the next optimizer step."""

    def __init__(self, announce=True):
        self.signum = 0
        self.previous = {}
        self.announce = announce  # rank 0 says once that the signal was seen (an evaluation may run first)

    def install(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum, frame):
        if self.announce and not self.signum:
            # os.write, not print: a handler may run in the middle of another write to stderr.
            os.write(2, f"\n{signal.Signals(signum).name} received: saving a checkpoint at the end of this optimizer "
                        "step (and of an evaluation in progress), then stopping. Further signals do not interrupt the "
                        "save; SIGKILL stops at once and loses the steps since the last checkpoint\n".encode())
        self.signum = signum

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def agreed(self, runtime):
        """The signal seen by any rank (all ranks must stop at the same step)."""
        if not runtime.distributed:
            return self.signum
        flag = torch.tensor([self.signum], device=runtime.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


def mean_across_ranks(value, runtime):
    if runtime.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / runtime.world_size
    return float(value)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def train(args, model, tokenizer, train_features, runtime, log, eval_set=None, resume_from=None):
    """Train `model` on `train_features`; checkpoints, evaluation, early stopping and signals included.

    `args` carries the hyperparameters (see qa/args.py); `eval_set` is (examples, features) for
    --evaluate_during_training; `resume_from` a complete checkpoint folder to continue from."""
    from qa.runlog import progress

    if len(train_features) == 0:
        raise ValueError(f"{args.train_file}: no training windows (no questions, or --max_train_samples 0): nothing to train on")
    raw_model = model
    if runtime.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None
        )
    batch_size, grad_accum = args.per_gpu_train_batch_size, args.gradient_accumulation_steps
    t_total = total_steps(len(train_features), args, runtime.world_size)
    optimizer, scheduler = make_optimizer(raw_model, args, t_total)
    # fp16 needs loss scaling; bf16 and fp32 do not (the scaler is then a pass-through).
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    state = {"global_step": 0, "epoch": 0, "step_in_epoch": 0, "best_value": None, "evals_since_best": 0}
    if resume_from:
        # optimizer, scheduler (so no learning rate is set by hand), scaler, and this rank's RNG states
        saved = checkpoints.restore_training_state(resume_from, optimizer, scheduler, scaler, runtime.rank)
        state.update({k: saved[k] for k in state if k in saved})
        warn_if_order_changes(saved, args, runtime, log)
        log.info(f"resuming from {resume_from}: step {state['global_step']}, epoch {state['epoch']}, "
                 f"{state['step_in_epoch']} micro-batches into it")
    log.info(f"training: {len(train_features)} features, {runtime.world_size} process(es) x {batch_size} x {grad_accum} "
             f"accumulation = {batch_size * grad_accum * runtime.world_size} per step, {t_total} steps, "
             f"precision {runtime.amp_dtype or 'float32'}")
    stop = StopRequest(announce=runtime.is_main).install()
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    micro_done = 0
    result = TrainResult(global_step=state["global_step"], best_value=state["best_value"])
    running_loss, loss_steps = torch.zeros((), device=runtime.device), 0
    bar = progress(total=t_total, initial=state["global_step"], desc="train", disable=not runtime.is_main)
    model.train()
    try:
        while state["global_step"] < t_total:
            batches = micro_batches(
                epoch_order(len(train_features), state["epoch"], args.seed, runtime.rank, runtime.world_size), batch_size
            )
            for micro_index in range(state["step_in_epoch"], len(batches)):
                group_start = micro_index - micro_index % grad_accum
                group_size = min(grad_accum, len(batches) - group_start)
                boundary = micro_index + 1 == group_start + group_size
                inputs = model_inputs(raw_model, train_features.batch(batches[micro_index], args.pad_to_max_length),
                                      runtime.device, args.lang_id)
                # forward (DDP syncs gradients only on the last micro-batch of a group)
                sync = contextlib.nullcontext() if boundary or not runtime.distributed else model.no_sync()
                with sync:
                    with runtime.autocast():
                        loss = model(**inputs).loss / group_size
                    # backward, accumulating gradients over the group
                    scaler.scale(loss).backward()
                running_loss += loss.detach()
                state["step_in_epoch"] = micro_index + 1
                micro_done += 1
                if micro_done == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                if not boundary:
                    continue
                # clip
                if args.max_grad_norm > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(raw_model.parameters(), args.max_grad_norm)
                # step
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                # schedule: linear warmup then linear decay (its state is in every checkpoint)
                scheduler.step()
                state["global_step"] += 1
                step = state["global_step"]
                loss_steps += 1
                bar.update(1)
                if state["step_in_epoch"] == len(batches):
                    state["epoch"], state["step_in_epoch"] = state["epoch"] + 1, 0
                # log
                if every(step, args.logging_steps) or step == t_total:
                    loss_value = mean_across_ranks(running_loss, runtime) / loss_steps
                    log.log(step, {"train/loss": loss_value, "train/learning_rate": scheduler.get_last_lr()[0],
                                   "train/epoch": state["epoch"] + state["step_in_epoch"] / len(batches)})
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    running_loss, loss_steps = torch.zeros((), device=runtime.device), 0
                # evaluate (every rank takes its share; the metric drives best-model tracking and early stopping)
                improved = False
                evaluated = args.evaluate_during_training and eval_set is not None and (
                    every(step, args.logging_steps) or every(step, args.save_steps))
                if evaluated:
                    metrics = evaluate(raw_model, eval_set[0], eval_set[1], args, runtime, log, step, args.output_dir)
                    model.train()
                    value = metrics[args.metric_for_best_model]
                    improved = state["best_value"] is None or value > state["best_value"]
                    state["best_value"] = value if improved else state["best_value"]
                    state["evals_since_best"] = 0 if improved else state["evals_since_best"] + 1
                patience_over = bool(args.early_stopping_patience) and state["evals_since_best"] >= args.early_stopping_patience
                signum = stop.agreed(runtime)
                # save (also when a new best appears between save steps, so the best is always on disk)
                if every(step, args.save_steps) or improved or signum or patience_over:
                    result.last_checkpoint = save(args, raw_model, tokenizer, optimizer, scheduler, scaler, state, runtime, log)
                    if evaluated and runtime.is_main:
                        checkpoints.record_best(args.output_dir, result.last_checkpoint, args.metric_for_best_model, value, True)
                    if args.save_total_limit and runtime.is_main:
                        checkpoints.rotate_checkpoints(args.output_dir, args.save_total_limit)
                    barrier(runtime)
                result.global_step, result.best_value = step, state["best_value"]
                if signum:
                    log.info(f"stopped by signal {signum} at step {step}; checkpoint saved: {result.last_checkpoint}\n"
                             f"  resume with: make resume CKPT={os.path.basename(result.last_checkpoint)} "
                             f"(or add --resume_from_checkpoint auto to the same command)")
                    result.stopped_by_signal = signum
                    return result
                if patience_over:
                    best = checkpoints.best_checkpoint(args.output_dir) if runtime.is_main else None
                    log.info(f"early stopping at step {step}: {args.metric_for_best_model} did not improve over "
                             f"{state['best_value']} in {args.early_stopping_patience} evaluations; best: "
                             f"{best['checkpoint'] if best else 'unknown'} (step {best['step'] if best else '?'})")
                    result.early_stopped = True
                    return result
                if step >= t_total:
                    break
        return result
    finally:
        stop.restore()
        bar.close()


def warn_if_order_changes(saved, args, runtime, log):
    """The position in an epoch means the same micro-batches only with the same seed, batch size and process count."""
    before = saved.get("args", {})
    now = {"seed": args.seed, "per_gpu_train_batch_size": args.per_gpu_train_batch_size,
           "gradient_accumulation_steps": args.gradient_accumulation_steps, "max_train_samples": args.max_train_samples}
    changed = [f"--{k} {before[k]} -> {v}" for k, v in now.items() if k in before and before[k] != v]
    saved_world = saved.get("checkpoint_info", {}).get("world_size")
    if saved_world is not None and saved_world != runtime.world_size:
        changed.append(f"processes {saved_world} -> {runtime.world_size}")
    if changed:
        log.info("warning: resuming with " + ", ".join(changed) + ": training continues, but not exactly as the "
                 "interrupted run would have (data order and position in the epoch mean something else now)")


def save(args, model, tokenizer, optimizer, scheduler, scaler, state, runtime, log):
    """A complete checkpoint at an optimizer-step boundary; a full disk stops the run with previous checkpoints intact."""
    try:
        path = checkpoints.save_checkpoint(args.output_dir, model, tokenizer, optimizer, scheduler, scaler,
                                           dict(state, args=vars(args)), rank=runtime.rank, world_size=runtime.world_size)
    except checkpoints.DiskFullError as exc:
        log.info(f"not enough disk space for a checkpoint, stopping: {exc}\n  earlier checkpoints are intact; free "
                 "space (or lower --save_total_limit) and resume with --resume_from_checkpoint auto")
        raise SystemExit(f"disk full: {exc}") from exc
    log.info(f"saved {path}")
    return path


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def predict_logits(model, features, batch_size, runtime, pad_to_max_length=False, lang_id=0):
    """Start/end logits [N, L] in feature order, on every rank; each rank computes its share (rank::world_size)."""
    length = features.input_ids.shape[1]
    mine = np.arange(len(features))[runtime.rank :: runtime.world_size]
    starts = np.full((len(mine), length), PAD_LOGIT, dtype=np.float32)
    ends = np.full((len(mine), length), PAD_LOGIT, dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for first in range(0, len(mine), batch_size):
            indices = mine[first : first + batch_size]
            batch = features.batch(indices, pad_to_max_length)
            batch.pop("start_positions", None), batch.pop("end_positions", None)
            with runtime.autocast():
                out = model(**model_inputs(model, batch, runtime.device, lang_id))
            width = out.start_logits.shape[1]
            starts[first : first + len(indices), :width] = out.start_logits.float().cpu().numpy()
            ends[first : first + len(indices), :width] = out.end_logits.float().cpu().numpy()
    model.train(was_training)
    if not runtime.distributed:
        return starts, ends
    shares = [None] * runtime.world_size
    dist.all_gather_object(shares, (mine, starts, ends))
    all_starts = np.empty((len(features), length), dtype=np.float32)
    all_ends = np.empty((len(features), length), dtype=np.float32)
    for indices, share_starts, share_ends in shares:
        all_starts[indices], all_ends[indices] = share_starts, share_ends
    return all_starts, all_ends


def evaluate(model, examples, features, args, runtime, log, step, output_dir):
    """Predict on every rank, post-process and score on rank 0; the metrics are returned on every rank.

    Writes predictions_{step}.json, nbest_predictions_{step}.json, null_odds_{step}.json,
    eval_results_{step}.json and (SQuAD 2.0) predictions_{step}_best_thresh.json: the predictions
    at the null threshold that maximised F1, which eval_results records as tuned_null_score_diff_threshold."""
    from qa.metrics import apply_null_threshold, evaluate_predictions
    from qa.postprocess import postprocess_predictions, write_prediction_files

    starts, ends = predict_logits(model, features, args.per_gpu_eval_batch_size, runtime, args.pad_to_max_length, args.lang_id)
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
            write_json(os.path.join(output_dir, f"predictions_{step}_best_thresh.json"), tuned)
        metrics["step"] = step
        write_json(os.path.join(output_dir, f"eval_results_{step}.json"), metrics)
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
    import json

    from qa.storage import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
