"""The README.md model card written into a final model folder.

    write_model_card("outputs/nq-albert", args=vars(args), eval_results=results, best=best_checkpoint(dir))

It says what a person picking the folder up needs: base model, data, hyperparameters,
metrics, the tuned null threshold (and that predicting with it is what the scores assume),
and how to load it.
"""

import os

from qa.storage import atomic_write

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
        lines += ["", "## Evaluation (official SQuAD 2.0 metrics)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_format(eval_results[name])} |" for name in METRICS if name in eval_results]
        threshold = eval_results.get("best_f1_thresh")
        if threshold is not None:
            lines += [
                "",
                f"**Tuned null threshold: {_format(threshold)}.** Answer \"no answer\" when",
                "`null_score - best_span_score > threshold` (the `--null_score_diff_threshold` of `run_squad.py`).",
                f"At this threshold F1 is {_format(eval_results.get('best_f1'))}; at 0.0 it is "
                f"{_format(eval_results.get('f1'))}.",
            ]
    lines += [
        "",
        "## How to load it",
        "",
        "```python",
        "from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline",
        'model = AutoModelForQuestionAnswering.from_pretrained("THIS_FOLDER")',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        'qa = pipeline("question-answering", model="THIS_FOLDER")',
        "```",
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
