"""Whole-document Natural Questions prediction: every long-answer candidate of a record is a question over
its own text; the model's windows choose the long and the short answer; the official prediction entry.

    documents = [document_from_record(record, top_level_only=True, where="dev.jsonl:1")]
    examples = candidate_examples(documents)             # one SquadExample per candidate (qa.squad_io)
    ... features, logits, qa.postprocess of per_window(examples, features) ...
    choice = best_candidate([(candidate qas_id, [window qas_ids])], result)
    entry = prediction_entry(documents[0], choice)        # {"example_id", "long_answer", "short_answers", ...}

The rule (BERT-joint's NQ baseline): the long answer is the candidate with the window whose best span
beats that same window's null (CLS) score by the most; its score is that margin, and the short answer is
that window's best span, mapped back to NQ tokens and bytes (qa.nq.document.char_span_to_tokens). Why per
window and not per candidate, and what the command line does around it: scripts/predict_nq.py.
Standard library at import; numpy, torch and the tokenizer only inside the functions that run the model.
"""

import dataclasses
import itertools
import queue
import threading

from qa.nq.annotation import LONG_NON_NULL_THRESHOLD, NULL_SPAN, as_span
from qa.nq.document import candidate_context, char_span_to_tokens, list_candidates
from qa.nq.evaluate import NQEvalError, expand_gold_paths
from qa.nq.reader import BadRecord, InputError, JSONDecodeError, TruncatedInput, iter_lines, loads

# The score of a record without any candidate to answer from: far below any real margin (a difference of
# two start+end logit sums) or log-probability, and finite, so the prediction file is plain JSON.
NO_ANSWER_SCORE = -1e6
RANKS = ("margin", "logprob")  # predict_nq --rank: how a window's best span is scored (best_candidate)
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
    for index, candidate in list_candidates(record, top_level_only=top_level_only):
        try:
            context = candidate_context(record, index)
        except (BadRecord, KeyError, TypeError, IndexError) as exc:
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


def best_candidate(candidate_windows, result, log_normalizers=None):
    """The candidate with the best-scored window, and that window's best span.

    candidate_windows: [(candidate qas_id, [window qas_ids])] of one record, in document order; result:
    qa.postprocess's PostprocessResult of per_window's questions (or anything with its .nbest and
    .null_score_diff dicts). A window's score is, by default (--rank margin, BERT-joint's rule), its best
    span score minus its null score = -null_score_diff; with log_normalizers ({window qas_id: logsumexp of
    its start logits + logsumexp of its end logits}, --rank logprob) it is the log-probability of its best
    span under the window's own start and end softmax, s_i + e_j - logsumexp(s) - logsumexp(e), which does
    not depend on the window's null score. Returns (qas_id, score, start_char, end_char), or None when no
    window has a span. Ties go to the earlier candidate, then the earlier window. The best span is the first
    n-best entry with text: postprocess lists spans best first (its n_best_size must be >= 2, or the null
    entry can take the only slot)."""
    best = None
    for qas_id, windows in candidate_windows:
        for window in windows:
            span = next((entry for entry in result.nbest[window] if entry["text"]), None)
            if span is None:
                continue
            if log_normalizers is None:
                score = -result.null_score_diff[window]
            else:
                score = span["start_logit"] + span["end_logit"] - log_normalizers[window]
            if best is None or score > best[1]:
                best = (qas_id, score, span["start_char"], span["end_char"])
    return best


def window_log_normalizers(starts, ends, lengths):
    """{window qas_id: logsumexp(start logits) + logsumexp(end logits)} over each window's real tokens
    (`lengths`; the padding after them is left out), in float64: --rank logprob's per-window normalizers."""
    import numpy as np

    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    padding = np.arange(starts.shape[1])[None, :] >= np.asarray(lengths)[:, None]

    def logsumexp(logits):
        logits = np.where(padding, -np.inf, logits)
        peak = logits.max(axis=1, keepdims=True)
        return (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))[:, 0]

    totals = logsumexp(starts) + logsumexp(ends)
    return {window_qas_id(window): float(total) for window, total in enumerate(totals)}


def long_answer_span(candidate):
    """The official span of a long-answer candidate (bytes -1 in the simplified format, which has none)."""
    return as_span(candidate).as_dict()


def prediction_entry(document, choice):
    """The official prediction of a Document given best_candidate's choice (None: no answer at all)."""
    if choice is None:
        return {"example_id": document.example_id, "long_answer": NULL_SPAN.as_dict(), "long_answer_score": NO_ANSWER_SCORE,
                "short_answers": [], "short_answers_score": NO_ANSWER_SCORE, "yes_no_answer": "NONE"}
    qas_id, margin, start_char, end_char = choice
    _, candidate, context = next(c for c in document.candidates if candidate_qas_id(document.example_id, c[0]) == qas_id)
    short = char_span_to_tokens(context, start_char, end_char)
    return {"example_id": document.example_id, "long_answer": long_answer_span(candidate), "long_answer_score": margin,
            "short_answers": [short], "short_answers_score": margin, "yes_no_answer": "NONE"}


def candidate_examples(documents):
    """One unanswered SquadExample per candidate of each Document, in order."""
    from qa.squad_io import SquadExample

    return [SquadExample(candidate_qas_id(doc.example_id, index), "", doc.question, context.text, (), True)
            for doc in documents for index, _, context in doc.candidates]


# ---------------------------------------------------------------------------------------------
# Reading records
# ---------------------------------------------------------------------------------------------
def input_lines(input_pattern, max_examples=0):
    """(line bytes, "file:line") of every record of the input files (paths, globs, s3:// URIs, folders:
    the files qa.nq.evaluate scores against), in order; raises InputError."""
    try:
        uris = expand_gold_paths(input_pattern)
    except FileNotFoundError as exc:
        raise InputError(f"{exc}; download the data first (make data) or fix --input") from None
    except NQEvalError as exc:
        raise InputError(str(exc)) from None
    count = 0
    for uri in uris:
        try:
            for line_number, line in iter_lines(uri):
                yield line, f"{uri}:{line_number}"
                count += 1
                if max_examples and count >= max_examples:
                    return
        except TruncatedInput as exc:
            raise InputError(f"{uri}: {exc}") from None
        except IsADirectoryError:
            raise InputError(f"{uri}: a directory; give files or a glob such as '{uri}/nq-dev-*.jsonl.gz'") from None


def parse_record(line, where):
    """A JSON line -> the record dict; InputError naming the line when it is not one."""
    try:
        record = loads(line)
    except (JSONDecodeError, UnicodeDecodeError) as exc:
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
# The model on a chunk of documents
# ---------------------------------------------------------------------------------------------
def predict_chunk(documents, model, tokenizer, params, config, runtime, batch_size=64, threads=1, rank="margin",
                  should_stop=None):
    """Official predictions of `documents` (on rank 0; None on the others) and the number of windows.

    rank: how windows are compared (best_candidate): "margin" (best span minus the window's null score) or
    "logprob" (the best span's log-probability under the window's softmax). should_stop: as predict_logits's
    (training's whole-page scores give up for a stop signal, qa/nq/train_eval.py)."""
    from qa.answer_type import nq_prediction_with_type, type_probabilities
    from qa.answer_type_head import has_type_output
    from qa.features import build_features
    from qa.inference import predict_logits
    from qa.postprocess import postprocess_predictions

    examples = candidate_examples(documents)
    result, windows, normalizers, types = None, 0, None, None
    if examples:
        # One piece of the chunk per thread (build_features parallelises over pieces of examples).
        piece = max(1, -(-len(examples) // threads))
        features = build_features(examples, tokenizer, params, training=False, threads=threads, chunk_examples=piece)
        windows = len(features)
        # With the answer-type head, a third array: each window's type logits [N, 5] (else None)
        starts, ends, types = (*predict_logits(model, features, batch_size, runtime, with_types=has_type_output(model),
                                               pad_to_multiple_of=8 if runtime.cuda else 1, should_stop=should_stop),
                               None)[:3]
        if not runtime.is_main:
            return None, windows
        # Threshold 0.0 only sets `predictions`, unused here: the choice is made on the margins.
        result = postprocess_predictions(*per_window(examples, features), starts, ends, config["n_best_size"],
                                         config["max_answer_length"], True, 0.0)
        if rank == "logprob":
            normalizers = window_log_normalizers(starts, ends, features.lengths)
    if not runtime.is_main:
        return None, windows
    windows_of = {}  # candidate qas_id -> its window qas_ids, in window order
    if examples:
        for window, example in enumerate(features.example_index.tolist()):
            windows_of.setdefault(examples[example].qas_id, []).append(window_qas_id(window))
    predictions = []
    for doc in documents:
        qas_ids = [candidate_qas_id(doc.example_id, index) for index, _, _ in doc.candidates]
        choice = best_candidate([(qas_id, windows_of[qas_id]) for qas_id in qas_ids], result, normalizers) if qas_ids else None
        entry = prediction_entry(doc, choice)
        if types is not None and choice is not None:  # the head (qa/answer_type.py): yes / no / long alone / short
            rows = [int(window) for window in windows_of[choice[0]]]  # window_qas_id(window) is str(window)
            entry = nq_prediction_with_type(entry, type_probabilities(types[rows]))
        predictions.append(entry)
    return predictions, windows


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def score_nq_predictions(gold_pattern, predictions_path, example_ids=None):
    """The official NQ metrics dict (qa.nq.evaluate.evaluate) of a prediction file against the gold of the input
    (not qa.metrics.evaluate_predictions, which scores SQuAD-style answers).

    example_ids: score only these gold examples (the ones predicted with --max_examples); the official
    evaluation otherwise needs one prediction per gold example, no more, no fewer."""
    from qa.nq.evaluate import compute_metrics, evaluate, read_gold, read_predictions, score

    if example_ids is None:
        return evaluate(gold_pattern, predictions_path)
    gold = read_gold(gold_pattern)
    gold = {example_id: gold[example_id] for example_id in example_ids}
    return compute_metrics(*score(gold, read_predictions(predictions_path, gold)))


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
