"""Helpers shared by the end-to-end training tests: the data files, the environment, starting and finishing a
run_squad.py process, the training command line, the dropout model fixture and reading a folder's weights."""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
PREDICT = ("squad", "squad2-dev-normans-complexity.json")


def env(**extra):
    # One intra-op thread: the runs share two cores (and thread count must match between runs compared bit for bit).
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", **extra}


def start(argv, **extra_env):
    return subprocess.Popen([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env(**extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=240):
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


@pytest.fixture(scope="module")
def dropout_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with dropout 0.1 everywhere: random draws at every step, so RNG states must be restored."""
    out = tmp_path_factory.mktemp("tiny-dropout")
    for name in os.listdir(tiny_model_dir):
        shutil.copy(tiny_model_dir / name, out / name)
    config = json.loads((out / "config.json").read_text())
    config.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, classifier_dropout_prob=0.1)
    (out / "config.json").write_text(json.dumps(config))
    return out


def train_argv(model_dir, output_dir, cache_dir, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), "--do_train",
            "--train_file", str(shared_file(*TRAIN)), "--max_train_samples", "12", "--version_2_with_negative",
            "--max_seq_length", "128", "--doc_stride", "64", "--features_cache_dir", str(cache_dir),
            "--report_to", "none", "--seed", "7", *extra]


def read_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@contextlib.contextmanager
def small_disk(folder, size):
    """A tmpfs of `size` mounted on `folder` for the block: a real disk that fills up (root only, else skipped)."""
    os.makedirs(folder, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and mount rights): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        from qa import features

        features.release_cache_dirs()  # this process holds a cache folder's in-use lock open: a busy mount otherwise
        subprocess.run(["umount", str(folder)], check=True)


def train_tiny_run(tiny_model_dir, root):
    """Two training steps of the tiny model on 8 real questions into root/run, in this process: a final model."""
    import torch

    import run_squad

    run = root / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = run_squad.main(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(run), "--do_train",
                               "--train_file", str(shared_file(*TRAIN)), "--max_train_samples", "8",
                               "--version_2_with_negative", "--max_seq_length", "128", "--doc_stride", "64",
                               "--per_gpu_train_batch_size", "4", "--max_steps", "2", "--save_steps", "0",
                               "--features_cache_dir", str(root / "cache"), "--report_to", "none", "--threads", "1"])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return run


def plant_nan_qa_head(model_dir):
    """Set the QA head's weights of the model in `model_dir` to NaN (and drop its hash record, which would refuse
    the changed file first): a model whose logits are not finite."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model_dir / "model.safetensors"))
    head = next(name for name in weights if name.startswith("qa_outputs") and name.endswith("weight"))
    weights[head] = torch.full_like(weights[head], float("nan"))
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    for record in model_dir.glob("MODEL_COMPLETE"):
        record.unlink()
