"""The training loop: one visible loop over optimizer steps, nanoGPT style.

    state = train(args, model, tokenizer, train_features, runtime, log, eval_set=(examples, features))
    state.global_step, state.stop_reason      # "done", "signal", "early_stop"

Each turn of the loop is one optimizer step, its phases marked by short comments: the group of
micro-batches (forward, backward, gradient accumulation), clip and step, log, evaluate, checkpoint,
stop. The run's progress is one `TrainState`, saved in every checkpoint and restored on resume.

Data order is `qa.sampling.epoch_batches`, a pure function of (seed, epoch, rank, world size):
(epoch, micro-batches consumed in it) fully determines what comes next, so resuming skips the
consumed micro-batches without running them and ends with the same weights as an uninterrupted
run. Checkpoints are only written at optimizer-step boundaries, where no gradient is pending.

SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the end of the step (an evaluation in
progress is abandoned first: torchrun kills workers ~30 s after forwarding SIGTERM) and returns
with stop_reason "signal"; run_squad.py then exits with 128 + the signal number (143 for SIGTERM,
130 for Ctrl-C), so a job scheduler sees that the run did not finish. A second signal does not
interrupt that save; only SIGKILL does, and then the previous checkpoint is still complete.

On CUDA: fused AdamW, pinned non-blocking copies (qa.runtime.ModelFeed), no host sync inside a
step (the loss is read at logging steps only; under torchrun the stop signal is agreed every
SIGNAL_CHECK_STEPS steps), batches padded to a multiple of --pad_to_multiple_of,
and `--torch_compile`. torch.compile compiles for the first batch's shape; the first batch of another
length (or size: an epoch's short last batch) recompiles it once with that dimension dynamic, and later
lengths reuse that graph (dynamo's automatic dynamic shapes), so a run compiles a few graphs however
many lengths come: the log says how many at the end. --deterministic (qa.runtime) makes CUDA steps
bit-reproducible, so a resumed run matches an uninterrupted one exactly there too.

Test hook: QA_TEST_KILL_AT_MICRO_STEP=N makes the process SIGKILL itself after its N-th micro-batch
(tests/test_resume.py kills a run mid-epoch and mid-accumulation that way).
"""

import contextlib
import dataclasses
import os
import shlex
import signal

import torch
import torch.distributed as dist

from qa import checkpoints, retention, run_dir, sampling
from qa.divergence import DivergenceWatch
from qa.inference import EvaluationAbandoned, evaluate_model
from qa.nq.train_eval import add_whole_page_scores
from qa.resume_record import ORDER_SETTINGS
from qa.runtime import ModelFeed, barrier

# Test hook: the process SIGKILLs itself after this many micro-batches (a real, uncatchable kill).
KILL_ENV = "QA_TEST_KILL_AT_MICRO_STEP"
# Under torchrun, how often the ranks agree on a stop signal outside log/eval/save steps: 10 steps of
# albert-xlarge are a few seconds, well inside the ~30 s torchrun waits after forwarding SIGTERM.
SIGNAL_CHECK_STEPS = 10


@dataclasses.dataclass
class TrainState:
    """The run's progress: what a checkpoint saves (SAVED) and what this process's run ended with."""

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_value: float = None  # of --metric_for_best_model
    evals_since_best: int = 0
    eval_pending: bool = False  # the evaluation of global_step was abandoned for a signal: it runs after resume
    best_metric: str = None  # the --metric_for_best_model that best_value and evals_since_best count
    stop_reason: str = None  # None while running; "done", "signal", "early_stop"
    signum: int = 0  # the signal that stopped the run
    last_checkpoint: str = None
    save_last_step: object = dataclasses.field(default=None, repr=False)  # () -> path: a checkpoint of this step

    SAVED = ("global_step", "epoch", "step_in_epoch", "best_value", "evals_since_best", "eval_pending", "best_metric")

    @classmethod
    def from_checkpoint(cls, saved):
        return cls(**{k: saved[k] for k in cls.SAVED if k in saved})

    def saved(self):
        return {k: getattr(self, k) for k in self.SAVED}

    def advance(self, micro_batches, epoch_length):
        """One optimizer step made of `micro_batches`; the epoch ends after its `epoch_length`-th micro-batch."""
        self.global_step += 1
        self.step_in_epoch += micro_batches
        if self.step_in_epoch >= epoch_length:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0

    def record_eval(self, metric, value):
        """Count an evaluation of `metric`; True when it is a new best (retention.improves: the one rule of "better",
        also best_checkpoint.json's; greater is better, NaN never). A resume
        with another --metric_for_best_model starts counting afresh (comparing exact with an f1 is meaningless)."""
        if self.best_metric is not None and metric != self.best_metric:
            self.best_value, self.evals_since_best = None, 0
        self.best_metric = metric
        improved = retention.improves(value, self.best_value)
        self.best_value = value if improved else self.best_value
        self.evals_since_best = 0 if improved else self.evals_since_best + 1
        return improved

    @property
    def stopped_by_signal(self):
        return self.signum if self.stop_reason == "signal" else 0

    @property
    def early_stopped(self):
        return self.stop_reason == "early_stop"


def decide_stop(state, args, t_total, signum=0):
    """Why the run stops after the current step, or None: a signal, early stopping, the last step."""
    if signum:
        return "signal"
    if args.early_stopping_patience and state.evals_since_best >= args.early_stopping_patience:
        return "early_stop"
    return "done" if state.global_step >= t_total else None


def every(step, interval):
    """True at every `interval`-th step; an interval of 0 means never (legacy --logging_steps/--save_steps 0)."""
    return interval > 0 and step % interval == 0


def total_steps(num_items, args, world_size=1):
    """Optimizer steps of the whole run: --max_steps if given, else epochs x steps per epoch."""
    return sampling.total_steps(num_items, args.per_gpu_train_batch_size, args.gradient_accumulation_steps,
                                args.num_train_epochs, args.max_steps, world_size)


def next_group(train_features, state, args, runtime, epoch_plan):
    """(micro-batches of the next optimizer step, micro-batches in the current epoch), from `state`'s position.

    A group is --gradient_accumulation_steps micro-batches (the epoch's last group may be shorter). The epoch's
    batches are computed once per epoch into `epoch_plan` ({epoch: batches}; 0.2 s for a million windows)."""
    if state.epoch not in epoch_plan:
        epoch_plan.clear()
        epoch_plan[state.epoch] = sampling.epoch_batches(train_features.lengths, args.per_gpu_train_batch_size,
                                                         state.epoch, args.seed, runtime.rank, runtime.world_size,
                                                         sampling.grouped_in_epoch(state.epoch, args.group_by_length,
                                                                                   args.length_group_epochs),
                                                         args.length_group_batches)
    batches, first = epoch_plan[state.epoch], state.step_in_epoch
    return batches[first : first + args.gradient_accumulation_steps], len(batches)


def order_description(args, epochs=None, pool=None):
    """The training order, as the log says it; `epochs`: how many epochs the run has (started or not); `pool`: the
    batches sorted together (sampling.pool_batches), when a small epoch caps --length_group_batches."""
    if not args.group_by_length:
        return "random order"
    asked = args.length_group_batches or sampling.MEGA_BATCH_SIZE
    if pool is None or pool == asked:
        grouped = f"grouped by length ({asked} batches sorted together)"
    else:
        grouped = (f"grouped by length ({pool} batch{'es' if pool != 1 else ''} sorted together: an epoch keeps at least "
                   f"{sampling.MIN_MEGA_BATCHES} pools, --length_group_batches {asked} is more)")
    if args.length_group_epochs is None:
        return grouped
    if epochs is not None and args.length_group_epochs >= epochs:
        return f"{grouped} in every epoch (--length_group_epochs {args.length_group_epochs} covers all {epochs})"
    return f"{grouped} in the first {args.length_group_epochs} epoch(s), then random order"


# ---------------------------------------------------------------------------------------------
# Optimizer, schedule, signals
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


def make_optimizer(model, args, t_total, fused=False):
    """AdamW (fused into one kernel per step on CUDA: fewer launches, same maths) and the legacy linear schedule."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.learning_rate, eps=args.adam_epsilon,
                                  fused=fused or None)
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
                        "step (an evaluation in progress is abandoned), then stopping. Further signals do not interrupt the "
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
def train(args, model, tokenizer, train_features, runtime, log, eval_set=None, resume_from=None, sync=None):
    """Train `model` on `train_features`; checkpoints, evaluation, early stopping and signals included.

    `args` carries the hyperparameters (see qa/args.py); `eval_set` is (examples, features) for
    --evaluate_during_training; `resume_from` a verified checkpoint folder to continue from; `sync` a
    qa.sync.CheckpointSync that mirrors each checkpoint to S3 (--sync_checkpoints). Returns the TrainState."""
    from qa.runlog import progress

    if len(train_features) == 0:
        raise ValueError(f"{args.train_file}: no training windows (no questions, or --max_train_samples 0): nothing to train on")
    raw_model, model = model, wrap_model(model, args, runtime, log)
    t_total = total_steps(len(train_features), args, runtime.world_size)
    optimizer, scheduler = make_optimizer(raw_model, args, t_total, fused=runtime.cuda)
    # fp16 needs loss scaling; bf16 and fp32 do not (the scaler is then a pass-through).
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    state = restore_state(resume_from, optimizer, scheduler, scaler, args, runtime, log) if resume_from else TrainState()
    plan = {"total_steps": t_total, "num_features": len(train_features), "world_size": runtime.world_size,
            "per_gpu_train_batch_size": args.per_gpu_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "steps_per_epoch": sampling.steps_per_epoch(len(train_features), args.per_gpu_train_batch_size,
                                                        args.gradient_accumulation_steps, runtime.world_size)}
    if runtime.is_main:
        write_plan(args.output_dir, plan)
    pool = sampling.pool_batches(len(train_features), args.per_gpu_train_batch_size, runtime.world_size,
                                 args.length_group_batches)
    log.info(f"training: {len(train_features)} features, {runtime.world_size} process(es) x {args.per_gpu_train_batch_size} "
             f"x {args.gradient_accumulation_steps} accumulation = "
             f"{args.per_gpu_train_batch_size * args.gradient_accumulation_steps * runtime.world_size} per step, "
             f"{t_total} steps, precision {runtime.amp_dtype or 'float32'}, "
             f"{order_description(args, -(-t_total // plan['steps_per_epoch']), pool)}, {torch.get_num_threads()} CPU thread(s)")
    stop = StopRequest(announce=runtime.is_main).install()
    kill_at, micro_done = int(os.environ.get(KILL_ENV, "0") or 0), 0
    feed = ModelFeed(raw_model, runtime, args.lang_id)
    watch = DivergenceWatch(runtime, log)  # a non-finite loss or weights stop the run, unsaved (qa.divergence)
    running_loss, loss_steps = torch.zeros((), device=runtime.device), 0
    bar = progress(total=t_total, initial=state.global_step, desc="train", disable=not runtime.is_main)
    if state.eval_pending and eval_set is not None:  # the evaluation a signal interrupted before the checkpoint
        run_pending_evaluation(raw_model, eval_set, args, runtime, log, state, stop, resume_from)
    model.train()
    # A resumed run may have nothing left to do (early stopping due at its checkpoint, or the last step reached).
    state.stop_reason = decide_stop(state, args, t_total)
    try:
        epoch_plan, shapes = {}, set()  # shapes: the batch shapes torch.compile saw, for the log
        while state.stop_reason is None:
            group, epoch_length = next_group(train_features, state, args, runtime, epoch_plan)
            # forward and backward over the step's micro-batches (DDP syncs gradients on the last one only)
            for i, indices in enumerate(group):
                inputs = feed(train_features.batch(indices, args.pad_to_max_length, args.pad_to_multiple_of))
                shapes.add(tuple(inputs["input_ids"].shape))  # metadata only: no host sync
                no_sync = runtime.distributed and i + 1 < len(group)
                with model.no_sync() if no_sync else contextlib.nullcontext():
                    with runtime.autocast():
                        loss = model(**inputs).loss / len(group)
                    scaler.scale(loss).backward()
                running_loss += loss.detach()  # stays on the device: no host sync until a logging step
                watch.add(loss)
                micro_done += 1
                if micro_done == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            # clip, step, schedule (linear warmup then decay; its state is in every checkpoint)
            if args.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            watch.end_step()
            state.advance(len(group), epoch_length)
            step, loss_steps = state.global_step, loss_steps + 1
            bar.update(1)
            # log
            if every(step, args.logging_steps) or step == t_total:
                loss_value = mean_across_ranks(running_loss, runtime) / loss_steps
                log.log(step, {"train/loss": loss_value, "train/learning_rate": scheduler.get_last_lr()[0],
                               "train/epoch": state.epoch + state.step_in_epoch / epoch_length})
                bar.set_postfix(loss=f"{loss_value:.4f}")
                running_loss, loss_steps = torch.zeros((), device=runtime.device), 0
            # stop a diverged run here: its model is neither evaluated nor saved (qa.divergence)
            checked = watch.stop_if_diverged(step, raw_model, runtime, args.output_dir, t_total, args)
            # evaluate (every rank takes its share; the metric drives best-model tracking and early stopping)
            metrics = None
            if eval_set is not None and args.evaluate_during_training and (
                    every(step, args.logging_steps) or every(step, args.save_steps)):
                with watch.evaluating(step, runtime, args.output_dir):  # NaN logits: diverged (qa.divergence)
                    metrics = evaluate_during_training(raw_model, eval_set, args, runtime, log, state, stop)
                model.train()
            improved = metrics is not None and state.record_eval(args.metric_for_best_model,
                                                                  metrics[args.metric_for_best_model])
            # decide whether to stop: a signal (seen by any rank), early stopping, the last step. Under torchrun,
            # agreeing on the signal is an all_reduce and a host sync: every SIGNAL_CHECK_STEPS steps and at
            # every log, evaluation and save step, not in every step.
            decision_step = (not runtime.distributed or every(step, SIGNAL_CHECK_STEPS) or every(step, args.logging_steps)
                             or every(step, args.save_steps) or metrics is not None or step >= t_total)
            state.signum = stop.agreed(runtime) if decision_step else 0
            state.stop_reason = decide_stop(state, args, t_total, state.signum)
            if state.stop_reason is not None and not checked:  # a signal's checkpoint may come at any step
                watch.stop_if_diverged(step, raw_model, runtime, args.output_dir)
            # checkpoint (also at a new best between save steps, so the best is always on disk)
            if every(step, args.save_steps) or improved or state.stop_reason in ("signal", "early_stop"):
                state.last_checkpoint = save(args, raw_model, tokenizer, optimizer, scheduler, scaler, state, runtime, log,
                                             metrics, sync)
    finally:
        stop.restore()
        bar.close()
    # Used by run_squad.py when the final model cannot be written: the weights are then kept as a checkpoint.
    state.save_last_step = lambda: save(args, raw_model, tokenizer, optimizer, scheduler, scaler, state, runtime, log)
    log_stop(state, args, runtime, log, shapes)
    return state


def wrap_model(model, args, runtime, log):
    """The model the loop runs: activation checkpointing, then DDP under torchrun, then torch.compile (after DDP,
    as torch's DDP + compile notes ask); the raw model stays what is saved and evaluated."""
    if getattr(args, "gradient_checkpointing", False):  # before DDP wraps the model (absent from older records)
        from qa.activation_checkpointing import enable_activation_checkpointing

        log.info(f"activation checkpointing on ({enable_activation_checkpointing(model)})")
    if runtime.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[runtime.local_rank] if runtime.cuda else None)
    if args.torch_compile:
        model = torch.compile(model)
    return model


def restore_state(resume_from, optimizer, scheduler, scaler, args, runtime, log):
    """The TrainState of the checkpoint `resume_from`, with the optimizer, scheduler (so no learning rate is set
    by hand), scaler and this rank's RNG states restored."""
    saved = checkpoints.restore_training_state(resume_from, optimizer, scheduler, scaler, runtime.rank,
                                               verified=True)  # run_squad.py verified it before loading the model
    state = TrainState.from_checkpoint(saved)
    warn_if_order_changes(saved, args, runtime, log)
    log.info(f"resuming from {resume_from}: step {state.global_step}, epoch {state.epoch}, "
             f"{state.step_in_epoch} micro-batches into it")
    return state


def run_pending_evaluation(model, eval_set, args, runtime, log, state, stop, checkpoint):
    """The evaluation a signal interrupted before `checkpoint` was saved: it counts (and may be the best) now."""
    metrics = evaluate_during_training(model, eval_set, args, runtime, log, state, stop)
    if metrics is None:
        return
    value = metrics[args.metric_for_best_model]
    if state.record_eval(args.metric_for_best_model, value) and runtime.is_main:
        retention.record_best(args.output_dir, checkpoint, args.metric_for_best_model, value)


def log_stop(state, args, runtime, log, shapes):
    """Why the run stopped, with what to do next, when it stopped before its last step; with --torch_compile, how
    many graphs it compiled for the batch `shapes` the loop saw."""
    if args.torch_compile:
        log.info(f"torch.compile: {compiled_graphs()} graph(s) compiled for {len(shapes)} batch shape(s) in this "
                 f"process (a new batch length or size recompiles once, with that dimension dynamic)")
    if state.stop_reason == "signal":
        log.info(f"stopped by signal {state.signum} at step {state.global_step}; checkpoint saved: {state.last_checkpoint}\n"
                 f"  resume with: {resume_command(args.output_dir, state.last_checkpoint)}")
    elif state.stop_reason == "early_stop":
        best = run_dir.best_checkpoint(args.output_dir) if runtime.is_main else None
        log.info(f"early stopping at step {state.global_step}: {args.metric_for_best_model} did not improve over "
                 f"{state.best_value} in {args.early_stopping_patience} evaluations; best: "
                 f"{best['checkpoint'] if best else 'unknown'} (step {best['step'] if best else '?'})")


def resume_command(output_dir, checkpoint):
    """The command that continues this run, runnable as printed: through make (QA_VIA_MAKE=1, set by the Makefile)
    the make form with the run's folder, its values quoted for the shell; else the flag to add."""
    if os.environ.get("QA_VIA_MAKE") == "1":
        return (f"make resume OUTPUT_DIR={shlex.quote(str(output_dir))} "
                f"CKPT={shlex.quote(os.path.basename(checkpoint))}")
    return "the same command with --resume_from_checkpoint auto added"


def compiled_graphs():
    """How many graphs torch.compile has compiled in this process (dynamo's own count; graph breaks count too)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def evaluate_during_training(model, eval_set, args, runtime, log, state, stop):
    """Metrics of the model at state.global_step, or None when a stop signal made it give up (then
    state.eval_pending is set, saved in the checkpoint, and the evaluation runs after resume). eval_set: (examples,
    features[, tokenizer]); with the tokenizer and --nq_dev_file, whole-page NQ scores too (qa/nq/train_eval.py)."""
    examples, features, *tokenizer = eval_set
    try:
        metrics = evaluate_model(model, examples, features, args, runtime, log, state.global_step, args.output_dir,
                                 should_stop=lambda: bool(stop.signum))
        if tokenizer:
            metrics = add_whole_page_scores(metrics, model, tokenizer[0], args, runtime, log, state.global_step,
                                            args.output_dir, should_stop=lambda: bool(stop.signum))
    except EvaluationAbandoned:
        log.info(f"evaluation at step {state.global_step} abandoned for the signal; it runs again after resume")
        state.eval_pending = True
        return None
    state.eval_pending = False
    return metrics


def warn_if_order_changes(saved, args, runtime, log):
    """The position in an epoch means the same micro-batches only with the same ORDER_SETTINGS (seed, batch size,
    windows, ...) and process count: a resume allowed to change one (--allow_changed_order) says so in the log."""
    before = saved.get("args", {})
    changed = [f"--{name} {before[name]} -> {getattr(args, name)}" for name in ORDER_SETTINGS
               if name in before and before[name] != getattr(args, name)]
    saved_world = saved.get("checkpoint_info", {}).get("world_size")
    if saved_world is not None and saved_world != runtime.world_size:
        changed.append(f"processes {saved_world} -> {runtime.world_size}")
    if changed:
        log.info("warning: resuming with " + ", ".join(changed) + ": training continues, but not exactly as the "
                 "interrupted run would have (data order and position in the epoch mean something else now)")


def write_plan(output_dir, plan):
    from qa.inference import write_json

    write_json(os.path.join(output_dir, run_dir.PLAN_FILE), plan)


def save(args, model, tokenizer, optimizer, scheduler, scaler, state, runtime, log, metrics=None, sync=None):
    """A complete checkpoint at an optimizer-step boundary, the best record and rotation; a full disk stops
    the run with previous checkpoints intact."""
    try:
        path = checkpoints.save_checkpoint(args.output_dir, model, tokenizer, optimizer, scheduler, scaler,
                                           dict(state.saved(), args=vars(args)), rank=runtime.rank,
                                           world_size=runtime.world_size)
    except checkpoints.DiskFullError as exc:
        from qa.args import flag_name

        latest = run_dir.latest_checkpoint(args.output_dir)
        again = f"resume with: {resume_command(args.output_dir, latest)}" if latest else "start the training again"
        log.info(f"not enough disk space for a checkpoint, stopping: {exc}\n  earlier checkpoints are intact; free "
                 f"space (or lower {flag_name('--save_total_limit')}) and {again}")
        raise SystemExit(f"disk full: {exc}") from exc
    log.info(f"saved {path}")
    if runtime.is_main:
        if metrics is not None:
            retention.record_best(args.output_dir, path, args.metric_for_best_model, metrics[args.metric_for_best_model])
        deleted = retention.rotate_checkpoints(args.output_dir, args.save_total_limit) if args.save_total_limit else []
        if deleted:
            log.info(f"--save_total_limit {args.save_total_limit}: deleted {', '.join(map(os.path.basename, deleted))}")
        if sync is not None:
            mirror_checkpoint(sync, args.output_dir, path, deleted)
    barrier(runtime)
    return path


def mirror_checkpoint(sync, output_dir, path, deleted=()):
    """--sync_checkpoints: upload the new checkpoint in the background; delete in S3 only what rotation deleted
    here (`deleted`, rotate_checkpoints' return value; never the best), once that upload is complete there;
    then the run's records a fresh machine needs to resume (best, metrics, wandb run id), each when it changed."""
    sync.submit_checkpoint(path)
    if deleted:  # nothing otherwise: S3 may hold checkpoints this disk never had (a fresh machine, a resume)
        best = run_dir.best_checkpoint(output_dir)
        sync.mirror_rotation(deleted, best["checkpoint"] if best else None)
    records = (os.path.join(output_dir, name) for name in (run_dir.BEST_FILE, run_dir.METRICS_FILE, run_dir.WANDB_ID_FILE))
    sync.submit_files([p for p in records if os.path.exists(p)], only_changed=True)
