"""Activation checkpointing (--gradient_checkpointing): peak memory and step time with and without it, on the CPU.

    .venv/bin/python benchmarks/bench_grad_ckpt.py --out benchmarks/results
    .venv/bin/python benchmarks/bench_grad_ckpt.py --out /tmp/bench --model bert --batch 2 --steps 1

A mid-size model built here from a config (no download): by default ALBERT with albert-base-v2's shape
(hidden 768, 12 layers, 12 heads, feed-forward 3072, embeddings 128, vocabulary 30,000), random weights,
training batches of BATCH windows of SEQ_LEN tokens with random answers. Each setting runs in a fresh
process (so one's memory does not hide the other's): one warm-up step (AdamW's states are allocated there),
then STEPS timed training steps (forward, backward, AdamW step). Measured per setting:
- peak_rss_mb: the process's peak resident memory over the training steps (VmHWM, reset once the model is built);
- peak_over_idle_mb: that peak minus the resident memory before the first step (model, libraries): the memory
  training adds, activations kept for backward plus gradients and AdamW's two states (3 x 4 bytes a parameter);
- saved_activation_mb: bytes of the tensors autograd keeps for backward in one step (parameters excluded);
- step_s: median seconds per timed step; loss: the last step's loss (the same with and without, or this
  exits 1).
Writes OUT/grad_ckpt.json.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHAPES = {"albert": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         embedding_size=128, vocab_size=30000),
          "bert": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       vocab_size=30522)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for grad_ckpt.json")
    p.add_argument("--model", choices=sorted(SHAPES), default="albert", help="model shape (default albert: albert-base-v2's)")
    p.add_argument("--batch", type=int, default=4, help="windows per training step (default 4)")
    p.add_argument("--seq-len", type=int, default=384, help="tokens per window (default 384, the guide's)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per setting, after one warm-up step")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--worker", choices=("off", "on"), help=argparse.SUPPRESS)  # one setting, in its own process
    args = p.parse_args(argv)
    for name in ("batch", "seq_len", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def status_mb(field):
    """VmRSS / VmHWM of this process, in MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak resident set size (VmHWM) to the current one
        f.write("5")


def build(args):
    import torch
    import transformers

    torch.manual_seed(0)
    config_class = transformers.AlbertConfig if args.model == "albert" else transformers.BertConfig
    model_class = transformers.AlbertForQuestionAnswering if args.model == "albert" else transformers.BertForQuestionAnswering
    model = model_class(config_class(max_position_embeddings=max(512, args.seq_len), **SHAPES[args.model]))
    generator = torch.Generator().manual_seed(1)
    vocab = SHAPES[args.model]["vocab_size"]
    batches = [{"input_ids": torch.randint(5, vocab, (args.batch, args.seq_len), generator=generator),
                "attention_mask": torch.ones(args.batch, args.seq_len, dtype=torch.long),
                "start_positions": torch.randint(0, args.seq_len, (args.batch,), generator=generator),
                "end_positions": torch.randint(0, args.seq_len, (args.batch,), generator=generator)}
               for _ in range(args.steps + 1)]
    return model, batches


def step(model, optimizer, batch, saved=None):
    import torch

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()} if saved is not None else ()

    def pack(tensor):
        if saved is not None and tensor.untyped_storage().data_ptr() not in parameters:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def worker(args):
    """One setting: warm-up, then the timed steps; prints its measurements as one JSON line."""
    import torch

    from qa.activation_checkpointing import enable_activation_checkpointing

    if args.threads:
        torch.set_num_threads(args.threads)
    model, batches = build(args)
    how = enable_activation_checkpointing(model) if args.worker == "on" else None
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    torch.manual_seed(2)  # the same dropout masks in both settings
    reset_peak_rss()  # from here: building the model (random initialisation) peaks higher than it ends
    idle = status_mb("VmRSS")
    saved = {}
    step(model, optimizer, batches[0], saved)  # warm-up: AdamW states allocated here
    times, loss = [], None
    for batch in batches[1:]:
        t0 = time.perf_counter()
        loss = step(model, optimizer, batch)
        times.append(time.perf_counter() - t0)
    peak = status_mb("VmHWM")
    print(json.dumps({"setting": args.worker, "how": how, "peak_rss_mb": round(peak, 1), "idle_rss_mb": round(idle, 1),
                      "peak_over_idle_mb": round(peak - idle, 1), "saved_activation_mb": round(sum(saved.values()) / 2**20, 1),
                      "step_s": round(statistics.median(times), 3), "loss": loss}))


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import torch

    from qa.storage import atomic_write

    passed = [f"--model={args.model}", f"--batch={args.batch}", f"--seq-len={args.seq_len}", f"--steps={args.steps}",
              *([f"--threads={args.threads}"] if args.threads else []), "--out", args.out]
    results = {}
    for setting in ("off", "on"):
        done = subprocess.run([sys.executable, __file__, *passed, "--worker", setting], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"bench_grad_ckpt: the '{setting}' run failed:\n{done.stderr[-3000:]}")
        results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    off, on = results["off"], results["on"]
    print(f"{args.model} (hidden 768, 12 layers), batch {args.batch} x {args.seq_len} tokens, {args.steps} timed steps, CPU")
    print(f"{'':24} {'peak RSS MB':>12} {'over idle MB':>13} {'saved acts MB':>14} {'step s':>8}")
    for name, r in (("without checkpointing", off), (f"with ({on['how']})", on)):
        print(f"{name:24} {r['peak_rss_mb']:>12.0f} {r['peak_over_idle_mb']:>13.0f} {r['saved_activation_mb']:>14.1f} "
              f"{r['step_s']:>8.2f}")
    print(f"peak over idle {on['peak_over_idle_mb'] / off['peak_over_idle_mb']:.2f}x, step time "
          f"{on['step_s'] / off['step_s']:.2f}x; losses {off['loss']:.6f} / {on['loss']:.6f}")
    report = {"benchmark": "grad_ckpt", "model": args.model, "shape": SHAPES[args.model], "batch": args.batch,
              "seq_len": args.seq_len, "steps": args.steps, "torch": torch.__version__, "cpu": platform.processor(),
              "cpus": os.cpu_count(), "results": results}
    os.makedirs(args.out, exist_ok=True)
    with atomic_write(os.path.join(args.out, "grad_ckpt.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    if abs(off["loss"] - on["loss"]) > 1e-4:
        sys.exit(f"bench_grad_ckpt: losses differ: {off['loss']} without, {on['loss']} with checkpointing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
