#!/usr/bin/env python
"""Ask a trained model questions about a document of any length.

    python scripts/ask.py outputs/nq-albert-xlarge-v2 --question "who discovered x-rays" --context-file doc.txt
    python scripts/ask.py MODEL_DIR --questions-file questions.json --output predictions.json
    make ask MODEL_DIR=outputs/demo/run QUESTION="how long is the river xarn" CONTEXT_FILE=doc.txt
    make ask MODEL_DIR=outputs/demo/run/checkpoint-400 QUESTION="how long is the river xarn" CONTEXT_FILE=doc.txt
    make ask MODEL_DIR=outputs/demo/run QUESTIONS_FILE=questions.jsonl OUT=answers.json
    make ask MODEL_DIR=outputs/demo/run QUESTIONS_FILE=questions.jsonl OUT=answers.json TOP_K=3

    from ask import QuestionAnswerer                       # scripts/ on sys.path
    qa = QuestionAnswerer("outputs/demo/run")
    qa(question="how long is the river xarn", context=document, top_k=3)

A run folder answers with the run's model, the one make eval, make eval-nq and make upload take
(qa.run_dir.run_model: the best, a checkpoint or the final model; else the final model; else the newest complete
checkpoint), said in one line; a checkpoint-N folder (or an ONNX export) is that model. torch's thread count is
--torch_threads, else the one the run recorded (args.json), else torch's own.

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

A model trained with the answer-type head (run_squad --answer_type_head, on by default for candidate-mode NQ
data; answer_type_head.safetensors beside the model) also says what kind of answer it is: "yes" or "no" (those
two strings, lower case, as the answer), the best span (short answer; for a long-only answer the span the model
was trained to give, the whole passage), or no answer (""). The head decides, not the null threshold: the window
least likely "none" is read over none / short / long / yes / no (qa.answer_type.example_type). With --top_k each
entry also carries "answer_type" and "answer_type_probabilities" (the spans and scores stay the span layer's).
A model without the head answers as above.

With `--top_k N` the answers take the shape of transformers' question-answering pipeline (gone from
transformers 5.x): per question `{"answer", "score", "start", "end"}` (a list of the N best when N > 1),
`start`/`end` character offsets into the context, `score` a softmax over the n-best candidates; the
no-answer entry (`""`, start = end = 0, as the pipeline's handle_impossible_answer gave it) is ranked
with the spans, first exactly when the tuned threshold says "no answer" (see pipeline_answers).
"""

import argparse
import json
import math
import os
import sys

from qa import answer_type, run_dir
from qa.limits import refuse_non_finite
from qa.model_card import load_qa_config
from qa.model_check import verify_model_folder
from qa.model_pick import describe as describe_model
from qa.model_pick import use_recorded_threads
from qa.onnx_export import is_onnx_model
from qa.postprocess import NonFiniteLogits
from qa.run_dir import CheckpointError
from qa.squad_io import SquadExample, SquadFormatError, read_squad
from qa.storage import atomic_write


class QuestionAnswerer:
    """The library form of this script, what transformers' question-answering pipeline was: load once, ask often.

        qa = QuestionAnswerer("outputs/nq-albert-xlarge-v2")
        qa(question="who discovered x-rays", context=document)            # {"answer", "score", "start", "end"}
        qa(question="who discovered x-rays", context=document, top_k=3)   # a list of 3, best first
        qa.answer_many([{"id": "q1", "question": ..., "context": ...}], top_k=1)   # {id: answer(s)}

    A run folder means the run's model (`which_model`); the folder is verified before it is loaded (qa.model_check:
    CheckpointError naming the file). `threshold` overrides the tuned null threshold of the folder's qa_config.json."""

    def __init__(self, model_dir, threshold=None, threads=1, batch_size=16):
        from qa.inference import load_inference_model
        from qa.runtime import init_runtime

        model_dir, self.which = which_model(os.fspath(model_dir))
        self.model_dir = model_dir
        # Damaged, changed since its hash record, weights or tokenizer of another model, a file linked out of it.
        if not is_onnx_model(model_dir):  # an ONNX export: load_inference_model checks it against its own marker
            verify_model_folder(model_dir, warn=lambda line: print(f"ask.py: warning: {line}", file=sys.stderr))
        self.config = load_qa_config(model_dir)
        if threshold is not None:
            self.config.update(null_score_diff_threshold=threshold, source="--threshold")
        self.runtime = init_runtime()
        self.model, self.tokenizer = load_inference_model(model_dir, self.runtime.device)
        self.threads, self.batch_size = threads, batch_size

    def postprocess(self, examples, n_best_size=None):
        """PostprocessResult of `examples` (SquadExamples), with the folder's windows and null threshold."""
        return self.typed_postprocess(examples, n_best_size)[0]

    def typed_postprocess(self, examples, n_best_size=None):
        """(PostprocessResult, {id: (type, its window's probabilities [5])}); the types are None for a model without
        the answer-type head (qa/answer_type_head.py)."""
        from qa.features import FeatureParams, build_features
        from qa.inference import predict_logits
        from qa.postprocess import postprocess_predictions

        config = self.config
        params = FeatureParams(config["max_seq_length"], config["doc_stride"], config["max_query_length"])
        features = build_features(examples, self.tokenizer, params, training=False, threads=self.threads)
        starts, ends, types = predict_logits(self.model, features, self.batch_size, self.runtime, with_types=True)
        result = postprocess_predictions(examples, features, starts, ends, n_best_size or config["n_best_size"],
                                         config["max_answer_length"], config["version_2_with_negative"],
                                         config["null_score_diff_threshold"])
        return result, (None if types is None else question_types(examples, features.example_index, types))

    def answers(self, examples):
        """{id: answer text} ("" = no answer): the thresholded predictions, or with the head what it says (spoken)."""
        result, types = self.typed_postprocess(examples)
        return result.predictions if types is None else spoken_answers(result, types)

    def answer_many(self, questions, top_k=1):
        """{id: answer} in the pipeline's shape (a dict when top_k is 1, else a list of up to top_k, best first)
        for `questions`: SquadExamples or {"id", "question", "context"} dicts. With the answer-type head every
        entry also carries the question's "answer_type" and "answer_type_probabilities" (the spans and scores
        stay the span layer's)."""
        examples = [q if isinstance(q, SquadExample) else SquadExample(str(q["id"]), "", q["question"], q["context"], (), True)
                    for q in questions]
        # One n-best slot more than asked: the no-answer entry may take one, and the best span must stay in.
        result, types = self.typed_postprocess(examples, max(self.config["n_best_size"], top_k + 1))
        handle_impossible = self.config["version_2_with_negative"]
        threshold = self.config["null_score_diff_threshold"]
        shaped = {}
        for qas_id, entries in result.nbest.items():
            answers = pipeline_answers(entries, top_k, threshold, handle_impossible)
            if types is not None:
                kind, probabilities = types[qas_id]
                extra = {"answer_type": kind, "answer_type_probabilities": answer_type.answer_probabilities(probabilities)}
                answers = [{**a, **extra} for a in answers]
            shaped[qas_id] = pipeline_shape(answers, top_k)
        return shaped

    def __call__(self, question, context, top_k=1):
        return self.answer_many([{"id": "question", "question": question, "context": context}], top_k)["question"]


def question_types(examples, example_index, type_logits):
    """{id: (type name, the deciding window's probabilities [5])} from every window's type logits [N, 5]: per question
    the window least likely "none" decides over all five types (answer_type.example_type)."""
    import numpy as np

    probabilities = answer_type.type_probabilities(type_logits)
    decided = {}
    for index, example in enumerate(examples):
        windows = probabilities[np.flatnonzero(example_index == index)]
        if not len(windows):  # no window at all (cannot happen for a non-empty context): no answer
            decided[example.qas_id] = (answer_type.TYPES[answer_type.NONE], np.eye(len(answer_type.TYPES))[0])
            continue
        best = min(range(len(windows)), key=lambda w: (windows[w][answer_type.NONE], w))
        decided[example.qas_id] = (answer_type.example_type(windows)[0], windows[best])
    return decided


def best_span(nbest):
    """The best non-null span's n-best entry of one question, or None."""
    return next((entry for entry in nbest if entry["start_char"] >= 0 and entry["text"]), None)


def spoken_answers(result, types):
    """{id: what ask says} for a model with the head: "yes" / "no", the best span (short or long; a long-only answer
    is the span the model was trained to give for it, the whole passage), or "" when the head says none. The head,
    not the null threshold, decides whether there is an answer."""
    spoken = {}
    for qas_id, (kind, _) in types.items():
        span = best_span(result.nbest[qas_id])
        spoken[qas_id] = answer_type.spoken_answer(kind, span["text"] if span else "")
    return spoken


def which_model(model_dir):
    """(folder to load, a line saying which model of the run it is, or None): a checkpoint-N folder or an ONNX export
    is itself; anything else is a run folder (or a final model folder) whose model is run_dir.run_model's, as
    `make eval` takes it. Raises CheckpointError when it holds no model."""
    if is_onnx_model(model_dir) or os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE)):
        return model_dir, None
    path = run_dir.run_model(model_dir)
    return path, describe_model(model_dir, path)


def pipeline_answers(nbest, top_k, threshold=0.0, handle_impossible_answer=True):
    """One question's n-best list (qa.postprocess) -> up to top_k {"answer", "score", "start", "end"}, best first.

    As the question-answering pipeline of transformers 4.x gave them: `start`/`end` are character offsets
    into the context (context[start:end] == answer) and `score` is probability-like, a softmax over the
    candidates' scores (start + end logit). With handle_impossible_answer the no-answer entry ("", start =
    end = 0) is one of the candidates, ranked with the spans; its score is the null score minus the null
    threshold, so it comes first exactly when the thresholded prediction ({id: answer}) is no answer. An
    n-best list without any span (no window had a valid one) gives the no-answer entry in any case."""
    spans = [e for e in nbest if e["start_char"] >= 0]
    scores = [e["start_logit"] + e["end_logit"] for e in spans]
    rows = [(e["text"], e["start_char"], e["end_char"]) for e in spans]
    null = next((e for e in nbest if e["start_char"] < 0), None)
    if null is not None and (handle_impossible_answer or not spans):
        scores.append(null["start_logit"] + null["end_logit"] - threshold)
        rows.append(("", 0, 0))
    top = max(scores)
    exps = [math.exp(score - top) for score in scores]
    total = sum(exps)
    # Ranked by score (not by the rounded probability); a tie keeps n-best order, the no-answer entry last.
    order = sorted(range(len(rows)), key=lambda i: -scores[i])[:top_k]
    return [{"answer": rows[i][0], "score": exps[i] / total, "start": rows[i][1], "end": rows[i][2]} for i in order]


def pipeline_shape(answers, top_k):
    """The pipeline returned a dict for top_k=1 and a list otherwise."""
    return answers[0] if top_k == 1 else answers


def describe(result, qas_id, types=None):
    """Lines for the terminal: the answer, its score and its character span, or that there is none. With the
    answer-type head's `types` (question_types), the head decides: yes, no, the span or no answer."""
    if types is not None:
        return describe_typed(result, qas_id, *types[qas_id])
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


def describe_typed(result, qas_id, kind, probabilities):
    """describe's lines for a model with the answer-type head: what it says, then the type's probabilities."""
    span = best_span(result.nbest[qas_id])
    said = answer_type.spoken_answer(kind, span["text"] if span else "")
    chances = ", ".join(f"{name} {p:.3f}" for name, p in answer_type.answer_probabilities(probabilities).items())
    head = f"answer type {kind} ({chances})"
    where = (f"{span['text']!r}, chars {span['start_char']}-{span['end_char']}, probability {span['probability']:.3f}"
             if span else "none")
    if not said:
        return ["No answer: the document does not seem to contain one.", f"({head}; best span was {where})"]
    if kind in ("yes", "no"):
        return [f"Answer: {said}", f"{head}; best span {where}"]
    return [f"Answer: {said}", f"{head}; characters {span['start_char']}-{span['end_char']}, "
                               f"probability {span['probability']:.3f}"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a run's output folder (its model: the best, else the final model), a final "
                                          "model folder or a checkpoint-N folder")
    parser.add_argument("--question", help="one question about --context-file")
    parser.add_argument("--context-file", help="the document, plain UTF-8 text of any length")
    parser.add_argument("--questions-file", help="JSON Lines {id, question, context} or SQuAD JSON; answers not needed")
    parser.add_argument("--output", help="with --questions-file: where to write {id: answer} (default: print)")
    parser.add_argument("--threshold", type=float, help="null score difference threshold (default: the tuned one)")
    parser.add_argument("--top_k", type=int, metavar="N",
                        help="answers shaped as transformers' question-answering pipeline gave them: per question "
                             "{answer, score, start, end} (a list of the N best when N > 1) instead of {id: answer}")
    parser.add_argument("--threads", type=int, default=1, help="threads tokenising the document")
    parser.add_argument("--torch_threads", type=int, metavar="N",
                        help="torch's threads for the model (default: the run's recorded --torch_threads, else torch's)")
    args = parser.parse_args(argv)
    refuse_non_finite(parser, args)  # --threshold nan would answer every question, or none, without a word
    if not os.path.isdir(args.model_dir):
        parser.error(f"{args.model_dir}: no such folder; give a run's output folder or checkpoint-N")
    if args.torch_threads is not None and args.torch_threads < 1:
        parser.error(f"--torch_threads must be at least 1, got {args.torch_threads}")
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top_k must be at least 1, got {args.top_k}")
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
    try:
        return answer(args)
    except NonFiniteLogits:
        print(f"ask.py: {args.model_dir}: the model's logits are not finite (NaN): its weights are broken (a run "
              "that diverged?); ask an earlier checkpoint-N of the run, or train it again", file=sys.stderr)
        return 2


def answer(args):
    """main's work once the arguments are parsed; the exit status."""
    try:
        model_dir, which = which_model(args.model_dir)
    except CheckpointError as exc:
        print(f"ask.py: {args.model_dir}: not a model folder, nor a run with a model: {exc}", file=sys.stderr)
        return 2
    torch_threads, threads_from = use_recorded_threads(model_dir, args.torch_threads)
    label = f"the run's model: {which}" if which else model_dir
    print(f"ask: {label}; {torch_threads} torch thread(s) ({threads_from})", file=sys.stderr)
    try:
        answerer = QuestionAnswerer(model_dir, args.threshold, args.threads)
    except CheckpointError as exc:
        print(f"ask.py: {exc}", file=sys.stderr)
        return 2
    config = answerer.config
    print(f"null threshold {config['null_score_diff_threshold']:.4f} from {config['source']}", file=sys.stderr)
    if args.question:
        with open(args.context_file, encoding="utf-8") as f:
            context = f.read()
        if not context.strip():
            raise SystemExit(f"{args.context_file}: the document is empty")
        if args.top_k:
            print(json.dumps(answerer(args.question, context, args.top_k), indent=2, ensure_ascii=False))
            return 0
        example = SquadExample("question", "", args.question, context, (), True)
        result, types = answerer.typed_postprocess([example])
        print("\n".join(describe(result, "question", types)))
        return 0
    try:
        examples = read_squad(args.questions_file, check_answers=False, questions_only=True)
    except SquadFormatError as exc:  # the message names the file and the question or line
        print(f"ask.py: {exc}", file=sys.stderr)
        return 2
    answers = answerer.answer_many(examples, args.top_k) if args.top_k else answerer.answers(examples)
    if args.output:
        with atomic_write(args.output, "w", encoding="utf-8") as f:
            json.dump(answers, f, indent=2, ensure_ascii=False)
        print(f"wrote {len(answers)} predictions to {args.output}")
    else:
        print(json.dumps(answers, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
