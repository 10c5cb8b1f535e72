"""An evaluation whose model folder is deleted under it: one line naming the folder and what to do.

    except BaseException as exc:
        ...remove the evaluation's own half-written folder...
        raise_if_deleted(exc, folder, args.output_dir)
        raise

`make eval` while the run trains: the training's rotation (--save_total_limit) may delete the checkpoint being
evaluated, the old best as soon as a new best is saved. transformers then took the missing folder for a hub id and
printed ~100 lines ending in "Repo id must be in the form ..."; any step of the evaluation (the tokenizer, the
features' cache key, the weights) can be the one that finds the folder gone.
"""

import os

from qa.args import flag_name
from qa.preflight import setting
from qa.run_dir import CheckpointError


class ModelFolderDeleted(CheckpointError):
    """The model folder under evaluation was deleted while it was being evaluated."""


def raise_if_deleted(exc, folder, output_dir):
    """Raise ModelFolderDeleted (from `exc`) when the evaluation of `folder` failed because the folder is gone;
    return otherwise (the caller re-raises `exc`). A Ctrl-C or SIGTERM is never turned into it."""
    if isinstance(exc, Exception) and not os.path.isdir(folder):
        raise ModelFolderDeleted(
            f"{folder} was deleted while it was being evaluated (the training in {output_dir} rotates its checkpoints: "
            f"--save_total_limit): evaluate another one ({setting(flag_name('--eval_checkpoint'), 'best')}, or the newest "
            "checkpoint), or evaluate after the training ends") from exc
