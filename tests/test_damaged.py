"""Damaged files are detected, never trusted: feature caches and checkpoints are verified against the hashes of
their COMPLETE markers before use; a damaged cache is reported and rebuilt, a damaged checkpoint refused by name."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shared_file
from helpers import env, finish, start, train_argv

torch = pytest.importorskip("torch")
from qa import checkpoints, run_dir, storage  # noqa: E402
from qa import features as F  # noqa: E402
from qa.squad_io import read_squad  # noqa: E402

SMALL = F.FeatureParams(max_seq_length=64, doc_stride=16, max_query_length=16)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def _build(tokenizer, cache, messages):
    path = shared_file("squad", "squad2-dev-normans-rhine.json")
    examples = read_squad(path)[:40]
    return F.load_or_build_features(path, examples, tokenizer, SMALL, True, cache_dir=cache, log=messages.append)


@pytest.mark.parametrize("damage", ["truncate input_ids", "same-size garbage labels", "labels out of bounds"])
def test_a_damaged_feature_cache_is_reported_and_rebuilt(tokenizer, tmp_path, damage):
    messages = []
    good = _build(tokenizer, tmp_path, messages)
    expected = {name: np.array(getattr(good, name)) for name in ("input_ids", "start_positions")}
    folder = good.cache_folder
    del good
    if damage == "truncate input_ids":
        target = os.path.join(folder, "input_ids.bin")
        with open(target, "r+b") as f:
            f.truncate(os.path.getsize(target) // 2)
    else:
        target = os.path.join(folder, "start_positions.bin")
        size = os.path.getsize(target)
        garbage = np.full(size // 4, 10**6 if damage == "labels out of bounds" else 3, dtype=np.int32).tobytes()
        with open(target, "wb") as f:
            f.write(garbage)
        if damage == "labels out of bounds":  # the marker rewritten to match: only the bounds check can tell
            meta = storage.read_marker(folder, run_dir.COMPLETE)
            storage.write_marker(folder, run_dir.COMPLETE, {k: v for k, v in meta.items() if k != "files"})
    messages.clear()
    rebuilt = _build(tokenizer, tmp_path, messages)
    text = "\n".join(messages)
    assert "cannot be trusted" in text and os.path.basename(target) in text and "rebuilding" in text
    assert any(m.startswith("features: building") for m in messages)  # really built again, not only announced
    for name, values in expected.items():
        assert np.array_equal(np.array(getattr(rebuilt, name)), values)


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged-run")
    out = folder / "run"
    code, output = finish(start(train_argv(tiny_model_dir, out, folder / "cache", "--max_steps", "4", "--save_steps", "2",
                                           "--per_gpu_train_batch_size", "2")))
    assert code == 0, output
    return folder, out


def test_a_checkpoint_zeroed_in_place_is_refused_by_resume_eval_and_ask(tiny_model_dir, trained_run, tmp_path):
    folder, source = trained_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    weights = out / "checkpoint-4" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(b"\0" * size)  # same size: the old size-only marker check let this train from garbage
    assert run_dir.is_complete(str(out / "checkpoint-4"))  # sizes still match...
    with pytest.raises(run_dir.CheckpointError, match="model.safetensors does not match the hash"):
        checkpoints.verify_checkpoint(str(out / "checkpoint-4"))  # ...the hashes do not
    # Named explicitly: refused, nothing written.
    code, output = finish(start(train_argv(tiny_model_dir, out, folder / "cache", "--max_steps", "6", "--save_steps", "2",
                                           "--per_gpu_train_batch_size", "2", "--resume_from_checkpoint", "checkpoint-4", "--continue_finished")))
    assert code == 2 and "checkpoint-4 cannot be trusted: model.safetensors does not match the hash" in output
    assert "Traceback" not in output
    assert weights.read_bytes() == b"\0" * size  # never overwritten silently
    code, output = finish(start(["--model_name_or_path", str(out / "checkpoint-4"), "--output_dir", str(out), "--do_eval",
                                 "--predict_file", str(shared_file("squad", "squad2-dev-normans-complexity.json")),
                                 "--version_2_with_negative", "--max_eval_samples", "4", "--report_to", "none"]))
    assert code == 2 and "model.safetensors does not match the hash" in output and "Traceback" not in output
    doc = tmp_path / "doc.txt"
    doc.write_text("The Rhine flows through Basel.", encoding="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "ask.py"), str(out / "checkpoint-4"), "--question",
                           "where?", "--context-file", str(doc)], capture_output=True, text=True, env=env())
    assert done.returncode == 2 and "model.safetensors does not match the hash" in done.stderr
    # auto: the newest checkpoint that verifies, saying which one was skipped and why.
    code, output = finish(start(train_argv(tiny_model_dir, out, folder / "cache", "--max_steps", "6", "--save_steps", "2",
                                           "--per_gpu_train_batch_size", "2", "--resume_from_checkpoint", "auto", "--continue_finished")))
    assert code == 0, output
    assert "checkpoint-4 cannot be trusted: model.safetensors does not match the hash" in output
    assert "resuming from checkpoint-2 instead" in output and f"resuming from {out / 'checkpoint-2'}: step 2" in output
    assert "resuming from checkpoint-2 instead" in (out / "train.log").read_text()
    checkpoints.verify_checkpoint(str(out / "checkpoint-4"))  # written again by the resumed run, now whole


def test_a_random_optimizer_file_is_refused_without_pytorch_advice(trained_run, tmp_path):
    _, source = trained_run
    ckpt = tmp_path / "checkpoint-2"
    shutil.copytree(source / "checkpoint-2", ckpt)
    (ckpt / "optimizer.pt").write_bytes(os.urandom(4096))
    meta = storage.read_marker(str(ckpt), run_dir.COMPLETE)
    storage.write_marker(str(ckpt), run_dir.COMPLETE, {k: v for k, v in meta.items() if k != "files"})
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(run_dir.CheckpointError) as error:
        checkpoints.restore_training_state(str(ckpt), optimizer, None, None)
    assert "optimizer.pt" in str(error.value) and "weights_only=False" not in str(error.value)


def test_leftover_temporary_checkpoints_of_dead_processes_are_removed_at_start(tiny_model_dir, trained_run, tmp_path):
    folder, source = trained_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".tmp-checkpoint-6-{int(dead.stdout)}"
    shutil.copytree(out / "checkpoint-4", stale)
    code, output = finish(start(train_argv(tiny_model_dir, out, folder / "cache", "--max_steps", "6", "--save_steps", "0",
                                           "--per_gpu_train_batch_size", "2", "--resume_from_checkpoint", "auto", "--continue_finished")))
    assert code == 0, output  # no --save_total_limit, and still removed
    assert not stale.exists() and f"half-written by processes that were killed: {stale.name}" in output
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 6


def test_a_full_disk_at_the_final_save_leaves_no_stray_config_and_keeps_the_weights(tiny_model_dir, tmp_path, monkeypatch,
                                                                                    capsys):
    """--save_steps 0: before, a full disk at the final save lost the whole run and left a config.json."""
    import errno

    import transformers

    import run_squad

    real = transformers.PreTrainedModel.save_pretrained

    def full_disk_for_the_final_model(self, folder, *args, **kwargs):
        if os.path.basename(os.path.normpath(folder)).startswith(".tmp-final-"):
            real(self, folder, *args, **kwargs)  # written halfway, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(folder, "model.safetensors"))
        return real(self, folder, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", full_disk_for_the_final_model)
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, tmp_path / "cache", "--max_steps", "3", "--save_steps", "0",
                      "--per_gpu_train_batch_size", "2", "--threads", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_squad.main(argv) == 1
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert "the final model could not be written" in err and "checkpoint-3" in err and "Traceback" not in err
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    assert [s for s, _ in run_dir.list_checkpoints(out)] == [3]  # the weights of the last step, complete
    checkpoints.verify_checkpoint(str(out / "checkpoint-3"))


def test_a_marker_of_the_first_format_is_checked_by_size_and_says_so(trained_run, tmp_path, caplog):
    import logging

    _, source = trained_run
    ckpt = tmp_path / "checkpoint-2"
    shutil.copytree(source / "checkpoint-2", ckpt)
    marker = storage.read_marker(str(ckpt), run_dir.COMPLETE)
    sizes = {name: entry["size"] for name, entry in marker["files"].items()}  # format 1: name -> size
    (ckpt / run_dir.COMPLETE).write_text(json.dumps({"global_step": 2, "files": sizes}))
    with caplog.at_level(logging.WARNING, logger="qa.checkpoints"):
        checkpoints.verify_checkpoint(str(ckpt))
    assert "checked by size only" in caplog.text
    (ckpt / "optimizer.pt").write_bytes(b"x")  # a size that differs is still refused
    with pytest.raises(run_dir.CheckpointError, match="optimizer.pt has 1 bytes"):
        checkpoints.verify_checkpoint(str(ckpt))
