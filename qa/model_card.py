"""The README.md model card written into a final model folder.

    write_model_card("outputs/nq-albert", args=vars(args), eval_results=results, best=best_checkpoint(dir))
    write_qa_config(model_dir, args, eval_results)     # qa_config.json: window sizes and the tuned null threshold
    load_qa_config(model_dir)                           # ... read back by scripts/ask.py and scripts/predict_nq.py

It says what a person picking the folder up needs: base model, data, hyperparameters,
metrics, the tuned null threshold (and that predicting with it is what the scores assume),
and how to load it.
"""

import json
import os

from qa import run_dir
from qa.run_dir import QA_CONFIG_FILE
from qa.storage import atomic_write

# Inference settings of a final model folder, read by scripts/ask.py: the window sizes it was
# trained with and the null threshold tuned on the evaluation data.
INFERENCE_ARGS = ("max_seq_length", "doc_stride", "max_query_length", "max_answer_length", "n_best_size",
                  "version_2_with_negative")

HYPERPARAMETERS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_gpu_train_batch_size", "gradient_accumulation_steps",
    "world_size", "warmup_steps", "weight_decay", "max_grad_norm", "max_seq_length", "doc_stride",
    "max_query_length", "fp16", "bf16", "seed",
)
METRICS = (
    "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total",
    "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh",
)


def _format(value):
    # 6 significant digits: 3e-05 stays 3e-05, 64.5378 stays 64.5378.
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render_model_card(args, eval_results=None, best=None):
    """The card's Markdown text (pure function; args is a dict of run_squad's arguments)."""
    base = args.get("model_name_or_path", "?")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: question-answering",
        "---",
        "",
        f"# Extractive question answering, fine-tuned from `{base}`",
        "",
        f"- **Base model**: `{base}` (model type given as `{args.get('model_type', '?')}`)",
        f"- **Training data**: `{args.get('train_file')}`",
        f"- **Evaluation data**: `{args.get('predict_file')}`",
        f"- **SQuAD 2.0 style (unanswerable questions)**: {bool(args.get('version_2_with_negative'))}",
    ]
    if best:
        lines.append(
            f"- **Best checkpoint**: `{best.get('checkpoint')}` (step {best.get('step')}, "
            f"{best.get('metric')} = {_format(best.get('value'))})"
        )
    lines += ["", "## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {name} | {_format(args[name])} |" for name in HYPERPARAMETERS if name in args]
    if eval_results:
        at_step = f", step {eval_results['step']}" if eval_results.get("step") is not None else ""
        lines += ["", f"## Evaluation on `{args.get('predict_file')}` (official SQuAD 2.0 metrics{at_step})", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_format(eval_results[name])} |" for name in METRICS if name in eval_results]
        threshold = eval_results.get("best_f1_thresh")
        if threshold is not None:
            lines += [
                "",
                f"**Tuned null threshold: {_format(threshold)}.** Answer \"no answer\" when",
                "`null_score - best_span_score > threshold` (the `--null_score_diff_threshold` of `run_squad.py`).",
                f"At this threshold F1 is {_format(eval_results.get('best_f1'))}; at "
                f"{_format(float(eval_results.get('null_score_diff_threshold', args.get('null_score_diff_threshold', 0.0))))}"
                f" (the threshold the evaluation ran with) it is {_format(eval_results.get('f1'))}.",
            ]
    lines += [
        "",
        "## How to load it",
        "",
        "```python",
        "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
        'model = AutoModelForQuestionAnswering.from_pretrained("THIS_FOLDER")',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        "```",
        "",
        "(transformers 5.x has no `question-answering` pipeline any more; `scripts/ask.py` does its job:",
        "sliding windows over long documents, n-best spans, and the tuned null threshold from `qa_config.json`.)",
        "",
        "or ask it about a document of any length, with the tuned threshold:",
        "",
        "```bash",
        'make ask MODEL_DIR=THIS_FOLDER QUESTION="who discovered x-rays" CONTEXT_FILE=doc.txt',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir, args, eval_results=None, best=None):
    path = os.path.join(model_dir, "README.md")
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(render_model_card(args, eval_results, best))
    return path


def write_qa_config(model_dir, args, eval_results=None):
    """qa_config.json: inference settings plus the null threshold (the tuned one when evaluated)."""
    config = {name: args[name] for name in INFERENCE_ARGS if name in args}
    tuned = (eval_results or {}).get("best_f1_thresh")
    config["null_score_diff_threshold"] = tuned if tuned is not None else args.get("null_score_diff_threshold", 0.0)
    config["null_threshold_source"] = ("tuned for best F1 on " + str(args.get("predict_file"))) if tuned is not None \
        else "--null_score_diff_threshold (not evaluated yet)"
    path = os.path.join(model_dir, QA_CONFIG_FILE)
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return path


# Used when the model folder has no qa_config.json (e.g. a model trained elsewhere): the legacy defaults.
QA_CONFIG_DEFAULTS = {"null_score_diff_threshold": 0.0, "max_seq_length": 384, "doc_stride": 128, "max_query_length": 64,
                      "max_answer_length": 30, "n_best_size": 20, "version_2_with_negative": True}


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc}); fix or delete it") from None


def checkpoint_qa_config(checkpoint_dir):
    """A checkpoint-N folder's settings: its training args, and the threshold tuned at step N (or None)."""
    state = _read_json(os.path.join(checkpoint_dir, run_dir.STATE_FILE))
    args = state.get("args") or {}
    config = {name: args[name] for name in INFERENCE_ARGS if name in args}
    step = state.get("global_step")
    results_path = run_dir.eval_file(os.path.dirname(os.path.abspath(checkpoint_dir)), "eval_results", step)
    tuned = _read_json(results_path).get("best_f1_thresh") if os.path.exists(results_path) else None
    if tuned is not None:
        config["null_score_diff_threshold"] = tuned
        config["source"] = f"{results_path} (tuned at step {step})"
    else:
        config["null_score_diff_threshold"] = args.get("null_score_diff_threshold", 0.0)
        config["source"] = (f"{os.path.join(checkpoint_dir, run_dir.STATE_FILE)} (step {step} was not evaluated: "
                            "its --null_score_diff_threshold)")
    return config


def load_qa_config(model_dir):
    """Inference settings of the model folder (tuned threshold, window sizes), with defaults filled in: its
    qa_config.json (write_qa_config), a checkpoint's training args and the threshold tuned at its step, else
    QA_CONFIG_DEFAULTS. "source" says which."""
    path = os.path.join(model_dir, QA_CONFIG_FILE)
    config = dict(QA_CONFIG_DEFAULTS)
    if os.path.exists(path):
        config.update(_read_json(path))
        config["source"] = path
    elif os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE)):
        config.update(checkpoint_qa_config(model_dir))
    else:
        config["source"] = f"defaults ({path} not found: null threshold 0.0)"
    return config
