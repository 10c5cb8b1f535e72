"""The layout of a run folder (`--output_dir`): the one place that names its files and reads them back.

    from qa import run_dir
    run_dir.list_checkpoints("outputs/demo/run")      # [(global_step, path)] of complete checkpoints, oldest first
    run_dir.latest_checkpoint(run) / run_dir.best_checkpoint(run) / run_dir.resolve_checkpoint("checkpoint-900", run)
    run_dir.eval_steps(run), run_dir.read_eval_results(run, 900)
    run_dir.eval_dir(run, "data/squad/dev-v2.0.json", 900)   # run/eval/dev-v2.0-900: a later evaluation's folder
    run_dir.read_summary(run), run_dir.read_plan(run)["total_steps"], run_dir.read_metrics(run)
    run_dir.run_model(run)                            # "the run's model": the best (checkpoint or final), else ...
    run_dir.resolve_model("best", run), run_dir.model_step(path)   # CKPT= names incl. "final"; a model's step

A run folder holds:

    args.json, command.txt            the run's arguments, and every command line that wrote into it
    training_plan.json                written when training starts: total steps, steps per epoch, windows, ...
    train.log, metrics.jsonl, runs/   the human log, one JSON record per logged step, tensorboard events
    console.log                       the whole output of a detached session (`make train DETACH=1`)
    .run.lock                         locked by the live training run (qa/run_lock.py); its text names the last
                                      holder (pid, host, run id); never uploaded, never a reason to refuse a start
    checkpoint-N/                     a resumable checkpoint (qa/checkpoints.py), complete when its COMPLETE
                                      marker lists every file with its size and hash (qa/storage.py)
    best_checkpoint.json              which model scored best ({"checkpoint", "step", "metric", "value"}):
                                      a checkpoint-N, or "final" when the final model's evaluation beat them
    eval_results_{step}.json, predictions_{step}.json, nbest_predictions_{step}.json, null_odds_{step}.json,
    predictions_{step}_best_thresh.json   one evaluation of the run's model at `step`
    config.json, model.safetensors, tokenizer files, training_summary.json, qa_config.json, README.md
                                      the final model (written when training ends)
    eval/<data>-<step>/               evaluations run later (`make eval`): the same eval files, apart from
                                      the training record

Every reader here tolerates a run that is still being written: a missing file is None or [].
"""

import fnmatch
import json
import os
import re
import shlex

from qa.storage import MARKER, abandoned_folders, folder_problem

# -- names ---------------------------------------------------------------------------------------
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE = MARKER                      # the marker written last into a checkpoint folder (qa/storage.py)
STATE_FILE = "trainer_state.json"      # inside a checkpoint: step, epoch, position, best, args
BEST_FILE = "best_checkpoint.json"
SUMMARY_FILE = "training_summary.json"
PLAN_FILE = "training_plan.json"
ARGS_FILE = "args.json"
COMMAND_FILE = "command.txt"
TRAIN_LOG = "train.log"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "runs"
WANDB_ID_FILE = "wandb_run_id.txt"
DETACHED_LOG = "console.log"           # the LOG that `make train DETACH=1` gives scripts/detach.sh
LOCK_FILE = ".run.lock"                # held (flock) by the training run writing the folder (qa/run_lock.py)
QA_CONFIG_FILE = "qa_config.json"      # beside the final model: inference settings and the tuned threshold
MODEL_CONFIG = "config.json"
MODEL_RECORD = "MODEL_COMPLETE"        # beside the final model: its files' sizes and hashes, written last (qa/model_check.py)
EVAL_DIR = "eval"
EVAL_KINDS = ("predictions", "nbest_predictions", "null_odds", "eval_results")
EVAL_RESULTS_NAME = re.compile(r"eval_results_(\d+)\.json")
# What a training run leaves that a later fresh run would read back as its own (--overwrite_output_dir
# clears these): resume (newest checkpoint), rotation and evaluation (best), status/report (metrics,
# plan), wandb (run id), tensorboard.
DIVERGED_FILE = "diverged.json"        # written by a run that stopped diverged (qa/divergence.py): step, problem
RUN_STATE_FILES = (BEST_FILE, SUMMARY_FILE, PLAN_FILE, METRICS_FILE, WANDB_ID_FILE, DIVERGED_FILE)
RUN_STATE_DIRS = (TENSORBOARD_DIR, EVAL_DIR)
# The final model of an earlier run: evaluation would take it for the new run's until the new one is saved.
FINAL_MODEL_FILES = (MODEL_CONFIG, "model.safetensors", "pytorch_model.bin", "generation_config.json", QA_CONFIG_FILE,
                     "README.md", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                     "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", MODEL_RECORD,
                     "answer_type_head.safetensors", "answer_type_head.json")  # qa/answer_type_head.py HEAD_FILES
# The final model as scripts/upload.sh sends it (glob patterns relative to the run folder): the files above, the
# weights sharded, and the results that go with the model.
FINAL_MODEL_SHARDS = ("model*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
                      "pytorch_model.bin.index.json")
MODEL_RESULTS = ("eval_results*.json", BEST_FILE, SUMMARY_FILE)
# Every evaluation file of the training record: predictions_900.json, predictions_900_best_thresh.json, ...
EVAL_FILE_NAME = re.compile(r"(predictions|nbest_predictions|null_odds|eval_results)_\w+?(_best_thresh)?\.json")
REPORT_PNG, REPORT_HTML = "report.png", "report.html"  # make report
REPORT_FILES = (REPORT_PNG, REPORT_HTML)
# What a start writes before its first checkpoint (wandb/: wandb's own folder). A folder holding nothing else
# (no checkpoint, no final model) is the trace of a start that failed (no network, bad data), not a run to
# protect: a new start takes it (failed_start).
START_RECORD = frozenset({ARGS_FILE, COMMAND_FILE, TRAIN_LOG, METRICS_FILE, PLAN_FILE, TENSORBOARD_DIR, WANDB_ID_FILE,
                          "wandb", DETACHED_LOG, LOCK_FILE, DIVERGED_FILE})
# The names of checkpoints that are not a step: --resume_from_checkpoint / --eval_checkpoint / CKPT=.
AUTO = "auto"                          # the newest complete checkpoint (what a bare --resume_from_checkpoint means)
LATEST = "latest"                      # the same, by another name
NEWEST = (AUTO, LATEST)
BEST = "best"                          # the one best_checkpoint.json names
FINAL = "final"                        # the final model, at the root of the run folder


def final_model_patterns():
    """What scripts/upload.sh sends of a final model, one glob pattern a file: a name a glob covers is left out."""
    patterns = (*FINAL_MODEL_FILES, *FINAL_MODEL_SHARDS, *MODEL_RESULTS)
    globs = [p for p in patterns if "*" in p]
    return [p for p in patterns if "*" in p or not any(fnmatch.fnmatchcase(p, g) for g in globs)]


def is_previous_run_file(name):
    """A file of the run folder that belongs to the run that wrote it (cleared by --overwrite_output_dir)."""
    return (name in RUN_STATE_FILES or name in FINAL_MODEL_FILES or name in REPORT_FILES
            or EVAL_FILE_NAME.fullmatch(name) is not None)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable; the message says which and what to do."""


def eval_file(output_dir, kind, step):
    """Path of one evaluation file: kind in EVAL_KINDS or "best_thresh" (predictions at the tuned threshold)."""
    if kind == "best_thresh":
        return os.path.join(output_dir, f"predictions_{step}_best_thresh.json")
    if kind not in EVAL_KINDS:
        raise ValueError(f"unknown evaluation file kind {kind!r}; one of {EVAL_KINDS + ('best_thresh',)}")
    return os.path.join(output_dir, f"{kind}_{step}.json")


def eval_dir(output_dir, data_file, step, changed=None):
    """The folder of an evaluation run after training (`make eval`), apart from the training record:
    output_dir/eval/<data file name without .json/.gz>-<step>, e.g. eval/dev-v2.0-1500 or eval/nq_dev-final.

    `changed`: the settings ({name: value}) this evaluation gives that differ from the run's record, e.g.
    {"max_seq_length": 256}: they name the folder too (eval/dev-v2.0.max_seq_length256-1500), so an
    evaluation with other windows never overwrites the one with the run's own."""
    stem = os.path.basename(os.fspath(data_file))
    for suffix in (".gz", ".json", ".jsonl"):
        stem = stem.removesuffix(suffix)
    variant = "".join(f".{name}{value}" for name, value in sorted((changed or {}).items()))
    return os.path.join(output_dir, EVAL_DIR, f"{stem}{variant}-{step}")


def nq_eval_dir(output_dir, step, all_candidates=False, max_examples=0, rank="margin"):
    """The folder of a whole-document NQ evaluation (scripts/predict_nq.py):
    output_dir/eval/nq-<step>[-all-candidates][-first-<N>][-<rank>]. A run over all candidates, over the first N
    records or with another --rank than margin never writes over the default run's predictions and metrics."""
    name = f"nq-{step}" + ("-all-candidates" if all_candidates else "") + (f"-first-{max_examples}" if max_examples else "")
    return os.path.join(output_dir, EVAL_DIR, name + ("" if rank == "margin" else f"-{rank}"))


def nq_predictions_file(folder):
    """The official NQ prediction file in an NQ evaluation folder."""
    return os.path.join(folder, "nq_predictions.json")


def nq_eval_results_file(folder, step):
    """The official NQ metrics of the model at `step`, written beside its predictions."""
    return os.path.join(folder, f"nq_eval_results_{step}.json")


def checkpoint_path(output_dir, step):
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")


def read_json(path):
    """The JSON content of `path`, or None when it is missing or unreadable (a run still being written). Not
    squad_io.read_json, which raises for a user's input file: a run folder's records are read while being written."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# -- checkpoints ---------------------------------------------------------------------------------
def checkpoint_problem(path, check_hashes=False):
    """None when `path` is a complete checkpoint, else why not (one short phrase)."""
    return folder_problem(path, COMPLETE, check_hashes=check_hashes)


def is_complete(path, check_hashes=False):
    """True if `path` has a COMPLETE marker and every file it lists is there with its size (and hash)."""
    return checkpoint_problem(path, check_hashes) is None


def load_train_state(path):
    """The dict the trainer saved (plus "checkpoint_info"), from `path/trainer_state.json`."""
    state_path = os.path.join(path, STATE_FILE)
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{state_path}: missing; {path} is not a checkpoint written by this tool") from None
    except ValueError as exc:
        raise CheckpointError(f"{state_path}: not valid JSON ({exc}); use another checkpoint") from exc
    step = state.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{state_path}: global_step is {step!r}, expected an integer >= 0")
    return state


def checkpoint_folders(output_dir):
    """[(global_step or None, path, problem or None)] of every checkpoint-* folder, complete or not, by step.

    What `make status` lists; the step comes from trainer_state.json, never from the folder name."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if not name.startswith(CHECKPOINT_PREFIX) or not os.path.isdir(path):
            continue
        step = (read_json(os.path.join(path, STATE_FILE)) or {}).get("global_step")
        found.append((step if isinstance(step, int) else None, path, checkpoint_problem(path)))
    return sorted(found, key=lambda item: (item[0] is not None, item[0] or 0, item[1]))


def list_checkpoints(output_dir):
    """[(global_step, path)] of the complete checkpoints in `output_dir`, oldest step first."""
    return [(step, path) for step, path, problem in checkpoint_folders(output_dir) if problem is None and step is not None]


def latest_checkpoint(output_dir):
    """Path of the complete checkpoint with the highest global step, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def best_checkpoint(output_dir):
    """The content of best_checkpoint.json ({"checkpoint", "step", "metric", "value", ...}) or None."""
    path = os.path.join(output_dir, BEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); delete it to start tracking the best again") from exc


def complete_names(output_dir):
    names = [os.path.basename(p) for _, p in list_checkpoints(output_dir)]
    return ", ".join(names) if names else "none"


def resolve_checkpoint(spec, output_dir):
    """The path of a complete checkpoint named by `spec`, or CheckpointError saying what to use.

    spec: None, "auto" or "latest" -> the newest complete one in output_dir; "best" -> the one in
    best_checkpoint.json; "checkpoint-1500" -> output_dir/checkpoint-1500; anything else is a path."""
    if spec is None or str(spec) in NEWEST:
        path = latest_checkpoint(output_dir)
        if path is None:
            raise CheckpointError(f"no complete checkpoint in {output_dir}: nothing to resume; start the run with "
                                  f"`make train OUTPUT_DIR={shlex.quote(str(output_dir))}` and your settings, or name "
                                  "a checkpoint with CKPT=PATH")
        return path
    spec = os.fspath(spec)
    if spec == BEST:
        best = best_checkpoint(output_dir)
        if best is None:
            raise CheckpointError(f"no {BEST_FILE} in {output_dir}: no checkpoint was evaluated yet; use latest or "
                                  f"checkpoint-N instead (complete ones: {complete_names(output_dir)})")
        if best["checkpoint"] == FINAL:
            raise CheckpointError(f"the best model of {output_dir} is its final model (step {best.get('step')}), not a "
                                  f"checkpoint: name it {FINAL}, or a checkpoint-N (complete ones: "
                                  f"{complete_names(output_dir)})")
        path = os.path.join(output_dir, best["checkpoint"])
    elif os.sep not in spec and (os.path.isdir(os.path.join(output_dir, spec)) or not os.path.exists(spec)):
        path = os.path.join(output_dir, spec)  # a bare name is looked up in output_dir first
    else:
        path = spec
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such checkpoint folder; complete ones in {output_dir}: {complete_names(output_dir)}")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path} is incomplete ({problem}): it was interrupted while saving or copied partly; "
                              f"use checkpoint-N instead (complete ones: {complete_names(output_dir)})")
    load_train_state(path)  # a clear error now rather than in the middle of restoring
    return path


# -- the run's model: a checkpoint or the final model ------------------------------------------------
def has_final_model(output_dir):
    return os.path.isfile(os.path.join(output_dir, MODEL_CONFIG))


def model_step(folder, default=None):
    """The global step of the model in `folder`: a checkpoint's (its trainer_state.json), a final model's (the
    training_summary.json beside it), else `default` (a model that is not ours, a run still training)."""
    if os.path.exists(os.path.join(folder, STATE_FILE)):
        return load_train_state(folder)["global_step"]
    step = (read_summary(folder) or {}).get("global_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else default


def run_model(output_dir):
    """The path of "the run's model": what evaluation (`make eval`), ask, eval-nq and upload take when no
    checkpoint is named. The model best_checkpoint.json names (a checkpoint, or the final model when its evaluation
    after training scored best); without a best, the final model; without one (training still running or
    stopped), the newest complete checkpoint. Raises CheckpointError when the folder holds none of these."""
    output_dir = os.fspath(output_dir)
    best = best_checkpoint(output_dir)
    if best is not None and best.get("checkpoint") == FINAL and has_final_model(output_dir):
        return output_dir
    if best is not None and is_complete(os.path.join(output_dir, str(best.get("checkpoint")))):
        return os.path.join(output_dir, best["checkpoint"])
    if has_final_model(output_dir):
        return output_dir
    return resolve_checkpoint(AUTO, output_dir)


def resolve_model(spec, output_dir):
    """The model folder `spec` names in the run `output_dir`: None -> run_model (the run's model); "final" -> the
    final model (output_dir itself); "best" -> the best, checkpoint or final model; anything else as
    resolve_checkpoint. Raises CheckpointError saying what to use instead."""
    output_dir = os.fspath(output_dir)
    best = best_checkpoint(output_dir) if spec == BEST else None
    if spec is None:
        return run_model(output_dir)
    if spec == FINAL or (best is not None and best.get("checkpoint") == FINAL):
        if not has_final_model(output_dir):
            raise CheckpointError(f"{output_dir}: no final model ({MODEL_CONFIG}) yet: training has not finished; use "
                                  f"best, latest or checkpoint-N instead (complete ones: {complete_names(output_dir)})")
        return output_dir
    return resolve_checkpoint(spec, output_dir)


def finished_step(output_dir):
    """The step at which the run in `output_dir` finished training (its final model saved), or None."""
    step = (read_summary(output_dir) or {}).get("global_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


# -- the summary, the plan ------------------------------------------------------------------------


def read_summary(output_dir):
    """training_summary.json ({"global_step", "early_stopped", "best"}) or None (training not finished)."""
    return read_json(os.path.join(output_dir, SUMMARY_FILE))


def read_plan(output_dir):
    """training_plan.json ({"total_steps", "steps_per_epoch", "num_features", ...}) or None."""
    return read_json(os.path.join(output_dir, PLAN_FILE))


def read_args(output_dir):
    """The run's args.json (the arguments it was started with) or None."""
    return read_json(os.path.join(output_dir, ARGS_FILE))


# -- evaluations and metrics ------------------------------------------------------------------------
def eval_steps(output_dir):
    """Steps that have an eval_results_<step>.json in output_dir, ascending."""
    if not os.path.isdir(output_dir):
        return []
    matches = (EVAL_RESULTS_NAME.fullmatch(name) for name in os.listdir(output_dir))
    return sorted(int(m.group(1)) for m in matches if m)


def read_eval_results(output_dir, step):
    return read_json(eval_file(output_dir, "eval_results", step))


def all_eval_results(output_dir):
    """[(step, eval_results)] of every evaluation in the training record, by step."""
    return [(step, results) for step in eval_steps(output_dir)
            if (results := read_eval_results(output_dir, step)) is not None]


def read_metrics(output_dir, stats=None):
    """The records of metrics.jsonl, in order.

    Unreadable lines (the one being written right now, a crash's unfinished last line) are skipped;
    with a `stats` dict, their number is put in stats["unreadable"]."""
    path = os.path.join(output_dir, METRICS_FILE)
    records, unreadable = [], 0
    if os.path.exists(path):
        with open(path, "rb") as f:
            for raw in f:
                try:
                    record = json.loads(raw)
                except ValueError:
                    unreadable += 1
                    continue
                if isinstance(record, dict):
                    records.append(record)
                else:
                    unreadable += 1
    if stats is not None:
        stats["unreadable"] = unreadable
    return records


def failed_start(output_dir):
    """The names in `output_dir` when it holds only what a start writes before its first checkpoint (START_RECORD,
    and temporary folders of dead processes), so no checkpoint and no final model: a start that failed left it.
    None when the folder holds anything else (or is not a folder)."""
    if not os.path.isdir(output_dir):
        return None
    names = set(os.listdir(output_dir)) - {os.path.basename(p) for p in abandoned_folders(output_dir)}
    return sorted(names) if names <= START_RECORD else None


def output_dir_has_content(path):
    """Legacy's test (anything in it), except the log of a detached session that is starting this very run."""
    return os.path.isdir(path) and bool(set(os.listdir(path)) - {DETACHED_LOG, LOCK_FILE})


if __name__ == "__main__":  # python -m qa.run_dir final-model-files: what scripts/upload.sh sends, one pattern a line
    import sys

    if sys.argv[1:] != ["final-model-files"]:
        raise SystemExit("usage: python -m qa.run_dir final-model-files")
    print("\n".join(final_model_patterns()))
