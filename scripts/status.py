"""Where a training run stands: step, epoch, loss, last evaluation, ETA, checkpoints, GPU memory, disk.

    python scripts/status.py outputs/nq-albert-xlarge-v2
    python scripts/status.py outputs/nq-albert-xlarge-v2 --json     # the same facts as one JSON object
    make status [OUTPUT_DIR=outputs/nq-albert-xlarge-v2]

Reads only what run_squad.py writes into OUTPUT_DIR, through qa/run_dir.py (the one reader of a
run folder): metrics.jsonl, args.json, checkpoints (complete when every file matches its COMPLETE
marker; the step from trainer_state.json, never from the folder name), best_checkpoint.json,
training_plan.json (the total steps, written at every start or resume), training_summary.json
(written when training ends), and the "[detach]" lines that scripts/detach.sh writes into
console.log (`make train DETACH=1`: has the session ended, with which exit status). The ETA comes
from the rate (steps per second) over the latest uninterrupted stretch of metrics.jsonl (a resume
restarts the clock), at most the last RATE_WINDOW lines. Safe to run while training writes: a
half-written last line is skipped. No torch needed.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from qa import divergence, run_dir, run_lock, train_hint
from qa.run_dir import DETACHED_LOG, LOCK_FILE, read_json, read_metrics

RATE_WINDOW = 200  # metrics lines used for the rate: recent enough to follow a change of speed
RESTART_GAP_S = 600  # a pause this long between two metrics lines means the run was restarted
GPU_QUERY = "index,name,memory.used,memory.total,utilization.gpu"
# scripts/detach.sh writes "[detach] 2026-11-26 17:52:38 start in tmux session 'qa-train': CMD" and
# "[detach] 2026-11-26 18:40:01 exit status 0" into the console log.
DETACH_LINE = re.compile(r"^\[detach\] (\S+ \S+) (?:start in (\w+) session '([^']*)'|exit status (\d+))")


def _last_with(records, *keys):
    for record in reversed(records):
        if any(key in record for key in keys):
            return record
    return None


def steps_per_second(records):
    """Rate over the latest stretch where steps grow and time has no restart-sized gap; None if unknown."""
    points = [(r["step"], r["time"]) for r in records if isinstance(r.get("step"), (int, float)) and isinstance(r.get("time"), (int, float))]
    if len(points) < 2:
        return None
    start = len(points) - 1
    while start > 0 and len(points) - start < RATE_WINDOW:
        (step_before, time_before), (step_after, time_after) = points[start - 1], points[start]
        if step_after < step_before or time_after < time_before or time_after - time_before > RESTART_GAP_S:
            break
        start -= 1
    (first_step, first_time), (last_step, last_time) = points[start], points[-1]
    if last_step <= first_step or last_time <= first_time:
        return None
    return (last_step - first_step) / (last_time - first_time)


def detached_session(path):
    """The newest detached session of console.log: {started, multiplexer, name, ended, exit_status}, or None."""
    session = None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = DETACH_LINE.match(line)
                if not match:
                    continue
                when, multiplexer, name, status = match.groups()
                if multiplexer:
                    session = {"started": when, "multiplexer": multiplexer, "name": name, "ended": None,
                               "exit_status": None}
                elif session is not None:
                    session.update(ended=when, exit_status=int(status))
    except OSError:
        return None
    return session


def parse_nvidia_smi(text):
    """Rows of `nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.strip().splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 5:
            continue
        index, name, used, total, utilization = fields
        try:
            gpus.append({"index": int(index), "name": name, "memory_used_mib": int(float(used)),
                         "memory_total_mib": int(float(total)), "utilization_pct": int(float(utilization))})
        except ValueError:
            continue
    return gpus


def query_gpus():
    """(gpus, note): gpus is None with a note when nvidia-smi is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "no GPU (nvidia-smi not found)"
    try:
        result = subprocess.run([exe, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed: {exc}"
    if result.returncode != 0:
        return None, f"nvidia-smi failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
    return parse_nvidia_smi(result.stdout), None


def summarize(output_dir, now=None, gpus=None, gpu_note=None):
    """Every fact the status shows, as a dict. Raises FileNotFoundError when OUTPUT_DIR holds no run."""
    now = time.time() if now is None else now
    markers = (run_dir.METRICS_FILE, run_dir.TRAIN_LOG, run_dir.ARGS_FILE)
    ckpts = run_dir.checkpoint_folders(output_dir)
    if not os.path.isdir(output_dir) or not (any(os.path.exists(os.path.join(output_dir, m)) for m in markers) or ckpts):
        raise FileNotFoundError(
            f"no run in {output_dir}: no metrics.jsonl, train.log, args.json or checkpoint-* there "
            "(start one with `make train`, or pass the OUTPUT_DIR of a run)"
        )
    read_stats = {}
    records = read_metrics(output_dir, read_stats)
    bad_lines = read_stats["unreadable"]
    args = run_dir.read_args(output_dir) or {}
    complete = [(step, path) for step, path, problem in ckpts if problem is None and step is not None]
    newest = complete[-1] if complete else None
    newest_state = read_json(os.path.join(newest[1], run_dir.STATE_FILE)) or {} if newest else {}

    last_step_record = _last_with(records, "step")
    # metrics.jsonl has a line every --logging_steps; a checkpoint (a SIGTERM's, say) may be newer than the last one.
    steps = [last_step_record and last_step_record["step"], newest and newest[0], newest_state.get("global_step")]
    step = max((s for s in steps if isinstance(s, (int, float))), default=None)
    # Written by the trainer at every start (a resume with other settings rewrites it); --max_steps before that.
    total = (run_dir.read_plan(output_dir) or {}).get("total_steps")
    if total is None and isinstance(args.get("max_steps"), int) and args["max_steps"] > 0:
        total = args["max_steps"]
    epoch_record = _last_with(records, "epoch", "train/epoch")
    epoch = (epoch_record.get("epoch", epoch_record.get("train/epoch")) if epoch_record else None)
    epoch_estimated = False
    ckpt_epoch, ckpt_step = newest_state.get("epoch"), newest_state.get("global_step")
    if epoch is None and isinstance(ckpt_epoch, (int, float)) and isinstance(ckpt_step, int) and ckpt_step > 0 and step:
        # metrics.jsonl has no epoch: scale the checkpoint's epoch by the steps done since
        epoch, epoch_estimated = ckpt_epoch * step / ckpt_step, True
    loss_record = _last_with(records, "train/loss")
    eval_record = _last_with(records, "eval/f1", "eval/exact")
    rate = steps_per_second(records)
    eta_s = (total - step) / rate if rate and total is not None and step is not None and total > step else None
    last_time = _last_with(records, "time")
    disk = shutil.disk_usage(output_dir)
    summary = run_dir.read_summary(output_dir)
    finished = None
    if isinstance(summary, dict) and isinstance(summary.get("global_step"), int) and (
            step is None or summary["global_step"] >= step):  # a later resume past it is not finished
        finished = {"global_step": summary["global_step"], "early_stopped": bool(summary.get("early_stopped"))}
    session = detached_session(os.path.join(output_dir, DETACHED_LOG))
    holder = run_lock.holder(output_dir)
    running = is_running(output_dir, holder, session)
    if running is False:
        eta_s = None  # nothing is training: an ETA would be a promise nobody keeps
    diverged = divergence.read_divergence(output_dir)
    if diverged is not None and newest is not None and newest[0] >= diverged["step"]:
        diverged = None  # a later resume trained past it
    return {
        "output_dir": output_dir,
        "step": step,
        "total_steps": total,
        "epoch": epoch,
        "epoch_estimated": epoch_estimated,
        "loss": loss_record.get("train/loss") if loss_record else None,
        "loss_step": loss_record.get("step") if loss_record else None,
        "eval": {k: v for k, v in eval_record.items() if k.startswith("eval/")} if eval_record else None,
        "eval_step": eval_record.get("step") if eval_record else None,
        "steps_per_second": rate,
        "eta_seconds": eta_s,
        "last_update_seconds_ago": now - last_time["time"] if last_time else None,
        "newest_complete_checkpoint": newest[1] if newest else None,
        "newest_complete_checkpoint_step": newest[0] if newest else None,
        "incomplete_checkpoints": [path for _, path, problem in ckpts if problem is not None],
        "incomplete_reasons": {path: problem for _, path, problem in ckpts if problem is not None},
        "best_checkpoint": read_json(os.path.join(output_dir, run_dir.BEST_FILE)),
        "finished": finished,
        "diverged": diverged,
        "restart_hint": _restart_hint(output_dir, args, newest, diverged),
        "detached_session": session,
        "running": running,
        "holder": holder,
        "unreadable_metrics_lines": bad_lines,
        "gpus": gpus,
        "gpu_note": gpu_note,
        "disk_free_bytes": disk.free,
        "disk_total_bytes": disk.total,
    }


def is_running(output_dir, holder, session):
    """True while a process holds the run's lock (qa/run_lock.py); False when the lock file is there and free or
    the detached session recorded its exit; None (unknown) for a folder written before runs took the lock."""
    if holder is not None:
        return True
    if os.path.exists(os.path.join(output_dir, LOCK_FILE)) or (session and session["ended"] is not None):
        return False
    return None


def _restart_hint(output_dir, args, newest, diverged):
    """(why it stopped, what to do) for a stopped, unfinished run: `make resume` from its newest complete checkpoint; a new training
    when it diverged (a resume restores the learning rate that diverged) or saved no checkpoint yet."""
    if diverged is not None:
        lr = args.get("learning_rate")
        lower = {"learning_rate": lr / 10} if isinstance(lr, (int, float)) else {}
        command = train_hint.train_command(args, output_dir.rstrip("/") + "-2", overrides=lower)
        return (f"diverged at step {diverged['step']}: {diverged.get('problem', '?')}", "a resume would restore its "
                f"learning rate: train again with a lower LR into a new OUTPUT_DIR, e.g. {command}")
    if newest is None:
        command = train_hint.train_command(args, output_dir)
        if run_dir.failed_start(output_dir) is None:  # anything but a failed start's traces: train refuses it
            command += " EXTRA=--overwrite_output_dir"
        return "stopped before its first complete checkpoint: nothing to resume", f"start it again: {command}"
    return "stopped before the end", f"continue it: make resume OUTPUT_DIR={shlex.quote(output_dir)}"


def _running_line(s):
    if s.get("running"):
        return f"process:      training now, {run_lock.describe(s['holder'])}"
    if s.get("running") is False and not s.get("finished"):
        return "process:      not running ({}); {}".format(*s["restart_hint"])
    return None


def _duration(seconds):
    return str(datetime.timedelta(seconds=int(round(seconds))))


def _gb(n):
    return f"{n / 1e9:.1f} GB"


def format_status(s):
    """The summary as aligned lines for a terminal."""
    finished = s.get("finished")
    lines = _progress_lines(s)
    if finished:
        lines.append(f"training:     finished at step {finished['global_step']}"
                     + (" (early stopping)" if finished["early_stopped"] else "")
                     + f"; final model in {s['output_dir']}")
    lines += [line for line in (_session_line(s), _running_line(s)) if line]
    if not finished:
        lines.append(_speed_line(s))
    if s["last_update_seconds_ago"] is not None:
        lines.append(f"last update:  {_duration(max(0, s['last_update_seconds_ago']))} ago")
    lines += _checkpoint_lines(s) + _gpu_lines(s)
    lines.append(f"disk free:    {_gb(s['disk_free_bytes'])} of {_gb(s['disk_total_bytes'])} ({s['output_dir']})")
    if s["unreadable_metrics_lines"]:
        lines.append(f"note:         {s['unreadable_metrics_lines']} unreadable line(s) in metrics.jsonl skipped")
    return "\n".join(lines)


def _value(x, fmt="{}"):
    return "?" if x is None else fmt.format(x)


def _progress_lines(s):
    """run, step, epoch, last loss and last eval."""
    progress = _value(s["step"])
    if s["total_steps"]:
        progress += f" / {s['total_steps']}"
        if s["step"] is not None:
            progress += f" ({100 * s['step'] / s['total_steps']:.1f}%)"
    lines = [f"run:          {s['output_dir']}", f"step:         {progress}",
             f"epoch:        {_value(s['epoch'], '{:.2f}')}" + (" (estimated from the newest checkpoint)" if s["epoch_estimated"] else "")]
    loss = _value(s["loss"], "{:.4f}")
    if s["loss"] is not None:
        loss += f" (step {s['loss_step']})"
    lines.append(f"last loss:    {loss}")
    if s["eval"]:
        shown = ", ".join(f"{k[5:]} {v:.2f}" if isinstance(v, (int, float)) else f"{k[5:]} {v}"
                          for k, v in s["eval"].items() if k in ("eval/exact", "eval/f1", "eval/HasAns_f1", "eval/NoAns_f1"))
        lines.append(f"last eval:    {shown} (step {s['eval_step']})")
    else:
        lines.append("last eval:    none yet")
    return lines


def _session_line(s):
    """The detached tmux/screen session and how it ended; None without one."""
    session = s.get("detached_session")
    if not session:
        return None
    where = f"{session['multiplexer']} session '{session['name']}'"
    if session["ended"] is None:
        return (f"session:      {where} started {session['started']}, no exit recorded "
                f"(make attach NAME={session['name']})")
    return (f"session:      {where} ended {session['ended']} with exit status {session['exit_status']}"
            + ("" if session["exit_status"] == 0 else f": see the end of {os.path.join(s['output_dir'], DETACHED_LOG)}"))


def _speed_line(s):
    """Steps per second, with the ETA while the run is (or may be) running."""
    if s["steps_per_second"] and s.get("running") is False:
        return f"speed:        {s['steps_per_second']:.3f} steps/s when it last ran"
    if s["steps_per_second"]:
        eta = _duration(s["eta_seconds"]) if s["eta_seconds"] is not None else "? (total steps unknown)"
        return f"speed:        {s['steps_per_second']:.3f} steps/s, ETA {eta}"
    return "speed:        unknown (fewer than two timed steps in metrics.jsonl)"


def _checkpoint_lines(s):
    """The newest complete checkpoint, the incomplete ones and the best one."""
    ckpt = s["newest_complete_checkpoint"]
    lines = [f"checkpoint:   {ckpt} (step {s['newest_complete_checkpoint_step']})" if ckpt else "checkpoint:   no complete checkpoint yet"]
    for path in s["incomplete_checkpoints"]:
        lines.append(f"incomplete:   {os.path.basename(path)} ({s['incomplete_reasons'][path]}: not used)")
    best = s["best_checkpoint"]
    if isinstance(best, dict) and "checkpoint" in best:
        value = best.get("value")
        lines.append(f"best:         {best['checkpoint']} (step {best.get('step', '?')}), "
                     f"{best.get('metric', 'metric')} {value:.2f}" if isinstance(value, (int, float)) else
                     f"best:         {best['checkpoint']} (step {best.get('step', '?')})")
    return lines


def _gpu_lines(s):
    """One line per GPU, or why there is none."""
    if s["gpus"] is None:
        return [f"gpu:          {s['gpu_note']}"]
    lines = [f"gpu {gpu['index']}:        {gpu['name']}: {gpu['memory_used_mib']} / {gpu['memory_total_mib']} MiB, "
             f"{gpu['utilization_pct']}% busy" for gpu in s["gpus"] or []]
    return lines or ["gpu:          nvidia-smi listed no GPU"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="the run's folder (the OUTPUT_DIR given to run_squad.py)")
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    args = parser.parse_args(argv)
    if not args.output_dir.strip():
        parser.error("OUTPUT_DIR is empty; give the run's folder, e.g. make status OUTPUT_DIR=outputs/nq-albert-xlarge-v2")
    return args


def main(argv=None):
    args = parse_args(argv)
    gpus, note = query_gpus()
    try:
        summary = summarize(args.output_dir, gpus=gpus, gpu_note=note)
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else format_status(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
