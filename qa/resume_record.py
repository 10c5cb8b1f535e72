"""A run's record stands in for the flags not given: a resume continues the same run, an evaluation alone uses
the windows the run trained with. The merge of the record (args.json, a checkpoint's trainer_state.json "args")
into the parsed flags, and the rules of what may change.

    notes = continue_run_settings(args, given_settings(argv), world_size, checkpoint=path)  # resume: all settings
    note = eval_run_settings(args, given_settings(argv))                                  # evaluation: windows, data
    ORDER_SETTINGS   # what fixes the data order: changing one on resume needs --allow_changed_order

A resume of a finished run (its final model saved) is refused unless --continue_finished (refuse_finished).
"""

import hashlib
import os
import shlex

from qa import run_dir, train_hint

# A resume takes every setting from the run's record except these: what this invocation is (resume, which
# process of the launcher), the folder it reads the record from, remote debugging, and one-time actions of the
# first start (rebuilding the feature cache: a resume would rebuild it every time; clearing the output folder).
NOT_FROM_RECORD = ("resume_from_checkpoint", "do_train", "output_dir", "local_rank", "server_ip", "server_port",
                   "allow_changed_order", "overwrite_cache", "overwrite_output_dir", "continue_finished")
# Settings that decide which micro-batches come at which step (qa/sampling.py): changing one on resume
# means the saved position in the epoch points at other windows.
ORDER_SETTINGS = ("per_gpu_train_batch_size", "gradient_accumulation_steps", "seed", "max_train_samples",
                  "group_by_length", "length_group_batches", "length_group_epochs", "train_file",
                  # ... and those that change the windows themselves, or which questions are kept
                  "max_seq_length", "doc_stride", "max_query_length", "skip_bad_examples", "tokenizer_name",
                  "do_lower_case")
# Order settings added after runs were recorded, with the value such a run used (its record lacks the key): giving
# another value on resume changes the order like any other change of ORDER_SETTINGS.
ORDER_SETTINGS_BEFORE_RECORDED = {"length_group_epochs": None}
# What evaluation alone takes from the run's record unless given: the windows the model was trained on
# (a model trained on 128-token windows scores lower on 384-token ones) and the data it was evaluated on.
EVAL_RECORD_SETTINGS = ("max_seq_length", "doc_stride", "max_query_length", "do_lower_case", "version_2_with_negative",
                        "predict_file", "max_answer_length", "n_best_size", "null_score_diff_threshold")
# ... and, without naming the evaluation's folder (they change the speed, not the result): the run's thread count.
EVAL_RECORD_QUIET = ("torch_threads",)


def resumes_from_s3(args):
    """A resume whose checkpoint may have to come from S3: named there, or `auto` with --sync_checkpoints."""
    spec = str(args.resume_from_checkpoint)
    return bool(args.do_train) and (spec.startswith("s3://") or (spec in run_dir.NEWEST and bool(args.sync_checkpoints)))


def takes_record(args):
    """True when args.json of --output_dir stands in for the flags: a resume, or evaluation alone of a run."""
    resuming = args.do_train and args.resume_from_checkpoint is not None
    return (resuming or (args.do_eval and not args.do_train)) and run_dir.read_args(args.output_dir) is not None


def apply_record(args, given, record, names):
    """Set each setting of `names` that was not given to its value in `record` (settings the record lacks keep
    their defaults); returns [(name, recorded, given)] for the given ones that differ from the record."""
    changed = []
    for name in names:
        if name not in record and name in ORDER_SETTINGS_BEFORE_RECORDED and name in given \
                and getattr(args, name) != ORDER_SETTINGS_BEFORE_RECORDED[name]:
            changed.append((name, ORDER_SETTINGS_BEFORE_RECORDED[name], getattr(args, name)))
        if name not in record or not hasattr(args, name):
            continue
        if name not in given:
            setattr(args, name, record[name])
        elif getattr(args, name) != record[name]:
            changed.append((name, record[name], getattr(args, name)))
    return changed


def continue_run_settings(args, given, world_size, checkpoint=None):
    """--resume_from_checkpoint: the same run, continued. Every setting not given comes from the checkpoint's
    trainer_state.json "args" (then the run's args.json for what it lacks); returns the warning line naming
    each given setting that differs, or None. Raises ArgumentError when one of ORDER_SETTINGS (or the number
    of processes) changes without --allow_changed_order, CheckpointError when the checkpoint is not usable.
    `checkpoint`: the verified folder the run continues from (its settings, not a damaged newer one's)."""
    from qa.args import ArgumentError, extra_flag, flag_name  # (qa.args imports this module)

    try:
        checkpoint = checkpoint or run_dir.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
        state = run_dir.load_train_state(checkpoint)
    except run_dir.CheckpointError:
        if not resumes_from_s3(args):
            raise
        # A fresh machine: the checkpoint comes from S3 later; the record (args.json, fetched first) stands in
        # now, and the trainer compares the checkpoint's own settings when it restores it.
        checkpoint, state = args.resume_from_checkpoint, {}
    # The checkpoint's own settings win: every rank of every node continues from the same agreed checkpoint,
    # whereas args.json is rewritten by global rank 0 only (a node without a shared disk keeps the copy it
    # fetched). A setting given at a resume is in the checkpoints saved after it.
    record = {**(run_dir.read_args(args.output_dir) or {}), **state.get("args", {})}
    changed = apply_record(args, given, record, [name for name in vars(args) if name not in NOT_FROM_RECORD])
    shown = [f"{flag_name('--' + name)} {recorded} -> {now}" for name, recorded, now in changed]
    breaking = [line for line, (name, _, _) in zip(shown, changed) if name in ORDER_SETTINGS]
    saved_world = state.get("checkpoint_info", {}).get("world_size")
    if saved_world is not None and saved_world != world_size:
        breaking.append(f"number of processes {saved_world} -> {world_size}")
    if breaking and not args.allow_changed_order:
        raise ArgumentError(f"error: resuming {checkpoint} would change {', '.join(breaking)}: the saved position in the "
                            f"epoch would then point at other windows. Leave these out to continue exactly, or add "
                            f"{extra_flag('--allow_changed_order')} to continue anyway")
    refuse_finished(args, state.get("global_step"))
    if not shown:
        return None
    return f"warning: resuming with settings that differ from the run's record: {', '.join(shown)}"


def eval_run_settings(args, given):
    """Evaluation alone of a run folder: the windows (and data) it trained with, from its args.json, unless
    given; returns a note naming each given setting that differs from the record, or None. Those settings,
    a given --max_eval_samples and another data file (as a short hash of its path: the file's name is in the
    folder's name anyway) are kept in args.eval_changed: run_dir.eval_dir puts them in the folder's name."""
    from qa.args import flag_name  # (qa.args imports this module)

    record = run_dir.read_args(args.output_dir) or {}
    apply_record(args, given, record, EVAL_RECORD_QUIET)
    changed = apply_record(args, given, record, EVAL_RECORD_SETTINGS)
    args.eval_changed = {name: now for name, _, now in changed if name != "predict_file"}
    if any(name == "predict_file" for name, _, _ in changed):  # another file of the same name: tell them apart
        args.eval_changed["data"] = hashlib.blake2b(os.path.abspath(args.predict_file).encode(), digest_size=3).hexdigest()
    if "max_eval_samples" in given and args.max_eval_samples != record.get("max_eval_samples"):
        args.eval_changed["max_eval_samples"] = args.max_eval_samples  # a subset: another result
    if args.model_name_or_path is None:
        args.model_name_or_path = args.output_dir  # `make eval`: the run's own best or final model
    if not changed:
        return None
    return ("note: evaluating with " + ", ".join(f"{flag_name('--' + n)} {now}" for n, _, now in changed) + " (the run "
            "trained with " + ", ".join(f"{recorded}" for _, recorded, _ in changed) + ")")


def refuse_finished(args, from_step=None):
    """A resume of a run that finished training (its final model saved) would train steps it already trained and
    write over its final model: ArgumentError saying how to train further, unless --continue_finished."""
    from qa.args import ArgumentError, extra_flag, flag_name, via_make  # (qa.args imports this module)

    finished = run_dir.finished_step(args.output_dir)
    if finished is None or args.continue_finished:
        return
    out = args.output_dir
    redo = (f"resuming from step {from_step} would train steps {from_step + 1}-{finished} again and write over its "
            "final model" if isinstance(from_step, int) and from_step < finished else "there is nothing left to resume")
    epochs = f"{float(args.num_train_epochs) + 1:g}"  # one more than it trained: an example that runs as printed
    # The run's recorded settings (qa.train_hint): `make train` alone would start from the guide's defaults.
    record = run_dir.read_args(out) or {k: v for k, v in vars(args).items() if k in ("train_file", "predict_file")}
    new_run = train_hint.train_command(record, out.rstrip("/") + "-more", model=out, make=via_make())
    if via_make():
        more = f"make resume OUTPUT_DIR={shlex.quote(out)} EPOCHS={epochs} EXTRA=--continue_finished"
    else:
        more = f"{flag_name('--num_train_epochs')} {epochs} --continue_finished"
    raise ArgumentError(f"error: {out} finished training at step {finished} (its final model is saved): {redo}. To "
                        f"train it further, start a new run from its model ({new_run}), or continue this run with more "
                        f"epochs ({more}); {extra_flag('--continue_finished')} also allows resuming an older checkpoint")
