"""Stop a diverged run before anything saves its weights.

    watch = DivergenceWatch(runtime, log)
    watch.add(loss)                 # each micro-batch's loss (stays on the device)
    watch.end_step()                # after the optimizer step
    checked = watch.stop_if_diverged(step, model, runtime, output_dir, t_total, args)  # at due steps: TrainingDiverged
    ...evaluate, decide whether to stop...
    if stop_reason is not None and not checked:       # a signal's checkpoint, at any step
        watch.stop_if_diverged(step, model, runtime, output_dir)

A run has diverged when its weights are no longer finite, or when the loss of PATIENCE optimizer steps in a row
was not finite:
- fp16: torch's GradScaler skips a step whose gradients are not finite (and halves its scale), so a non-finite
  loss leaves the weights as they were; a few such steps in a row are tolerated. Its usual skips at the start of a
  run (a scale too large for the gradients) do not count here: their loss is finite.
- fp32 and bf16: there is no scaler, a non-finite loss makes non-finite gradients, and AdamW writes them into the
  weights in that same step: the first one stops the run (patience 1).
The counts and the weight check stay on the device and are read at `due` steps only (logging, saving and
evaluation steps, the last step, and every CHECK_EVERY steps), so CUDA steps keep running without a host sync.
The check comes before the step's evaluation and checkpoint (and before a signal's checkpoint at any step): no
evaluation runs on, and no checkpoint or final model holds, weights the check found bad.
"""

import contextlib
import os

import torch

# Exit status of a diverged run (0 done, 1 other failures, 2 bad arguments or data, 128 + N a signal).
DIVERGED_EXIT = 3
# fp16: consecutive optimizer steps with a non-finite loss tolerated (the scaler skipped each of them).
FP16_PATIENCE = 5
# Steps between checks when nothing else (a log, save or evaluation step) calls for one: a check is a host sync.
CHECK_EVERY = 10


class TrainingDiverged(SystemExit):
    """Raised by the training loop when the run diverged: the process exits with DIVERGED_EXIT."""

    def __init__(self, message):
        super().__init__(DIVERGED_EXIT)
        self.message = message


class DivergenceWatch:
    def __init__(self, runtime, log):
        self.log = log
        self.fp16 = runtime.amp_dtype == torch.float16
        self.patience = FP16_PATIENCE if self.fp16 else 1
        self.step_loss = torch.zeros((), device=runtime.device)
        self.streak = torch.zeros((), device=runtime.device)  # optimizer steps in a row whose loss was not finite

    def add(self, loss):
        self.step_loss += loss.detach().float()

    def end_step(self):
        self.streak = torch.where(torch.isfinite(self.step_loss), 0.0, self.streak + 1)
        self.step_loss = torch.zeros_like(self.step_loss)

    @staticmethod
    def due(step, args, t_total):
        """Steps checked without being asked: logging, saving and evaluation steps (evaluations and checkpoints
        come only at those, but for a signal's), the last step, and every CHECK_EVERY steps. The same on every rank."""
        return step >= t_total or any(interval > 0 and step % interval == 0
                                      for interval in (CHECK_EVERY, args.logging_steps, args.save_steps))

    def problem(self, model, runtime):
        """Why the run diverged ('' when it did not); one host sync (and an all_reduce under torchrun)."""
        weights_bad = torch.stack([~torch.isfinite(p).all() for p in model.parameters()]).any().float()
        flags = torch.stack([self.streak, weights_bad.to(self.streak.device)])
        if runtime.distributed:
            import torch.distributed as dist

            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        streak, weights_bad = flags.tolist()
        if weights_bad:
            return "the weights are no longer finite (inf or NaN)"
        if streak >= self.patience:
            return f"the loss was not finite (inf or NaN) for {int(streak)} optimizer step(s) in a row"
        return ""

    def stop_if_diverged(self, step, model, runtime, output_dir, t_total=None, args=None):
        """Raise TrainingDiverged when the run diverged. With t_total and args: only at a `due` step, and True when
        the check ran (False: not due); without them: always (before a checkpoint a signal asks for)."""
        if args is not None and not self.due(step, args, t_total):
            return False
        problem = self.problem(model, runtime)
        if not problem:
            return True
        self.stop(step, problem, runtime, output_dir)

    @contextlib.contextmanager
    def evaluating(self, step, runtime, output_dir):
        """An evaluation during training whose logits are NaN (weights finite, but too large for the forward pass:
        the evaluation on rank 0 finds out first) stops the run as diverged, before this step's checkpoint."""
        from qa.postprocess import NonFiniteLogits

        try:
            yield
        except NonFiniteLogits as exc:
            self.stop(step, "the evaluation's logits are not finite (NaN)", runtime, output_dir, cause=exc)

    def fix(self):
        """What to do, for make or the command line; another precision only for a run in fp16."""
        make = os.environ.get("QA_VIA_MAKE") == "1"
        precision = (" (or PRECISION=bf16 / fp32 instead of fp16)" if make else " (or --bf16 / fp32 instead of --fp16)") \
            if self.fp16 else ""
        return (f"train again with a lower {'LR' if make else '--learning_rate'}{precision} into a new "
                f"{'OUTPUT_DIR' if make else '--output_dir'}: a resume would restore this run's learning rate")

    def stop(self, step, problem, runtime, output_dir, cause=None):
        """Log the one line and raise TrainingDiverged."""
        from qa import run_dir

        newest = run_dir.latest_checkpoint(output_dir) if runtime.is_main else None
        kept = (f"the newest checkpoint, {os.path.basename(newest)}, holds the last finite weights" if newest
                else "no checkpoint was saved")
        # Not "resume with a lower rate": a resume restores the checkpoint's optimizer and schedule, whose learning
        # rate wins over the one given (measured: --learning_rate 1e-6 on resume still trained at the run's 2.5e-4).
        message = (f"training diverged at step {step}: {problem}; stopping without saving these weights ({kept}): "
                   f"{self.fix()}")
        if runtime.is_main:
            record_divergence(output_dir, step, problem)
        self.log.info(f"error: {message}")
        raise TrainingDiverged(message) from cause


def record_divergence(output_dir, step, problem):
    """run_dir.DIVERGED_FILE: make status then offers a new training, not a resume (which would diverge again)."""
    import json

    from qa import run_dir, storage

    try:
        with storage.atomic_write(os.path.join(output_dir, run_dir.DIVERGED_FILE), "w", encoding="utf-8") as f:
            json.dump({"step": step, "problem": problem}, f)
    except OSError:
        pass  # the log line says it all the same


def read_divergence(output_dir):
    """{"step", "problem"} of a run that stopped diverged, else None."""
    import json

    from qa import run_dir

    try:
        with open(os.path.join(output_dir, run_dir.DIVERGED_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None
