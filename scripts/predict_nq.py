#!/usr/bin/env python
"""Answer whole Natural Questions documents with a trained model; write (and score) official NQ predictions.

    python scripts/predict_nq.py --model_dir outputs/nq-albert-xlarge-v2 --input 'data/nq/raw/dev/nq-dev-*.jsonl.gz'
    python scripts/predict_nq.py --model_dir outputs/nq-albert-xlarge-v2 --checkpoint checkpoint-1500 \
        --input 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --batch_size 128 --fp16 --threads 8 --workers 4
    python scripts/predict_nq.py --model_dir outputs/demo/run/checkpoint-400 --input data/demo/raw/nq-dev-sample.jsonl.gz \
        --output /tmp/nq/nq_predictions.json --candidates all --max_examples 50
    python scripts/predict_nq.py --model_dir MODEL --input nq-dev-10.simplified.jsonl --output preds.json --eval
    python scripts/predict_nq.py --model_dir outputs/demo/run --input data/demo/raw/nq-dev-sample.jsonl.gz --rank logprob
    torchrun --nproc_per_node 8 scripts/predict_nq.py --model_dir RUN --input 'data/nq/raw/dev/*.jsonl.gz' --fp16
    make eval-nq [OUTPUT_DIR=outputs/nq-albert-xlarge-v2] [CKPT=checkpoint-1500|best|final] [NQ_DEV_GLOB=...]

The guide trains on the gold long answer's paragraph, so its SQuAD-style score is an oracle: the model is
handed the right paragraph. NQ's own evaluation makes it find that paragraph among the page's candidates.
For every record (full format, or simplified), every long-answer candidate (the top-level ones, or all
of them with --candidates all) becomes one question-and-context: the context is the candidate's text
exactly as scripts/nq_to_squad.py builds a training context (`qa.nq.document.candidate_context`). All
windows of all candidates of a chunk of records go through the model together (in length order,
qa.inference.predict_logits) and are post-processed as evaluation does (qa.postprocess). Then:

- long answer: the candidate with the window whose best span beats that same window's null (CLS)
  score by the most, as the BERT-joint NQ baseline ranks them (its score is start + end logit minus
  the window's CLS start + end logit); long_answer_score = that margin. With --rank logprob, the window
  whose best span has the highest log-probability under that window's start and end softmax instead
  (s_i + e_j - logsumexp(s) - logsumexp(e)); the score is that log-probability. --rank auto (the default)
  takes logprob for a model without the answer-type head (trained the guide's way: on the demo margin gives
  6.56 / 5.50 long / short F1, logprob 57.01 / 59.71) and margin for one with it (candidate mode: both about
  77.9 / 76); the choice and why are printed, and nq_eval_results_<step>.json records it ("rank"). Not the best span over all
  of a candidate's windows minus the smallest null over them (qa.postprocess's per-question rule):
  the more windows a candidate has, the lower its smallest null, so long tables and lists would win;
- short answer: that window's best span, mapped from characters to NQ tokens and HTML bytes
  (`qa.nq.document.char_span_to_tokens`); short_answers_score = the same margin;
- yes_no_answer is always "NONE": an extractive QA head (start/end logits) cannot say yes or no, so
  NQ's yes/no questions are scored as missed short answers.

Every record gets its best candidate with its score, also when the margin is negative (no candidate
beats null): the official evaluation sweeps the threshold over the scores, so it decides. A record
with no candidate (or none with a span) gets a null long answer (offsets -1) and the score
NO_ANSWER_SCORE. Window sizes default to the model's own (qa_config.json of a final model, the
training args in a checkpoint's trainer_state.json; qa.model_card.load_qa_config). A checkpoint is
verified against its COMPLETE marker's hashes before it is loaded (exit 2 when damaged).

Output: the official prediction format, written atomically, by default into
`<run>/eval/nq-<step>/nq_predictions.json` (never over the training record; `nq-<step>-all-candidates`,
`nq-<step>-first-<N>` or both for a --candidates all or --max_examples N run, so those never overwrite the
default run's files). <step> is the checkpoint's global step, the final model's (training_summary.json),
or "final". The official metrics (qa.nq.evaluate) go to `nq_eval_results_<step>.json` beside it: by default
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

This is the command line; reading records, the choice among candidates and the prediction entries are
qa.nq.predict, the official metrics qa.nq.evaluate, the run folder's names qa.run_dir.
"""

import argparse
import os
import sys
import time

import orjson

from qa import run_dir
from qa.model_card import load_qa_config
from qa.model_check import verify_model_folder
from qa.model_pick import use_recorded_threads
from qa.nq.annotation import LONG_NON_NULL_THRESHOLD
from qa.nq.evaluate import NQEvalError
from qa.nq.predict import (
    RANKS,
    RECORDS_PER_CHUNK,
    InputError,
    chunked_documents,
    input_lines,
    predict_chunk,
    prefetched,
    score_nq_predictions,
    scoring_decision,
)
from qa.nq.train_eval import AUTO, resolve_rank
from qa.run_dir import CheckpointError
from qa.storage import atomic_write


# ---------------------------------------------------------------------------------------------
# The model folder
# ---------------------------------------------------------------------------------------------
def resolve_model(model_dir, checkpoint):
    """(folder to load, run folder it belongs to) for --model_dir and --checkpoint; raises CheckpointError.

    A checkpoint-N folder given as --model_dir without --checkpoint is that checkpoint. Otherwise --model_dir is
    the run and run_dir.resolve_model decides, as `make eval` does: no --checkpoint -> the run's model (the best,
    checkpoint or final model; else the final model; else the newest complete checkpoint); "final" -> the final
    model; "best" -> the best, the final model included; "checkpoint-N", "latest" or a path -> that checkpoint."""
    is_checkpoint = os.path.exists(os.path.join(model_dir, run_dir.STATE_FILE))
    path = model_dir if checkpoint is None and is_checkpoint else run_dir.resolve_model(checkpoint, model_dir)
    is_checkpoint = os.path.exists(os.path.join(path, run_dir.STATE_FILE))
    if not run_dir.has_final_model(path):
        names = run_dir.complete_names(model_dir)
        raise CheckpointError(f"{path}: no model (no {run_dir.MODEL_CONFIG}); training has not finished: give "
                              f"{shown('--checkpoint')} checkpoint-N (complete ones: {names})")
    verify_model_folder(path)  # hashes, weights against config.json, tokenizer, links (qa.model_check)
    run = os.path.dirname(os.path.abspath(path)) if is_checkpoint else path
    return path, run


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True,
                        help="A run's --output_dir (its model as --checkpoint says), a final model or a checkpoint-N folder.")
    parser.add_argument("--checkpoint", default=None,
                        help="Which model of the run in --model_dir: checkpoint-N, best (a checkpoint or the final "
                             "model), latest, final or a path; default: the run's model, as make eval takes it (the "
                             "best, else the final model, else the newest complete checkpoint).")
    parser.add_argument("--input", required=True,
                        help="NQ records: a path, a quoted glob ('data/nq/raw/dev/nq-dev-*.jsonl.gz') or s3:// URI; "
                             "full or simplified format, gzip or plain, or the hub's parquet files (pyarrow).")
    parser.add_argument("--output", default=None,
                        help="The prediction file (default: <run>/eval/nq-<step>/nq_predictions.json).")
    parser.add_argument("--candidates", choices=("top", "all"), default="top",
                        help="top: the top-level long-answer candidates (default); all: also the table rows and list "
                             "items nested in them (about 4x the candidates and 3x the windows on real dev records).")
    parser.add_argument("--rank", choices=(*RANKS, AUTO), default=AUTO,
                        help="How a candidate's windows are scored: auto (default: logprob for a model without the "
                             "answer-type head, trained the guide's way, else margin; qa/nq/train_eval.py), margin "
                             "(BERT-joint's rule: the best span's "
                             "start + end logit minus the window's null (CLS) score) or logprob (the best span's "
                             "log-probability under the window's own softmax, s_i + e_j - logsumexp(s) - logsumexp(e), "
                             "blind to the null score; written to eval/nq-<step>-logprob/).")
    parser.add_argument("--max_examples", type=int, default=0, help="Only the first N records (0 = all).")
    parser.add_argument("--batch_size", type=int, default=64, help="Windows per forward pass.")
    parser.add_argument("--max_seq_length", type=int, default=None, help="Tokens per window (default: the model's).")
    parser.add_argument("--doc_stride", type=int, default=None, help="Step between window starts (default: the model's).")
    parser.add_argument("--max_query_length", type=int, default=None, help="Question tokens kept (default: the model's).")
    parser.add_argument("--threads", type=int, default=1, help="Threads tokenising the candidates.")
    parser.add_argument("--torch_threads", type=int, default=None,
                        help="torch's threads for the model on the CPU (default: the run's recorded --torch_threads, "
                             "else torch's own).")
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


# The Makefile variable behind each flag `make eval-nq` passes: its messages name what the user typed there.
MAKE_VARIABLES = {"--model_dir": "OUTPUT_DIR", "--checkpoint": "CKPT", "--input": "NQ_DEV_GLOB", "--batch_size": "NQ_BATCH",
                  "--max_examples": "NQ_MAX_EXAMPLES", "--threads": "THREADS", "--workers": "WORKERS"}


def shown(flag):
    """`flag` as the user gave it: its make variable under `make eval-nq` (QA_VIA_MAKE=1), else the flag."""
    return MAKE_VARIABLES.get(flag, flag) if os.environ.get("QA_VIA_MAKE") == "1" else flag


def check_args(parser, args):
    """Every argument checked here, right after parsing; parser.error exits 2 with the message."""
    for name in ("batch_size", "threads", "workers", "records_per_chunk", "torch_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"{shown('--' + name)} must be at least 1, got {getattr(args, name)}")
    if args.max_examples < 0:
        parser.error(f"{shown('--max_examples')} must be >= 0 (0 = all records), got {args.max_examples}")
    for name in ("max_seq_length", "doc_stride", "max_query_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive number of tokens, got {getattr(args, name)}")
    if args.fp16 and args.bf16:
        parser.error("give at most one of --fp16 and --bf16")
    if not os.path.isdir(args.model_dir):
        parser.error(f"{shown('--model_dir')} {args.model_dir}: no such folder")
    if args.fp16:
        import torch

        if args.no_cuda or not torch.cuda.is_available():
            parser.error("PRECISION=fp16 needs a CUDA GPU and none is in use: PRECISION=fp32 (or bf16 on the CPU)"
                         if os.environ.get("QA_VIA_MAKE") == "1" else
                         "--fp16 needs a CUDA GPU and none is in use: drop --fp16 (or use --bf16 on the CPU)")


def feature_params(config, args):
    """FeatureParams from the flags, else the model's config; ValueError says what to change."""
    from qa.features import FeatureParams

    values = {name: getattr(args, name) if getattr(args, name) is not None else config[name]
              for name in ("max_seq_length", "doc_stride", "max_query_length")}
    if config["n_best_size"] < 2:
        raise ValueError(f"n_best_size is {config['n_best_size']} in {config['source']}: whole-document prediction needs "
                         "the best span among the n-best entries, so at least 2")
    return FeatureParams(**values)


def predict_documents(args, model, tokenizer, params, config, runtime, stats):
    """(official predictions on rank 0, example ids) of every record of --input, chunk by chunk; counts in
    `stats`; raises InputError."""
    from tqdm import tqdm

    predictions, example_ids = [], []
    bar = tqdm(total=args.max_examples or None, unit="doc", desc="predict_nq", disable=not runtime.is_main,
               file=sys.stderr)
    try:
        chunks = chunked_documents(input_lines(args.input, args.max_examples), args.candidates == "top",
                                   args.records_per_chunk, stats, args.workers)
        for documents in prefetched(chunks):
            chunk_predictions, windows = predict_chunk(documents, model, tokenizer, params, config, runtime, args.batch_size,
                                                       args.threads, args.rank)
            stats["candidates"] += sum(len(doc.candidates) for doc in documents)
            stats["windows"] += windows
            example_ids += [doc.example_id for doc in documents]
            if runtime.is_main:
                predictions += chunk_predictions
            bar.update(len(documents))
    finally:
        bar.close()
    return predictions, example_ids


def write_metrics(args, output, step, stats, example_ids):
    """Score the prediction file when scoring_decision says so and write nq_eval_results_<step>.json beside it;
    the exit status."""
    scored, message = scoring_decision(args.eval, stats)
    if message:
        print(message, file=sys.stdout if not scored else sys.stderr)
    if not scored:
        return 0
    try:
        metrics = score_nq_predictions(args.input, output, example_ids if args.max_examples else None)
    except NQEvalError as exc:
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
    metrics = {**metrics, "step": step, "candidates": args.candidates, "examples": stats["records"], "rank": args.rank}
    results_path = run_dir.nq_eval_results_file(os.path.dirname(os.path.abspath(output)), step)
    with atomic_write(results_path, "wb") as f:
        f.write(orjson.dumps(metrics, option=orjson.OPT_INDENT_2))
    # Printed on the 0-100 scale the SQuAD scores and the demo's table use; the JSON keeps the official 0-1 values.
    long_, short = ({key: 100 * metrics[f"{kind}-best-threshold-{key}"] for key in ("f1", "precision", "recall")}
                    for kind in ("long", "short"))
    print(f"NQ long answer F1 {long_['f1']:.2f} (P {long_['precision']:.2f}, R {long_['recall']:.2f}), "
          f"short answer F1 {short['f1']:.2f} (P {short['precision']:.2f}, R {short['recall']:.2f}) (x 100); "
          f"wrote {results_path}")
    return 0


def main(argv=None):
    """The command line; torch's thread count is the caller's again at the end (main called from Python)."""
    import torch

    before = torch.get_num_threads()
    try:
        return predict(parse_args(argv))
    finally:
        torch.set_num_threads(before)


def predict(args):
    try:
        model_path, run = resolve_model(args.model_dir, args.checkpoint)
        step = run_dir.model_step(model_path, default="final")  # a model that is not ours: "final"
        config = load_qa_config(model_path)
        params = feature_params(config, args)
    except (CheckpointError, ValueError) as exc:
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
    # The default (auto) writes eval/nq-<step>/ whatever it picks; a --rank given writes where it always did.
    folder_rank = "margin" if args.rank == AUTO else args.rank
    args.rank, rank_why = resolve_rank(args.rank, model_path)
    output = args.output or run_dir.nq_predictions_file(run_dir.nq_eval_dir(run, step, args.candidates == "all", args.max_examples,
                                                                             folder_rank))

    import torch

    from qa.inference import load_inference_model
    from qa.runtime import init_runtime

    runtime = init_runtime(no_cuda=args.no_cuda, fp16=args.fp16, bf16=args.bf16)
    torch_threads, threads_from = use_recorded_threads(model_path, args.torch_threads)
    if runtime.is_main:
        flags = [f"--{name}" for name in ("max_seq_length", "doc_stride", "max_query_length") if getattr(args, name)]
        print(f"predict_nq: {model_path} (step {step}) on {runtime.device} x {runtime.world_size}; windows of "
              f"{params.max_seq_length} tokens, stride {params.doc_stride}, question {params.max_query_length} "
              f"(from {', '.join(flags) + ' and ' if flags else ''}{config['source']}); {args.candidates} candidates; "
              f"--rank {args.rank}: {rank_why}; {torch_threads} torch thread(s) ({threads_from})",
              file=sys.stderr)
    model, tokenizer = load_inference_model(model_path, runtime.device)

    stats = {"records": 0, "simplified": 0, "few_annotations": 0, "candidates": 0, "windows": 0}
    started = time.perf_counter()
    try:
        predictions, example_ids = predict_documents(args, model, tokenizer, params, config, runtime, stats)
    except InputError as exc:
        print(f"predict_nq.py: {exc}", file=sys.stderr)
        return 2
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
    return write_metrics(args, output, step, stats, example_ids)


if __name__ == "__main__":
    sys.exit(main())
