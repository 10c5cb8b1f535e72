#!/usr/bin/env python
"""One call on a GPU machine: training throughput, memory and MFU of BERT-base and ALBERT-base, then a real
bf16 and fp16 run of run_squad.py that is stopped by SIGTERM, resumed, and evaluated. (Called by gpu_check.sh.)

    bash benchmarks/gpu_check.sh                                  # a CUDA GPU, everything; sized for < 8 minutes on an H200
    bash benchmarks/gpu_check.sh --out benchmarks/results/gpu_check.json
    bash benchmarks/gpu_check.sh --peak-tflops 700 --peak-tflops-fp32 350   # a GPU the peak table does not know
    bash benchmarks/gpu_check.sh --compile off --skip-e2e        # eager rows only (about a minute, estimated)
    bash benchmarks/gpu_check.sh --models bert --precisions bf16 --compile both --steps 30
    bash benchmarks/gpu_check.sh --cpu                            # the same on the CPU, tiny sizes, < 1 minute

Part 1, one table: for each model (BERT-base, ALBERT-base, built from their published configs with
AutoModelForQuestionAnswering.from_config: nothing is downloaded), precision (fp32 with TF32 matmuls,
bf16 autocast, fp16 autocast + GradScaler) and torch.compile off/on: `--warmup-steps` training steps
(forward + backward + fused AdamW step; the first compiles), then `--steps` timed ones between two
torch.cuda.synchronize(). Batches are random token ids, every position real (no padding), so every
token of `--seq-len` counts. Columns: step time, tokens/s, features/s (a feature is one window of
`--seq-len` tokens, what run_squad.py trains on), peak memory (torch.cuda.max_memory_allocated over the
timed steps: weights, gradients, AdamW state and activations; on the CPU the process's peak RSS),
achieved TFLOP/s by the formula in `train_flops_per_token`, and MFU against the GPU's dense peak
(PEAK_TFLOPS; unknown GPU -> "n/a" unless --peak-tflops is given).

Part 2, PASS/FAIL lines: demo data (scripts/make_nq_sample.py + scripts/nq_to_squad.py) and a tiny ALBERT
(scripts/make_tiny_model.py), then per precision three run_squad.py processes: an uninterrupted reference,
the same run sent SIGTERM after step SIGNAL_AFTER_STEP (it must save a checkpoint and exit 143), and that
run resumed with --resume_from_checkpoint auto and the same flags (then it evaluates). The losses the
resumed run logs (metrics.jsonl, --logging_steps 1) must be those of the reference at the same steps,
and so must its final weights and F1: bit for bit on the CPU and, with --deterministic, for the eager
bf16 runs on CUDA; within RESUME_TOLERANCE["compiled"] for the compiled fp16 runs on CUDA, which use
the default padding (each batch to its longest, rounded up to 8) and must compile at most
COMPILE_GRAPH_LIMIT graphs (the "compile" check reads the count from their train.log).
--fp16 needs CUDA, so the CPU check runs bf16 only. `--torch_compile`, `--deterministic` and
`--pad_to_multiple_of 8` are used when `run_squad.py --help` lists them.

Exit status: 0 when every row ran and every check passed, 1 otherwise, 2 for bad arguments.
"""

import argparse
import dataclasses
import gc
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "benchmarks")]

# ---------------------------------------------------------------------------------------------
# Models: the published base configs written out (no hub download), and tiny ones for --cpu
# ---------------------------------------------------------------------------------------------
MODEL_SIZES = {
    # bert-base-uncased's config.json
    ("bert", "base"): dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, max_position_embeddings=512),
    # albert-base-v2's config.json: one layer's weights shared by all 12, embeddings factorised to 128
    ("albert", "base"): dict(vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                             hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    ("bert", "tiny"): dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=256, max_position_embeddings=128),
    ("albert", "tiny"): dict(vocab_size=1000, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=256, max_position_embeddings=128),
}
MODEL_LABELS = {"bert": "BERT", "albert": "ALBERT"}
PRECISIONS = ("fp32", "bf16", "fp16")

# ---------------------------------------------------------------------------------------------
# Peak dense tensor-core TFLOP/s, by GPU name (torch.cuda.get_device_name), first match wins.
# "bf16" is also the fp16 figure (the same on every GPU listed, fp32 accumulation); "fp32" is TF32,
# what fp32 matmuls run as once TF32 is enabled (plain FP32 where the GPU has no TF32).
# The datasheets print "with sparsity" figures (2:4 structured sparsity, which dense training never
# uses) beside or instead of dense ones; those are halved here.
# Sources: NVIDIA H100 Tensor Core GPU datasheet (SXM: BF16 1,979 / TF32 989 with sparsity; PCIe: 1,513 / 756);
# NVIDIA H200 datasheet (SXM: 1,979 / 989 with sparsity, the H100 SXM's; NVL: 1,671 / 835); NVIDIA GH200
# datasheet (the H100 SXM's figures); NVIDIA A100 datasheet (BF16 312, TF32 156 dense, both form factors);
# NVIDIA L40S datasheet (362.05 / 183 dense); NVIDIA L4 datasheet (242 / 120 with sparsity); NVIDIA A10
# datasheet (125 / 62.5 dense; AWS's A10G is an A10 variant and AWS publishes no tensor figure of its own,
# so the A10's); NVIDIA V100 datasheet (FP16 tensor 125 SXM2 / 112 PCIe, FP32 15.7 / 14, no BF16 or TF32);
# NVIDIA T4 datasheet (FP16 tensor 65, FP32 8.1, no BF16 or TF32).
# ---------------------------------------------------------------------------------------------
PEAK_TFLOPS = (
    (r"H200 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 417.5}),
    (r"H200", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),
    (r"GH200", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),
    (r"H100 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 417.5}),
    (r"H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "fp32": 378.0}),
    (r"H100.*(SXM|HBM3)", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),  # "NVIDIA H100 80GB HBM3" is the SXM5
    (r"\bA100\b", {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0}),
    (r"\bL40S\b", {"bf16": 362.05, "fp16": 362.05, "fp32": 183.0}),
    (r"\bL4\b", {"bf16": 121.0, "fp16": 121.0, "fp32": 60.0}),
    (r"\bA10G?\b", {"bf16": 125.0, "fp16": 125.0, "fp32": 62.5}),
    (r"V100.*PCIE", {"fp16": 112.0, "fp32": 14.0}),
    (r"V100", {"fp16": 125.0, "fp32": 15.7}),
    (r"\bT4\b", {"fp16": 65.0, "fp32": 8.1}),
)

# ---------------------------------------------------------------------------------------------
# Defaults, one place: a GPU run and a --cpu run
# ---------------------------------------------------------------------------------------------
GPU_DEFAULTS = dict(size="base", batch_size=32, seq_len=384, warmup_steps=3, steps=20, compile="both",
                    precisions="fp32,bf16,fp16",
                    # Estimated, not yet timed on a GPU: eager rows ~5 s each, compiled ones ~40-60 s (inductor
                    # compiles forward and backward of 12 layers): 270 s fits every eager row and about five compiled ones, and leaves ~3 of
                    # the 8 minutes for startup and part 2 (its compiled fp16 runs: ~2 minutes, also estimated).
                    budget_s=270.0)
CPU_DEFAULTS = dict(size="tiny", batch_size=8, seq_len=64, warmup_steps=1, steps=3, compile="off",
                    precisions="fp32,bf16", budget_s=60.0)

# Part 2. 300 train records -> 267 questions -> 267 windows of 128 tokens (the sample's long answers are
# short): 40 steps of 8 windows cross the epoch boundary at step 34, so the position in the data is resumed
# across it too. The tiny model learns at the demo's rate.
E2E = dict(train_examples=300, dev_examples=60, max_seq_length=128, doc_stride=64, batch_size=8, max_steps=40,
           save_steps=10, learning_rate=2e-3, warmup_steps=5, seed=42)
# SIGTERM once the run has logged this step: after the periodic checkpoint-10, so the checkpoint that the
# resume picks (the newest) must be the one the signal made, at whatever step the signal landed.
SIGNAL_AFTER_STEP = 13
PROCESS_TIMEOUT_S = 300  # one run_squad.py process; the CPU runs took 10-30 s here; compiled GPU runs: ~60 s (estimated)
# How close the resumed run must be to the uninterrupted one.
# - "exact": the CPU (measured: identical losses, weights and F1), and CUDA eager with run_squad.py
#   --deterministic (deterministic SDPA backward, a fixed cuBLAS workspace): bit for bit.
# - "compiled": CUDA with --torch_compile. The resumed process compiles afresh, and its first batch may have
#   another length than the uninterrupted run's first: it then runs static-shape kernels where the other ran
#   dynamic ones (or the other way round), whose reductions add in another order, and 40 steps of Adam at lr
#   2e-3 grow the last-bit differences. The bounds still sit far below what a wrong resume gives (a restart
#   from scratch: losses off by ~1.0, weights by ~0.1).
RESUME_TOLERANCE = {
    "exact": {"loss_rel": 0.0, "weights": 0.0, "f1": 0.0},
    "compiled": {"loss_rel": 0.02, "weights": 0.05, "f1": 5.0},
}
# A compiled run must stay at a few graphs however many batch lengths it sees: the first shape, then one
# recompilation each for a new length and a new batch size (dynamic from then on), and a margin of one.
COMPILE_GRAPH_LIMIT = 4


class CheckError(RuntimeError):
    """Part 2 could not get as far as comparing (a step failed); the message says which and where its log is."""


def progress(message):
    """What is running now, on stderr (minutes pass on a GPU); the table and the checks go to stdout at the end."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# FLOPs, peak and MFU (pure)
# ---------------------------------------------------------------------------------------------
def encoder_layer_params(hidden, intermediate):
    """Parameters of one transformer layer; BERT's and ALBERT's layers have the same shapes.

    Q, K, V and output projections 4h^2 + 4h (biases), the attention LayerNorm 2h, the feed-forward
    h*i + i and i*h + h, the output LayerNorm 2h: 4h^2 + 2hi + 9h + i (7,087,872 for h 768, i 3072)."""
    return 4 * hidden * hidden + 2 * hidden * intermediate + 9 * hidden + intermediate


def applied_layers(config):
    """How many transformer layers a token goes through: num_hidden_layers (ALBERT: x inner_group_num,
    whatever the number of distinct weight groups, because shared weights are applied once per layer)."""
    return config.num_hidden_layers * getattr(config, "inner_group_num", 1)


def unique_non_embedding_params(config):
    """Parameters outside the embedding tables, each counted once (what the model stores and AdamW updates)."""
    layer = encoder_layer_params(config.hidden_size, config.intermediate_size)
    head = 2 * config.hidden_size + 2  # qa_outputs: Linear(h, 2), start and end logits
    if config.model_type == "albert":
        projection = config.embedding_size * config.hidden_size + config.hidden_size  # embedding_hidden_mapping_in
        return projection + config.num_hidden_groups * config.inner_group_num * layer + head
    return config.num_hidden_layers * layer + head


def unique_layers(config):
    """How many layers have weights of their own (ALBERT: num_hidden_groups x inner_group_num, 1 by default)."""
    return config.num_hidden_groups * config.inner_group_num if config.model_type == "albert" else config.num_hidden_layers


def applied_non_embedding_params(config):
    """Parameters each token is multiplied by in one forward pass: ALBERT's shared layer counts once per application.

    BERT-base 85,056,002 (= its unique count); ALBERT-base 85,155,074 against 7,188,482 unique."""
    layer = encoder_layer_params(config.hidden_size, config.intermediate_size)
    return unique_non_embedding_params(config) + (applied_layers(config) - unique_layers(config)) * layer


def train_flops_per_token(config, seq_len):
    """Model FLOPs of one training step (forward + backward), per token of a window of `seq_len` tokens.

    Dense part, 6 x applied non-embedding parameters: a weight multiplies each token once in the forward
    pass (one multiply-add = 2 FLOPs), and twice in the backward pass (the gradient of the input and the
    gradient of the weight, as costly as the forward each): 2 + 4 = 6. Embedding tables are lookups, not
    matmuls, and a question-answering head never multiplies by the vocabulary (a language model's output
    layer would), so they count nothing. ALBERT's one layer of weights runs num_hidden_layers times: its
    FLOPs are per applied layer, not per stored parameter.

    Attention, 12 x layers x hidden x seq_len: per layer, one token's query is scored against seq_len keys
    (QK^T: seq_len x hidden multiply-adds over all heads, 2*s*h FLOPs) and mixes seq_len values
    (AV: another 2*s*h): 4*s*h forward, twice that backward, 12*s*h in all. No weights are involved, so
    6N misses it: 8 % of the total for BERT-base at 384 tokens (42.5 M of 552.8 M FLOPs a token).
    LayerNorm, GELU, softmax, dropout and AdamW (a few FLOPs per element or parameter) are left out, as is
    the attention recomputed by flash-attention backward kernels: MFU counts the model's FLOPs, not the
    hardware's."""
    dense = 6 * applied_non_embedding_params(config)
    attention = 12 * applied_layers(config) * config.hidden_size * seq_len
    return dense + attention


def peak_tflops(device_name, precision, table=PEAK_TFLOPS):
    """Dense peak TFLOP/s of `device_name` for `precision` (fp32 = TF32), or None when the table does not know it."""
    for pattern, peaks in table:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peaks.get(precision)
    return None


def mfu(achieved_tflops, peak):
    """Model FLOPs utilisation as a fraction, or None without a peak."""
    return achieved_tflops / peak if peak else None


# ---------------------------------------------------------------------------------------------
# Part 1: one training configuration, measured
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BenchRow:
    model: str
    precision: str
    compile: bool
    batch_size: int
    seq_len: int
    status: str = "ok"             # ok | skipped: ... | OOM ... | error: ...
    step_ms: float = None
    tokens_per_s: float = None
    features_per_s: float = None
    peak_memory_mib: float = None
    peak_memory_kind: str = None   # cuda_max_memory_allocated | process_peak_rss
    tflops: float = None
    peak_tflops: float = None
    mfu: float = None
    flops_per_token: int = None
    applied_params: int = None
    unique_params: int = None
    attention: str = None
    first_steps_s: float = None    # the warmup steps, compilation included
    final_loss: float = None
    fp16_skipped_steps: int = None  # timed steps whose optimizer step the GradScaler skipped (inf/nan gradients)
    total_s: float = None

    @property
    def ok(self):
        return self.status == "ok"


def make_config(model_type, size):
    from transformers import AlbertConfig, BertConfig

    return {"bert": BertConfig, "albert": AlbertConfig}[model_type](**MODEL_SIZES[(model_type, size)])


def attention_implementation(model_type):
    """("sdpa", reason) when the QA class of `model_type` supports torch's scaled_dot_product_attention, else eager."""
    import transformers

    cls = {"bert": transformers.BertForQuestionAnswering, "albert": transformers.AlbertForQuestionAnswering}[model_type]
    supported = bool(getattr(cls, "_supports_sdpa", False))
    return ("sdpa" if supported else "eager"), f"{cls.__name__}._supports_sdpa={supported}"


def random_batch(config, batch_size, seq_len, device, seed=0):
    """A training batch of random ids with every position real: question segment then context segment, spans inside."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq_len // 4:] = 1  # a quarter question, the rest context, as --max_query_length 64 of 384 allows
    start = torch.randint(seq_len // 4, seq_len - 1, (batch_size,), generator=generator)
    end = torch.minimum(start + torch.randint(0, 30, (batch_size,), generator=generator), torch.tensor(seq_len - 1))
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": torch.ones_like(input_ids),
             "start_positions": start, "end_positions": end}
    return {k: v.to(device) for k, v in batch.items()}


def synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device):
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_memory_allocated"
    from bench_features import reset_peak_rss

    return "process_peak_rss" if reset_peak_rss() else "process_peak_rss_since_start"


def peak_memory_bytes(device):
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    from bench_features import peak_rss_since_reset

    return peak_rss_since_reset()


def release(device):
    """Free the previous configuration's model, optimizer and compiled graphs before the next is measured."""
    import torch

    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# The trainer's default --max_grad_norm: every timed step clips, as every step of run_squad.py does.
MAX_GRAD_NORM = 1.0


def train_step(step_model, optimizer, scaler, batch, device_type, amp_dtype):
    """The trainer's step (qa.trainer): forward under autocast, backward of the (fp16: scaled) loss, unscale and
    clip the gradients to MAX_GRAD_NORM, fused AdamW step; the loss, not synchronised."""
    import torch

    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = step_model(**batch).loss
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # a pass-through unless fp16; the scaler then knows not to unscale again
    torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], MAX_GRAD_NORM)  # no host sync (foreach)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def timed_training(config, attention, precision, compiled, batch_size, seq_len, warmup_steps, steps, device):
    """Build the model, run `warmup_steps` then `steps` timed steps; a dict of what was measured.

    Everything it allocates is released when it returns (or raises), before the next configuration."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(config, attn_implementation=attention).to(device)
    model.train()
    step_model = torch.compile(model) if compiled else model
    # fused: one kernel updates every parameter (the trainer's AdamW on CUDA); weights stay fp32 under autocast.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 only: loss scaling
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    batch = random_batch(config, batch_size, seq_len, device)
    first = time.perf_counter()
    for _ in range(warmup_steps):
        train_step(step_model, optimizer, scaler, batch, device.type, amp_dtype)
    synchronize(device)
    first_steps_s = time.perf_counter() - first
    memory_kind = reset_peak_memory(device)
    scale_before = scaler.get_scale()
    timed = time.perf_counter()
    for _ in range(steps):
        loss = train_step(step_model, optimizer, scaler, batch, device.type, amp_dtype)
    synchronize(device)
    elapsed = time.perf_counter() - timed
    return {
        "elapsed": elapsed, "first_steps_s": first_steps_s, "peak_memory_kind": memory_kind,
        "peak_memory_mib": peak_memory_bytes(device) / 2**20, "final_loss": float(loss),
        "attention": model.config._attn_implementation,  # what transformers actually chose
        # each skipped step halves the scale (it grows again only after 2000 good steps)
        "fp16_skipped_steps": max(0, round(math.log2(scale_before / scaler.get_scale()))) if precision == "fp16" else None,
    }


def measure(model_type, size, precision, compiled, batch_size, seq_len, warmup_steps, steps, device, peak_override=None):
    """One BenchRow: build the model, `warmup_steps` steps, then `steps` timed steps."""
    import torch

    started = time.perf_counter()
    row = BenchRow(MODEL_LABELS[model_type], precision, compiled, batch_size, seq_len)
    config = make_config(model_type, size)
    row.attention, _ = attention_implementation(model_type)
    row.flops_per_token = train_flops_per_token(config, seq_len)
    row.applied_params = applied_non_embedding_params(config)
    row.unique_params = unique_non_embedding_params(config)
    try:
        measured = timed_training(config, row.attention, precision, compiled, batch_size, seq_len, warmup_steps,
                                  steps, device)
    except torch.cuda.OutOfMemoryError:
        measured = None
    release(device)  # after the except block: its traceback, which holds the model, is gone
    row.total_s = time.perf_counter() - started
    if measured is None:
        row.status = f"OOM at batch {batch_size}: lower --batch-size"
        return row
    elapsed = measured.pop("elapsed")
    for key, value in measured.items():
        setattr(row, key, value)
    if not math.isfinite(row.final_loss):
        row.status = f"error: loss {row.final_loss} after {warmup_steps + steps} steps"
    row.step_ms = 1000 * elapsed / steps
    row.features_per_s = batch_size * steps / elapsed
    row.tokens_per_s = row.features_per_s * seq_len
    row.tflops = row.tokens_per_s * row.flops_per_token / 1e12
    row.peak_tflops = peak_override if peak_override else peak_tflops(device_name(device), precision)
    row.mfu = mfu(row.tflops, row.peak_tflops)
    return row


def device_name(device):
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench_plan(models, precisions, compile_modes):
    """(model, precision, compiled) in the order they run: every eager row first, then the compiled ones
    (bf16 before fp16 before fp32), so a spent time budget costs the slow compiled rows, fp32 first."""
    order = [p for p in ("bf16", "fp16", "fp32") if p in precisions]
    eager = [(m, p, False) for m in models for p in precisions] if False in compile_modes else []
    compiled = [(m, p, True) for p in order for m in models] if True in compile_modes else []
    return eager + compiled


def run_benchmarks(args, device):
    rows = []
    plan = bench_plan(args.models, args.precisions, args.compile_modes)
    started = time.perf_counter()
    slowest = {False: 0.0, True: 0.0}  # the slowest row so far, eager and compiled: the cost of the next one
    for index, (model_type, precision, compiled) in enumerate(plan, 1):
        spent = time.perf_counter() - started
        if spent + slowest[compiled] > args.budget_s:
            rows.append(BenchRow(MODEL_LABELS[model_type], precision, compiled, args.batch_size, args.seq_len,
                                 status=f"skipped: --budget-s {args.budget_s:g} spent ({spent:.0f} s so far)"))
            continue
        peak_override = args.peak_tflops_fp32 if precision == "fp32" else args.peak_tflops
        try:
            row = measure(model_type, args.size, precision, compiled, args.batch_size, args.seq_len,
                          args.warmup_steps, args.steps, device, peak_override)
        except Exception as exc:  # a failed configuration is a row, the others still run
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            row = BenchRow(MODEL_LABELS[model_type], precision, compiled, args.batch_size, args.seq_len,
                           status=f"error: {type(exc).__name__}: {first_line[:150]}")
        if not row.ok:
            release(device)  # measure() released what it allocated unless it raised
        slowest[compiled] = max(slowest[compiled], row.total_s or 0.0)
        progress(f"bench {index}/{len(plan)}: {row.model} {precision} compile {'on' if compiled else 'off'}: "
            f"{row.status}" + (f", {row.tokens_per_s:,.0f} tokens/s, {row.total_s:.1f} s" if row.ok else ""))
        rows.append(row)
    return rows


def format_number(value, digits=1):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def format_table(rows):
    """The one table of part 1, a row per configuration, in model / precision / compile order."""
    order = {p: i for i, p in enumerate(PRECISIONS)}
    rows = sorted(rows, key=lambda r: (r.model != "BERT", order[r.precision], r.compile))
    header = ("model", "precision", "compile", "batch x seq", "step ms", "tokens/s", "features/s", "peak MiB",
              "TFLOP/s", "MFU", "note")
    lines = [header]
    for r in rows:
        note = "" if r.ok else r.status
        if r.ok and r.fp16_skipped_steps:
            note = f"GradScaler skipped {r.fp16_skipped_steps} of the timed steps"
        lines.append((r.model, r.precision, "on" if r.compile else "off", f"{r.batch_size}x{r.seq_len}",
                      format_number(r.step_ms), format_number(r.tokens_per_s, 0), format_number(r.features_per_s),
                      format_number(r.peak_memory_mib, 0), format_number(r.tflops, 2 if (r.tflops or 0) < 10 else 1),
                      "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%", note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = []
    for n, line in enumerate(lines):
        cells = [cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        text.append("  ".join(cells + [line[-1]]).rstrip())
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


# ---------------------------------------------------------------------------------------------
# Part 2: run_squad.py stopped by SIGTERM, resumed, evaluated, against an uninterrupted run
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Check:
    precision: str
    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def line(self):
        word = "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"
        return f"{word} {self.precision} {self.name}: {self.detail}"


def run_logged(argv, log_path, timeout=PROCESS_TIMEOUT_S):
    """Run a command to completion with its output in `log_path`; CheckError naming the log when it fails."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(map(str, argv))}\n")
        log.flush()
        done = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        raise CheckError(f"{os.path.basename(str(argv[1]))} exited {done.returncode}; its output: {log_path}")


def prepare_e2e(workdir):
    """Demo data (NQ-format sample -> SQuAD 2.0 JSON, as `make demo-data`) and the tiny ALBERT + tokenizer."""
    import transformers

    import make_tiny_model

    transformers.utils.logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar
    started = time.perf_counter()

    log = os.path.join(workdir, "prepare.log")
    paths = {}
    for split, count in (("train", E2E["train_examples"]), ("dev", E2E["dev_examples"])):
        raw = os.path.join(workdir, "raw", f"nq-{split}-sample.jsonl.gz")
        paths[split] = os.path.join(workdir, f"{split}.json")
        run_logged([sys.executable, ROOT / "scripts" / "make_nq_sample.py", "--out", raw, "--split", split,
                    "--num-examples", str(count)], log)
        run_logged([sys.executable, ROOT / "scripts" / "nq_to_squad.py", raw, "--output", paths[split],
                    "--workers", "1"], log)
    paths["model"] = make_tiny_model.build(os.path.join(workdir, "tiny-albert"), make_tiny_model.squad_texts(paths["train"]))
    progress(f"e2e: demo data and tiny ALBERT in {workdir} ({time.perf_counter() - started:.1f} s)")
    return paths


def run_squad_flags():
    """The flags `run_squad.py --help` lists right now (the lead adds --torch_compile, --pad_to_multiple_of)."""
    done = subprocess.run([sys.executable, ROOT / "run_squad.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    return set(re.findall(r"^ {2}(?:-\w, )?(--[\w-]+)", done.stdout, flags=re.MULTILINE))  # "  --flag ..." lines


def e2e_argv(paths, output_dir, precision, cache_dir, extra=()):
    return [sys.executable, str(ROOT / "run_squad.py"), "--model_type", "albert", "--model_name_or_path", paths["model"],
            "--do_train", "--do_eval", "--version_2_with_negative", "--train_file", paths["train"],
            "--predict_file", paths["dev"], "--output_dir", output_dir, "--features_cache_dir", cache_dir,
            "--max_seq_length", str(E2E["max_seq_length"]), "--doc_stride", str(E2E["doc_stride"]),
            "--per_gpu_train_batch_size", str(E2E["batch_size"]), "--per_gpu_eval_batch_size", "64",
            "--learning_rate", str(E2E["learning_rate"]), "--warmup_steps", str(E2E["warmup_steps"]),
            "--max_steps", str(E2E["max_steps"]), "--save_steps", str(E2E["save_steps"]), "--logging_steps", "1",
            "--seed", str(E2E["seed"]), "--threads", "1", "--report_to", "none", f"--{precision}", *extra]


def e2e_env():
    # One intra-op thread: the runs compared bit for bit must use the same count, and two runs share 2 cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def start_process(argv, log_path):
    log = open(log_path, "a", encoding="utf-8")
    log.write(f"$ {' '.join(map(str, argv))}\n")
    log.flush()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=e2e_env())
    log.close()  # the child holds its own descriptor
    return proc


def wait_exit(proc, log_path):
    try:
        return proc.wait(timeout=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise CheckError(f"run_squad.py ran past {PROCESS_TIMEOUT_S} s and was killed; its output: {log_path}") from None


def losses_by_step(records):
    """{step: train/loss} of metrics.jsonl records (evaluation records carry no loss)."""
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def sigterm_after_step(proc, output_dir, step):
    """Send SIGTERM once the run has logged `step`; the step seen then, or None if the run ended first."""
    from qa import run_dir

    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while proc.poll() is None:
        logged = losses_by_step(run_dir.read_metrics(output_dir))
        if logged and max(logged) >= step:
            proc.send_signal(signal.SIGTERM)
            return max(logged)
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)  # tiny-model steps take ~5-30 ms: the signal lands a step or two later
    return None


def relative_diff(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def resume_checks(precision, reference, interrupted, resumed, signalled_at, stop_exit, checkpoint_step, checkpoints_seen,
                  max_steps, loss_rel_tolerance):
    """Checks of a SIGTERM + resume against the uninterrupted run (pure).

    reference/interrupted/resumed: {step: loss} of the uninterrupted run, of the stopped run when it had
    stopped, of the same folder after the resume; signalled_at: the last step logged when SIGTERM was sent
    (None: the run ended first); checkpoint_step: the newest complete checkpoint's step."""
    checks = []
    last_logged = max(interrupted) if interrupted else None
    stopped_ok = (signalled_at is not None and stop_exit == 143 and checkpoint_step is not None
                  and checkpoint_step < max_steps and last_logged == checkpoint_step)
    sent = f"SIGTERM after step {signalled_at}" if signalled_at is not None else "the run ended before SIGTERM was sent"
    checks.append(Check(precision, "sigterm", stopped_ok,
                        f"{sent}: exit {stop_exit} (143 expected), last logged step {last_logged}, newest complete "
                        f"checkpoint at step {checkpoint_step} of {max_steps} "
                        f"(complete: {', '.join(map(str, checkpoints_seen)) or 'none'})"))
    if not stopped_ok:
        return checks
    s = checkpoint_step
    after = {step: loss for step, loss in resumed.items() if step > s}
    first = min(after) if after else None
    if first != s + 1 or s + 1 not in reference:
        checks.append(Check(precision, "resume", False, f"the resumed run's first logged step is {first}, expected {s + 1}"))
        return checks
    before_diff = abs(interrupted[s] - reference[s]) if s in reference else float("nan")
    first_diff = relative_diff(after[s + 1], reference[s + 1])
    checks.append(Check(precision, "resume", first_diff <= loss_rel_tolerance,
                        f"loss at the stop (step {s}) {interrupted[s]:.6f} (uninterrupted {reference.get(s, float('nan')):.6f}, "
                        f"|diff| {before_diff:.2g}); first after the resume (step {s + 1}) {after[s + 1]:.6f}, uninterrupted "
                        f"{reference[s + 1]:.6f}: {describe_diff(first_diff, loss_rel_tolerance, 'relative')}"))
    missing = [step for step in range(s + 1, max_steps + 1) if step not in after or step not in reference]
    worst = max((relative_diff(after[step], reference[step]) for step in after if step in reference), default=float("nan"))
    checks.append(Check(precision, "continuation", not missing and worst <= loss_rel_tolerance,
                        (f"steps {s + 1}..{max_steps} missing from a log: {missing[:5]}" if missing else
                         f"losses of steps {s + 1}..{max_steps} against the uninterrupted run: "
                         f"{describe_diff(worst, loss_rel_tolerance, 'relative')}")))
    return checks


def describe_diff(diff, tolerance, kind=""):
    """'bit-identical' or 'max |diff| 3e-07 <= 0.02' (names the tolerance the check used)."""
    if diff == 0:
        return "bit-identical"
    relation = "<=" if diff <= tolerance else ">"
    return f"max {kind + ' ' if kind else ''}|diff| {diff:.3g} {relation} {tolerance:g}".replace("  ", " ")


def max_weight_diff(folder_a, folder_b):
    """Largest absolute difference between two saved models' tensors (inf if their tensor names differ)."""
    from safetensors.torch import load_file

    a = load_file(os.path.join(folder_a, "model.safetensors"))
    b = load_file(os.path.join(folder_b, "model.safetensors"))
    if a.keys() != b.keys():
        return float("inf")
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a) if a else 0.0


def run_chain(precision, paths, workdir, extra_flags, tolerance):
    """Uninterrupted and SIGTERM'd runs side by side, then the resume; the checks of part 2 for one precision.

    Each process writes its output to WORKDIR/<precision>-<uninterrupted|stopped|resumed>.log."""
    from qa import run_dir

    reference_dir = os.path.join(workdir, f"{precision}-uninterrupted")
    stopped_dir = os.path.join(workdir, f"{precision}-stopped")  # the resume continues in the same folder
    cache = os.path.join(workdir, "features-cache")
    logs = {name: os.path.join(workdir, f"{precision}-{name}.log") for name in ("uninterrupted", "stopped", "resumed")}
    started = time.perf_counter()
    processes = []
    try:
        reference = start_process(e2e_argv(paths, reference_dir, precision, cache, extra_flags), logs["uninterrupted"])
        processes.append(reference)
        stopped = start_process(e2e_argv(paths, stopped_dir, precision, cache, extra_flags), logs["stopped"])
        processes.append(stopped)
        signalled_at = sigterm_after_step(stopped, stopped_dir, SIGNAL_AFTER_STEP)
        stop_exit = wait_exit(stopped, logs["stopped"])
        interrupted = losses_by_step(run_dir.read_metrics(stopped_dir))  # before the resume rewrites the file
        complete = run_dir.list_checkpoints(stopped_dir)
        resumed = None
        if stop_exit == 143:  # resumed at once, while the uninterrupted run finishes
            resumed = start_process(e2e_argv(paths, stopped_dir, precision, cache,
                                             [*extra_flags, "--resume_from_checkpoint", "auto"]), logs["resumed"])
            processes.append(resumed)
        reference_exit = wait_exit(reference, logs["uninterrupted"])
        resume_exit = None if resumed is None else wait_exit(resumed, logs["resumed"])
    finally:  # a timeout or Ctrl-C here leaves none of our runs behind
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if reference_exit != 0:
        raise CheckError(f"the uninterrupted {precision} run exited {reference_exit}; its output: {logs['uninterrupted']}")
    checks = resume_checks(precision, losses_by_step(run_dir.read_metrics(reference_dir)), interrupted,
                           losses_by_step(run_dir.read_metrics(stopped_dir)), signalled_at, stop_exit,
                           complete[-1][0] if complete else None, [step for step, _ in complete], E2E["max_steps"],
                           tolerance["loss_rel"])
    if resume_exit is not None and resume_exit != 0:
        checks.append(Check(precision, "resume", False, f"the resumed run exited {resume_exit}; its output: {logs['resumed']}"))
    elif resume_exit == 0:
        checks += final_checks(precision, reference_dir, stopped_dir, tolerance)
        if "--torch_compile" in extra_flags:
            checks.append(compile_check(precision, {  # the stopped and the resumed process share a folder
                "uninterrupted": (read_text(os.path.join(reference_dir, "train.log")), 1),
                "stopped+resumed": (read_text(os.path.join(stopped_dir, "train.log")), 2)}))
    progress(f"e2e {precision}: {time.perf_counter() - started:.1f} s, logs in {workdir}/{precision}-*.log")
    return checks


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run_chain_or_fail(precision, paths, workdir, extra_flags, tolerance):
    """run_chain, with a run that could not be compared reported as one FAIL check."""
    try:
        return run_chain(precision, paths, workdir, extra_flags, tolerance)
    except CheckError as exc:
        return [Check(precision, "end-to-end", False, str(exc))]


def final_checks(precision, reference_dir, resumed_dir, tolerance):
    """The resumed run's final weights and evaluation against the uninterrupted run's."""
    from qa import run_dir

    weights = max_weight_diff(resumed_dir, reference_dir)
    checks = [Check(precision, "weights", weights <= tolerance["weights"],
                    f"final model against the uninterrupted run's: {describe_diff(weights, tolerance['weights'], 'abs')}")]
    step = E2E["max_steps"]
    ours, theirs = run_dir.read_eval_results(resumed_dir, step), run_dir.read_eval_results(reference_dir, step)
    if not ours or "f1" not in ours or not theirs:
        checks.append(Check(precision, "eval", False, f"no eval_results_{step}.json with f1 in {resumed_dir}"))
        return checks
    diff = abs(ours["f1"] - theirs["f1"])
    checks.append(Check(precision, "eval", diff <= tolerance["f1"],
                        f"exact {ours['exact']:.2f}, f1 {ours['f1']:.2f} on {ours['total']} questions after step {step} "
                        f"(uninterrupted f1 {theirs['f1']:.2f}: {describe_diff(diff, tolerance['f1'], 'abs')})"))
    return checks


def e2e_plan(device_type, help_flags):
    """[(precision, extra run_squad.py flags, RESUME_TOLERANCE key)] of part 2, and the note that says what was
    used (pure)."""
    common = ["--pad_to_multiple_of", "8"] if "--pad_to_multiple_of" in help_flags else []  # tensor-core shapes
    compiled = device_type == "cuda" and "--torch_compile" in help_flags
    deterministic = "--deterministic" in help_flags
    if device_type != "cuda":
        return [("bf16", common, "exact")], (
            f"run_squad.py --help lists --torch_compile: {'yes (not used: CPU)' if '--torch_compile' in help_flags else 'no'}"
            f", --pad_to_multiple_of: {'yes (8 given)' if common else 'no'}")
    # bf16 eager, deterministic: the resumed run must be the uninterrupted one bit for bit (without the flag, CUDA's
    # atomic additions make two runs of the same step differ in the last bits, so the compiled bounds apply).
    plan = [("bf16", common + (["--deterministic"] if deterministic else []), "exact" if deterministic else "compiled")]
    # fp16 (the guide's precision) compiled, with the default padding: batches of several lengths, so the
    # recompilations are exercised and counted (the "compile" check).
    plan.append(("fp16", common + (["--torch_compile"] if compiled else []), "compiled"))
    note = (f"run_squad.py --help lists --torch_compile: {'yes (used by the fp16 runs)' if compiled else 'no'}"
            f", --deterministic: {'yes (used by the bf16 runs: bit-identical resume required)' if deterministic else 'no'}"
            f", --pad_to_multiple_of: {'yes (8 given)' if common else 'no'}")
    return plan, note


def compile_check(precision, log_texts, limit=COMPILE_GRAPH_LIMIT):
    """A Check of the graph counts the trainer logs for --torch_compile (pure): every process at most `limit`.

    log_texts: {folder name: (its train.log, how many compiled processes wrote to it)}."""
    counts = []
    for name, (text, processes) in log_texts.items():
        found = re.findall(r"torch\.compile: (\d+) graph\(s\) compiled for (\d+) batch shape", text)
        if len(found) != processes:
            return Check(precision, "compile", False, f"{len(found)} 'torch.compile: N graph(s)' lines in the {name} "
                                                      f"folder's train.log, {processes} expected (one per process)")
        counts += [(name, int(graphs), int(shapes)) for graphs, shapes in found]
    ok = all(graphs <= limit for _, graphs, _ in counts)
    detail = ", ".join(f"{name}: {graphs} graph(s) for {shapes} batch shape(s)" for name, graphs, shapes in counts)
    return Check(precision, "compile", ok, f"{detail} (at most {limit} expected)")


def run_e2e(args, device):
    """Part 2 for each precision the device runs; returns (checks, notes, workdir)."""
    from concurrent.futures import ThreadPoolExecutor

    plan, note = e2e_plan(device.type, run_squad_flags())
    checks = []
    if device.type != "cuda":
        checks.append(Check("fp16", "end-to-end", True, "--fp16 needs CUDA (run_squad.py refuses it on the CPU)", skipped=True))
    workdir = args.workdir or tempfile.mkdtemp(prefix="gpu_check-")
    os.makedirs(workdir, exist_ok=True)
    try:
        paths = prepare_e2e(workdir)
    except (CheckError, subprocess.TimeoutExpired) as exc:
        return checks + [Check(p, "prepare", False, str(exc)) for p, _, _ in plan], [note], workdir

    # The precisions side by side (threads only wait on their processes): a GPU runs four tiny-model
    # trainings at once without slowing them; the CPU has one precision.
    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        results = [pool.submit(run_chain_or_fail, precision, paths, workdir, extra, RESUME_TOLERANCE[tolerance])
                   for precision, extra, tolerance in plan]
        for future in results:
            checks += future.result()
    return checks, [note], workdir


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run on the CPU with tiny sizes (seq 64, 3 steps, fp32 and bf16, "
                                                      "compile off): the whole check in well under a minute")
    p.add_argument("--out", help="also write everything (rows, checks, device, formula) as JSON to this file")
    p.add_argument("--peak-tflops", type=float, help="dense bf16/fp16 peak TFLOP/s for MFU (default: PEAK_TFLOPS by GPU name)")
    p.add_argument("--peak-tflops-fp32", type=float, help="dense TF32 (or FP32) peak TFLOP/s for the fp32 rows' MFU")
    p.add_argument("--models", default="bert,albert", help="comma-separated: bert, albert (default both)")
    p.add_argument("--precisions", help="comma-separated: fp32, bf16, fp16 (default all; --cpu: fp32,bf16)")
    p.add_argument("--compile", choices=("off", "on", "both"), help="torch.compile rows (default both; --cpu: off)")
    p.add_argument("--batch-size", type=int, help="windows per training step (default 32; --cpu: 8)")
    p.add_argument("--seq-len", type=int, help="tokens per window (default 384, the guide's --max_seq_length; --cpu: 64)")
    p.add_argument("--warmup-steps", type=int, help="untimed steps first, compilation included (default 3; --cpu: 1)")
    p.add_argument("--steps", type=int, help="timed steps per row (default 20; --cpu: 3)")
    p.add_argument("--budget-s", type=float, help="seconds part 1 may take; rows that would start later are shown as "
                                                  "skipped (default 270; --cpu: 60)")
    p.add_argument("--skip-bench", action="store_true", help="part 2 only")
    p.add_argument("--skip-e2e", action="store_true", help="part 1 only")
    p.add_argument("--workdir", help="folder for part 2's data, model and runs (default: a new temporary folder, "
                                     "removed when every check passed)")
    args = p.parse_args(argv)
    defaults = CPU_DEFAULTS if args.cpu else GPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    errors = validate_args(args)
    if errors:
        p.error("; ".join(errors))
    return args


def validate_args(args):
    """Check and normalise every argument at once; the list of what is wrong, each saying what to do."""
    errors = []
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precisions = [m.strip() for m in args.precisions.split(",") if m.strip()]
    args.compile_modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.compile]
    if not args.models or set(args.models) - set(MODEL_LABELS):
        errors.append(f"--models takes bert and/or albert, got {','.join(args.models) or 'nothing'}")
    if not args.precisions or set(args.precisions) - set(PRECISIONS):
        errors.append(f"--precisions takes fp32, bf16 and/or fp16, got {','.join(args.precisions) or 'nothing'}")
    if args.cpu and "fp16" in args.precisions:
        errors.append("--precisions fp16 needs CUDA (GradScaler-scaled fp16 training is a GPU path): drop fp16 with --cpu")
    for name in ("batch_size", "seq_len", "steps"):
        if getattr(args, name) < 1:
            errors.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup_steps < 0 or args.budget_s <= 0:
        errors.append("--warmup-steps cannot be negative and --budget-s must be positive")
    positions = min((MODEL_SIZES[(m, args.size)]["max_position_embeddings"] for m in args.models if m in MODEL_LABELS),
                    default=None)
    if positions is not None and args.seq_len > positions:
        errors.append(f"--seq-len {args.seq_len} is longer than the models' {positions} positions: use at most {positions}")
    for name in ("peak_tflops", "peak_tflops_fp32"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            errors.append(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.skip_bench and args.skip_e2e:
        errors.append("--skip-bench and --skip-e2e together leave nothing to do")
    return errors


def main(argv=None):
    args = parse_args(argv)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False): run it on a GPU machine, "
              "or add --cpu for the small CPU version", file=sys.stderr)
        return 2
    import transformers

    device = torch.device("cpu") if args.cpu else torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu":
        torch.set_num_threads(1)  # steadiest on a shared 2-core machine, and what part 2's runs use (OMP_NUM_THREADS=1)
    else:
        # TF32 for fp32 matmuls (10-bit mantissa inputs, fp32 accumulation): what the fp32 rows measure.
        torch.set_float32_matmul_precision("high")
        # including_emulation=False: a V100 "supports" bf16 only by emulating it, at a fraction of fp16's speed.
        if "bf16" in args.precisions and not torch.cuda.is_bf16_supported(including_emulation=False):
            progress("gpu_check: this GPU has no bf16 (pre-Ampere): the bf16 rows are dropped")
            args.precisions = [p for p in args.precisions if p != "bf16"]
    name = device_name(device)
    started = time.perf_counter()
    attention = {m: attention_implementation(m) for m in MODEL_LABELS}
    info = [f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}",
            "attention: " + ", ".join(f"{MODEL_LABELS[m]} {impl} ({why})" for m, (impl, why) in attention.items()),
            f"fp32 matmuls: {torch.get_float32_matmul_precision()} precision"
            + (" (TF32)" if torch.get_float32_matmul_precision() == "high" else "")]
    peaks = {p: (args.peak_tflops_fp32 if p == "fp32" else args.peak_tflops) or peak_tflops(name, p) for p in PRECISIONS}
    info.append("peak TFLOP/s for MFU: " + ", ".join(f"{p} {format_number(peaks[p])}" for p in PRECISIONS)
                + ("" if any(peaks.values()) else " (unknown device: MFU n/a; give --peak-tflops)"))
    progress(f"gpu_check: {info[0]}")

    rows = [] if args.skip_bench else run_benchmarks(args, device)
    checks, notes, workdir = ([], [], None) if args.skip_e2e else run_e2e(args, device)

    for line in info + notes:
        print(line)
    if rows:
        config = make_config(args.models[0], args.size)
        print(f"\ntraining steps (forward + backward + fused AdamW), {args.warmup_steps} warmup + {args.steps} timed; "
              f"FLOPs/token = 6 x applied non-embedding params + 12 x layers x hidden x seq_len "
              f"({train_flops_per_token(config, args.seq_len) / 1e6:,.1f} M for {MODEL_LABELS[args.models[0]]} at {args.seq_len})")
        print(format_table(rows))
    if checks:
        print()
        for check in checks:
            print(check.line())
    failed = [r for r in rows if not r.ok and not r.status.startswith("skipped")] + [c for c in checks if not c.ok]
    print(f"\ngpu_check: {len(rows)} row(s), {sum(c.ok and not c.skipped for c in checks)} check(s) passed, "
          f"{len(failed)} failed, {time.perf_counter() - started:.0f} s")
    if args.out:
        write_report(args.out, args, name, info + notes, rows, checks)
        print(f"gpu_check: JSON in {args.out}")
    if workdir and not args.workdir:
        if failed:
            print(f"gpu_check: part 2's runs kept for a look in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def write_report(path, args, name, info, rows, checks):
    import torch
    import transformers

    from qa.storage import atomic_write

    report = {
        "device": name, "torch": torch.__version__, "transformers": transformers.__version__, "info": info,
        "settings": {k: getattr(args, k) for k in ("size", "models", "precisions", "compile", "batch_size", "seq_len",
                                                  "warmup_steps", "steps", "budget_s")},
        "flops_per_token": "6 * applied_non_embedding_params + 12 * applied_layers * hidden_size * seq_len",
        "rows": [dataclasses.asdict(r) for r in rows],
        "checks": [dict(dataclasses.asdict(c), line=c.line()) for c in checks],
        "e2e": dict(E2E, signal_after_step=SIGNAL_AFTER_STEP),
    }
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
