#!/usr/bin/env python
"""Answer whole Natural Questions documents with a trained model; write (and score) official NQ predictions.

    python scripts/predict_nq.py --model_dir outputs/nq-albert-xlarge-v2 --input 'data/nq/raw/dev/nq-dev-*.jsonl.gz'
    python scripts/predict_nq.py --model_dir outputs/nq-albert-xlarge-v2 --checkpoint checkpoint-1500 \
        --input 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --batch_size 128 --fp16 --threads 8 --workers 4
    python scripts/predict_nq.py --model_dir outputs/demo/run/checkpoint-400 --input data/demo/raw/nq-dev-sample.jsonl.gz \
        --output /tmp/nq/nq_predictions.json --candidates all --max_examples 50
    python scripts/predict_nq.py --model_dir MODEL --input nq-dev-10.simplified.jsonl --output preds.json --eval
    torchrun --nproc_per_node 8 scripts/predict_nq.py --model_dir RUN --input 'data/nq/raw/dev/*.jsonl.gz' --fp16
    make eval-nq [OUTPUT_DIR=outputs/nq-albert-xlarge-v2] [CKPT=checkpoint-1500|best|final] [NQ_DEV_GLOB=...]

The guide trains on the gold long answer's paragraph, so its SQuAD-style score is an oracle: the model is
handed the right paragraph. NQ's own evaluation makes it find that paragraph among the page's candidates.
For every record (full format, or simplified), every long-answer candidate (the top-level ones, or all
of them with --candidates all) becomes one question-and-context: the context is the candidate's text
exactly as scripts/nq_to_squad.py builds a training context (`nq_to_squad.candidate_context`). All
windows of all candidates of a chunk of records go through the model together (in length order,
qa.inference.predict_logits) and are post-processed as evaluation does (qa.postprocess). Then:

- long answer: the candidate with the window whose best span beats that same window's null (CLS)
  score by the most, as the BERT-joint NQ baseline ranks them (its score is start + end logit minus
  the window's CLS start + end logit); long_answer_score = that margin. Not the best span over all
  of a candidate's windows minus the smallest null over them (qa.postprocess's per-question rule):
  the more windows a candidate has, the lower its smallest null, so long tables and lists would win;
- short answer: that window's best span, mapped from characters to NQ tokens and HTML bytes
  (`nq_to_squad.char_span_to_tokens`); short_answers_score = the same margin;
- yes_no_answer is always "NONE": an extractive QA head (start/end logits) cannot say yes or no, so
  NQ's yes/no questions are scored as missed short answers.

Every record gets its best candidate with its score, also when the margin is negative (no candidate
beats null): the official evaluation sweeps the threshold over the scores, so it decides. A record
with no candidate (or none with a span) gets a null long answer (offsets -1) and the score
NO_ANSWER_SCORE. Window sizes default to the model's own (qa_config.json of a final model, the
training args in a checkpoint's trainer_state.json; scripts/ask.py's load_qa_config). A checkpoint is
verified against its COMPLETE marker's hashes before it is loaded (exit 2 when damaged).

Output: the official prediction format, written atomically, by default into
`<run>/eval/nq-<step>/nq_predictions.json` (never over the training record; `nq-<step>-all-candidates`,
`nq-<step>-first-<N>` or both for a --candidates all or --max_examples N run, so those never overwrite the
default run's files). <step> is the checkpoint's global step, the final model's (training_summary.json),
or "final". The official metrics (qa.nq_eval) go to `nq_eval_results_<step>.json` beside it: by default
when every record is full-format with at least 2 annotations (the official --long_non_null_threshold:
a train record has 1 annotator, so its gold never has an answer and every F1 would be 0; a line says
why it is not scored), with --eval always (a warning says when F1 cannot exceed 0). Under torchrun each
rank computes its share of the windows; rank 0 writes.

Speed (10 real dev records, top-level candidates, 384/128/64 windows, 2 busy CPU cores): all-MiniLM-L6
(22M parameters, 30k word pieces) makes 278 windows (mean 213 tokens) and answers in 51 s, 5.5 windows/s.
Reading a record and building its candidates' texts is pure Python, 30-50 ms a record, tokenising 20 ms:
on a GPU that is the floor (about 9 minutes for the 7,830 dev records on one core), so the next chunk is
prepared in a background thread while the model runs, --workers processes build the texts and --threads
tokenise them.
"""

import argparse
import dataclasses
import itertools
import os
import queue
import sys
import threading
import time

import orjson

import nq_to_squad
from ask import load_qa_config
from qa import run_dir
from qa.checkpoints import verify_checkpoint
from qa.nq_eval import LONG_NON_NULL_THRESHOLD, NQEvalError, expand_gold_paths
from qa.run_dir import CheckpointError
from qa.squad_io import SquadExample
from qa.storage import atomic_write

# The score of a record without any candidate to answer from: far below any real margin (a difference of
# two start+end logit sums), and finite, so the prediction file is plain JSON.
NO_ANSWER_SCORE = -1e6
NULL_SPAN = {"start_token": -1, "end_token": -1, "start_byte": -1, "end_byte": -1}
# Records per chunk: the chunk's windows and logits are what is held in memory, about 8.4 KB a 384-token
# window (features + float32 logits). The 10 real dev records make 20 top-level candidates and 28 windows
# a record with a 30k-word-piece tokenizer (865 candidates, 95 windows with --candidates all), so 500
# records are about 120 MB (400 MB for all); larger chunks sort more windows by length.
RECORDS_PER_CHUNK = 500


@dataclasses.dataclass
class Document:
    """One NQ record, reduced to what prediction needs (the rest of its ~0.7 MB is dropped at once)."""

    example_id: int
    question: str
    candidates: list  # [(candidate_index, candidate dict from long_answer_candidates, CandidateContext)]
    where: str  # "file:line", for messages


class InputError(ValueError):
    """Bad input data: the message names the file and line and says what to do (exit 2)."""


# ---------------------------------------------------------------------------------------------
# Pure functions: a record's candidates, the choice among them, the official prediction entry
# ---------------------------------------------------------------------------------------------
def document_from_record(record, top_level_only, where):
    """The Document of a parsed NQ record: its candidates with their text (empty-text ones dropped:
    a candidate holding only HTML tokens cannot contain a span). Raises InputError."""
    for field, types in (("example_id", int), ("question_text", str), ("long_answer_candidates", list)):
        if not isinstance(record.get(field), types) or isinstance(record.get(field), bool):
            raise InputError(f"{where}: no valid {field!r}: is this an NQ record (full or simplified format)?")
    if "document_tokens" not in record and "document_text" not in record:
        raise InputError(f"{where}: neither 'document_tokens' (full format) nor 'document_text' (simplified): not an NQ record")
    candidates = []
    for index, candidate in nq_to_squad.list_candidates(record, top_level_only=top_level_only):
        try:
            context = nq_to_squad.candidate_context(record, index)
        except (nq_to_squad.BadRecord, KeyError, TypeError, IndexError) as exc:
            raise InputError(f"{where}: example {record['example_id']}: candidate {index} cannot be read ({exc}); "
                             "the record is damaged: re-download the file") from None
        if context.text.strip():
            candidates.append((index, candidate, context))
    return Document(record["example_id"], record["question_text"], candidates, where)


def candidate_qas_id(example_id, candidate_index):
    return f"{example_id}:{candidate_index}"


def window_qas_id(window):
    """The id of one feature window as its own question (see per_window)."""
    return str(window)


def per_window(examples, features):
    """(examples, features) with every window its own question, for qa.postprocess.

    Post-processing a question merges its windows (best span over all of them, smallest null among
    them); a candidate is ranked on its best single window instead (see best_candidate), so each window
    becomes a question of its own, with its candidate's context: its n-best list and null_score_diff are
    then that window's alone, under every other rule of postprocess (max context, answer length, trim)."""
    import types

    import numpy as np

    window_examples = [dataclasses.replace(examples[example], qas_id=window_qas_id(window))
                       for window, example in enumerate(np.asarray(features.example_index).tolist())]
    window_features = types.SimpleNamespace(example_index=np.arange(len(window_examples)), cls_index=features.cls_index,
                                            offsets=features.offsets, token_is_max_context=features.token_is_max_context,
                                            lengths=features.lengths)
    return window_examples, window_features


def best_candidate(candidate_windows, result):
    """The candidate with the window whose best span beats that window's null score by the most.

    candidate_windows: [(candidate qas_id, [window qas_ids])] of one record, in document order; result:
    qa.postprocess's PostprocessResult of per_window's questions (or anything with its .nbest and
    .null_score_diff dicts). Returns (qas_id, margin, start_char, end_char), margin = the window's best
    span score - its null score = -null_score_diff, or None when no window has a span. Ties go to the
    earlier candidate, then the earlier window. The best span is the first n-best entry with text:
    postprocess lists spans best first (its n_best_size must be >= 2, or the null entry can take the
    only slot)."""
    best = None
    for qas_id, windows in candidate_windows:
        for window in windows:
            span = next((entry for entry in result.nbest[window] if entry["text"]), None)
            if span is None:
                continue
            margin = -result.null_score_diff[window]
            if best is None or margin > best[1]:
                best = (qas_id, margin, span["start_char"], span["end_char"])
    return best


def long_answer_span(candidate):
    """The official span of a long-answer candidate (bytes -1 in the simplified format, which has none)."""
    return {"start_token": candidate["start_token"], "end_token": candidate["end_token"],
            "start_byte": candidate.get("start_byte", -1), "end_byte": candidate.get("end_byte", -1)}


def prediction_entry(document, choice):
    """The official prediction of a Document given best_candidate's choice (None: no answer at all)."""
    if choice is None:
        return {"example_id": document.example_id, "long_answer": dict(NULL_SPAN), "long_answer_score": NO_ANSWER_SCORE,
                "short_answers": [], "short_answers_score": NO_ANSWER_SCORE, "yes_no_answer": "NONE"}
    qas_id, margin, start_char, end_char = choice
    _, candidate, context = next(c for c in document.candidates if candidate_qas_id(document.example_id, c[0]) == qas_id)
    short = nq_to_squad.char_span_to_tokens(context, start_char, end_char)
    return {"example_id": document.example_id, "long_answer": long_answer_span(candidate), "long_answer_score": margin,
            "short_answers": [short], "short_answers_score": margin, "yes_no_answer": "NONE"}


def candidate_examples(documents):
    """One unanswered SquadExample per candidate of each Document, in order."""
    return [SquadExample(candidate_qas_id(doc.example_id, index), "", doc.question, context.text, (), True)
            for doc in documents for index, _, context in doc.candidates]


# ---------------------------------------------------------------------------------------------
# Reading records
# ---------------------------------------------------------------------------------------------
def iter_lines(input_pattern, max_examples=0):
    """(line bytes, "file:line") of every record of the input files (paths, globs, s3:// URIs, folders:
    the files qa.nq_eval scores against), in order; raises InputError."""
    try:
        uris = expand_gold_paths(input_pattern)
    except FileNotFoundError as exc:
        raise InputError(f"{exc}; download the data first (make data) or fix --input") from None
    except NQEvalError as exc:
        raise InputError(str(exc)) from None
    count = 0
    for uri in uris:
        try:
            for line_number, line in nq_to_squad.iter_lines(uri):
                yield line, f"{uri}:{line_number}"
                count += 1
                if max_examples and count >= max_examples:
                    return
        except nq_to_squad.TruncatedInput as exc:
            raise InputError(f"{uri}: {exc}") from None
        except IsADirectoryError:
            raise InputError(f"{uri}: a directory; give files or a glob such as '{uri}/nq-dev-*.jsonl.gz'") from None


def parse_record(line, where):
    """A JSON line -> the record dict; InputError naming the line when it is not one."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc}); the file is damaged: re-download it") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: a line must be one JSON object (an NQ record)")
    return record


def unscored_reason(record, long_non_null_threshold=LONG_NON_NULL_THRESHOLD):
    """Why predictions of this record are not scored by default: "simplified" (no byte offsets; --eval
    scores it on tokens), "few_annotations" (fewer annotators than the official threshold, as every train
    record with its 1: its gold never has an answer, so F1 is 0 whatever is predicted), else None."""
    if "document_tokens" not in record:
        return "simplified"
    annotations = record.get("annotations")
    if not isinstance(annotations, list) or len(annotations) < long_non_null_threshold:
        return "few_annotations"
    return None


def read_document(job):
    """(Document, unscored_reason) of one line; job = (line, where, top_level_only). A worker's task."""
    line, where, top_level_only = job
    record = parse_record(line, where)
    return document_from_record(record, top_level_only, where), unscored_reason(record)


def chunked_documents(lines, top_level_only, records_per_chunk, stats, workers=1):
    """Lists of Documents, records_per_chunk records at a time, in input order; counts in `stats`.

    With workers > 1, lines are parsed and their candidates' texts built in that many processes (pure
    Python, about 30-50 ms a real record on one core: 4-6 minutes of the 7,830 dev records alone)."""
    jobs = ((line, where, top_level_only) for line, where in lines)
    pool = None
    if workers > 1:
        import multiprocessing

        # spawn: the parent may hold CUDA and torch threads, which a fork would copy half-initialised.
        pool = multiprocessing.get_context("spawn").Pool(workers)
    def read_all():
        if pool is None:
            yield from map(read_document, jobs)
            return
        # One chunk of records at a time: Pool.imap alone reads ahead without limit (about 0.9 MB a real
        # record held until consumed: gigabytes when the model is slower than the readers).
        while batch := list(itertools.islice(jobs, records_per_chunk)):
            yield from pool.imap(read_document, batch, chunksize=4)

    try:
        documents = read_all()
        seen, chunk = {}, []
        for document, reason in documents:
            if document.example_id in seen:
                raise InputError(f"{document.where}: example_id {document.example_id} is also at "
                                 f"{seen[document.example_id]}; is a file given twice?")
            seen[document.example_id] = document.where
            stats["records"] += 1
            if reason is not None:
                stats[reason] += 1
            chunk.append(document)
            if len(chunk) == records_per_chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    finally:
        if pool is not None:
            pool.terminate()


def prefetched(iterable, depth=1):
    """Iterate `iterable` in a background thread, `depth` items ahead: the next chunk's reading and
    tokenisation (tokenizers release the GIL) overlap the model's work on this one. Exceptions are
    re-raised here, in order."""
    items = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                items.put((item, None))
            items.put((done, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            items.put((None, exc))
        finally:
            if hasattr(iterable, "close"):  # a generator's own cleanup (the worker pool) runs now, in order
                iterable.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = items.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it end
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                pass


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def model_step(model_dir):
    """The global step of a checkpoint (trainer_state.json) or final model (training_summary.json), else "final"."""
    if os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE)):
        return run_dir.load_train_state(model_dir)["global_step"]
    step = (run_dir.read_summary(model_dir) or {}).get("global_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else "final"


def resolve_model(model_dir, checkpoint):
    """(folder to load, run folder it belongs to) for --model_dir and --checkpoint; raises CheckpointError.

    checkpoint None or "final": model_dir itself (a final model, or a checkpoint-N folder given directly);
    else run_dir.resolve_checkpoint's names ("checkpoint-N", "best", "latest", a path) inside model_dir."""
    if checkpoint in (None, "final"):
        path = model_dir
    else:
        path = run_dir.resolve_checkpoint(checkpoint, model_dir)
    is_checkpoint = os.path.exists(os.path.join(path, run_dir.STATE_FILE))
    if is_checkpoint:
        verify_checkpoint(path)
    if not run_dir.has_final_model(path):
        names = run_dir.complete_names(model_dir)
        raise CheckpointError(f"{path}: no model (no {run_dir.MODEL_CONFIG}); training has not finished: give "
                              f"--checkpoint checkpoint-N (complete ones: {names})")
    run = os.path.dirname(os.path.abspath(path)) if is_checkpoint else path
    return path, run


def predict_chunk(documents, model, tokenizer, params, config, runtime, args):
    """Official predictions of `documents` (on rank 0; None on the others) and the number of windows."""
    from qa.features import build_features
    from qa.inference import predict_logits
    from qa.postprocess import postprocess_predictions

    examples = candidate_examples(documents)
    result, windows = None, 0
    if examples:
        # One piece of the chunk per thread (build_features parallelises over pieces of examples).
        piece = max(1, -(-len(examples) // args.threads))
        features = build_features(examples, tokenizer, params, training=False, threads=args.threads, chunk_examples=piece)
        windows = len(features)
        starts, ends = predict_logits(model, features, args.batch_size, runtime,
                                      pad_to_multiple_of=8 if runtime.cuda else 1)
        if not runtime.is_main:
            return None, windows
        # Threshold 0.0 only sets `predictions`, unused here: the choice is made on the margins.
        result = postprocess_predictions(*per_window(examples, features), starts, ends, config["n_best_size"],
                                         config["max_answer_length"], True, 0.0)
    if not runtime.is_main:
        return None, windows
    windows_of = {}  # candidate qas_id -> its window qas_ids, in window order
    if examples:
        for window, example in enumerate(features.example_index.tolist()):
            windows_of.setdefault(examples[example].qas_id, []).append(window_qas_id(window))
    predictions = []
    for doc in documents:
        qas_ids = [candidate_qas_id(doc.example_id, index) for index, _, _ in doc.candidates]
        choice = best_candidate([(qas_id, windows_of[qas_id]) for qas_id in qas_ids], result) if qas_ids else None
        predictions.append(prediction_entry(doc, choice))
    return predictions, windows


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def evaluate_predictions(gold_pattern, predictions_path, example_ids=None):
    """The official metrics dict (qa.nq_eval.evaluate) of the predictions against the gold of the input.

    example_ids: score only these gold examples (the ones predicted with --max_examples); the official
    evaluation otherwise needs one prediction per gold example, no more, no fewer."""
    from qa.nq_eval import compute_metrics, evaluate, read_gold, read_predictions, score

    if example_ids is None:
        return evaluate(gold_pattern, predictions_path)
    gold = read_gold(gold_pattern)
    gold = {example_id: gold[example_id] for example_id in example_ids}
    return compute_metrics(*score(gold, read_predictions(predictions_path, gold)))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True,
                        help="A final model folder (a run's --output_dir after training) or a checkpoint-N folder.")
    parser.add_argument("--checkpoint", default=None,
                        help="Use this checkpoint of the run in --model_dir: checkpoint-N, best, latest or a path; "
                             "final (default) = --model_dir itself.")
    parser.add_argument("--input", required=True,
                        help="NQ records: a path, a quoted glob ('data/nq/raw/dev/nq-dev-*.jsonl.gz') or s3:// URI; "
                             "full or simplified format, gzip or plain.")
    parser.add_argument("--output", default=None,
                        help="The prediction file (default: <run>/eval/nq-<step>/nq_predictions.json).")
    parser.add_argument("--candidates", choices=("top", "all"), default="top",
                        help="top: the top-level long-answer candidates (default); all: also the table rows and list "
                             "items nested in them (about 4x the candidates and 3x the windows on real dev records).")
    parser.add_argument("--max_examples", type=int, default=0, help="Only the first N records (0 = all).")
    parser.add_argument("--batch_size", type=int, default=64, help="Windows per forward pass.")
    parser.add_argument("--max_seq_length", type=int, default=None, help="Tokens per window (default: the model's).")
    parser.add_argument("--doc_stride", type=int, default=None, help="Step between window starts (default: the model's).")
    parser.add_argument("--max_query_length", type=int, default=None, help="Question tokens kept (default: the model's).")
    parser.add_argument("--threads", type=int, default=1, help="Threads tokenising the candidates.")
    parser.add_argument("--workers", type=int, default=1,
                        help="Processes reading the records and building the candidates' texts (default 1: this one).")
    parser.add_argument("--records_per_chunk", type=int, default=RECORDS_PER_CHUNK,
                        help=f"Records whose windows are held in memory at once (default {RECORDS_PER_CHUNK}).")
    parser.add_argument("--eval", action=argparse.BooleanOptionalAction, default=None,
                        help="Score with the official NQ metrics (default: when every record is full-format with at "
                             f"least {LONG_NON_NULL_THRESHOLD} annotations, as the dev set's 5; --eval for simplified "
                             "dev records).")
    parser.add_argument("--fp16", action="store_true", help="float16 autocast (CUDA).")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast.")
    parser.add_argument("--no_cuda", action="store_true", help="Run on the CPU even when a GPU is visible.")
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser, args):
    """Every argument checked here, right after parsing; parser.error exits 2 with the message."""
    for name in ("batch_size", "threads", "workers", "records_per_chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.max_examples < 0:
        parser.error(f"--max_examples must be >= 0 (0 = all records), got {args.max_examples}")
    for name in ("max_seq_length", "doc_stride", "max_query_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive number of tokens, got {getattr(args, name)}")
    if args.fp16 and args.bf16:
        parser.error("give at most one of --fp16 and --bf16")
    if not os.path.isdir(args.model_dir):
        parser.error(f"--model_dir {args.model_dir}: no such folder")
    if args.fp16:
        import torch

        if args.no_cuda or not torch.cuda.is_available():
            parser.error("--fp16 needs a CUDA GPU and none is in use: drop --fp16 (or use --bf16 on the CPU)")


def feature_params(config, args):
    """FeatureParams from the flags, else the model's config; ValueError says what to change."""
    from qa.features import FeatureParams

    values = {name: getattr(args, name) if getattr(args, name) is not None else config[name]
              for name in ("max_seq_length", "doc_stride", "max_query_length")}
    if config["n_best_size"] < 2:
        raise ValueError(f"n_best_size is {config['n_best_size']} in {config['source']}: whole-document prediction needs "
                         "the best span among the n-best entries, so at least 2")
    return FeatureParams(**values)


def default_output(run, step, candidates, max_examples):
    """<run>/eval/nq-<step>[-all-candidates][-first-<N>]/nq_predictions.json: a run over other candidates or
    a subset never writes over the default run's predictions and metrics."""
    name = f"nq-{step}" + ("-all-candidates" if candidates == "all" else "") + (f"-first-{max_examples}" if max_examples else "")
    return os.path.join(run, run_dir.EVAL_DIR, name, "nq_predictions.json")


def scoring_decision(eval_flag, stats):
    """(score?, message or None) for --eval / --no-eval / default, from chunked_documents' counts.

    The message is the one line saying why the predictions are not scored, or a warning that they are
    scored although their F1 cannot be above 0."""
    few, simplified, records = stats["few_annotations"], stats["simplified"], stats["records"]
    few_why = (f"{few} of {records} records have fewer than {LONG_NON_NULL_THRESHOLD} annotations (a train file: 1 "
               f"annotator), and gold has an answer only when {LONG_NON_NULL_THRESHOLD} annotators give one, so every "
               "F1 would be 0")
    if eval_flag is False:
        return False, "predict_nq: not scored (--no-eval)"
    if eval_flag is None:
        reasons = ([few_why] if few else []) + \
                  ([f"{simplified} of {records} records are in the simplified format (no byte offsets)"] if simplified else [])
        if reasons:
            return False, f"predict_nq: not scored: {'; '.join(reasons)}; --eval to score anyway"
        return True, None
    return True, (f"predict_nq: warning: scoring as asked (--eval), but {few_why}" if few else None)


def main(argv=None):
    args = parse_args(argv)
    try:
        model_path, run = resolve_model(args.model_dir, args.checkpoint)
        step = model_step(model_path)
    except CheckpointError as exc:
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
    config = load_qa_config(model_path)
    try:
        params = feature_params(config, args)
    except ValueError as exc:
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
    output = args.output or default_output(run, step, args.candidates, args.max_examples)

    import torch
    import transformers
    from tqdm import tqdm
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa.runtime import init_runtime

    runtime = init_runtime(no_cuda=args.no_cuda, fp16=args.fp16, bf16=args.bf16)
    if runtime.is_main:
        flags = [f"--{name}" for name in ("max_seq_length", "doc_stride", "max_query_length") if getattr(args, name)]
        print(f"predict_nq: {model_path} (step {step}) on {runtime.device} x {runtime.world_size}; windows of "
              f"{params.max_seq_length} tokens, stride {params.doc_stride}, question {params.max_query_length} "
              f"(from {', '.join(flags) + ' and ' if flags else ''}{config['source']}); {args.candidates} candidates",
              file=sys.stderr)
    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForQuestionAnswering.from_pretrained(model_path).to(runtime.device)

    stats = {"records": 0, "simplified": 0, "few_annotations": 0, "candidates": 0, "windows": 0}
    predictions, example_ids = [], []
    started = time.perf_counter()
    bar = tqdm(total=args.max_examples or None, unit="doc", desc="predict_nq", disable=not runtime.is_main,
               file=sys.stderr)
    try:
        chunks = chunked_documents(iter_lines(args.input, args.max_examples), args.candidates == "top",
                                   args.records_per_chunk, stats, args.workers)
        for documents in prefetched(chunks):
            chunk_predictions, windows = predict_chunk(documents, model, tokenizer, params, config, runtime, args)
            stats["candidates"] += sum(len(doc.candidates) for doc in documents)
            stats["windows"] += windows
            example_ids += [doc.example_id for doc in documents]
            if runtime.is_main:
                predictions += chunk_predictions
            bar.update(len(documents))
    except InputError as exc:
        bar.close()
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
    bar.close()
    seconds = time.perf_counter() - started
    if not runtime.is_main:
        return 0
    if not predictions:
        print(f"predict_nq.py: {args.input}: no NQ records in it; check --input", file=sys.stderr)
        return 2
    with atomic_write(output, "wb") as f:
        f.write(orjson.dumps({"predictions": predictions}, option=orjson.OPT_INDENT_2))
    print(f"predict_nq: {stats['records']} documents, {stats['candidates']} candidates, {stats['windows']} windows in "
          f"{seconds:.1f} s ({stats['windows'] / max(seconds, 1e-9):.1f} windows/s, "
          f"{stats['records'] / max(seconds, 1e-9):.2f} documents/s); wrote {output}")
    del model
    if runtime.cuda:
        torch.cuda.empty_cache()

    scored, message = scoring_decision(args.eval, stats)
    if message:
        print(message, file=sys.stdout if not scored else sys.stderr)
    if not scored:
        return 0
    try:
        metrics = evaluate_predictions(args.input, output, example_ids if args.max_examples else None)
    except NQEvalError as exc:
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
    metrics = {**metrics, "step": step, "candidates": args.candidates, "examples": stats["records"]}
    results_path = os.path.join(os.path.dirname(os.path.abspath(output)), f"nq_eval_results_{step}.json")
    with atomic_write(results_path, "wb") as f:
        f.write(orjson.dumps(metrics, option=orjson.OPT_INDENT_2))
    print(f"NQ long answer F1 {metrics['long-best-threshold-f1']:.4f} "
          f"(P {metrics['long-best-threshold-precision']:.4f}, R {metrics['long-best-threshold-recall']:.4f}), "
          f"short answer F1 {metrics['short-best-threshold-f1']:.4f} "
          f"(P {metrics['short-best-threshold-precision']:.4f}, R {metrics['short-best-threshold-recall']:.4f}); "
          f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
