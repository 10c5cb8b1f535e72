"""A `make train` command (or run_squad.py flags) that starts a new run with a recorded run's settings.

    train_command(run_dir.read_args("outputs/run"), "outputs/run-more", model="outputs/run", make=True)
    # "make train MODEL=outputs/run OUTPUT_DIR=outputs/run-more TRAIN_FILE=... LR=5e-05 EPOCHS=2 BATCH=8 ..."

Hints that tell a user to train again (a finished run trained further, a diverged run with a lower rate) print
this rather than `make train OUTPUT_DIR=...` alone, which would start from the guide's defaults (EPOCHS=7,
BATCH=1, LR=3e-5, windows of 384) instead of what the run used. Every value is shell-quoted.
"""

import shlex

# make variable -> the args.json key it sets (the Makefile's TRAIN_ARGS), in the order printed.
MAKE_SETTINGS = (("MODEL_TYPE", "model_type"), ("TRAIN_FILE", "train_file"), ("PREDICT_FILE", "predict_file"),
                 ("LR", "learning_rate"), ("EPOCHS", "num_train_epochs"), ("BATCH", "per_gpu_train_batch_size"),
                 ("GRAD_ACCUM", "gradient_accumulation_steps"), ("MAX_SEQ_LENGTH", "max_seq_length"),
                 ("DOC_STRIDE", "doc_stride"), ("EVAL_BATCH", "per_gpu_eval_batch_size"),
                 ("SAVE_STEPS", "save_steps"), ("LOGGING_STEPS", "logging_steps"),
                 ("SAVE_TOTAL_LIMIT", "save_total_limit"))


def _value(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def train_command(record, output_dir, model=None, make=True, overrides=None):
    """The command as one line. record: the run's args.json (a dict, possibly empty); model: the model to start
    from (default: the run's own model_name_or_path); overrides: {record key: value} that replace the record's."""
    record = dict(record or {}, **(overrides or {}))
    model = model or record.get("model_name_or_path")
    q = shlex.quote
    if make:
        parts = ["make train"] + ([f"MODEL={q(str(model))}"] if model else []) + [f"OUTPUT_DIR={q(str(output_dir))}"]
        parts += [f"{name}={q(_value(record[key]))}" for name, key in MAKE_SETTINGS if record.get(key) is not None]
        if record.get("fp16") or record.get("bf16"):
            parts.append("PRECISION=" + ("fp16" if record.get("fp16") else "bf16"))
        return " ".join(parts)
    parts = (["--model_name_or_path", q(str(model))] if model else []) + ["--output_dir", q(str(output_dir))]
    for _, key in MAKE_SETTINGS:
        if record.get(key) is not None:
            parts += [f"--{key}", q(_value(record[key]))]
    return " ".join(parts)
