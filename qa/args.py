"""run_squad.py's command line: every flag of the legacy HuggingFace script, plus ours, checked in one place.

    args = parse_args(["--model_type", "albert", "--model_name_or_path", "albert-base-v2", ...])
    validate_args(args, cuda_available=torch.cuda.is_available())   # raises ArgumentError(message)

Legacy flags keep their meaning and defaults (so the guide's command line runs unchanged);
the flags after "# New" are this project's. Each default sits here, once, with its reason.
"""

import argparse
import os

REPORT_CHOICES = ("tensorboard", "wandb", "none")
# Metrics a checkpoint can be ranked by (every one of them: greater is better).
BEST_METRIC_CHOICES = (
    "f1", "exact", "best_f1", "best_exact", "HasAns_f1", "HasAns_exact", "NoAns_f1", "NoAns_exact",
)
# What legacy read from --data_dir when --train_file/--predict_file were not given (SquadV1/V2Processor).
LEGACY_DEFAULT_FILES = {
    (True, "train"): "train-v2.0.json", (True, "predict"): "dev-v2.0.json",
    (False, "train"): "train-v1.1.json", (False, "predict"): "dev-v1.1.json",
}


class ArgumentError(ValueError):
    """A bad combination of flags; the message says what to do."""


def build_parser():
    p = argparse.ArgumentParser(
        description="Fine-tune and evaluate an extractive question-answering model on SQuAD-format data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Model and data (legacy).
    p.add_argument("--model_type", default=None, help="Informative only (e.g. albert, ALBERTxlv2): the architecture is read from the model's config.")
    p.add_argument("--model_name_or_path", required=True, help="Hub name or local folder of the model; a checkpoint-N folder of ours resumes training from it.")
    p.add_argument("--output_dir", required=True, help="Where checkpoints, predictions, logs and the final model go.")
    p.add_argument("--data_dir", default=None, help="Folder that --train_file/--predict_file are relative to (legacy: SQuAD's default names when those are not given).")
    p.add_argument("--train_file", default=None, help="SQuAD-format JSON to train on.")
    p.add_argument("--predict_file", default=None, help="SQuAD-format JSON to evaluate on.")
    p.add_argument("--config_name", default="", help="Config name or path, if not the model's.")
    p.add_argument("--tokenizer_name", default="", help="Tokenizer name or path, if not the model's.")
    p.add_argument("--cache_dir", default="", help="Where downloaded models are cached (transformers' cache_dir).")
    p.add_argument("--version_2_with_negative", action="store_true", help="The data has unanswerable questions (SQuAD 2.0, NQ converted).")
    p.add_argument("--null_score_diff_threshold", type=float, default=0.0, help="Predict no answer when null_score - best_span_score > this.")
    # Windows (legacy).
    p.add_argument("--max_seq_length", type=int, default=384, help="Tokens per window (question + context + specials).")
    p.add_argument("--doc_stride", type=int, default=128, help="Step between the starts of consecutive context windows.")
    p.add_argument("--max_query_length", type=int, default=64, help="Question tokens kept (longer questions are cut).")
    # What to do (legacy).
    p.add_argument("--do_train", action="store_true", help="Train.")
    p.add_argument("--do_eval", action="store_true", help="Evaluate on --predict_file after training (or alone).")
    p.add_argument("--evaluate_during_training", action="store_true", help="Evaluate at every --logging_steps and --save_steps, on every GPU.")
    p.add_argument("--do_lower_case", action="store_true", help="Ask the tokenizer to lowercase (passed only when given: legacy passed False, which turned off ALBERT's own lowercasing).")
    # Optimisation (legacy).
    p.add_argument("--per_gpu_train_batch_size", type=int, default=8, help="Training batch per device (per process).")
    p.add_argument("--per_gpu_eval_batch_size", type=int, default=8, help="Evaluation batch per device (per process).")
    p.add_argument("--learning_rate", type=float, default=5e-5, help="Peak learning rate of AdamW.")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimizer step.")
    p.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay (never on biases and LayerNorm weights).")
    p.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon.")
    p.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm (0 = no clipping).")
    p.add_argument("--num_train_epochs", type=float, default=3.0, help="Epochs (a fraction is allowed, e.g. 0.5).")
    p.add_argument("--max_steps", type=int, default=-1, help="If > 0: optimizer steps to run, overriding --num_train_epochs.")
    p.add_argument("--warmup_steps", type=int, default=0, help="Linear warmup steps, then linear decay to 0.")
    # Post-processing (legacy).
    p.add_argument("--n_best_size", type=int, default=20, help="Candidate spans kept per question (nbest file).")
    p.add_argument("--max_answer_length", type=int, default=30, help="Longest answer, in tokens.")
    p.add_argument("--verbose_logging", action="store_true",
                   help="Log more: transformers' info messages and its progress bars (otherwise warnings only). Legacy printed "
                        "data-processing warnings here; offset mappings leave none to print.")
    p.add_argument("--lang_id", type=int, default=0, help="Language id given to XLM models (others ignore it).")
    # Bookkeeping (legacy).
    p.add_argument("--logging_steps", type=int, default=500, help="Log (and evaluate, with --evaluate_during_training) every N optimizer steps; 0 = never (legacy), except the last step.")
    p.add_argument("--save_steps", type=int, default=500, help="Save a checkpoint every N optimizer steps; 0 = no periodic checkpoints (legacy; a signal or a new best still saves one).")
    p.add_argument("--eval_all_checkpoints", action="store_true", help="With --do_eval: evaluate every checkpoint-N in --output_dir.")
    p.add_argument("--no_cuda", action="store_true", help="Use the CPU even when a GPU is there.")
    p.add_argument("--overwrite_output_dir", action="store_true", help="Train into a non-empty --output_dir.")
    p.add_argument("--overwrite_cache", action="store_true", help="Rebuild cached features.")
    p.add_argument("--seed", type=int, default=42, help="Seed of initialisation, data order and dropout.")
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1,
                   help="Set by legacy launchers (torch.distributed.launch passes --local-rank since torch 2.0); "
                        "torchrun's LOCAL_RANK environment variable wins.")
    p.add_argument("--fp16", action="store_true", help="Mixed precision float16 on CUDA (torch.amp autocast + GradScaler; apex is not needed).")
    p.add_argument("--fp16_opt_level", default="O1", help="Accepted for compatibility and unused: torch.amp replaces apex's levels.")
    p.add_argument("--server_ip", default="", help="Remote debugging: wait for a debugpy client on this address.")
    p.add_argument("--server_port", default="", help="Remote debugging: port for --server_ip.")
    p.add_argument("--threads", type=int, default=1, help="Threads used to build features (the Rust tokenizer runs in parallel across chunks of questions).")
    # New: precision, checkpoints, model selection, logging, subsets.
    p.add_argument("--bf16", action="store_true", help="Mixed precision bfloat16 (CUDA or CPU autocast; no loss scaling needed).")
    p.add_argument("--save_total_limit", type=int, default=None, help="Keep at most N checkpoints (the best is never deleted).")
    p.add_argument("--resume_from_checkpoint", nargs="?", const="auto", default=None,
                   help="Continue exactly from a checkpoint: a path, checkpoint-N in --output_dir, or auto (the newest complete one).")
    p.add_argument("--metric_for_best_model", default="f1", choices=BEST_METRIC_CHOICES, help="Evaluation metric that ranks checkpoints (greater is better).")
    p.add_argument("--early_stopping_patience", type=int, default=None, help="Stop after N evaluations without improvement of --metric_for_best_model.")
    p.add_argument("--report_to", nargs="+", default=["tensorboard"], choices=REPORT_CHOICES, help="Where metrics go (several allowed).")
    p.add_argument("--wandb_project", default=os.environ.get("WANDB_PROJECT"), help="wandb project (default: $WANDB_PROJECT).")
    p.add_argument("--max_train_samples", type=int, default=None, help="Train on the first N questions only.")
    p.add_argument("--max_eval_samples", type=int, default=None, help="Evaluate on the first N questions only.")
    p.add_argument("--skip_bad_examples", action="store_true",
                   help="Skip and count questions missing a field or whose answer_start does not point at the answer text, instead of stopping.")
    p.add_argument("--pad_to_max_length", action="store_true", help="Pad every batch to --max_seq_length instead of to its longest member.")
    p.add_argument("--features_cache_dir", default=None,
                   help="Where cached features go (default: .features_cache beside each data file, as legacy cached beside the data).")
    p.add_argument("--eval_checkpoint", default=None,
                   help="What --do_eval evaluates: a checkpoint path, checkpoint-N, best or auto (default: best if recorded, else the final model).")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    args.train_file = resolve_data_file(args.data_dir, args.train_file, args.version_2_with_negative, "train", args.do_train)
    args.predict_file = resolve_data_file(
        args.data_dir, args.predict_file, args.version_2_with_negative, "predict", args.do_eval or args.evaluate_during_training
    )
    return args


def resolve_data_file(data_dir, name, version_2, split, needed):
    """Legacy semantics: --data_dir joins the file name; without a name, SQuAD's default file in data_dir."""
    if name is None and data_dir and needed:
        name = LEGACY_DEFAULT_FILES[(bool(version_2), split)]
    if name is None:
        return None
    name = os.path.expanduser(name)
    return os.path.join(os.path.expanduser(data_dir), name) if data_dir else name


# The log of a detached session (`make train DETACH=1`), created in the output folder before run_squad.py starts.
DETACHED_LOG = "console.log"


def output_dir_has_content(path):
    """Legacy's test (anything in it), except the log of a detached session that is starting this very run."""
    return os.path.isdir(path) and bool(set(os.listdir(path)) - {DETACHED_LOG})


def is_our_checkpoint(path):
    """A checkpoint folder written by qa.checkpoints (holds our state file), e.g. the guide's checkpoint-1500."""
    from qa import checkpoints

    return os.path.isdir(path) and checkpoints.is_complete(path)


def is_unfinished_checkpoint(path):
    """A folder of ours (it has our state file) whose COMPLETE marker is missing or does not match its files."""
    from qa import checkpoints

    return (os.path.isdir(path) and os.path.exists(os.path.join(path, checkpoints.STATE_FILE))
            and not checkpoints.is_complete(path))


def validate_args(args, cuda_available):
    """Check every argument up front; raise ArgumentError with a message that says what to do.

    Also normalises: a --model_name_or_path that is one of our checkpoints becomes
    --resume_from_checkpoint when training (the guide resumes that way)."""
    errors = []
    use_cuda = cuda_available and not args.no_cuda
    if not (args.do_train or args.do_eval):
        errors.append("nothing to do: give --do_train and/or --do_eval")
    if args.fp16 and args.bf16:
        errors.append("--fp16 and --bf16 are exclusive: choose one (bf16 on Ampere or newer GPUs, fp16 otherwise)")
    if args.fp16 and not use_cuda:
        errors.append("--fp16 needs a CUDA GPU (there is none" + (", or --no_cuda was given" if args.no_cuda else "")
                      + "): use --bf16 for mixed precision on the CPU, or drop --fp16")
    if args.do_train and not args.train_file:
        errors.append("--do_train needs --train_file (or --data_dir holding train-v2.0.json/train-v1.1.json)")
    if (args.do_eval or args.evaluate_during_training) and not args.predict_file:
        errors.append("--do_eval/--evaluate_during_training need --predict_file (or --data_dir holding dev-v2.0.json/dev-v1.1.json)")
    for flag, path, used in (("--train_file", args.train_file, args.do_train),
                             ("--predict_file", args.predict_file, args.do_eval or args.evaluate_during_training)):
        if used and path and not os.path.isfile(path):
            errors.append(f"{flag} {path}: no such file (run `make data`, or check --data_dir)")
    positive = ("per_gpu_train_batch_size", "per_gpu_eval_batch_size", "gradient_accumulation_steps", "max_seq_length",
                "doc_stride", "max_query_length", "n_best_size", "max_answer_length", "threads")
    errors += [f"--{name} must be at least 1 (got {getattr(args, name)})" for name in positive if getattr(args, name) < 1]
    # Legacy: 0 turns periodic logging / saving off.
    errors += [f"--{name} cannot be negative (got {getattr(args, name)}); 0 turns it off"
               for name in ("logging_steps", "save_steps") if getattr(args, name) < 0]
    if args.max_seq_length <= args.max_query_length + 3:
        errors.append(f"--max_seq_length {args.max_seq_length} leaves no room for context after a question of "
                      f"--max_query_length {args.max_query_length} tokens and 3 special tokens: raise it or lower --max_query_length")
    if args.learning_rate <= 0 or args.num_train_epochs <= 0 and args.max_steps <= 0:
        errors.append("--learning_rate and --num_train_epochs (or --max_steps) must be positive")
    if args.warmup_steps < 0 or args.weight_decay < 0 or args.max_grad_norm < 0:
        errors.append("--warmup_steps, --weight_decay and --max_grad_norm cannot be negative")
    for name in ("save_total_limit", "early_stopping_patience", "max_train_samples", "max_eval_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            errors.append(f"--{name} must be at least 1 (got {value}); leave it out for no limit")
    if args.early_stopping_patience and not (args.do_train and args.evaluate_during_training):
        errors.append("--early_stopping_patience needs --do_train --evaluate_during_training (it counts evaluations)")
    if bool(args.server_ip) != bool(args.server_port):
        errors.append("--server_ip and --server_port go together (remote debugging with debugpy)")
    # Resuming, the guide's way: --model_name_or_path outputs/run/checkpoint-1500.
    if args.do_train and args.resume_from_checkpoint is None and is_our_checkpoint(args.model_name_or_path):
        args.resume_from_checkpoint = args.model_name_or_path
    elif is_unfinished_checkpoint(args.model_name_or_path):
        errors.append(f"--model_name_or_path {args.model_name_or_path} is a checkpoint that was never completed (no valid "
                      "COMPLETE marker: the run stopped while saving it): use an earlier checkpoint-N, or "
                      "--resume_from_checkpoint auto for the newest complete one")
    if args.resume_from_checkpoint is not None and not args.do_train:
        errors.append("--resume_from_checkpoint continues training: add --do_train (to evaluate a checkpoint, use --eval_checkpoint)")
    if (args.do_train and args.resume_from_checkpoint is None and not args.overwrite_output_dir
            and output_dir_has_content(args.output_dir)):
        # The legacy message, with what to do when the run should continue instead.
        errors.append(f"Output directory ({args.output_dir}) already exists and is not empty. Use --overwrite_output_dir to "
                      "overcome (or --resume_from_checkpoint auto to continue the run that is there).")
    if errors:
        raise ArgumentError("\n".join(f"error: {e}" for e in errors))
    return args


def unused_flag_notes(args):
    """Lines telling the user which legacy flags are accepted but have no effect here (and legacy's doc_stride warning)."""
    notes = []
    if args.fp16 or args.fp16_opt_level != "O1":
        notes.append(f"--fp16_opt_level {args.fp16_opt_level} is unused: mixed precision is torch.amp autocast "
                     "(+ GradScaler for fp16), apex is not needed")
    if args.model_type:
        notes.append(f"--model_type {args.model_type} is informative only: the architecture comes from the model's config")
    if args.doc_stride >= args.max_seq_length - args.max_query_length:
        notes.append(f"warning: --doc_stride {args.doc_stride} >= --max_seq_length - --max_query_length: consecutive "
                     "windows may leave context tokens unseen (legacy gave the same warning)")
    return notes
