"""run_squad.py's command line: every flag of the legacy HuggingFace script, plus ours, checked in one place.

    args = parse_args(["--model_type", "albert", "--model_name_or_path", "albert-base-v2", ...])
    validate_args(args, cuda_available=torch.cuda.is_available())   # raises ArgumentError(message)

    python run_squad.py --learning_rat 1e-4 ...
    run_squad.py: error: unknown flag --learning_rat (did you mean --learning_rate?)        # exit 2
    python run_squad.py --num_train_epochs abc ...
    run_squad.py: error: argument --num_train_epochs: invalid float value: 'abc'            # exit 2

Legacy flags keep their meaning and defaults (so the guide's command line runs unchanged);
the flags after "# New" are this project's. Each default sits here, once, with its reason.
Nothing is forgiven silently: no prefix matching of flags (legacy argparse took --learning_rat for
--learning_rate), and a bad value is one line, not the 40-line usage (`--help` still prints it all).
Through make (the Makefile sets QA_VIA_MAKE=1) messages name the Makefile variable the user typed,
e.g. `EPOCHS` for --num_train_epochs (`flag_name`).
"""

import argparse
import difflib
import os
import re
import shlex

from qa import run_dir
from qa.limits import limit_notes, limit_problems, refuse_non_finite
from qa.nq.train_eval import nq_dev_file_errors
from qa.resume_record import ORDER_SETTINGS, resumes_from_s3, takes_record
from qa.runlog import REPORT_CHOICES

# Metrics a checkpoint can be ranked by (every one of them: greater is better).
BEST_METRIC_CHOICES = (
    "f1", "exact", "best_f1", "best_exact", "HasAns_f1", "HasAns_exact", "NoAns_f1", "NoAns_exact",
    "nq_long_f1", "nq_short_f1",  # whole-page NQ F1 x 100, with --nq_dev_file (qa/nq/train_eval.py)
)
# What legacy read from --data_dir when --train_file/--predict_file were not given (SquadV1/V2Processor).
LEGACY_DEFAULT_FILES = {
    (True, "train"): "train-v2.0.json", (True, "predict"): "dev-v2.0.json",
    (False, "train"): "train-v1.1.json", (False, "predict"): "dev-v1.1.json",
}
# The Makefile variable behind each flag it passes (make train/resume/eval/demo); messages use these
# names when QA_VIA_MAKE=1, since that is what the user typed (`make train EPOCHS=abc`).
MAKE_VARIABLES = {
    "--train_file": "TRAIN_FILE", "--predict_file": "PREDICT_FILE", "--model_name_or_path": "MODEL",
    "--output_dir": "OUTPUT_DIR", "--num_train_epochs": "EPOCHS", "--learning_rate": "LR",
    "--max_seq_length": "MAX_SEQ_LENGTH", "--doc_stride": "DOC_STRIDE", "--per_gpu_train_batch_size": "BATCH",
    "--per_gpu_eval_batch_size": "EVAL_BATCH", "--gradient_accumulation_steps": "GRAD_ACCUM",
    "--data_dir": "DATA_DIR", "--save_steps": "SAVE_STEPS", "--logging_steps": "LOGGING_STEPS",
    "--save_total_limit": "SAVE_TOTAL_LIMIT", "--threads": "THREADS",
    "--resume_from_checkpoint": "CKPT", "--eval_checkpoint": "CKPT",
    "--model_type": "MODEL_TYPE", "--report_to": "REPORT_TO", "--wandb_project": "WANDB_PROJECT",
    "--sync_checkpoints": "SYNC", "--precision": "PRECISION",
}
# Values of HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE that huggingface_hub takes as "no network".
OFFLINE_VALUES = ("1", "on", "yes", "true")
# Seconds to wait for the model hub to accept a connection before calling it unreachable (it answers in well
# under a second where the network works; no network fails at once).
HUB_PROBE_TIMEOUT_S = 5
# Files whose presence in the hub cache means a model id was downloaded before (any one of them).
HUB_CACHE_MARKERS = ("config.json", "tokenizer_config.json", "tokenizer.json")


# Boolean settings a resume takes from the record that a user may want off on the next start; each has a
# --no_<name> (--no_group_by_length is declared with its flag).
OFF_SWITCHES = ("evaluate_during_training", "torch_compile", "gradient_checkpointing", "deterministic", "pad_to_max_length", "verbose_logging",
                "eval_all_checkpoints", "skip_bad_examples")


class ArgumentError(ValueError):
    """A bad combination of flags; the message says what to do."""


def flag_name(flag, environ=None):
    """How the user gave `flag`: its Makefile variable when run through make (QA_VIA_MAKE=1), else the flag.

    >>> flag_name("--num_train_epochs", {"QA_VIA_MAKE": "1"}), flag_name("--num_train_epochs", {})
    ('EPOCHS', '--num_train_epochs')
    """
    environ = os.environ if environ is None else environ
    return MAKE_VARIABLES.get(flag, flag) if environ.get("QA_VIA_MAKE") == "1" else flag


class StrictArgumentParser(argparse.ArgumentParser):
    """argparse without its forgiveness: no flag abbreviations, unknown flags named with the closest real one,
    and every error in one line (exit 2) instead of the usage dump."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):
        # argparse says "argument --num_train_epochs: ..." (or "--local_rank/--local-rank"): name what the user typed.
        named = re.match(r"argument (-[^/:\s]+)(?:/\S+)?: (.*)", message, re.S)
        if named:
            message = f"argument {flag_name(named[1])}: {named[2]}"
        self.exit(2, f"{self.prog}: error: {message}\n")

    def option_strings(self):
        return [option for action in self._actions for option in action.option_strings]

    def unknown_flag_message(self, flag):
        """E.g. 'unknown flag --learning_rat (did you mean --learning_rate?)': the closest real flag, by difflib."""
        close = difflib.get_close_matches(flag, [o for o in self.option_strings() if o.startswith("--")], n=1)
        hint = f"did you mean {close[0]}?" if close else f"{self.prog} --help lists every flag"
        return f"unknown flag {flag} ({hint})"

    def parse_args(self, args=None, namespace=None):
        import sys

        argv = list(sys.argv[1:] if args is None else args)
        known = set(self.option_strings())
        # Before argparse runs: a mistyped --model_name_or_pth must be named as such, not reported as
        # "the following arguments are required: --model_name_or_path".
        for token in argv:
            if token == "--":  # what follows is values only
                break
            if token.startswith("--") and token.split("=", 1)[0] not in known:
                self.error(self.unknown_flag_message(token.split("=", 1)[0]))
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            if extras[0].startswith("-"):
                self.error(self.unknown_flag_message(extras[0]))
            self.error(f"unexpected value {extras[0]!r}: every value follows the flag it belongs to "
                       "(e.g. --train_file FILE); flags like --do_train take none")
        return parsed


def build_parser():
    p = StrictArgumentParser(
        prog="run_squad.py",
        description="Fine-tune and evaluate an extractive question-answering model on SQuAD-format data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Model and data (legacy).
    p.add_argument("--model_type", default=None, help="Informative only (e.g. albert, ALBERTxlv2): the architecture is read from the model's config.")
    p.add_argument("--model_name_or_path", default=None,
                   help="Hub name or local folder of the model; a checkpoint-N folder of ours resumes training from it. "
                        "Required, except to resume (--resume_from_checkpoint) or evaluate a run that recorded its args.json.")
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
    # --per_device_*: the HF Trainer's names for the same settings (recorded once, under the legacy name).
    p.add_argument("--per_gpu_train_batch_size", "--per_device_train_batch_size", type=int, default=8,
                   help="Training batch per device (per process).")
    p.add_argument("--per_gpu_eval_batch_size", "--per_device_eval_batch_size", type=int, default=8,
                   help="Evaluation batch per device (per process).")
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
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                   help="The same as --fp16 / --bf16 / neither, as one setting: what `make ... PRECISION=` passes, so a "
                        "resume can also switch a recorded --fp16 off (PRECISION=fp32 on a machine without CUDA).")
    p.add_argument("--save_total_limit", type=int, default=None, help="Keep at most N checkpoints (the best is never deleted).")
    p.add_argument("--resume_from_checkpoint", nargs="?", const=run_dir.AUTO, default=None,
                   help="Continue exactly from a checkpoint: a path, checkpoint-N in --output_dir, or auto (the newest complete one).")
    p.add_argument("--continue_finished", action="store_true",
                   help="Resume a run that finished training (its final model saved), e.g. with more --num_train_epochs: "
                        "without it such a resume is refused, since it would train steps again and write over the final "
                        "model.")
    p.add_argument("--metric_for_best_model", default="f1", choices=BEST_METRIC_CHOICES, help="Evaluation metric that ranks checkpoints (greater is better).")
    p.add_argument("--nq_dev_file", default=None,
                   help="Raw NQ dev records (a path, quoted glob or folder of *.jsonl.gz): every evaluation also answers "
                        "their whole pages as predict_nq does and adds nq_long_f1 / nq_short_f1 (official F1 x 100), "
                        "which --metric_for_best_model can rank by (qa/nq/train_eval.py).")
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
    # Speed (qa/sampling.py, qa/runtime.py, qa/trainer.py); each can be turned off.
    p.add_argument("--group_by_length", action="store_true", default=False,
                   help="Batch training windows of similar length: less padding, faster, but a batch is no longer a "
                        "random sample and fine-tuned models answered less (issue 21; README, Speed). Off by default "
                        "since issue 21: random order, each batch padded to its longest window. A run recorded with it "
                        "resumes with it.")
    p.add_argument("--no_group_by_length", dest="group_by_length", action="store_false",
                   help="Random order (the default; the legacy order): switches a recorded --group_by_length off "
                        "(on resume, with --allow_changed_order).")
    p.add_argument("--length_group_batches", type=int, default=None,
                   help="With --group_by_length: how many batches' windows are sorted by length together (default: "
                        "qa/sampling.py's MEGA_BATCH_SIZE, 50; never more than a quarter of an epoch's batches). "
                        "Fewer: batches less alike, more padding; 1: random batches.")
    p.add_argument("--length_group_epochs", type=int, default=None,
                   help="With --group_by_length: group only the first N epochs, then train in random order (default: "
                        "every epoch). The grouped epochs run faster; the last ones, which decide what the model ends "
                        "as, see random batches (README, Speed).")
    p.add_argument("--pad_to_multiple_of", type=int, default=None,
                   help="Round each batch's length up to a multiple of N (default: 8 on CUDA, for tensor cores; 1 on "
                        "the CPU).")
    p.add_argument("--sync_checkpoints", default=None, metavar="S3_URI",
                   help="Mirror every complete checkpoint (and the final model) to s3://bucket/prefix as it is written, "
                        "in the background; a resume on a fresh machine pulls the newest complete one from there.")
    p.add_argument("--allow_changed_order", action="store_true",
                   help="Resume even when a setting that fixes the data order (batch size, accumulation, seed, "
                        "--max_train_samples, --group_by_length, --train_file, number of processes) differs from the "
                        "run's record: training continues, but not exactly as the interrupted run would have.")
    p.add_argument("--gradient_checkpointing", action="store_true",
                   help="Activation checkpointing (qa/activation_checkpointing.py): recompute each layer's activations "
                        "in backward instead of keeping them, for a larger batch in the same memory; one more forward "
                        "pass per step, the same loss.")
    p.add_argument("--torch_compile", action="store_true",
                   help="Compile the model for training with torch.compile (CUDA; minutes of compilation first, then faster "
                        "steps; evaluation runs the model as it is).")
    p.add_argument("--deterministic", action="store_true",
                   help="Deterministic kernels only (torch.use_deterministic_algorithms, a fixed cuBLAS workspace): on CUDA "
                        "the same run then gives the same weights bit for bit, and so does a resumed one; some kernels are "
                        "slower. A kernel with no deterministic version stops the run with torch's error naming it. The "
                        "CPU path is deterministic without it.")
    p.add_argument("--torch_threads", type=int, default=None,
                   help="torch's threads for the model's work on the CPU (default: torch's own: OMP_NUM_THREADS, else one "
                        "per core; torchrun sets 1). Recorded as used: a resume and an evaluation of the run take the same "
                        "unless given (for a tiny model on 2 shared cores, 2 threads are ~10x slower than 1).")
    p.add_argument("--answer_type_head", action="store_true", default=None,
                   help="Train an answer-type head (none/short/long/yes/no from the first token, BERT-joint's; "
                        "qa/answer_type_head.py) with the span layer. Default: on when the training data carries "
                        "\"answer_type\" (candidate-mode NQ data), off otherwise.")
    p.add_argument("--no_answer_type_head", dest="answer_type_head", action="store_false",
                   help="No answer-type head, even for data that carries answer types.")
    # A resume takes every setting from the run's record: these switch a recorded flag off again.
    for name in OFF_SWITCHES:  # default SUPPRESS: the flag's own default stands, and --help shows none here
        order = " (it changes the windows: with --allow_changed_order)" if name in ORDER_SETTINGS else ""
        p.add_argument(f"--no_{name}", dest=name, action="store_false", default=argparse.SUPPRESS,
                       help=f"Turn a recorded --{name} off when resuming{order}.")
    return p


def given_settings(argv=None):
    """The names (dests) of the settings given explicitly in argv: argv parsed again with no defaults at all,
    so what is in the result was typed (`--seed 42` counts even though 42 is the default)."""
    import sys

    parser = build_parser()
    for action in parser._actions:
        action.default, action.required = argparse.SUPPRESS, False
    given, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    names = set(vars(given))
    return names | {"fp16", "bf16"} if "precision" in names else names  # --precision sets both


def apply_precision(args):
    """--precision fp32|fp16|bf16 sets --fp16/--bf16; ArgumentError when a --fp16/--bf16 given with it contradicts it."""
    if args.precision is not None:
        if (args.fp16 and args.precision != "fp16") or (args.bf16 and args.precision != "bf16"):
            raise ArgumentError(f"--precision {args.precision} contradicts {'--fp16' if args.fp16 else '--bf16'}: "
                                "give one of them")
        args.fp16, args.bf16 = args.precision == "fp16", args.precision == "bf16"
    return args


def guide_resume(args):
    """The guide's way of resuming, --do_train --model_name_or_path RUN/checkpoint-N, is --resume_from_checkpoint
    RUN/checkpoint-N: decided before the run's record is applied, so both ways take the same settings."""
    if args.do_train and args.resume_from_checkpoint is None and args.model_name_or_path \
            and is_our_checkpoint(args.model_name_or_path):
        args.resume_from_checkpoint = args.model_name_or_path
    return args


def parse_args(argv=None):
    """Parse run_squad.py's flags (sys.argv[1:] when argv is None); a bad flag or value exits 2 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_non_finite(parser, args)  # qa.limits: --learning_rate nan/inf and the like
    try:
        apply_precision(args)
    except ArgumentError as exc:
        parser.error(str(exc))
    guide_resume(args)
    args.run_id = None  # the run's identity: recorded in args.json, taken from the record on resume (run_squad.py)
    if args.model_name_or_path is None and not takes_record(args) and not resumes_from_s3(args):
        parser.error("the following arguments are required: --model_name_or_path")
    args.train_file = resolve_data_file(args.data_dir, args.train_file, args.version_2_with_negative, "train", args.do_train)
    args.predict_file = resolve_data_file(
        args.data_dir, args.predict_file, args.version_2_with_negative, "predict", args.do_eval or args.evaluate_during_training
    )
    # A quoted "~/models/x" reaches us unexpanded, and transformers does not expand it (a hub id never starts with ~).
    for name in ("model_name_or_path", "tokenizer_name", "config_name"):
        if (getattr(args, name) or "").startswith("~"):
            setattr(args, name, os.path.expanduser(getattr(args, name)))
    return args


def resolve_data_file(data_dir, name, version_2, split, needed):
    """Legacy semantics: --data_dir joins the file name; without a name, SQuAD's default file in data_dir."""
    if name is None and data_dir and needed:
        name = LEGACY_DEFAULT_FILES[(bool(version_2), split)]
    if name is None:
        return None
    name = os.path.expanduser(name)
    return os.path.join(os.path.expanduser(data_dir), name) if data_dir else name


def is_our_checkpoint(path):
    """A complete checkpoint folder written by qa.checkpoints, e.g. the guide's checkpoint-1500."""
    return os.path.isdir(path) and run_dir.is_complete(path)


def is_unfinished_checkpoint(path):
    """A folder of ours (it has our state file) whose COMPLETE marker is missing or does not match its files."""
    return (os.path.isdir(path) and os.path.exists(os.path.join(path, run_dir.STATE_FILE))
            and not run_dir.is_complete(path))


def looks_local(name):
    """A name the user meant as a folder on this machine; a hub id is "name" or "org/name".

    Local: starts with ./ ../ / or ~, holds the OS separator (Windows) or more than one '/', or its
    parent folder exists here (outputs/tiny-albrt with an outputs/ folder)."""
    if name in (".", "..") or name.startswith(("./", "../", "/", "~")):
        return True
    if (os.sep != "/" and os.sep in name) or name.count("/") > 1:
        return True
    parent = os.path.dirname(name)
    return bool(parent) and os.path.isdir(parent)


def is_hub_id(name):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_offline(environ):
    """The variable that forbids downloads (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), or None."""
    return next((v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                 if environ.get(v, "").strip().lower() in OFFLINE_VALUES), None)


def in_hub_cache(repo_id, cache_dir=None):
    """Whether a model id was downloaded before (a file of it in the hub cache); reads the cache, no network."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, marker, cache_dir=cache_dir or None), str)
               for marker in HUB_CACHE_MARKERS)


def model_source_problem(flag, name, cache_dir=None, files_allowed=False, environ=None):
    """One line saying why `name` (the value of --model_name_or_path, --tokenizer_name or --config_name)
    cannot be loaded, or None when it is a folder here, or a model id that can be (or was) downloaded."""
    environ = os.environ if environ is None else environ
    shown = f"{flag_name(flag, environ)} {name}"
    if os.path.isdir(name) or (files_allowed and os.path.isfile(name)):
        return None
    if os.path.isfile(name):
        return f"{shown} is a file: give the folder that holds config.json and the weights"
    if looks_local(name) or not is_hub_id(name):
        parent, base = os.path.split(name.rstrip("/" + os.sep))
        siblings = sorted(os.listdir(parent or ".")) if os.path.isdir(parent or ".") else []
        close = difflib.get_close_matches(base, [s for s in siblings if os.path.isdir(os.path.join(parent, s))], n=1)
        hint = f"did you mean {os.path.join(parent, close[0])}?" if close else "check the path"
        return f"{shown}: no such folder, and not a model id ({hint})"
    offline = hub_offline(environ)
    if offline and not in_hub_cache(name, cache_dir):
        return (f"{shown}: not a folder here and not in the model cache, and {offline}={environ[offline]} forbids "
                "downloading it: give a local folder, or download it once with the network on")
    unreachable = None if offline or in_hub_cache(name, cache_dir) else hub_unreachable(environ)
    if unreachable:
        return (f"cannot reach the model hub for {name} ({unreachable}): download it once with network, or give a "
                f"local folder ({flag_name(flag, environ)} PATH)")
    return None


def hub_unreachable(environ):
    """Why the model hub (HF_ENDPOINT, else huggingface.co) cannot be reached, or None: one TCP connection with a
    short timeout, instead of transformers' retries (51 s and two tracebacks without network)."""
    import socket
    import urllib.parse

    endpoint = environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urllib.parse.urlsplit(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{endpoint}: {exc.strerror or exc.__class__.__name__}"


def validate_args(args, cuda_available):
    """Check every argument up front; raise ArgumentError with a message that says what to do.

    Flags are named by `flag_name` (the Makefile variable when run through make). Also normalises: a
    --model_name_or_path that is one of our checkpoints becomes --resume_from_checkpoint when training
    (the guide resumes that way). Each group of checks is one function below, run in this order."""
    errors = [*task_errors(args, cuda_available and not args.no_cuda), *data_file_errors(args), *model_errors(args),
              *output_dir_errors(args), *number_errors(args), *combination_errors(args),
              *nq_dev_file_errors(args)]
    # Resuming, the guide's way (--model_name_or_path outputs/run/checkpoint-1500): see guide_resume.
    guide_resume(args)
    errors += resume_errors(args)
    errors += limit_problems(args, flag_name)  # qa.limits: sizes no machine can use
    if errors:
        raise ArgumentError("\n".join(f"error: {e}" for e in errors))
    return args


def via_make(environ=None):
    """True when run by the Makefile's recipes (QA_VIA_MAKE=1): hints then name the make form."""
    return (os.environ if environ is None else environ).get("QA_VIA_MAKE") == "1"


def task_errors(args, use_cuda):
    """What to do, and the precision the device allows."""
    errors = []
    if not (args.do_train or args.do_eval):
        errors.append("nothing to do: give --do_train and/or --do_eval")
    if args.fp16 and args.bf16:
        errors.append("--fp16 and --bf16 are exclusive: choose one (bf16 on Ampere or newer GPUs, fp16 otherwise)")
    if args.fp16 and not use_cuda:
        fix = ("use PRECISION=bf16 for mixed precision on the CPU, or PRECISION=fp32" if via_make() else
               "use --bf16 for mixed precision on the CPU, or drop --fp16")
        errors.append(f"{flag_name('--fp16')} needs a CUDA GPU (there is none"
                      + (", or --no_cuda was given" if args.no_cuda else "") + f"): {fix}")
    return errors


def data_file_errors(args):
    """The data files the task needs, given and present."""
    f = flag_name
    errors = []
    if args.do_train and not args.train_file:
        errors.append(f"--do_train needs {f('--train_file')} (or {f('--data_dir')} holding train-v2.0.json/train-v1.1.json)")
    if (args.do_eval or args.evaluate_during_training) and not args.predict_file:
        errors.append(f"--do_eval/--evaluate_during_training need {f('--predict_file')} "
                      f"(or {f('--data_dir')} holding dev-v2.0.json/dev-v1.1.json)")
    for flag, path, used in (("--train_file", args.train_file, args.do_train),
                             ("--predict_file", args.predict_file, args.do_eval or args.evaluate_during_training)):
        if used and path and not os.path.isfile(path):
            errors.append(f"{f(flag)} {path}: no such file (run `make data`, or check {f('--data_dir')})")
    return errors


def model_errors(args):
    """The model, tokenizer and config must be loadable: a mistyped folder fails here, before anything is written.
    A resume loads all three from its checkpoint (the base model may be a hub id this machine never downloaded)."""
    if args.do_train and args.resume_from_checkpoint is not None:
        return []
    errors = []
    # Evaluating the run itself (`make eval`: --model_name_or_path is --output_dir): the user named OUTPUT_DIR.
    evaluates_run = not args.do_train and args.model_name_or_path == args.output_dir
    for flag, name, files_allowed in (("--output_dir" if evaluates_run else "--model_name_or_path", args.model_name_or_path, False),
                                      ("--tokenizer_name", args.tokenizer_name, True),
                                      ("--config_name", args.config_name, True)):
        problem = name and model_source_problem(flag, name, args.cache_dir, files_allowed)
        if problem:
            errors.append(problem)
    model = args.model_name_or_path
    if model and os.path.isdir(model) and not is_our_checkpoint(model):
        errors += model_folder_errors(model)
    return errors


def model_folder_errors(model):
    """Damaged weights of a plain model folder fail here, named, not as a SafetensorError traceback after the
    features are built. Only the header is read (mmap: 0.05 ms for a 240 MB file, albert-xlarge's size). Our
    checkpoints are left to the hash check of their COMPLETE marker, which says more (which file changed)."""
    from safetensors import SafetensorError, safe_open

    f = flag_name
    errors = []
    config_file = os.path.join(model, run_dir.MODEL_CONFIG)  # may be absent: a run folder with checkpoints only
    if os.path.isfile(config_file) and not isinstance(run_dir.read_json(config_file), dict):
        errors.append(f"{f('--model_name_or_path')} {model}: {config_file} is not a JSON object (damaged or cut "
                      "short): copy or download the model again")
    for name in sorted(n for n in os.listdir(model) if n.endswith(".safetensors")):
        try:
            with safe_open(os.path.join(model, name), framework="numpy"):
                pass
        except (SafetensorError, OSError) as exc:
            errors.append(f"{f('--model_name_or_path')} {model}: {os.path.join(model, name)} is damaged ({exc}): "
                          "copy or download the model again")
            break
    return errors


def output_dir_errors(args):
    """An output folder that cannot be written fails now, not at the first checkpoint. os.access, not a test
    write: validation writes nothing. (Root passes os.access(W_OK) everywhere except read-only filesystems, as
    it passes the writes themselves.)"""
    f = flag_name
    output_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    existing = output_dir
    while not os.path.exists(existing):  # the nearest folder that exists: the rest is created by makedirs
        existing = os.path.dirname(existing)
    if existing == output_dir and not os.path.isdir(output_dir):
        return [f"{f('--output_dir')} {args.output_dir} is a file, not a folder: give a folder (it is created "
                "when missing)"]
    if not os.path.isdir(existing):
        return [f"{f('--output_dir')} {args.output_dir}: {existing} is a file, so no folder can be made inside "
                "it: give another folder"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{f('--output_dir')} {args.output_dir}: {existing} is not writable by this user: give a folder "
                f"you can write, or make it writable (chmod u+w {existing})"]
    return []


def number_errors(args):
    """Counts, sizes and rates in their ranges."""
    f = flag_name
    positive = ("per_gpu_train_batch_size", "per_gpu_eval_batch_size", "gradient_accumulation_steps", "max_seq_length",
                "doc_stride", "max_query_length", "n_best_size", "max_answer_length", "threads")
    errors = [f"{f('--' + name)} must be at least 1 (got {getattr(args, name)})"
              for name in positive if getattr(args, name) < 1]
    if args.length_group_batches is not None and args.length_group_batches < 1:
        errors.append(f"--length_group_batches must be at least 1 (got {args.length_group_batches}); 1 makes random "
                      f"batches, --no_group_by_length the legacy order")
    if args.length_group_epochs is not None and args.length_group_epochs < 1:
        errors.append(f"--length_group_epochs must be at least 1 (got {args.length_group_epochs}); "
                      f"--no_group_by_length trains every epoch in random order")
    # Legacy: 0 turns periodic logging / saving off.
    errors += [f"{f('--' + name)} cannot be negative (got {getattr(args, name)}); 0 turns it off"
               for name in ("logging_steps", "save_steps") if getattr(args, name) < 0]
    if args.max_seq_length <= args.max_query_length + 3:
        errors.append(f"{f('--max_seq_length')} {args.max_seq_length} leaves no room for context after a question of "
                      f"--max_query_length {args.max_query_length} tokens and 3 special tokens: raise it or lower "
                      "--max_query_length")
    if args.learning_rate <= 0 or args.num_train_epochs <= 0 and args.max_steps <= 0:
        errors.append(f"{f('--learning_rate')} and {f('--num_train_epochs')} (or --max_steps) must be positive")
    if args.warmup_steps < 0 or args.weight_decay < 0 or args.max_grad_norm < 0:
        errors.append("--warmup_steps, --weight_decay and --max_grad_norm cannot be negative")
    for name in ("save_total_limit", "early_stopping_patience", "max_train_samples", "max_eval_samples",
                 "pad_to_multiple_of", "torch_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            errors.append(f"{f('--' + name)} must be at least 1 (got {value}); leave it out for the default")
    return errors


def combination_errors(args):
    """Flags that need another flag, or a value another flag allows."""
    f = flag_name
    errors = []
    if args.early_stopping_patience and not (args.do_train and args.evaluate_during_training):
        errors.append("--early_stopping_patience needs --do_train --evaluate_during_training (it counts evaluations)")
    # (a resume that turns a recorded grouping off with --no_group_by_length keeps the recorded value, unused)
    if args.length_group_epochs is not None and not args.group_by_length and not takes_record(args):
        errors.append(f"--length_group_epochs {args.length_group_epochs} groups the first epochs by length: it needs "
                      "--group_by_length (without it every epoch is in random order)")
    if bool(args.server_ip) != bool(args.server_port):
        errors.append("--server_ip and --server_port go together (remote debugging with debugpy)")
    if args.metric_for_best_model.startswith("best_") and not args.version_2_with_negative:
        errors.append(f"--metric_for_best_model {args.metric_for_best_model} exists only with --version_2_with_negative "
                      "(it is the score at the tuned null threshold): choose f1 or exact")
    if args.sync_checkpoints is not None and not str(args.sync_checkpoints).startswith("s3://"):
        errors.append(f"{f('--sync_checkpoints')} {args.sync_checkpoints}: expected an s3://bucket/prefix URI")
    if args.resume_from_checkpoint is not None and not args.do_train:
        errors.append(f"{f('--resume_from_checkpoint')} continues training: add --do_train (to evaluate a checkpoint, "
                      f"use {f('--eval_checkpoint')})")
    return errors


def resume_hint(output_dir):
    """How to continue the run in `output_dir`, as the user would type it (make or the flag)."""
    return (f"`make resume OUTPUT_DIR={shlex.quote(str(output_dir))}`" if via_make()
            else f"--resume_from_checkpoint {run_dir.AUTO}")


def extra_flag(flag):
    """A flag the Makefile has no variable for, as the user passes it: EXTRA=--flag under make."""
    return f"EXTRA={flag}" if via_make() else flag


def resume_errors(args):
    """The checkpoint a training continues from, and a fresh start into a folder that holds a run."""
    f = flag_name
    errors = []
    if args.resume_from_checkpoint is None and is_unfinished_checkpoint(args.model_name_or_path):
        errors.append(f"{f('--model_name_or_path')} {args.model_name_or_path} is a checkpoint that was never completed "
                      "(no valid COMPLETE marker: the run stopped while saving it): use an earlier checkpoint-N, or "
                      f"{resume_hint(os.path.dirname(os.path.normpath(args.model_name_or_path)))} for the newest complete one")
    if (args.do_train and args.resume_from_checkpoint is None and not args.overwrite_output_dir
            and run_dir.output_dir_has_content(args.output_dir) and run_dir.failed_start(args.output_dir) is None):
        # The legacy message, with what to do when the run should continue instead. A folder that holds only
        # what a failed start wrote is taken by this start instead (run_squad.py says so).
        errors.append(f"Output directory ({args.output_dir}) already exists and is not empty. Use "
                      f"{extra_flag('--overwrite_output_dir')} to overcome (or {resume_hint(args.output_dir)} to "
                      "continue the run that is there).")
    return errors


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
    if args.answer_type_head is not None and not args.do_train:
        notes.append("--answer_type_head / --no_answer_type_head apply to training: evaluation uses the answer-type head "
                     "saved with the model, when it has one")
    notes += limit_notes(args)  # qa.limits: e.g. --threads far beyond the CPUs
    return notes
