"""benchmarks/gpu_check.sh: the FLOPs formula against torch's own FLOP counter, the peak table, the checks of a
SIGTERM + resume, and the whole script on the CPU (`--cpu`: the table's rows with real numbers, PASS lines)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
RESUME_CHECKS = ("sigterm", "resume", "continuation", "weights", "eval")


def script_env():
    return {**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}


def table_rows(stdout):
    """{(model, precision, compile): [cells]} of the printed table (rows start with the model's name)."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in ("BERT", "ALBERT"):
            rows[tuple(cells[:3])] = cells
    return rows


def number(cell):
    return float(cell.replace(",", "").rstrip("%"))


# ---------------------------------------------------------------------------------------------
# FLOPs and parameters
# ---------------------------------------------------------------------------------------------
def meta_model(model_type, size, attention="sdpa"):
    """The real transformers model of that config, on the meta device: shapes only, built in milliseconds."""
    from transformers import AutoModelForQuestionAnswering

    config = gpu_check.make_config(model_type, size)
    with torch.device("meta"):
        model = AutoModelForQuestionAnswering.from_config(config, attn_implementation=attention)
    return config, model


@pytest.mark.parametrize("size", ["tiny", "base"])
@pytest.mark.parametrize("model_type", ["bert", "albert"])
def test_parameter_counts_are_those_of_the_built_models(model_type, size):
    config, model = meta_model(model_type, size)
    stored = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    assert gpu_check.unique_non_embedding_params(config) == stored
    layer = (model.bert.encoder.layer[0] if model_type == "bert"
             else model.albert.encoder.albert_layer_groups[0].albert_layers[0])
    assert gpu_check.encoder_layer_params(config.hidden_size, config.intermediate_size) == sum(
        p.numel() for p in layer.parameters())


def test_albert_counts_its_shared_layer_once_per_application():
    bert = gpu_check.make_config("bert", "base")
    albert = gpu_check.make_config("albert", "base")
    assert gpu_check.applied_non_embedding_params(bert) == gpu_check.unique_non_embedding_params(bert) == 85_056_002
    assert gpu_check.unique_non_embedding_params(albert) == 7_188_482   # one layer stored ...
    assert gpu_check.applied_non_embedding_params(albert) == 85_155_074  # ... applied 12 times, + the 128->768 projection
    # BERT-base at the guide's 384 tokens: 6 x 85,056,002 + 12 x 12 x 768 x 384.
    assert gpu_check.train_flops_per_token(bert, 384) == 552_803_340
    deeper = gpu_check.make_config("albert", "base")
    deeper.num_hidden_layers = 24  # same weights, twice the layers: twice the layer FLOPs
    layer_flops = 6 * gpu_check.encoder_layer_params(768, 3072) + 12 * 768 * 384
    assert gpu_check.train_flops_per_token(deeper, 384) - gpu_check.train_flops_per_token(albert, 384) == 12 * layer_flops
    assert gpu_check.unique_non_embedding_params(deeper) == gpu_check.unique_non_embedding_params(albert)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", ["bert", "albert"])
def test_flops_formula_matches_torch_flop_counter_on_a_training_step(model_type, attention):
    """torch.utils.flop_counter counts every matmul of forward + backward (attention's included) at the real
    base sizes; the formula's 6N also counts biases and LayerNorm weights, which are no matmul: exactly that
    difference, 6 x their number x tokens, separates the two."""
    from torch.utils.flop_counter import FlopCounterMode

    config, model = meta_model(model_type, "base", attention)
    model.train()
    batch_size, seq_len = 2, 384
    batch = gpu_check.random_batch(config, batch_size, seq_len, torch.device("cpu"))
    # No attention_mask: on meta tensors transformers cannot look at its values (every position is real anyway).
    batch = {k: v.to("meta") for k, v in batch.items() if k != "attention_mask"}
    counter = FlopCounterMode(display=False)
    with counter:
        model(**batch).loss.backward()
    h, i = config.hidden_size, config.intermediate_size
    vector_params = 12 * (9 * h + i) + 2 + (h if model_type == "albert" else 0)  # biases + LayerNorms, applied
    tokens = batch_size * seq_len
    expected = gpu_check.train_flops_per_token(config, seq_len) * tokens
    assert counter.get_total_flops() == expected - 6 * vector_params * tokens


# ---------------------------------------------------------------------------------------------
# Peak table, MFU, table
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H200", "bf16", 989.4), ("NVIDIA H200", "fp32", 494.7), ("NVIDIA H200", "fp16", 989.4),
    ("NVIDIA H200 NVL", "bf16", 835.5), ("NVIDIA H100 80GB HBM3", "bf16", 989.4), ("NVIDIA H100 PCIe", "fp32", 378.0),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0), ("NVIDIA A100 80GB PCIe", "fp32", 156.0),
    ("NVIDIA L4", "bf16", 121.0), ("NVIDIA L40S", "bf16", 362.05), ("NVIDIA A10G", "fp16", 125.0),
    ("NVIDIA A10", "fp32", 62.5), ("Tesla V100-SXM2-16GB", "fp16", 125.0), ("Tesla V100-SXM2-16GB", "bf16", None),
    ("Tesla T4", "fp16", 65.0), ("NVIDIA GeForce RTX 3090", "bf16", None), ("cpu", "fp32", None),
])
def test_peak_tflops_by_gpu_name(name, precision, peak):
    assert gpu_check.peak_tflops(name, precision) == peak


def test_table_shows_mfu_or_n_a_and_why_a_row_did_not_run():
    row = gpu_check.BenchRow("BERT", "bf16", True, 32, 384, step_ms=20.0, tokens_per_s=614_400.0, features_per_s=1600.0,
                             peak_memory_mib=20_000.0, tflops=339.6, peak_tflops=989.4)
    row.mfu = gpu_check.mfu(row.tflops, row.peak_tflops)
    unknown = gpu_check.BenchRow("BERT", "fp32", False, 32, 384, step_ms=50.0, tokens_per_s=245_760.0,
                                 features_per_s=640.0, peak_memory_mib=30_000.0, tflops=135.9)
    unknown.mfu = gpu_check.mfu(unknown.tflops, None)
    skipped = gpu_check.BenchRow("ALBERT", "fp16", True, 32, 384, status="skipped: --budget-s 300 spent (301 s so far)")
    rows = table_rows(gpu_check.format_table([skipped, row, unknown]))
    assert list(rows) == [("BERT", "fp32", "off"), ("BERT", "bf16", "on"), ("ALBERT", "fp16", "on")]  # sorted
    assert rows[("BERT", "bf16", "on")][4:10] == ["20.0", "614,400", "1,600.0", "20,000", "339.6", "34.3%"]
    assert rows[("BERT", "fp32", "off")][9] == "n/a"
    assert rows[("ALBERT", "fp16", "on")][4:] == ["n/a"] * 6 + "skipped: --budget-s 300 spent (301 s so far)".split()


def test_bench_plan_runs_every_eager_row_before_the_compiled_ones():
    plan = gpu_check.bench_plan(["bert", "albert"], ["fp32", "bf16", "fp16"], (False, True))
    assert plan[:6] == [("bert", "fp32", False), ("bert", "bf16", False), ("bert", "fp16", False),
                        ("albert", "fp32", False), ("albert", "bf16", False), ("albert", "fp16", False)]
    assert plan[6:] == [("bert", "bf16", True), ("albert", "bf16", True), ("bert", "fp16", True),
                        ("albert", "fp16", True), ("bert", "fp32", True), ("albert", "fp32", True)]


# ---------------------------------------------------------------------------------------------
# The checks of a SIGTERM + resume (pure)
# ---------------------------------------------------------------------------------------------
REFERENCE = {step: 4.0 - 0.05 * step for step in range(1, 41)}


def checks_by_name(checks):
    return {c.name: c for c in checks}


def test_resume_checks_pass_when_the_resumed_run_continues_the_uninterrupted_one():
    interrupted = {s: REFERENCE[s] for s in range(1, 15)}
    checks = checks_by_name(gpu_check.resume_checks("bf16", REFERENCE, interrupted, dict(REFERENCE), 13, 143, 14,
                                                    [10, 14], 40, 0.0))
    assert [c.ok for c in checks.values()] == [True, True, True]
    assert "bit-identical" in checks["resume"].detail and "(step 15)" in checks["resume"].detail
    # Within a tolerance (CUDA): a 0.1 % difference passes at 2 %, and says by how much.
    nudged = {s: loss * 1.001 if s > 14 else loss for s, loss in REFERENCE.items()}
    checks = checks_by_name(gpu_check.resume_checks("fp16", REFERENCE, interrupted, nudged, 13, 143, 14, [10, 14], 40, 0.02))
    assert checks["resume"].ok and "|diff| 0.001 <= 0.02" in checks["resume"].detail


def test_resume_checks_fail_on_a_restart_from_scratch_a_wrong_checkpoint_or_no_signal_exit():
    interrupted = {s: REFERENCE[s] for s in range(1, 15)}
    from_scratch = {**interrupted, **{s: REFERENCE[s - 14] for s in range(15, 41)}}
    checks = checks_by_name(gpu_check.resume_checks("bf16", REFERENCE, interrupted, from_scratch, 13, 143, 14, [10, 14], 40, 0.02))
    assert checks["sigterm"].ok and not checks["resume"].ok and not checks["continuation"].ok
    # The signal's checkpoint is missing (only the periodic checkpoint-10 is complete): the run did not save on SIGTERM.
    no_save = gpu_check.resume_checks("bf16", REFERENCE, interrupted, dict(REFERENCE), 13, 143, 10, [10], 40, 0.0)
    assert [(c.name, c.ok) for c in no_save] == [("sigterm", False)]
    # The run finished before the signal: no resume to judge.
    finished = gpu_check.resume_checks("bf16", REFERENCE, dict(REFERENCE), dict(REFERENCE), None, 0, 40, [10, 20, 30, 40], 40, 0.0)
    assert [(c.name, c.ok) for c in finished] == [("sigterm", False)]
    assert "ended before SIGTERM" in finished[0].line() and finished[0].line().startswith("FAIL bf16 sigterm:")


def test_resume_check_fails_when_the_resumed_log_starts_at_another_step():
    interrupted = {s: REFERENCE[s] for s in range(1, 15)}
    resumed = {s: REFERENCE[s] for s in range(1, 41) if s != 15}  # step 15 never logged
    checks = checks_by_name(gpu_check.resume_checks("bf16", REFERENCE, interrupted, resumed, 13, 143, 14, [10, 14], 40, 0.0))
    assert not checks["resume"].ok and "first logged step is 16, expected 15" in checks["resume"].detail


def write_run(folder, weights, f1, step=40):
    """A finished run's final model and evaluation, as run_squad.py leaves them."""
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    (folder / f"eval_results_{step}.json").write_text(json.dumps({"exact": f1 - 1, "f1": f1, "total": 51, "step": step}))
    return folder


def test_final_checks_compare_weights_and_f1_with_the_uninterrupted_run(tmp_path):
    weights = {"encoder.weight": torch.linspace(-1, 1, 12).reshape(3, 4), "qa_outputs.bias": torch.tensor([0.5, -0.5])}
    reference = write_run(tmp_path / "reference", weights, 28.73)
    same = write_run(tmp_path / "same", {k: v.clone() for k, v in weights.items()}, 28.73)
    checks = checks_by_name(gpu_check.final_checks("bf16", str(reference), str(same), gpu_check.RESUME_TOLERANCE["exact"]))
    assert checks["weights"].ok and checks["weights"].detail.endswith("bit-identical")
    assert checks["eval"].ok and "f1 28.73 on 51 questions after step 40" in checks["eval"].detail
    moved = dict(weights, **{"qa_outputs.bias": torch.tensor([0.5, -0.4])})
    off = write_run(tmp_path / "off", moved, 30.0)
    cpu = checks_by_name(gpu_check.final_checks("bf16", str(reference), str(off), gpu_check.RESUME_TOLERANCE["exact"]))
    assert not cpu["weights"].ok and "> 0" in cpu["weights"].detail and not cpu["eval"].ok
    cuda = checks_by_name(gpu_check.final_checks("fp16", str(reference), str(off), gpu_check.RESUME_TOLERANCE["compiled"]))
    assert not cuda["weights"].ok  # 0.1 is a wrong resume, not last-bit noise (bound 0.05)
    assert cuda["eval"].ok  # 1.27 F1 points within CUDA's 5
    missing = write_run(tmp_path / "no-eval", weights, 28.73, step=20)
    assert not checks_by_name(gpu_check.final_checks("bf16", str(reference), str(missing),
                                                     gpu_check.RESUME_TOLERANCE["exact"]))["eval"].ok


def test_e2e_plan_uses_the_new_flags_only_when_run_squad_lists_them():
    every = {"--fp16", "--bf16", "--torch_compile", "--pad_to_multiple_of", "--deterministic"}
    plan, note = gpu_check.e2e_plan("cuda", every)
    # bf16 eager and deterministic: bit for bit; fp16 compiled with the default padding (no --pad_to_max_length).
    assert plan == [("bf16", ["--pad_to_multiple_of", "8", "--deterministic"], "exact"),
                    ("fp16", ["--pad_to_multiple_of", "8", "--torch_compile"], "compiled")]
    assert "--torch_compile: yes (used by the fp16 runs)" in note and "bit-identical resume required" in note
    plan, note = gpu_check.e2e_plan("cuda", {"--fp16", "--bf16"})
    assert plan == [("bf16", [], "compiled"), ("fp16", [], "compiled")] and "--torch_compile: no" in note
    plan, note = gpu_check.e2e_plan("cpu", every)  # no fp16 and no compilation on the CPU, bit-exact anyway
    assert plan == [("bf16", ["--pad_to_multiple_of", "8"], "exact")] and "not used: CPU" in note


def test_compile_check_reads_every_process_count_from_the_logs():
    line = "2026-12-02 06:00:00 torch.compile: {} graph(s) compiled for {} batch shape(s) in this process (...)\n"
    good = {"uninterrupted": (line.format(2, 9), 1), "stopped+resumed": (line.format(2, 5) + "resuming from x\n"
                                                                          + line.format(3, 6), 2)}
    check = gpu_check.compile_check("fp16", good)
    assert check.ok and check.name == "compile"
    assert check.detail == ("uninterrupted: 2 graph(s) for 9 batch shape(s), stopped+resumed: 2 graph(s) for 5 batch "
                            "shape(s), stopped+resumed: 3 graph(s) for 6 batch shape(s) (at most 4 expected)")
    # One graph per length: the recompilations are not bounded.
    assert not gpu_check.compile_check("fp16", {"uninterrupted": (line.format(9, 9), 1)}).ok
    # The resumed process did not log its count (it crashed, or compiled nothing): not a pass.
    missing = gpu_check.compile_check("fp16", {"stopped+resumed": (line.format(2, 5), 2)})
    assert not missing.ok and "1 'torch.compile: N graph(s)' lines" in missing.detail


def test_the_timed_step_clips_as_the_trainer_does():
    """train_step unscales and clips to the trainer's default norm before the optimizer step."""
    model = torch.nn.Linear(4, 1)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return type("Out", (), {"loss": (self.inner(x) * 1000).sum()})()

    seen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    optimizer.step = lambda: seen.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    gpu_check.train_step(Wrapped(), optimizer, scaler, {"x": torch.ones(8, 4)}, "cpu", None)
    assert seen == [pytest.approx(gpu_check.MAX_GRAD_NORM)]  # 1000x the loss, clipped to 1.0


def test_run_squad_help_is_read_for_its_flags():
    flags = gpu_check.run_squad_flags()
    assert {"--fp16", "--bf16", "--resume_from_checkpoint", "--max_steps", "--help"} <= flags
    assert "--PAD_TO_MULTIPLE_OF" not in flags and not any(flag.endswith(",") for flag in flags)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--cpu", "--precisions", "fp16"], "fp16 needs CUDA"),
    (["--models", "gpt2"], "--models takes bert and/or albert"),
    (["--cpu", "--seq-len", "512"], "longer than the models' 128 positions"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--peak-tflops", "-1"], "--peak-tflops must be positive"),
    (["--skip-bench", "--skip-e2e"], "nothing to do"),
])
def test_bad_arguments_exit_2_saying_what_to_do(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_without_a_gpu_it_says_to_add_cpu():
    done = subprocess.run(["bash", str(SCRIPT), "--skip-e2e"], cwd=ROOT, env=script_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "add --cpu" in done.stderr


def test_missing_python_is_named():
    done = subprocess.run(["bash", str(SCRIPT), "--cpu"], cwd=ROOT, env={**script_env(), "PYTHON": "/nonexistent/python"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no Python at '/nonexistent/python'" in done.stderr


@pytest.mark.slow
def test_cpu_check_prints_the_table_and_passes_sigterm_resume(tmp_path):
    out = tmp_path / "gpu_check.json"
    work = tmp_path / "work"
    done = subprocess.run(["bash", str(SCRIPT), "--cpu", "--out", str(out), "--workdir", str(work),
                           "--peak-tflops", "2", "--peak-tflops-fp32", "1"],
                          cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    stdout = done.stdout
    assert "attention: BERT sdpa" in stdout and "ALBERT sdpa" in stdout
    # One row per model x precision, compile off, every number measured and positive.
    rows = table_rows(stdout)
    assert set(rows) == {(m, p, "off") for m in ("BERT", "ALBERT") for p in ("fp32", "bf16")}
    for cells in rows.values():
        assert cells[3] == "8x64"
        step_ms, tokens_s, features_s, peak_mib, tflops, mfu = (number(c) for c in cells[4:10])
        assert min(step_ms, tokens_s, features_s, peak_mib) > 0 and cells[9].endswith("%")
        assert tokens_s == pytest.approx(features_s * 64, rel=0.01)
    report = json.loads(out.read_text())
    for row in report["rows"]:
        assert row["status"] == "ok" and row["tflops"] > 0 and row["final_loss"] > 0
        assert row["peak_tflops"] == (1.0 if row["precision"] == "fp32" else 2.0)
        assert row["mfu"] == pytest.approx(row["tflops"] / row["peak_tflops"])
        config = gpu_check.make_config(row["model"].lower(), "tiny")
        assert row["flops_per_token"] == gpu_check.train_flops_per_token(config, 64)
        assert row["tflops"] == pytest.approx(row["tokens_per_s"] * row["flops_per_token"] / 1e12)
    # Part 2: stopped by SIGTERM, resumed, evaluated; on the CPU the resume is bit-exact.
    for name in RESUME_CHECKS:
        assert re.search(rf"^PASS bf16 {name}: ", stdout, flags=re.MULTILINE), (name, stdout[-3000:])
    assert "FAIL" not in stdout and "SKIP fp16 end-to-end: --fp16 needs CUDA" in stdout
    resume_line = next(line for line in stdout.splitlines() if line.startswith("PASS bf16 resume:"))
    assert resume_line.endswith("bit-identical")
    stopped_at = int(re.search(r"newest complete checkpoint at step (\d+)", stdout).group(1))
    assert gpu_check.SIGNAL_AFTER_STEP <= stopped_at < gpu_check.E2E["max_steps"]
    assert [c["name"] for c in report["checks"] if c["ok"] and not c["skipped"]] == list(RESUME_CHECKS)
    # The resumed folder is a finished run: final model, and the log goes on from the stop to the last step.
    resumed = work / "bf16-stopped"
    assert (resumed / "model.safetensors").exists() and (resumed / f"checkpoint-{stopped_at}").is_dir()
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in line]
    assert steps == list(range(1, gpu_check.E2E["max_steps"] + 1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_check_on_a_gpu(tmp_path):
    """BERT-base eager in the three precisions (about a minute), then the bf16 and fp16 SIGTERM + resume runs."""
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(["bash", str(SCRIPT), "--models", "bert", "--compile", "off", "--steps", "5", "--out", str(out)],
                          cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = table_rows(done.stdout)
    assert set(rows) == {("BERT", p, "off") for p in ("fp32", "bf16", "fp16")}
    report = json.loads(out.read_text())
    for row in report["rows"]:
        assert row["status"] == "ok" and row["tokens_per_s"] > 0 and row["peak_memory_kind"] == "cuda_max_memory_allocated"
        assert row["peak_memory_mib"] > 1000  # BERT-base weights + AdamW state alone are ~1.7 GB
        if row["peak_tflops"]:
            assert 0 < row["mfu"] < 1
    for precision in ("bf16", "fp16"):
        for name in RESUME_CHECKS:
            assert re.search(rf"^PASS {precision} {name}: ", done.stdout, flags=re.MULTILINE), (precision, name)
