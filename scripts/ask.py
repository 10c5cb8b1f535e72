#!/usr/bin/env python
"""Ask a trained model questions about a document of any length.

    python scripts/ask.py outputs/nq-albert-xlarge-v2 --question "who discovered x-rays" --context-file doc.txt
    python scripts/ask.py MODEL_DIR --questions-file questions.json --output predictions.json
    make ask MODEL_DIR=outputs/demo/run QUESTION="how long is the river xarn" CONTEXT_FILE=doc.txt
    make ask MODEL_DIR=outputs/demo/run QUESTIONS_FILE=questions.jsonl OUT=answers.json

The document is cut into sliding windows and answered with the same features and
post-processing as evaluation (qa.features, qa.postprocess). "No answer" is decided with the
null threshold tuned during training, read from the model folder's qa_config.json (written by
run_squad.py next to the final model); for a checkpoint-N folder, the window sizes come from its
trainer_state.json and the threshold tuned when that step was evaluated from the run's
eval_results_{step}.json. `--threshold` overrides it. A checkpoint folder is verified (every
file against the hashes of its COMPLETE marker) before it is loaded.

A questions file needs no answers: JSON Lines, one `{"id": ..., "question": ..., "context": ...}` a
line, or SQuAD JSON (`{"data": [{"paragraphs": [{"context": ..., "qas": [{"id", "question"}]}]}]}`,
answers optional). The output maps each question id to its answer ("" = no answer).
"""

import argparse
import json
import os
import sys

from qa import run_dir
from qa.checkpoints import verify_checkpoint
from qa.model_card import INFERENCE_ARGS
from qa.run_dir import CheckpointError
from qa.squad_io import SquadExample, SquadFormatError, read_squad
from qa.storage import atomic_write

# Used when the model folder has no qa_config.json (e.g. a model trained elsewhere): the legacy defaults.
DEFAULTS = {"null_score_diff_threshold": 0.0, "max_seq_length": 384, "doc_stride": 128, "max_query_length": 64,
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
    """Inference settings of the model folder (tuned threshold, window sizes), with defaults filled in."""
    path = os.path.join(model_dir, run_dir.QA_CONFIG_FILE)
    config = dict(DEFAULTS)
    if os.path.exists(path):
        config.update(_read_json(path))
        config["source"] = path
    elif os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE)):
        config.update(checkpoint_qa_config(model_dir))
    else:
        config["source"] = f"defaults ({path} not found: null threshold 0.0)"
    return config


def answer(model_dir, examples, config, threads=1, batch_size=16):
    """PostprocessResult for `examples`, using the model in `model_dir`."""
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa.features import FeatureParams, build_features
    from qa.inference import predict_logits
    from qa.postprocess import postprocess_predictions
    from qa.runtime import init_runtime

    runtime = init_runtime()
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar between question and answer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).to(runtime.device)
    params = FeatureParams(config["max_seq_length"], config["doc_stride"], config["max_query_length"])
    features = build_features(examples, tokenizer, params, training=False, threads=threads)
    starts, ends = predict_logits(model, features, batch_size, runtime)
    return postprocess_predictions(examples, features, starts, ends, config["n_best_size"], config["max_answer_length"],
                                   config["version_2_with_negative"], config["null_score_diff_threshold"])


def describe(result, qas_id):
    """Lines for the terminal: the answer, its score and its character span, or that there is none."""
    text = result.predictions[qas_id]
    diff = result.null_score_diff.get(qas_id)
    best = next((c for c in result.nbest[qas_id] if c["text"]), None)
    if not text:
        lines = ["No answer: the document does not seem to contain one."]
        if best is not None:
            lines.append(f"(best span was {best['text']!r}, chars {best['start_char']}-{best['end_char']}, "
                         f"probability {best['probability']:.3f}; null score difference {diff:.3f})")
        return lines
    chosen = next(c for c in result.nbest[qas_id] if c["text"] == text)
    return [f"Answer: {text}",
            f"score {chosen['start_logit'] + chosen['end_logit']:.3f} (probability {chosen['probability']:.3f}), "
            f"characters {chosen['start_char']}-{chosen['end_char']}, null score difference {diff:.3f}"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a final model folder or a checkpoint-N folder")
    parser.add_argument("--question", help="one question about --context-file")
    parser.add_argument("--context-file", help="the document, plain UTF-8 text of any length")
    parser.add_argument("--questions-file", help="JSON Lines {id, question, context} or SQuAD JSON; answers not needed")
    parser.add_argument("--output", help="with --questions-file: where to write {id: answer} (default: print)")
    parser.add_argument("--threshold", type=float, help="null score difference threshold (default: the tuned one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not run_dir.has_final_model(args.model_dir):
        parser.error(f"{args.model_dir}: not a model folder (no config.json); give a run's output folder or checkpoint-N")
    if bool(args.question) == bool(args.questions_file):
        parser.error("give either --question with --context-file, or --questions-file")
    if args.question and not args.context_file:
        parser.error("--question needs --context-file (the document to answer from)")
    for path in (args.context_file, args.questions_file):
        if path and not os.path.exists(path):
            parser.error(f"{path}: no such file")
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(os.path.join(args.model_dir, run_dir.STATE_FILE)):
        try:
            verify_checkpoint(args.model_dir)
        except CheckpointError as exc:
            print(f"ask.py: {exc}", file=sys.stderr)
            return 2
    config = load_qa_config(args.model_dir)
    if args.threshold is not None:
        config["null_score_diff_threshold"] = args.threshold
        config["source"] = "--threshold"
    print(f"null threshold {config['null_score_diff_threshold']:.4f} from {config['source']}", file=sys.stderr)
    if args.question:
        with open(args.context_file, encoding="utf-8") as f:
            context = f.read()
        if not context.strip():
            raise SystemExit(f"{args.context_file}: the document is empty")
        example = SquadExample("question", "", args.question, context, (), True)
        result = answer(args.model_dir, [example], config, args.threads)
        print("\n".join(describe(result, "question")))
        return 0
    try:
        examples = read_squad(args.questions_file, check_answers=False, questions_only=True)
    except SquadFormatError as exc:  # the message names the file and the question or line
        print(f"ask.py: {exc}", file=sys.stderr)
        return 2
    result = answer(args.model_dir, examples, config, args.threads)
    if args.output:
        with atomic_write(args.output, "w", encoding="utf-8") as f:
            json.dump(result.predictions, f, indent=2, ensure_ascii=False)
        print(f"wrote {len(result.predictions)} predictions to {args.output}")
    else:
        print(json.dumps(result.predictions, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
