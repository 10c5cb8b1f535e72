"""scripts/make_tiny_model.py: the demo's tokenizer and model are the same bytes from run to run.

    .venv/bin/python -m pytest tests/test_make_tiny_model.py -q
"""

import json
import os
import subprocess
import sys

import pytest

import make_tiny_model
from conftest import ROOT, shared_file


def test_continuation_pieces_are_every_later_character_sorted():
    assert make_tiny_model.continuation_pieces(["the", "cat", "a", "été"]) == ["##a", "##e", "##h", "##t", "##é"]
    assert make_tiny_model.continuation_pieces(["a", "b"]) == []


def test_pieces_are_ordinary_vocabulary_not_special_tokens():
    pytest.importorskip("transformers")
    texts = ["The Rhine begins in the Swiss canton of Graubunden.", "Where does the Rhine begin?"] * 3
    tokenizer = make_tiny_model.train_tokenizer(texts, vocab_size=80)
    assert sorted(tokenizer.all_special_tokens) == ["[CLS]", "[MASK]", "[PAD]", "[SEP]", "[UNK]"]
    vocab = tokenizer.get_vocab()
    # The 5 special tokens first, then every continuation piece in sorted order (what makes training deterministic).
    by_id = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    assert by_id[:20] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##a", "##b", "##d", "##e", "##f", "##g", "##h",
                          "##i", "##n", "##o", "##r", "##s", "##t", "##u", "##w"]
    ids = tokenizer("Rhinegraub begins")["input_ids"]  # an unseen word: split into pieces (and lowercased)
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "rhine", "##g", "##rau", "##b", "begins", "[SEP]"]
    # Decoding drops only the real special tokens: the pieces are glued back into words.
    assert tokenizer.decode(ids, skip_special_tokens=True) == "rhinegraub begins"


def _build_in_a_fresh_process(out, hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_model.py"), "--train-file",
                           str(shared_file("squad", "squad2-dev-normans-rhine.json")), "--out", str(out),
                           "--vocab-size", "1500"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_two_processes_with_different_hash_seeds_write_the_same_files(tmp_path):
    # Before the fix, 7 runs gave 7 different tokenizer.json (the Rust trainer's HashMap order): the
    # demo's F1 moved between 89.8 and 90.99 for one --seed.
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    first = _build_in_a_fresh_process(tmp_path / "first", 1)
    second = _build_in_a_fresh_process(tmp_path / "second", 2)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert len(json.loads((first / "tokenizer.json").read_text())["model"]["vocab"]) == 1500
    weights_first, weights_second = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert weights_first.keys() == weights_second.keys()
    assert all(torch.equal(weights_first[name], weights_second[name]) for name in weights_first)
    assert sorted(os.listdir(first)) == sorted(os.listdir(second))
    for name in os.listdir(first):  # config, tokenizer_config and the weights file too
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
