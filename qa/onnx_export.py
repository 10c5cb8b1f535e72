"""An ONNX copy of a QA model that scores the same, and the runner that predicts with it through onnxruntime.

    export_onnx("outputs/run", "outputs/run/onnx")                  # model.onnx + tokenizer + config + qa_config.json
    report = check_export("outputs/run", "outputs/run/onnx", "data/squad/dev-v2.0.json")
    report["passed"]          # scores within TOLERANCE points on that file, logits within LOGIT_TOLERANCE
    model = OnnxQAModel("outputs/run/onnx")   # what qa.inference.load_inference_model returns for such a folder

The export traces the model once (torch.onnx.export, TorchScript-based: dynamo=False, which needs only the
`onnx` package, not onnxscript) with the batch and the sequence length as dynamic axes, so one file serves
every window length. Its inputs are those of the model's forward among input_ids, attention_mask and
token_type_ids; its outputs are start_logits and end_logits. An answer-type head (qa.answer_type_head) is
not exported: such an export gives spans only.

A converted model can look fine and score nothing (transformers #10336: F1 collapsing after a bad
conversion), so an export is only called good after `check_export` evaluated both models on the same
windows of the run's dev file and found exact and F1 within TOLERANCE of each other. The check also times
both over those windows (windows/s, the same thread count for each).
"""

import inspect
import json
import os
import time
import types
import warnings

import numpy as np
import torch

from qa import run_dir

ONNX_FILE = "model.onnx"
# The export's completion marker (qa.storage: every file's size and hash, written last). Not a checkpoint's
# COMPLETE: an export is not a checkpoint to resume from, and evaluating one labels it "pretrained".
ONNX_MARKER = "ONNX_COMPLETE"
CHECK_FILE = "onnx_check.json"  # written into the export: both models' scores and speeds, and whether it passed
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("start_logits", "end_logits")
# Opset 17: LayerNormalization as one operator; onnxruntime 1.32 runs opsets up to 23.
OPSET = 17
# Points of exact match and F1 by which the export may differ from the PyTorch model on the dev file. Float
# rounding moves a logit by ~1e-6 and, very rarely, a tie between two spans; a bad conversion moves scores by
# whole points.
TOLERANCE = 0.1
# Largest logit difference allowed, relative to the PyTorch logits' scale (their largest magnitude, at least 1).
# Float32 summed in another order moves a logit by ~1e-7 of that scale (the tests measure < 1e-4 absolute on
# logits of magnitude ~1-10); a conversion gone wrong moves them by the scale itself. Scores alone miss it when
# neither model answers (both "" everywhere agree exactly), hence this check and the always-answering scores.
LOGIT_TOLERANCE = 1e-3


def is_onnx_model(folder):
    return os.path.isfile(os.path.join(os.fspath(folder), ONNX_FILE))


class _LogitsOnly(torch.nn.Module):
    """The model with positional inputs (in `names` order) and a (start_logits, end_logits) tuple: what tracing needs."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        out = self.model(**dict(zip(self.names, inputs)))
        return out.start_logits, out.end_logits


def model_input_names(model):
    accepted = inspect.signature(model.forward).parameters
    return [name for name in INPUT_NAMES if name in accepted]


def trace_inputs(names, batch=2, length=16):
    """Example inputs for tracing: every value only fixes the dtypes, the axes are dynamic."""
    return tuple(torch.ones(batch, length, dtype=torch.long) if name != "token_type_ids"
                 else torch.zeros(batch, length, dtype=torch.long) for name in names)


def write_onnx(model, path, opset=OPSET):
    """Trace `model` (a transformers QA model, on the CPU, in eval mode) into the ONNX file `path`."""
    names = model_input_names(model)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*names, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # The tracer warns about every Python branch on a shape and torch about the TorchScript exporter being
        # legacy; neither changes the graph for our inputs, and check_export is what vouches for the result.
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(model, names).eval(), trace_inputs(names), path, input_names=names,
                          output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic, opset_version=opset, dynamo=False)


def export_onnx(model_dir, out_dir, opset=OPSET):
    """Write into the (new, empty) folder out_dir: model.onnx, the tokenizer files, config.json and the inference
    settings of model_dir (qa_config.json: windows, tuned null threshold, and which model it was exported from)."""
    from qa.inference import load_inference_model
    from qa.model_card import load_qa_config

    model, tokenizer = load_inference_model(model_dir, torch.device("cpu"))
    write_onnx(model, os.path.join(out_dir, ONNX_FILE), opset)
    tokenizer.save_pretrained(out_dir)
    model.config.save_pretrained(out_dir)
    config = load_qa_config(model_dir)
    source = config.pop("source")  # where load_qa_config found the settings; the folder's own account wins
    config.setdefault("null_threshold_source", source)
    config["exported_from"] = os.path.abspath(model_dir)
    with open(os.path.join(out_dir, run_dir.QA_CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


class OnnxQAModel:
    """An exported model run by onnxruntime (CPU), called like the transformers model by qa.inference.predict_logits:
    model(input_ids=..., attention_mask=..., token_type_ids=...) -> .start_logits, .end_logits (torch tensors)."""

    training = False

    def __init__(self, folder, threads=None):
        import onnxruntime
        from transformers import AutoConfig

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(os.path.join(os.fspath(folder), ONNX_FILE), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.config = AutoConfig.from_pretrained(folder)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {name: np.asarray(value.cpu(), dtype=np.int64) for name, value in given.items()
                if name in self.inputs and value is not None}
        start, end = self.session.run(list(OUTPUT_NAMES), feed)
        return types.SimpleNamespace(start_logits=torch.from_numpy(start), end_logits=torch.from_numpy(end))

    __call__ = forward

    def eval(self):
        return self

    def train(self, mode=True):
        if mode:
            raise ValueError("an ONNX export predicts only; train the PyTorch model it was exported from")
        return self

    def to(self, device):
        return self


def _warm_up(model, features, batch_size, runtime):
    """One batch through the model before it is timed: first-call costs (allocations, onnxruntime's graph
    optimisations) are not windows/s."""
    from qa.runtime import ModelFeed

    batch = features.batch(np.arange(min(batch_size, len(features))))
    for label in ("start_positions", "end_positions", "answer_types"):
        batch.pop(label, None)
    with torch.no_grad():
        model(**ModelFeed(model, runtime)(batch))


def _score(examples, features, config, starts, ends):
    """Exact/F1 at the export's threshold, and of the best non-null answers (every question answered)."""
    from qa.metrics import evaluate_predictions
    from qa.postprocess import postprocess_predictions

    result = postprocess_predictions(examples, features, starts, ends, config["n_best_size"],
                                     config["max_answer_length"], config["version_2_with_negative"],
                                     config["null_score_diff_threshold"])
    scores = evaluate_predictions(examples, result.predictions)
    answered = evaluate_predictions(examples, result.best_non_null or result.predictions)
    return {"exact": scores["exact"], "f1": scores["f1"],
            "answered_exact": answered["exact"], "answered_f1": answered["f1"]}


SCORE_KEYS = ("exact", "f1", "answered_exact", "answered_f1")


def check_export(model_dir, onnx_dir, predict_file, max_examples=None, batch_size=32, threads=None):
    """Evaluate the PyTorch model of model_dir and its export onnx_dir on the same windows of predict_file.

    Returns {"pytorch": {exact, f1, answered_exact, answered_f1, windows_per_s, seconds}, "onnx": {...},
    "max_logit_difference", "logit_scale", "windows", "questions", "passed"}: passed when each score (at the
    export's threshold, and of the best non-null answers) differs by at most TOLERANCE points and the largest
    logit difference is at most LOGIT_TOLERANCE times the logits' scale."""
    from qa.features import FeatureParams, build_features
    from qa.inference import load_inference_model, predict_logits
    from qa.model_card import load_qa_config
    from qa.runtime import Runtime
    from qa.squad_io import read_squad

    config = load_qa_config(onnx_dir)
    examples = read_squad(predict_file)[:max_examples]
    torch_model, tokenizer = load_inference_model(model_dir, torch.device("cpu"))
    params = FeatureParams(config["max_seq_length"], config["doc_stride"], config["max_query_length"])
    features = build_features(examples, tokenizer, params, training=False, threads=1)
    threads = threads or torch.get_num_threads()
    runtime = Runtime(device=torch.device("cpu"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    report, logits = {}, {}
    try:
        for name, model in (("pytorch", torch_model), ("onnx", OnnxQAModel(onnx_dir, threads))):
            _warm_up(model, features, batch_size, runtime)
            start = time.perf_counter()
            starts, ends = predict_logits(model, features, batch_size, runtime)
            seconds = time.perf_counter() - start
            report[name] = dict(_score(examples, features, config, starts, ends), seconds=round(seconds, 3),
                                windows_per_s=round(len(features) / seconds, 3))
            logits[name] = (starts, ends)
    finally:
        torch.set_num_threads(before)
    difference = max(float(np.abs(logits["pytorch"][i] - logits["onnx"][i]).max(initial=0)) for i in (0, 1))
    scale = max([1.0] + [float(np.abs(side[side > -1e4]).max(initial=0)) for side in logits["pytorch"]])
    report.update(predict_file=os.fspath(predict_file), questions=len(examples), windows=len(features), threads=threads,
                  max_logit_difference=difference, logit_scale=scale, tolerance=TOLERANCE,
                  logit_tolerance=LOGIT_TOLERANCE,
                  passed=difference <= LOGIT_TOLERANCE * scale
                  and all(abs(report["pytorch"][k] - report["onnx"][k]) <= TOLERANCE for k in SCORE_KEYS))
    return report


def describe_check(report):
    """One line per model and the verdict, for the terminal."""
    lines = [f"{name:8} exact {r['exact']:.4f}  F1 {r['f1']:.4f}  always answering: exact {r['answered_exact']:.4f} "
             f"F1 {r['answered_f1']:.4f}  {r['windows_per_s']:.3g} windows/s ({r['seconds']:.1f} s)"
             for name, r in ((n, report[n]) for n in ("pytorch", "onnx"))]
    lines.append(f"{report['questions']} questions, {report['windows']} windows of {report['predict_file']}, "
                 f"{report['threads']} thread(s); largest logit difference {report['max_logit_difference']:.2e} "
                 f"(allowed {report['logit_tolerance'] * report['logit_scale']:.2e})")
    return lines
