"""Which model of a run the commands that use one take, said in one line; the run's torch thread count.

    from qa import model_pick
    model_pick.describe("outputs/demo/run", run_dir.run_model("outputs/demo/run"))
        # 'checkpoint-800 (step 800) of outputs/demo/run: the best by f1 (74.74)'
    model_pick.use_recorded_threads("outputs/demo/run/checkpoint-800", given=None)   # (1, "the run's args.json")
    python -m qa.model_pick RUN [--stage DIR]     # scripts/upload.sh: the run's model's folder on stdout

"The run's model" is decided in one place, qa.run_dir.run_model (the best, a checkpoint or the final model;
else the final model; else the newest complete checkpoint): make eval, make ask, make eval-nq and make upload
all take it when no checkpoint is named. This module only says which it is and why, and (--stage) lays a
checkpoint's model out as a final model folder for upload: its config, weights and tokenizer (hard links; not
the optimizer, scheduler or RNG state), a qa_config.json with its window sizes and the null threshold tuned at
its step (qa.model_card.checkpoint_qa_config), and a MODEL_COMPLETE hash record written last.
"""

import argparse
import json
import os
import re
import shutil
import sys

from qa import run_dir
from qa.run_dir import CheckpointError

# A checkpoint's files that make the model (what a final model folder holds of them); sharded weights too.
MODEL_FILE_NAMES = frozenset(run_dir.FINAL_MODEL_FILES) - {run_dir.QA_CONFIG_FILE, run_dir.MODEL_RECORD, "README.md"}
SHARD_NAME = re.compile(r"(model-\d+-of-\d+\.safetensors|model\.safetensors\.index\.json|pytorch_model-\d+-of-\d+\.bin|"
                        r"pytorch_model\.bin\.index\.json)")


def _same(a, b):
    return os.path.abspath(a) == os.path.abspath(b)


def _why(best, is_final, name):
    """Why run_model took this model, from best_checkpoint.json (or its absence)."""
    if best is not None and best.get("checkpoint") == (run_dir.FINAL if is_final else name):
        value = best.get("value")
        shown = f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        return f"the best by {best.get('metric', 'its metric')} ({shown})"
    if is_final:
        return "the final model (no best recorded)" if best is None else \
            f"the final model ({best.get('checkpoint')}, the recorded best, is not here)"
    return "the newest complete checkpoint (no best recorded and no final model yet)"


def describe(output_dir, path):
    """One line: which model `path` is of the run `output_dir`, its step, and why it is the run's model."""
    is_final = _same(path, output_dir)
    name = "the final model" if is_final else os.path.basename(os.path.normpath(path))
    why = _why(run_dir.best_checkpoint(output_dir), is_final, name)
    return f"{name} (step {run_dir.model_step(path, default='?')}) of {output_dir}: {why}"


# -- threads -------------------------------------------------------------------------------------
def recorded_threads(folder):
    """The torch thread count the run of model `folder` recorded (--torch_threads, as used), or None: a checkpoint's
    trainer_state.json args, else its run's args.json; a final model's (the run folder's) args.json."""
    if os.path.exists(os.path.join(folder, run_dir.STATE_FILE)):
        try:
            threads = (run_dir.load_train_state(folder).get("args") or {}).get("torch_threads")
        except CheckpointError:  # a damaged state: the model's loader says so
            threads = None
        if threads is None:
            threads = (run_dir.read_args(os.path.dirname(os.path.abspath(folder))) or {}).get("torch_threads")
    else:
        threads = (run_dir.read_args(folder) or {}).get("torch_threads")
    return threads if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1 else None


def use_recorded_threads(folder, given=None):
    """Set torch's thread count: `given` (a --torch_threads flag), else the run's recorded one, else leave torch's
    own (OMP_NUM_THREADS or one per core). Returns (count, where it came from)."""
    import torch

    threads, source = (given, "--torch_threads") if given is not None else (recorded_threads(folder), "the run's record")
    if threads is None:
        return torch.get_num_threads(), "torch's default"
    torch.set_num_threads(threads)
    return threads, source


# -- upload: a checkpoint's model as a final model folder ---------------------------------------------
def model_files(checkpoint):
    """The names of `checkpoint`'s files that make its model (config, weights, tokenizer), sorted."""
    return sorted(name for name in os.listdir(checkpoint) if os.path.isfile(os.path.join(checkpoint, name))
                  and (name in MODEL_FILE_NAMES or SHARD_NAME.fullmatch(name)))


def _link_or_copy(source, dest):
    try:
        os.link(source, dest)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, dest)


def stage_checkpoint_model(checkpoint, dest):
    """Lay out `checkpoint`'s model in the empty folder `dest` as a final model: its model files, qa_config.json
    (window sizes, the threshold tuned at its step), MODEL_COMPLETE last. Returns the names written."""
    from qa.model_card import checkpoint_qa_config
    from qa.model_check import write_model_record
    from qa.storage import atomic_write

    names = model_files(checkpoint)
    for name in names:
        _link_or_copy(os.path.join(checkpoint, name), os.path.join(dest, name))
    config = checkpoint_qa_config(checkpoint)
    config["null_threshold_source"] = config.pop("source")
    with atomic_write(os.path.join(dest, run_dir.QA_CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    write_model_record(dest, names + [run_dir.QA_CONFIG_FILE], {"from_checkpoint": os.path.basename(checkpoint),
                                                                 "global_step": run_dir.model_step(checkpoint)})
    return names + [run_dir.QA_CONFIG_FILE, run_dir.MODEL_RECORD]


def main(argv=None):
    """python -m qa.model_pick RUN [--stage DIR]: the run's model's folder on stdout, which and why on stderr; with
    --stage and a checkpoint as the run's model, DIR laid out as its final model folder (printed on a second line).
    Exit 2 with one line when the run has no model."""
    parser = argparse.ArgumentParser(prog="python -m qa.model_pick", description=main.__doc__)
    parser.add_argument("run", help="a run's --output_dir")
    parser.add_argument("--stage", metavar="DIR", help="an empty folder to lay a checkpoint's model out in")
    args = parser.parse_args(argv)
    try:
        path = run_dir.run_model(args.run)
    except CheckpointError as exc:
        print(f"no model in {args.run}: {exc}", file=sys.stderr)
        return 2
    print(f"the run's model: {describe(args.run, path)}", file=sys.stderr)
    print(path)
    if args.stage and not _same(path, args.run):
        stage_checkpoint_model(path, args.stage)
        print(args.stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
