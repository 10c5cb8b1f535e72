"""Where a run reports: train.log, metrics.jsonl, tensorboard event files and wandb.

    log = RunLogger("outputs/run", report_to=["tensorboard", "wandb"], wandb_project="nq", config=vars(args))
    log.info("epoch 1 of 7")
    log.log(step=100, metrics={"train/loss": 2.31, "train/learning_rate": 2.9e-5})
    log.close()

Only rank 0 writes anything; on other ranks every method is a no-op, so the training loop
never needs an `if rank == 0` around a log call. `metrics.jsonl` (one JSON object a line,
with "step" and "time") is the plain record that `make status` and `make report` read:
it needs neither tensorboard nor wandb to be read back.
"""

import json
import logging
import os
import re
import sys
import time
import uuid

from qa import run_dir
from qa.run_dir import read_metrics
from qa.storage import atomic_write

REPORT_CHOICES = ("tensorboard", "wandb", "none")

# Config keys whose values never leave the machine (wandb config, args.json is local only).
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_?key|credential|auth)", re.IGNORECASE)


def without_secrets(config):
    """A copy of `config` with secret-looking keys dropped (hub tokens, API keys)."""
    return {k: v for k, v in dict(config).items() if not _SECRET_KEY.search(str(k))}


class RunLogger:
    def __init__(self, output_dir, report_to=("tensorboard",), wandb_project=None, config=None, rank=0, run_name=None,
                 resume_step=None):
        """resume_step: the global step of the checkpoint a resumed run continues from. What the interrupted
        run logged after it is dropped (metrics.jsonl rewritten, tensorboard events purged from step + 1):
        those steps run again, and a curve must not go back on itself."""
        self.rank = rank
        self.output_dir = output_dir
        self.report_to = [r for r in (report_to or ()) if r != "none"]
        unknown = set(self.report_to) - set(REPORT_CHOICES)
        if unknown:
            raise ValueError(f"--report_to: unknown value(s) {sorted(unknown)}; choose from {REPORT_CHOICES}")
        self.logger = logging.getLogger(f"qa.run.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.tb_writer = None
        self.wandb_run = None
        if rank != 0:
            return
        os.makedirs(output_dir, exist_ok=True)
        formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        self._file_handler = logging.FileHandler(os.path.join(output_dir, run_dir.TRAIN_LOG))
        for handler in (self._file_handler, ConsoleHandler()):
            handler.setFormatter(formatter)
            self.logger.addHandler(handler)
        # Also ends a line a crash left unfinished, which the next record would otherwise be glued to.
        drop_metrics_after(output_dir, float("inf") if resume_step is None else resume_step)
        self._metrics_file = open(os.path.join(output_dir, run_dir.METRICS_FILE), "a", encoding="utf-8")
        if "tensorboard" in self.report_to:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1  # TensorBoard hides older events at steps >= this
            # The suffix keeps two writers opened in the same second (a resume, an evaluation right after training)
            # from truncating each other's file (events.out.tfevents.<seconds>.<host>), and sorts them in order.
            self.tb_writer = SummaryWriter(logdir=os.path.join(output_dir, run_dir.TENSORBOARD_DIR), purge_step=purge,
                                           filename_suffix=f".{time.time_ns()}")
        if "wandb" in self.report_to:
            self.wandb_run = self._start_wandb(wandb_project, without_secrets(config or {}), run_name)

    def _start_wandb(self, project, config, run_name):
        import wandb

        # One wandb run per output folder: a resumed training continues the same run.
        id_file = os.path.join(self.output_dir, run_dir.WANDB_ID_FILE)
        if os.path.exists(id_file):
            with open(id_file, encoding="utf-8") as f:
                run_id = f.read().strip()
        else:
            run_id = uuid.uuid4().hex[:8]
            with atomic_write(id_file, "w", encoding="utf-8") as f:
                f.write(run_id)
        return wandb.init(
            project=project or os.environ.get("WANDB_PROJECT") or "qa-finetune",
            name=run_name,
            id=run_id,
            resume="allow",
            dir=self.output_dir,
            config=config,
        )

    def info(self, message):
        if self.rank == 0:
            self.logger.info(message)

    def to_file(self, message):
        """`message` into train.log only: for a line the caller prints itself, so the terminal shows it once."""
        if self.rank == 0:
            self._file_handler.handle(self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0, message, None, None))

    def log(self, step, metrics):
        """Record scalar metrics at a global step (every sink that was asked for)."""
        if self.rank != 0:
            return
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self._metrics_file.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
        self._metrics_file.flush()
        if self.tb_writer is not None:
            for name, value in scalars.items():
                self.tb_writer.add_scalar(name, value, int(step))
            self.tb_writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=int(step))

    def close(self):
        if self.rank != 0:
            return
        self._metrics_file.close()
        if self.tb_writer is not None:
            self.tb_writer.close()
        if self.wandb_run is not None:
            _finish_wandb(self.wandb_run)
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)


def _finish_wandb(wandb_run):
    """Finish the run and wait until wandb's writer process has closed its files.

    run.finish() only tells the writer (a separate wandb-core process) that the run is over; the writer
    flushes and closes the run's .wandb file afterwards, on its own time, so a reader right after finish()
    (a test, `make report`, an upload of the folder) could see it half-written. wandb.teardown() waits
    for that process to exit; the next wandb.init() in this process starts a new one (about a second)."""
    import wandb

    wandb_run.finish()
    try:
        wandb.teardown()
    except SystemExit as exc:  # teardown exits with the writer's own status when the writer failed
        logging.getLogger(__name__).warning("wandb's writer process ended with status %s", exc.code)


class ConsoleHandler(logging.Handler):
    """Records to the current sys.stderr through tqdm.write: a progress bar on it is cleared first and drawn again
    after, so a log line never lands at the end of a bar's line (issue 19 item 7)."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's rule: a handler never raises
            self.handleError(record)


def progress(total, initial=0, desc="train", disable=False):
    """A tqdm bar with throughput and ETA (bars on a terminal, sparse lines in a log file)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        disable=disable,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )


def drop_metrics_after(output_dir, step):
    """Rewrite metrics.jsonl (atomically) without the records logged after `step`; returns how many were dropped."""
    path = os.path.join(output_dir, run_dir.METRICS_FILE)
    if not os.path.exists(path):
        return 0
    records = read_metrics(output_dir)
    kept = [r for r in records if r.get("step", 0) <= step]
    if len(kept) < len(records) or _has_unfinished_line(path):
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
    return len(records) - len(kept)


def _has_unfinished_line(path):
    with open(path, "rb") as f:
        data = f.read()
    return bool(data) and not data.endswith(b"\n")
