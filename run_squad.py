#!/usr/bin/env python
"""Fine-tune and evaluate an extractive question-answering model on SQuAD-format data (SQuAD 2.0, NQ converted).

The legacy HuggingFace run_squad.py command line works as it is, e.g. the guide's:

    python run_squad.py --model_type ALBERTxlv2 --model_name_or_path albert-xlarge-v2 --do_train --do_eval \
        --evaluate_during_training --train_file data/nq/nq_train.json --predict_file data/nq/nq_dev.json \
        --learning_rate 3e-5 --num_train_epochs 7 --max_seq_length 384 --doc_stride 128 \
        --output_dir outputs/nq-albert --per_gpu_eval_batch_size=8 --per_gpu_train_batch_size=1 \
        --fp16 --threads 128 --version_2_with_negative

Every GPU of the machine (or of several machines) through torchrun:

    torchrun --nproc_per_node 8 run_squad.py ... (same flags) --save_total_limit 3 --report_to tensorboard wandb

Continue exactly where a run stopped (crash, SIGTERM, Ctrl-C), or evaluate a checkpoint. A resume takes every
setting from the run's record (args.json, the checkpoint's trainer_state.json); flags given override, each named
in a warning, and one that changes the data order (batch size, accumulation, seed, ...) needs --allow_changed_order:

    python run_squad.py --output_dir outputs/nq-albert --do_train --resume_from_checkpoint auto   # newest complete one
    python run_squad.py ... (same flags) --resume_from_checkpoint auto          # the same, flags equal to the record
    python run_squad.py ... --model_name_or_path outputs/nq-albert/checkpoint-1500   # the guide's way, same effect
    python run_squad.py --model_name_or_path outputs/nq-albert --output_dir outputs/nq-albert --do_eval \
        --predict_file data/nq/nq_dev.json --version_2_with_negative --eval_checkpoint best
    python run_squad.py --model_name_or_path outputs/nq-albert/checkpoint-1500 --output_dir outputs/nq-albert \
        --do_eval --predict_file data/nq/nq_dev.json --version_2_with_negative   # legacy: that model, step 1500
    python run_squad.py --output_dir outputs/nq-albert --do_eval --eval_checkpoint final   # the run's windows and data

Evaluation alone writes into its own folder, outputs/nq-albert/eval/<data file stem>-<step>/ (predictions, nbest,
null odds, eval_results, train.log, metrics.jsonl, args.json), never over the training record; evaluation during
(and right after) training writes into the run folder.

--save_steps 0 / --logging_steps 0 turn periodic checkpoints / logging off, as in legacy.

Exit status: 0 when done; 2 for bad arguments; 128 + signal number (143 SIGTERM, 130 Ctrl-C) when a
signal stopped training after saving a checkpoint (the log says how to resume); 4 when training ended but
--sync_checkpoints could not put everything in S3 (the log lists what; `python -m qa.sync OUTPUT_DIR s3://...`,
or `make sync`, uploads it later); 1 on other errors.
"""

import json
import os
import shlex
import shutil
import sys
import time
import uuid

from qa import checkpoints, eval_guard, model_check, run_dir, run_lock, storage
from qa.args import (
    ArgumentError,
    extra_flag,
    flag_name,
    given_settings,
    parse_args,
    resume_hint,
    unused_flag_notes,
    validate_args,
    via_make,
)
from qa.model_card import write_model_card, write_qa_config
from qa.resume_record import continue_run_settings, eval_run_settings, resumes_from_s3, takes_record
from qa.squad_io import FIX_HINT, SquadFormatError
from qa.storage import atomic_write
from qa.sync import INCOMPLETE_EXIT, SyncError


def save_run_config(args, output_dir, argv=None):
    """command.txt (every invocation, shell-quoted, appended) and args.json (this invocation's arguments).

    argv: the arguments when main() was called from Python (then sys.argv is not this run's)."""
    command_file = os.path.join(output_dir, run_dir.COMMAND_FILE)
    previous = ""
    if os.path.exists(command_file):
        with open(command_file, encoding="utf-8") as f:
            previous = f.read()
    launcher = ""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun passes the script its own arguments only
        launcher = (f" (launched by torchrun: WORLD_SIZE={os.environ.get('WORLD_SIZE')}, "
                    f"LOCAL_WORLD_SIZE={os.environ.get('LOCAL_WORLD_SIZE')})")
    line = f"# {time.strftime('%Y-%m-%d %H:%M:%S')}{launcher}\n{shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])}\n"
    with atomic_write(command_file, "w", encoding="utf-8") as f:
        f.write(previous + line)
    write_args(args, output_dir)


def write_args(args, output_dir):
    """args.json: the run's settings (written again once a setting that depends on the data is decided)."""
    with atomic_write(os.path.join(output_dir, run_dir.ARGS_FILE), "w", encoding="utf-8") as f:
        json.dump(vars(args), f, indent=2, sort_keys=True)


def start_remote_debugger(ip, port):
    """Legacy --server_ip/--server_port: wait for a debugger to attach (debugpy replaced ptvsd)."""
    try:
        import debugpy
    except ImportError:
        raise SystemExit("--server_ip/--server_port need debugpy: pip install debugpy") from None
    debugpy.listen((ip, int(port)))
    print(f"waiting for a debugger on {ip}:{port}", file=sys.stderr)
    debugpy.wait_for_client()


def load_tokenizer(args, model_path):
    """--tokenizer_name if given, else the tokenizer saved with the model at `model_path` (fast: offsets needed)."""
    from transformers import AutoTokenizer

    kwargs = {"do_lower_case": True} if args.do_lower_case else {}
    return AutoTokenizer.from_pretrained(args.tokenizer_name or model_path, use_fast=True,
                                         cache_dir=args.cache_dir or None, **kwargs)


def load_checkpoint_tokenizer(args, checkpoint):
    """The tokenizer a checkpoint saved (--tokenizer_name names where the run first got it, maybe a hub id)."""
    from transformers import AutoTokenizer

    kwargs = {"do_lower_case": True} if args.do_lower_case else {}
    return AutoTokenizer.from_pretrained(checkpoint, use_fast=True, **kwargs)


def open_log(args, folder, runtime, resume_step=None):
    """The RunLogger of `folder`: the run folder when training, an evaluation's own folder when evaluating alone."""
    from qa.runlog import RunLogger

    return RunLogger(folder, report_to=args.report_to, wandb_project=args.wandb_project,
                     config=dict(vars(args), world_size=runtime.world_size), rank=runtime.rank, resume_step=resume_step)


def load_model(path, args, runtime, answer_type_head=None):
    """AutoModelForQuestionAnswering from `path` (a hub name, the output folder, or a checkpoint), with the
    answer-type head (qa.answer_type_head.attach): answer_type_head True/False when training, None: the folder's."""
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    from qa.answer_type_head import attach
    from qa.onnx_export import is_onnx_model

    if os.path.isdir(path) and is_onnx_model(path):  # make export's folder: evaluated through onnxruntime
        if args.do_train:
            raise checkpoints.CheckpointError(f"{path} is an ONNX export: it evaluates only; train from the model it "
                                              "was exported from")
        from qa.inference import load_inference_model

        return load_inference_model(path)[0]
    config_source = args.config_name if args.config_name and path == args.model_name_or_path else path
    try:
        config = AutoConfig.from_pretrained(config_source, cache_dir=args.cache_dir or None)
        model = AutoModelForQuestionAnswering.from_pretrained(path, config=config, cache_dir=args.cache_dir or None)
    except (SafetensorError, OSError, ValueError) as exc:
        # validate_args reads the weights' headers of a local folder up front; this names what it could not see
        # (a damaged file in the hub cache, a config.json that is not JSON) in one line instead of a traceback.
        weights = sorted(n for n in os.listdir(path) if n.endswith(".safetensors")) if os.path.isdir(path) else []
        where = os.path.join(path, weights[0]) if isinstance(exc, SafetensorError) and len(weights) == 1 else path
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise checkpoints.CheckpointError(f"{where}: the model cannot be loaded ({reason}): copy or download it "
                                          "again, or give another --model_name_or_path") from exc
    return attach(model, path, answer_type_head).to(runtime.device)


def load_examples(path, max_samples, skip_bad=False, log=None, purpose="evaluate"):
    """Questions of a SQuAD-format file; with skip_bad, malformed ones are skipped and counted in the log.

    Raises SquadFormatError when none is left ("no questions to {purpose} in FILE"): a file without questions
    would otherwise fail deep inside training or evaluation."""
    from qa.squad_io import read_squad

    stats = {}
    examples = read_squad(path, skip_bad=skip_bad, stats=stats)
    counts = (f"{stats.get('missing_field', 0)} missing a field, {stats.get('bad_answer', 0)} with an answer "
              "that does not match its context")
    if not examples and stats.get("skipped"):
        raise SquadFormatError(f"no questions to {purpose} in {path}: all {stats['skipped']} were skipped as bad "
                               f"({counts}); fix the file (without --skip_bad_examples the error names the first one)")
    if not examples:
        raise SquadFormatError(f"no questions to {purpose} in {path}: it holds none (a {stats.get('format')} file "
                               "with no question in it); give the file with the data, or convert it again")
    if stats.get("skipped") and log is not None:
        log.info(f"{path}: skipped {stats['skipped']} bad question(s) (--skip_bad_examples): {counts}")
    return examples[:max_samples] if max_samples else examples


def prepare_features(path, examples, tokenizer, args, training, runtime, log):
    """Features from the cache (built once by rank 0 while the other ranks wait, then read by all)."""
    from qa.features import FeatureParams, load_or_build_features
    from qa.runtime import barrier

    params = FeatureParams(args.max_seq_length, args.doc_stride, args.max_query_length)
    if not runtime.is_main:
        barrier(runtime)
    features = load_or_build_features(path, examples, tokenizer, params, training, cache_dir=args.features_cache_dir,
                                      threads=args.threads, overwrite_cache=args.overwrite_cache and runtime.is_main,
                                      log=log.info, check_hashes=runtime.local_rank == 0)  # once per node
    if runtime.is_main:
        barrier(runtime)
    return features


def resume_checkpoint(args, notes=None):
    """The checkpoint folder training continues from (verified: every file matches its hash), or None.

    `auto` takes the newest checkpoint that verifies: a damaged newer one is named in `notes` (with why, and
    that the run will write that step again), never trained from. A checkpoint named explicitly must verify."""
    if args.resume_from_checkpoint is None:
        return None
    if str(args.resume_from_checkpoint) not in run_dir.NEWEST:
        return checkpoints.verify_checkpoint(run_dir.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir))
    damaged = []
    for _, path in reversed(run_dir.list_checkpoints(args.output_dir)):
        try:
            checkpoints.verify_checkpoint(path)
        except checkpoints.CheckpointError as exc:
            damaged.append(str(exc))
            continue
        for problem in damaged:
            message = (f"warning: {problem}; resuming from {os.path.basename(path)} instead (the damaged folder is "
                       "left as it is until the run reaches its step again and replaces it)")
            print(f"run_squad.py: {message}", file=sys.stderr)
            if notes is not None:
                notes.append(message)
        return path
    if damaged:
        raise checkpoints.CheckpointError("; ".join(damaged) + ": no checkpoint here can be trusted; restore one from a "
                                          f"copy (or {flag_name('--sync_checkpoints')}), or start afresh with "
                                          f"{extra_flag('--overwrite_output_dir')}")
    return run_dir.resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)  # raises: none there


def fetch_record(args):
    """args.json from S3 into --output_dir (nothing else is written); an error without it needs the model named."""
    from qa.sync import fetch_run_record

    source = args.resume_from_checkpoint if str(args.resume_from_checkpoint).startswith("s3://") else args.sync_checkpoints
    try:
        found = fetch_run_record(source, args.output_dir)
    except Exception as exc:  # boto's errors (no bucket, no credentials, no network) end in one line
        raise ArgumentError(f"error: reading the run's record from {source}: {exc}") from exc
    if found is None and args.model_name_or_path is None:
        raise ArgumentError(f"error: no {run_dir.ARGS_FILE} in {args.output_dir} nor in {source}: give the run's "
                            "settings (--model_name_or_path, --train_file, ...) to resume it")


def needs_fetch(args):
    """True when this process cannot name the checkpoint to resume from by itself: one in S3 (named there, or
    `auto` with --sync_checkpoints and no complete checkpoint here: a fresh machine). agree_on_checkpoint
    decides it, with the other ranks, once the process group is up."""
    spec = args.resume_from_checkpoint
    if spec is None or not args.do_train:
        return False
    if str(spec).startswith("s3://"):
        return True
    return spec in run_dir.NEWEST and bool(args.sync_checkpoints) and run_dir.latest_checkpoint(args.output_dir) is None


def gather_from_ranks(runtime, value):
    """[value of rank 0, value of rank 1, ...]; [value] for one process."""
    values = [value] * runtime.world_size
    if runtime.distributed:
        import torch.distributed as dist

        dist.all_gather_object(values, value)
    return values


def stop_if_any_rank_failed(runtime, problem):
    """A collective: CheckpointError on every rank when any rank has a problem (a string; None when it did
    well), so that one that failed does not leave the others waiting at the next collective for 2 hours."""
    failed = [f"rank {rank}: {text}" if runtime.distributed else text
              for rank, text in enumerate(gather_from_ranks(runtime, problem)) if text]
    if failed:
        raise checkpoints.CheckpointError("; ".join(failed))


def agree_on_checkpoint(args, runtime, resume_from, say):
    """The verified local checkpoint every rank continues from, decided once for all ranks (after init_runtime).

    resume_from: what this process resolved by itself before (None where needs_fetch). Nodes need not share a
    filesystem, and uploads run in the background (a kill cuts them), so the nodes' newest checkpoints can
    differ: node 0 may have checkpoint-16 here while S3 has checkpoint-12 and node 1 nothing. Global rank 0
    picks one name: the one every rank resolved by itself when they all agree (one machine, a shared
    filesystem), else the newest complete one in S3 (or the one --resume_from_checkpoint names there). Each
    node's local rank 0 fetches it unless its copy here verifies; then every rank resolves that name here.
    Raises CheckpointError (on every rank) when any rank cannot."""
    spec = str(args.resume_from_checkpoint)
    if not (spec.startswith("s3://") or spec in run_dir.NEWEST) or (resume_from and not runtime.distributed):
        return resume_from  # a checkpoint named here, or one process that found its own: nothing to agree on
    named, remote_run = remote_checkpoint_source(args)
    tag = f"rank {runtime.rank}: " if runtime.distributed else ""
    newest_here = gather_from_ranks(runtime, os.path.basename(resume_from) if resume_from else None)
    decision, problem = [None], None
    if runtime.is_main:
        decision[0], problem = choose_checkpoint(named, remote_run, newest_here, lambda message: say(tag + message))
    stop_if_any_rank_failed(runtime, problem)
    if runtime.distributed:
        import torch.distributed as dist

        dist.broadcast_object_list(decision, src=0)
    name = decision[0]
    verified_here = resume_from if resume_from and os.path.basename(resume_from) == name else None  # not hashed again
    # Rank 0's node first, then the other nodes at once: where nodes share a folder, the others find rank 0's
    # copy there, verified, and download nothing.
    for fetching in (runtime.is_main, runtime.local_rank == 0 and not runtime.is_main):
        problem = None
        if fetching and not verified_here:
            problem = fetch_unless_here(args.output_dir, f"{remote_run.rstrip('/')}/{name}", lambda m: say(tag + m))
        stop_if_any_rank_failed(runtime, problem)
    args.resume_from_checkpoint = name
    problem = None
    try:
        resume_from = verified_here or resume_checkpoint(args)
    except checkpoints.CheckpointError as exc:
        problem = str(exc)
    stop_if_any_rank_failed(runtime, problem)
    return resume_from


def remote_checkpoint_source(args):
    """(checkpoint name or None, the run's prefix in S3) for a resume: --resume_from_checkpoint s3://.../checkpoint-N
    names one; s3://.../run or --sync_checkpoints names the run only."""
    spec = str(args.resume_from_checkpoint).rstrip("/")
    if not spec.startswith("s3://"):
        return None, args.sync_checkpoints
    if os.path.basename(spec).startswith(run_dir.CHECKPOINT_PREFIX):
        return os.path.basename(spec), os.path.dirname(spec)
    return None, spec


def choose_checkpoint(named, remote_run, newest_here, say):
    """Global rank 0's choice for agree_on_checkpoint: (checkpoint name, None) or (None, problem)."""
    from qa.sync import SyncError, latest_remote_checkpoint

    if named:
        return named, None
    if newest_here[0] is not None and len(set(newest_here)) == 1:
        return newest_here[0], None  # every rank sees the same newest checkpoint: as with one process
    if not remote_run:
        return None, (f"the ranks' newest checkpoints differ ({', '.join(map(str, newest_here))}, by rank): nodes "
                      f"without a shared filesystem need {flag_name('--sync_checkpoints')} s3://... to resume together")
    try:
        name = latest_remote_checkpoint(remote_run)
    except SyncError as exc:
        return None, str(exc)
    if name is None:
        return None, f"no complete checkpoint in {remote_run}; check the URI, or train from the start"
    say(f"resuming from {name}, the newest complete checkpoint in {remote_run} (the newest in each rank's folder: "
        f"{', '.join(map(str, newest_here))})")
    return name, None


def fetch_unless_here(output_dir, uri, say):
    """Fetch the checkpoint `uri` into output_dir unless a copy here verifies; None, or the problem (a string)."""
    from qa.sync import SyncError, fetch_checkpoint

    local = os.path.join(output_dir, os.path.basename(uri))
    try:
        checkpoints.verify_checkpoint(local)
        say(f"{local} is here and verifies: not fetched")
        return None
    except checkpoints.CheckpointError:
        pass
    try:
        say(f"fetching the checkpoint to resume from {uri} into {output_dir}")
        say(f"fetched {fetch_checkpoint(uri, output_dir, log=say)} (verified)")
    except (checkpoints.CheckpointError, SyncError, OSError) as exc:
        return str(exc)
    return None


def start_sync(args, log):
    """--sync_checkpoints on rank 0: the bucket is checked now (a typo fails before training, not at step 1500)."""
    if not args.sync_checkpoints:
        return None
    from qa.sync import CheckpointSync, SyncError, check_bucket, claim_prefix

    try:
        check_bucket(args.sync_checkpoints)
        claim_prefix(args.sync_checkpoints, args.run_id, args.output_dir)  # RUN_OWNER.json: this run's prefix now
    except SyncError as exc:  # one line and exit status 2, like any other bad argument
        log.info(f"error: {exc}")
        print(f"run_squad.py: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sync = CheckpointSync(args.sync_checkpoints, log=log.info)
    records = (os.path.join(args.output_dir, name) for name in (run_dir.ARGS_FILE, run_dir.COMMAND_FILE, run_dir.WANDB_ID_FILE))
    sync.submit_files([path for path in records if os.path.exists(path)])
    return sync


def finish_sync(sync, args, log):
    """Upload the run folder's own files not already in S3 as they are now (summary, eval results, logs, the card
    rewritten with its scores; not the final model's weights, submitted right after they were written), wait for
    every upload, and compare S3 with the folder: returns what is missing there ([] when all is there)."""
    from qa.sync import finish_run

    return finish_run(sync, args.output_dir, log.info)


def final_model_target(output_dir):
    """("final model", output_dir, step) when output_dir holds a trained model, else None."""
    if not run_dir.has_final_model(output_dir):
        return None
    return ("final model", output_dir, run_dir.model_step(output_dir, default=run_dir.FINAL))


def same_folder(a, b):
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def export_folder(spec, output_dir):
    """The ONNX export (scripts/export_onnx.py) that --eval_checkpoint names (a path, or a name in output_dir), or None."""
    from qa.onnx_export import is_onnx_model

    if spec is None:
        return None
    for path in (os.path.join(output_dir, spec), spec):
        if os.path.isdir(path) and is_onnx_model(path):
            return path
    return None


def eval_targets(args, train_result):
    """[(label, folder, step)] that --do_eval evaluates.

    --eval_all_checkpoints: every complete checkpoint, then the final model (legacy evaluated both);
    --eval_checkpoint SPEC: that one (run_dir.resolve_model: checkpoint-N, best, latest, final, a path); after an
    early stop: the best checkpoint; after training: the final model. Evaluation alone evaluates
    --model_name_or_path, as legacy did (a checkpoint of ours is labelled with its step, anything else
    "pretrained"), except when it is --output_dir itself (`make eval`): then the run's model (run_dir.run_model:
    the best, checkpoint or final model, else the final model, else the newest checkpoint). Raises
    CheckpointError when a named checkpoint or anything to evaluate is missing."""
    if args.eval_all_checkpoints:
        targets = [(os.path.basename(p), p, step) for step, p in run_dir.list_checkpoints(args.output_dir)]
        final = final_model_target(args.output_dir)
        if final is not None:  # the same weights as a checkpoint of its step: evaluated once, as the final model
            targets = [t for t in targets if t[2] != final[2]] + [final]
        return targets
    spec = args.eval_checkpoint
    export = export_folder(spec, args.output_dir)
    if export is not None:  # `make eval CKPT=onnx`: the run's ONNX export (make export), through onnxruntime
        return [(os.path.basename(os.path.normpath(export)), export, "onnx")]
    if spec is not None and same_folder(spec, args.output_dir):
        spec = run_dir.FINAL  # the final model is the run folder itself: it has no COMPLETE marker, and needs none
    if spec is None and train_result is None and not same_folder(args.model_name_or_path, args.output_dir):
        model = args.model_name_or_path
        ours = os.path.isdir(model) and run_dir.is_complete(model)
        return [(model, model, run_dir.model_step(model) if ours else "pretrained")]
    if spec is None and train_result is not None:
        if not (train_result.early_stopped and run_dir.best_checkpoint(args.output_dir)):
            return [("final model", args.output_dir, train_result.global_step)]
        spec = run_dir.BEST
    path = run_dir.resolve_model(spec, args.output_dir)
    if same_folder(path, args.output_dir):
        return [final_model_target(args.output_dir)]
    return [(os.path.basename(path), path, run_dir.model_step(path))]


class FinalSaveError(RuntimeError):
    """The final model could not be written; the message says what is kept and what to do."""


def eval_hint(output_dir, checkpoint):
    """How to evaluate `checkpoint` of the run, as the user types it (make, or the flags)."""
    name = os.path.basename(checkpoint)
    if via_make():
        return f"`make eval OUTPUT_DIR={shlex.quote(str(output_dir))} CKPT={shlex.quote(name)}`"
    return f"--do_eval --output_dir {output_dir} --eval_checkpoint {name}"


def save_final_model(model, tokenizer, args, result, runtime, save_last_step=None):
    """The trained model at the root of --output_dir: loads with from_pretrained(output_dir).

    Written like a checkpoint: into .tmp-final-PID/ first, then each file renamed into place, config.json last
    (what marks a folder as holding a model), so a failure leaves no stray config.json beside old weights. When
    the write fails (a full disk), the temporary folder is removed and, if the last step has no complete
    checkpoint yet, one is saved in the space that freed, so the run's weights are never lost."""
    if not runtime.is_main:
        return
    tmp = storage.tmp_sibling(os.path.join(args.output_dir, "final"))
    try:
        os.makedirs(tmp, exist_ok=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        names = sorted(os.listdir(tmp), key=lambda name: name == run_dir.MODEL_CONFIG)  # config.json last
        for name in names:
            storage.fsync_path(os.path.join(tmp, name))
        model_check.remove_model_record(args.output_dir)  # the record goes last: written only once every file is in
        for name in names:
            os.replace(os.path.join(tmp, name), os.path.join(args.output_dir, name))
        os.rmdir(tmp)
        model_check.write_model_record(args.output_dir, names, {"global_step": result.global_step})
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = run_dir.checkpoint_path(args.output_dir, result.global_step)
        if not run_dir.is_complete(kept) and save_last_step is not None:
            try:
                kept = save_last_step()  # a checkpoint of the last step, in the space the failed write freed
            except (Exception, SystemExit) as inner:
                raise FinalSaveError(f"the final model could not be written to {args.output_dir} ({_first_line(exc)}), "
                                     f"nor a checkpoint of step {result.global_step} ({_first_line(inner)}): free disk "
                                     f"space and continue from its newest checkpoint ({resume_hint(args.output_dir)})") from exc
        raise FinalSaveError(f"the final model could not be written to {args.output_dir} ({_first_line(exc)}); step "
                             f"{result.global_step}'s weights are kept in {kept}: free space, then evaluate it with "
                             f"{eval_hint(args.output_dir, kept)} or load it with from_pretrained") from exc
    write_summary(args.output_dir, result.global_step, result.early_stopped)
    write_final_model_notes(args, runtime)


def write_summary(output_dir, global_step, early_stopped):
    """training_summary.json: the run finished (run_dir.finished_step), at which step, and its best model now."""
    summary = {"global_step": global_step, "early_stopped": early_stopped, "best": run_dir.best_checkpoint(output_dir)}
    with atomic_write(os.path.join(output_dir, run_dir.SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)


def record_final_best(args, train_result, metrics, log):
    """The final model's evaluation after training takes part in the best: when it beats the best checkpoint (or
    none was evaluated), best_checkpoint.json names the final model, so `make eval`, ask, eval-nq and upload take
    the same model (run_dir.run_model)."""
    from qa import retention

    value = metrics.get(args.metric_for_best_model)
    if value is None or not retention.record_best(args.output_dir, args.output_dir, args.metric_for_best_model, value):
        return
    log.info(f"the final model (step {train_result.global_step}) is the run's best: {args.metric_for_best_model} "
             f"{value:.2f}")
    write_summary(args.output_dir, train_result.global_step, train_result.early_stopped)


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def write_final_model_notes(args, runtime, eval_results=None):
    """The final model's card and qa_config.json (with the scores and tuned threshold once it is evaluated)."""
    write_model_card(args.output_dir, dict(vars(args), world_size=runtime.world_size), eval_results,
                     run_dir.best_checkpoint(args.output_dir))
    write_qa_config(args.output_dir, vars(args), eval_results)


def run_preflight(args, model, train_features, log, world_size=1, first_step=0):
    """Warn (with numbers) when disk or RAM look short for this run; stop when it cannot work."""
    from qa.preflight import PreflightError, features_bytes, planned_checkpoints, preflight
    from qa.trainer import total_steps

    planned = planned_checkpoints(total_steps(len(train_features), args, world_size), args.save_steps,
                                  args.logging_steps, args.evaluate_during_training, first_step)
    try:
        preflight(args.output_dir, model_num_params=sum(p.numel() for p in model.parameters()),
                  save_total_limit=args.save_total_limit,
                  expected_features_bytes=features_bytes(len(train_features), args.max_seq_length),
                  need_cuda=args.fp16 and not args.no_cuda, log=lambda message: log.info(f"preflight: {message}"),
                  model_name=args.model_name_or_path, checkpoints_planned=planned)
    except PreflightError as exc:
        raise SystemExit(f"preflight: {exc}") from exc


def run_training(args, runtime, log, resume_from, sync=None):
    """Features, model (fresh or from the checkpoint `resume_from`), the loop, and the final model."""
    from qa import trainer
    from qa.answer_type_head import training_head
    from qa.runtime import barrier, set_seed

    # A resume reads the tokenizer saved in its checkpoint: nothing is fetched from a hub to continue a run.
    tokenizer = load_tokenizer(args, args.model_name_or_path) if resume_from is None else load_checkpoint_tokenizer(args, resume_from)
    train_examples = load_examples(args.train_file, args.max_train_samples, args.skip_bad_examples, log, "train on")
    train_features = prepare_features(args.train_file, train_examples, tokenizer, args, True, runtime, log)
    args.answer_type_head = training_head(args.answer_type_head, train_examples, resume_from, log.info)
    if runtime.is_main:
        write_args(args, args.output_dir)  # the decided --answer_type_head, for the record
    eval_set = None
    if args.evaluate_during_training:
        eval_examples = load_examples(args.predict_file, args.max_eval_samples, args.skip_bad_examples, log)
        eval_set = (eval_examples, prepare_features(args.predict_file, eval_examples, tokenizer, args, False, runtime, log),
                    tokenizer)  # the tokenizer: whole-page NQ scores with --nq_dev_file (qa/nq/train_eval.py)
    set_seed(args.seed)  # before loading: a new QA head is initialised from it
    model = load_model(resume_from or args.model_name_or_path, args, runtime, args.answer_type_head)
    if runtime.is_main:
        run_preflight(args, model, train_features, log, runtime.world_size,
                      run_dir.model_step(resume_from) if resume_from else 0)
    result = trainer.train(args, model, tokenizer, train_features, runtime, log, eval_set=eval_set, resume_from=resume_from,
                           sync=sync)
    if not result.stopped_by_signal:
        # One process: a checkpoint of the last step can be saved alone if the final save fails (under torchrun
        # saving is a collective that the other ranks, past training, would not join).
        save_final_model(model, tokenizer, args, result, runtime,
                         save_last_step=None if runtime.distributed else result.save_last_step)
        log.info(f"training done at step {result.global_step}; final model in {args.output_dir}")
        if sync is not None:  # now, not after the evaluation: a spot reclaim during a long evaluation keeps it
            sync.submit_final_model(args.output_dir)
    barrier(runtime)
    return result


def run_evaluation(args, runtime, log, train_result, argv=None, notes=()):
    """Evaluate each target with its own tokenizer (saved in every checkpoint and final folder).

    Right after training (train_result given) the files go into the run folder, through the run's `log`.
    Evaluation alone (log None) gives each target its own folder, run_dir.eval_dir(...): its files, its
    log, metrics and args.json, so the training record is never written over."""
    from qa.inference import evaluate_model
    from qa.nq.train_eval import add_whole_page_scores

    say = log.info if log is not None else (lambda message: print(message, file=sys.stderr))
    examples = load_examples(args.predict_file, args.max_eval_samples, args.skip_bad_examples, log)
    results = {}
    targets = eval_targets(args, train_result)
    if not targets:
        say(f"--eval_all_checkpoints: no complete checkpoint in {args.output_dir}, nothing evaluated")
    for label, folder, step in targets:
        out, target_log, final = args.output_dir, log, None
        if log is None:  # its own folder, written aside (.tmp-NAME-PID) and put in place whole when it is done
            final = run_dir.eval_dir(args.output_dir, args.predict_file, step, getattr(args, "eval_changed", None))
            out, free_at_start = storage.tmp_sibling(final), storage.free_bytes(final)
        try:
            if final is not None:
                target_log = open_eval_folder(args, out, runtime, argv, notes)
            target_log.info(f"evaluating {label} ({folder})" + ("" if final is None else f" into {final}"))
            model_check.verify_model_folder(folder, say)  # damaged, mixed or linked out: named, never evaluated
            tokenizer = load_tokenizer(args, folder)
            features = prepare_features(args.predict_file, examples, tokenizer, args, False, runtime, target_log)
            model = load_model(folder, args, runtime)
            results[label] = add_whole_page_scores(evaluate_model(model, examples, features, args, runtime, target_log,
                                                                  step, out), model, tokenizer, args, runtime, target_log,
                                                   step, out)  # with --nq_dev_file (qa/nq/train_eval.py)
        except BaseException as exc:
            if final is not None and runtime.is_main:
                storage.discard(out)  # nothing half-written: never an eval folder with only predictions_N.json
                if checkpoints.is_disk_full(exc):
                    raise checkpoints.DiskFullError(storage.no_space_message(
                        os.path.dirname(final), free_at_start, f"the evaluation {os.path.basename(final)}",
                        "free space, then evaluate again", at_least=True)) from exc
            eval_guard.raise_if_deleted(exc, folder, args.output_dir)  # rotation took it away: one line (qa.eval_guard)
            raise
        finally:
            if target_log is not log:
                target_log.close()
        if final is not None and runtime.is_main:
            storage.put_in_place(out, final)
        if runtime.is_main and train_result is not None and same_folder(folder, args.output_dir):
            record_final_best(args, train_result, results[label], log)
            write_final_model_notes(args, runtime, results[label])  # the card gets its scores and tuned threshold
    return results


def open_eval_folder(args, folder, runtime, argv, notes):
    """An evaluation's own folder: its args.json and command line, and its log (returned), with `notes` in it."""
    if runtime.is_main:
        os.makedirs(folder, exist_ok=True)
        save_run_config(args, folder, argv)
    eval_log = open_log(args, folder, runtime)
    for note in notes:
        eval_log.info(note)
    return eval_log


def claim_output_dir(args, create=False):
    """The output folder's lock (qa/run_lock.py) for a training, or None. Taken by global rank 0 only: the process
    that writes the run's record; on nodes sharing a disk, one lock per node would refuse the run itself.

    Before the arguments are checked (create False) only when the folder exists and can be written, so a folder a
    live run is writing is refused before its record is read; otherwise once they are (the folder is made then)."""
    if not args.do_train or int(os.environ.get("RANK", "0")) != 0:
        return None
    if not create and not (os.path.isdir(args.output_dir) and os.access(args.output_dir, os.W_OK | os.X_OK)):
        return None
    try:
        return run_lock.hold(args.output_dir)
    except run_lock.LocksUnsupported as exc:
        if create:  # said once: the call after the checks tries again
            print(f"run_squad.py: warning: {exc}", file=sys.stderr)
        return None
    except OSError as exc:
        raise ArgumentError(f"error: {args.output_dir}: its lock file cannot be written ({exc}): give a folder you can "
                            "write") from exc


def settle_arguments(args, argv, cuda_available):
    """The run's record merged into the flags and every argument checked, before anything is written here.

    Returns (the verified checkpoint a training continues from or None, notes for the log). Raises ArgumentError,
    CheckpointError or SyncError, each a message that says what to do."""
    notes = []
    # The run's record stands in for the flags not given: a resume continues the same run, an evaluation
    # uses the windows the run trained with.
    if resumes_from_s3(args) and run_dir.read_args(args.output_dir) is None:
        fetch_record(args)  # a fresh machine: the run's settings come from its args.json in S3
    resume_from = None
    if takes_record(args) and args.do_train:
        # The checkpoint resolved and verified first: settings come from the one the run continues from.
        resume_from = resume_checkpoint(args, notes) if not needs_fetch(args) else None
        notes.append(continue_run_settings(args, given_settings(argv), int(os.environ.get("WORLD_SIZE", "1")),
                                           checkpoint=resume_from))
    elif takes_record(args) and not args.do_train:
        notes.append(eval_run_settings(args, given_settings(argv)))
    validate_args(args, cuda_available=cuda_available)
    if args.do_train and args.sync_checkpoints and int(os.environ.get("RANK", "0")) == 0:
        from qa.sync import check_bucket, check_owner

        check_bucket(args.sync_checkpoints)  # a mistyped bucket fails now, before anything is written here
        check_owner(args.sync_checkpoints, args.run_id)  # so does another run's prefix (a new run has no id yet)
    fill_machine_defaults(args, cuda_available)
    # A wrong or damaged checkpoint fails now, not after building features: resolved and verified once
    # (one in S3 is fetched after the process group is up, in settle_resume).
    if resume_from is None and args.do_train and not needs_fetch(args):
        resume_from = resume_checkpoint(args, notes)
    if args.do_eval and not args.do_train:
        eval_targets(args, None)  # likewise for what evaluation alone would evaluate
    return resume_from, [note for note in notes if note]


def fill_machine_defaults(args, cuda_available):
    """Settings whose default depends on the machine or the moment, recorded as used (args.json, checkpoints)."""
    import torch

    if args.pad_to_multiple_of is None:  # tensor cores want multiples of 8; the CPU gains nothing from padding
        args.pad_to_multiple_of = 8 if cuda_available and not args.no_cuda else 1
    if args.length_group_batches is None:  # recorded as used (a record without it: 50, the value before the flag)
        from qa.sampling import MEGA_BATCH_SIZE

        args.length_group_batches = MEGA_BATCH_SIZE
    if args.torch_threads is None:  # OMP_NUM_THREADS, or torch's choice: a resume then runs as fast as the run did
        args.torch_threads = torch.get_num_threads()
    if args.do_train and not args.run_id:  # a new run (a resume took the run's own id from its record)
        args.run_id = uuid.uuid4().hex[:12]


def settle_resume(args, argv, runtime, resume_from, notes):
    """The checkpoint every rank continues from (agree_on_checkpoint); a fetched one's settings are applied with
    the same refusal rules as a local resume's. Raises CheckpointError or ArgumentError."""
    from qa.runtime import use_deterministic_algorithms

    fetched = resume_from is None  # the run's records come back with a fetched checkpoint
    resume_from = agree_on_checkpoint(args, runtime, resume_from, lambda message: print(message, file=sys.stderr))
    if fetched:
        note = continue_run_settings(args, given_settings(argv), runtime.world_size, checkpoint=resume_from)
        notes.extend([note] if note else [])
        if args.deterministic:  # recorded in the fetched checkpoint: before the first step, as init_runtime would
            use_deterministic_algorithms()
    return resume_from


def prepare_output_dir(args, runtime, argv):
    """Rank 0 of a training readies the run folder before anything else is written there; returns lines for the log.

    A fresh start clears a previous run (--overwrite_output_dir) or what a start that failed left (no checkpoint,
    no final model: run_dir.failed_start); --continue_finished makes a finished run unfinished again; folders
    half-written by killed processes go; then the run's record (args.json, command.txt) is written."""
    from qa import retention

    if not (runtime.is_main and args.do_train):  # evaluation alone writes only into its own folder (run_evaluation)
        return []
    lines = []
    fresh = args.resume_from_checkpoint is None
    leftovers = fresh and not args.overwrite_output_dir and run_dir.output_dir_has_content(args.output_dir) \
        and run_dir.failed_start(args.output_dir)
    if fresh and (args.overwrite_output_dir or leftovers):
        removed = retention.clear_previous_run(args.output_dir)  # a fresh run must not read the old one back
        if removed and not leftovers:
            lines.append(f"--overwrite_output_dir: removed the previous run's {', '.join(map(os.path.basename, removed))}")
    if leftovers:
        left = ", ".join(name for name in leftovers if name != run_dir.LOCK_FILE)
        lines.append(f"{args.output_dir} holds no checkpoint, no final model and no live run, only what a start that "
                     f"failed left ({left}): this run takes it")
    if args.continue_finished and run_dir.finished_step(args.output_dir) is not None:
        lines.append(continue_finished_run(args.output_dir))
    reaped = storage.reap_abandoned(args.output_dir)  # each as big as a checkpoint, nothing reads them
    if reaped:
        lines.append(f"removed folders half-written by processes that were killed: {', '.join(map(os.path.basename, reaped))}")
    os.makedirs(args.output_dir, exist_ok=True)
    save_run_config(args, args.output_dir, argv)
    return lines


def continue_finished_run(output_dir):
    """--continue_finished: the run is unfinished again (its summary goes; rewritten when it ends), and a best that
    names the final model goes too (those weights are replaced at the end). Returns the line for the log."""
    step = run_dir.finished_step(output_dir)
    os.remove(os.path.join(output_dir, run_dir.SUMMARY_FILE))
    best = run_dir.best_checkpoint(output_dir)
    if best is not None and best.get("checkpoint") == run_dir.FINAL:
        os.remove(os.path.join(output_dir, run_dir.BEST_FILE))
    return (f"--continue_finished: {output_dir} had finished at step {step}; its final model stays until this run "
            "writes a new one")


def quiet_transformers(verbose):
    import transformers

    if verbose:
        transformers.logging.set_verbosity_info()
    else:
        transformers.logging.set_verbosity_warning()
        transformers.utils.logging.disable_progress_bar()  # "Loading weights"/"Writing model shards" bars at every checkpoint


def main(argv=None):
    args = parse_args(argv)
    import torch

    threads_before, lock = torch.get_num_threads(), None
    try:
        try:
            lock = claim_output_dir(args)  # a folder a live run is writing is refused before its record is read
            resume_from, notes = settle_arguments(args, argv, torch.cuda.is_available())
            if args.server_ip:  # after the checks, before anything is written
                start_remote_debugger(args.server_ip, args.server_port)
            lock = lock or claim_output_dir(args, create=True)
        except (ArgumentError, checkpoints.CheckpointError, SyncError, run_lock.FolderBusy) as exc:
            print(f"run_squad.py: {exc}".replace("\n", "\nrun_squad.py: "), file=sys.stderr)
            return 2
        if lock is not None:
            lock.note_run_id(args.run_id)
        torch.set_num_threads(args.torch_threads)
        return run(args, argv, resume_from, notes)
    finally:
        torch.set_num_threads(threads_before)  # main() called from Python (tests) leaves the caller's count
        if lock is not None:
            lock.release()


def run(args, argv, resume_from, notes):
    """What main does once the arguments are settled: the process group, the run folder, training, evaluation.
    Returns the exit status."""
    import torch

    from qa.runtime import barrier, init_runtime

    runtime = init_runtime(args.no_cuda, args.fp16, args.bf16, args.local_rank, args.deterministic)
    barrier(runtime)  # every rank validated the output folder before rank 0 writes into it
    if args.do_train and args.resume_from_checkpoint is not None:  # before anything is written here
        try:
            resume_from = settle_resume(args, argv, runtime, resume_from, notes)
        except (checkpoints.CheckpointError, ArgumentError) as exc:
            print(f"run_squad.py: {exc}", file=sys.stderr)
            if runtime.distributed:  # every rank stops here (they agreed): leave the group, not abort in its threads
                torch.distributed.destroy_process_group()
            return 2
    folder_lines = prepare_output_dir(args, runtime, argv)
    quiet_transformers(args.verbose_logging)
    log = None
    if args.do_train:
        log = open_log(args, args.output_dir, runtime, resume_step=run_dir.model_step(resume_from) if resume_from else None)
        for note in notes + unused_flag_notes(args) + folder_lines:
            log.info(note)
    else:
        notes += unused_flag_notes(args)
    return train_and_evaluate(args, argv, runtime, log, resume_from, notes)


def train_and_evaluate(args, argv, runtime, log, resume_from, notes):
    """--do_train and/or --do_eval, each error ending in one line; the exit status."""
    import torch

    from qa.postprocess import NonFiniteLogits
    from qa.runtime import barrier

    sync = None
    try:
        sync = start_sync(args, log) if runtime.is_main and args.do_train else None
        train_result = run_training(args, runtime, log, resume_from, sync) if args.do_train else None
        if train_result is not None and train_result.stopped_by_signal:
            return 128 + train_result.stopped_by_signal
        if args.do_eval:
            run_evaluation(args, runtime, log, train_result, argv, notes)
    except checkpoints.CheckpointError as exc:  # e.g. a damaged checkpoint named for evaluation
        print(f"run_squad.py: {exc}", file=sys.stderr)
        return 2
    except FinalSaveError as exc:
        log.info(f"error: {exc}")
        print(f"run_squad.py: {exc}", file=sys.stderr)
        return 1
    except SquadFormatError as exc:
        report_bad_data(exc, args, log)
        return 2
    except NonFiniteLogits:  # an evaluation outside training (in training qa.divergence stops the run instead)
        model = args.output_dir if args.do_train else args.model_name_or_path
        print(f"run_squad.py: {model}: the model's logits are not finite (NaN): its weights are broken (a run that "
              "diverged?); evaluate an earlier checkpoint-N, or train again", file=sys.stderr)
        return 2
    finally:
        if sync is not None:  # rank 0 drains the uploads (a SIGTERM's checkpoint among them) ...
            missing_in_s3 = finish_sync(sync, args, log)
        if runtime.distributed and sys.exc_info()[0] is None:
            # ... while every other rank waits here: one that exits first makes torchrun terminate the rest, rank 0
            # in the middle of its uploads. Not after an error: the other ranks may be inside another collective.
            barrier(runtime)
        if log is not None:
            log.close()
        if runtime.distributed:
            torch.distributed.destroy_process_group()
    return INCOMPLETE_EXIT if sync is not None and missing_in_s3 else 0


def report_bad_data(exc, args, log):
    """A SquadFormatError in one line (and the log). The message says what to do; a skippable one (one question's
    missing field or bad answer) offers --skip_bad_examples itself. Anything else only fixing the file cures."""
    # The library's hint names its own parameter; the user gets the flag as they pass it (EXTRA=... under make).
    message = str(exc).replace(FIX_HINT, f"fix the data, or add {extra_flag('--skip_bad_examples')} to skip and count "
                                         "such questions")
    if log is not None:
        log.to_file(f"bad data: {message}")
    print(f"run_squad.py: {message}", file=sys.stderr)  # once on the terminal
    if args.skip_bad_examples and not exc.skippable:
        print("run_squad.py: (--skip_bad_examples skips only questions with a missing field or a bad answer, "
              "not this)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
