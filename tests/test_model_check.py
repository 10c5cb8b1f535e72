"""A model folder is what it says or it is refused, with the file named (issue 18 items 3 and 10): the final
model's hash record (MODEL_COMPLETE), weights against config.json, the tokenizer against the embeddings, and
symbolic links out of the folder; by evaluation (make eval), upload (scripts/upload.sh) and qa.model_check."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file
from helpers import PREDICT, env, train_tiny_run

torch = pytest.importorskip("torch")
import make_tiny_model  # noqa: E402
from qa import model_check, run_dir  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("model-check")
    return train_tiny_run(tiny_model_dir, root)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, symlinks=True)
    return copy


def evaluate(run, tmp_path):
    """make eval CKPT=final on `run`: (exit status, stdout + stderr)."""
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "eval", f"OUTPUT_DIR={run}", "CKPT=final",
                           "NGPUS=0", "THREADS=1", f"PREDICT_FILE={shared_file(*PREDICT)}",
                           f"EXTRA=--max_eval_samples 4 --features_cache_dir {tmp_path / 'cache'}"],
                          env=env(), capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def ask(model_dir, tmp_path):
    """make ask on `model_dir`: (exit status, stdout + stderr)."""
    doc = tmp_path / "doc.txt"
    doc.write_text("The Rhine flows through Basel and Strasbourg.", encoding="utf-8")
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "ask", f"MODEL_DIR={model_dir}",
                           "QUESTION=where does the Rhine flow?", f"CONTEXT_FILE={doc}"],
                          env=env(), capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def check_cli(folder):
    done = subprocess.run([sys.executable, "-m", "qa.model_check", str(folder)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr


def upload_dry_run(folder):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "upload.sh"), str(folder), "s3://bucket-x/models/m",
                           "--dry-run"], env=env(), capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_the_final_model_is_saved_with_its_hash_record(trained_run):
    record = json.loads((trained_run / model_check.MODEL_RECORD).read_text())
    assert record["global_step"] == 2
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(record["files"])
    assert all(entry["size"] > 0 and len(entry["blake2b"]) == 128 for entry in record["files"].values())
    warnings = []
    assert model_check.verify_model_folder(str(trained_run), warnings.append) == str(trained_run)
    assert warnings == []


def test_a_file_changed_since_the_record_is_refused_by_make_eval_and_upload(run_copy, tmp_path):
    weights = run_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one weight changed
    weights.write_bytes(bytes(data))
    code, output = evaluate(run_copy, tmp_path)
    assert code == 2, output[-3000:]
    assert "model.safetensors does not match the hash recorded" in output and "MODEL_COMPLETE" in output
    assert "Traceback" not in output
    code, output = upload_dry_run(run_copy)
    assert code == 2 and "model.safetensors does not match the hash recorded" in output
    assert "would be written" not in output
    code, output = ask(run_copy, tmp_path)
    assert code == 2 and "model.safetensors does not match the hash recorded" in output, output[-3000:]


def test_a_final_model_without_record_is_accepted_with_one_warning(run_copy, tmp_path):
    (run_copy / model_check.MODEL_RECORD).unlink()  # saved before records were kept
    warnings = []
    model_check.verify_model_folder(str(run_copy), warnings.append)
    assert len(warnings) == 1 and "no MODEL_COMPLETE hash record" in warnings[0]
    code, output = evaluate(run_copy, tmp_path)
    assert code == 0, output[-3000:]
    assert "no MODEL_COMPLETE hash record" in output


def test_a_bert_config_in_an_albert_folder_is_refused(run_copy, tmp_path):
    """Before: make ask answered "The" and make eval exited 0 with F1 4.6, from a randomly initialised BERT."""
    from transformers import BertConfig

    (run_copy / model_check.MODEL_RECORD).unlink()  # an old folder: only the keys can tell
    albert = json.loads((run_copy / "config.json").read_text())
    BertConfig(vocab_size=albert["vocab_size"], hidden_size=albert["hidden_size"], num_hidden_layers=1,
               num_attention_heads=2, intermediate_size=albert["intermediate_size"]).save_pretrained(run_copy)
    code, output = evaluate(run_copy, tmp_path)
    assert code == 2, output[-3000:]
    assert f"{run_copy / 'model.safetensors'} does not match {run_copy / 'config.json'}" in output
    assert "config.json (bert) needs are missing" in output and "albert.embeddings" in output
    assert "Traceback" not in output
    code, output = ask(run_copy, tmp_path)
    assert code == 2 and f"{run_copy / 'model.safetensors'} does not match" in output, output[-3000:]
    assert "Traceback" not in output
    assert check_cli(run_copy)[0] == 2


def test_missing_qa_head_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    make_tiny_model.build(str(folder), ["the rhine flows through basel", "where does the rhine flow"] * 10,
                          vocab_size=120, hidden_size=32)
    tensors = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith("qa_outputs.")}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(model_check.ModelFolderError, match=r"missing \(qa_outputs.bias, qa_outputs.weight\)"):
        model_check.verify_model_folder(str(folder), lambda line: None)


def test_a_tokenizer_of_another_model_is_refused(run_copy, tmp_path):
    """Before: an IndexError traceback (ids beyond the embeddings), or garbage answers."""
    other = tmp_path / "other"
    texts = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    make_tiny_model.build(str(other), texts, vocab_size=3000, hidden_size=32)
    (run_copy / model_check.MODEL_RECORD).unlink()
    shutil.copy(other / "tokenizer.json", run_copy / "tokenizer.json")
    rows = json.loads((run_copy / "config.json").read_text())["vocab_size"]
    with pytest.raises(model_check.ModelFolderError) as error:
        model_check.verify_model_folder(str(run_copy), lambda line: None)
    assert str(error.value).startswith(f"{run_copy / 'tokenizer.json'}: the tokenizer has token ids up to")
    assert f"only {rows} rows" in str(error.value)
    code, stderr = check_cli(run_copy)
    assert code == 2 and "tokenizer.json" in stderr and "Traceback" not in stderr
    code, output = ask(run_copy, tmp_path)  # before: an IndexError traceback
    assert code == 2 and "the tokenizer has token ids up to" in output and "Traceback" not in output, output[-3000:]


def test_a_link_out_of_the_folder_is_refused_by_eval_and_upload(run_copy, tmp_path):
    """Before: make upload uploaded /etc/passwd as the weights; make ask gave a SafetensorError traceback."""
    (run_copy / "model.safetensors").unlink()
    os.symlink("/etc/passwd", run_copy / "model.safetensors")
    with pytest.raises(model_check.ModelFolderError, match="model.safetensors is a symbolic link to /etc/passwd"):
        model_check.verify_model_folder(str(run_copy))
    code, output = evaluate(run_copy, tmp_path)  # run_squad's argument check may name it first, as not safetensors
    assert code == 2 and "model.safetensors" in output and "Traceback" not in output, output[-3000:]
    code, output = upload_dry_run(run_copy)
    assert code == 2 and "symbolic link to /etc/passwd" in output and "would be written" not in output
    code, output = ask(run_copy, tmp_path)  # before: a SafetensorError traceback
    assert code == 2 and "symbolic link to /etc/passwd" in output and "Traceback" not in output, output[-3000:]


def test_links_inside_the_folder_and_checkpoints_elsewhere_are_fine(run_copy, tmp_path):
    os.rename(run_copy / "tokenizer.json", run_copy / "tokenizer.real.json")
    os.symlink("tokenizer.real.json", run_copy / "tokenizer.json")  # a link that stays inside
    elsewhere = tmp_path / "other-disk" / "checkpoint-2"
    elsewhere.mkdir(parents=True)
    os.symlink(elsewhere, run_copy / "checkpoint-2")  # a checkpoint kept on another disk
    (run_copy / model_check.MODEL_RECORD).unlink()
    model_check.verify_model_folder(str(run_copy), lambda line: None)


def test_a_damaged_checkpoint_is_refused_through_the_same_check(trained_run, tmp_path):
    from qa.checkpoints import save_checkpoint

    model = make_tiny_model.make_tiny_albert(vocab_size=50, hidden_size=32)
    path = save_checkpoint(str(tmp_path / "run"), model, None, None, None, None, {"global_step": 1})
    with open(os.path.join(path, "scheduler.pt"), "ab") as f:
        f.write(b"x")
    with pytest.raises(run_dir.CheckpointError, match="scheduler.pt has"):
        model_check.verify_model_folder(path)
