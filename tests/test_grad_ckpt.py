"""--gradient_checkpointing gives the same training with less activation memory; the Trainer's flag names
are aliases of the legacy ones, recorded once in args.json."""

import json

import pytest

from conftest import shared_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qa.activation_checkpointing import enable_activation_checkpointing  # noqa: E402
from qa.args import parse_args  # noqa: E402

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128,
            max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def tiny_albert():
    return transformers.AlbertForQuestionAnswering(transformers.AlbertConfig(embedding_size=16, **TINY))


def tiny_bert():
    return transformers.BertForQuestionAnswering(transformers.BertConfig(**TINY))


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, 120, (4, 48), generator=generator),
            "attention_mask": torch.ones(4, 48, dtype=torch.long),
            "start_positions": torch.randint(0, 48, (4,), generator=generator),
            "end_positions": torch.randint(0, 48, (4,), generator=generator)}


def saved_activation_bytes(model, inputs):
    """Bytes of the tensors the forward pass keeps for backward (parameters excluded), and the loss: the
    activation memory held when backward starts, which is training's peak."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**inputs).loss
    return sum(saved.values()), loss


def train_steps(model, steps=3):
    """Losses of `steps` AdamW steps with dropout on (the same seed each time), and the weights after them."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for step in range(steps):
        memory, loss = saved_activation_bytes(model, batch(step))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append((loss.item(), memory))
    return losses, {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("build, how", [(tiny_albert, "albert layers"), (tiny_bert, "transformers")])
def test_same_losses_and_weights_with_less_activation_memory(build, how, one_thread):
    torch.manual_seed(1)
    plain = build()
    checkpointed = build()
    checkpointed.load_state_dict(plain.state_dict())
    assert enable_activation_checkpointing(checkpointed) == how
    plain_losses, plain_weights = train_steps(plain)
    losses, weights = train_steps(checkpointed)
    for (plain_loss, plain_memory), (loss, memory) in zip(plain_losses, losses):
        assert loss == pytest.approx(plain_loss, abs=1e-5)
        assert memory < 0.6 * plain_memory, (memory, plain_memory)  # 3 layers: about a third kept
    for name, value in weights.items():
        torch.testing.assert_close(value, plain_weights[name], rtol=1e-5, atol=1e-6, msg=name)
    # Evaluation runs the model as it is: no recomputation, the same logits.
    checkpointed.eval(), plain.eval()
    with torch.no_grad():
        inputs = {k: v for k, v in batch(9).items() if k in ("input_ids", "attention_mask")}
        torch.testing.assert_close(checkpointed(**inputs).start_logits, plain(**inputs).start_logits)


def test_a_model_without_support_is_refused_by_name():
    model = transformers.AlbertForQuestionAnswering(transformers.AlbertConfig(embedding_size=16, **TINY))
    model.config.model_type = "other"
    with pytest.raises(ValueError, match=r"--gradient_checkpointing: AlbertForQuestionAnswering supports no activation"):
        enable_activation_checkpointing(model)


def test_trainer_flag_names_are_aliases_of_the_legacy_ones():
    common = ["--model_name_or_path", "m", "--output_dir", "o"]
    trainer = parse_args([*common, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", "--bf16",
                          "--gradient_checkpointing", "--max_train_samples", "100", "--max_eval_samples", "50"])
    legacy = parse_args([*common, "--per_gpu_train_batch_size", "4", "--per_gpu_eval_batch_size", "16", "--bf16",
                         "--gradient_checkpointing", "--max_train_samples", "100", "--max_eval_samples", "50"])
    assert vars(trainer) == vars(legacy)
    assert (trainer.per_gpu_train_batch_size, trainer.per_gpu_eval_batch_size) == (4, 16)
    assert not any(name.startswith("per_device") for name in vars(trainer))
    assert parse_args([*common, "--fp16"]).fp16 and not parse_args(common).gradient_checkpointing
    # A resume takes a recorded --gradient_checkpointing; --no_gradient_checkpointing (make GRAD_CKPT=0) turns it off.
    assert parse_args([*common, "--gradient_checkpointing", "--no_gradient_checkpointing"]).gradient_checkpointing is False


def test_run_with_trainer_flags_records_them_once(tiny_model_dir, tmp_path, one_thread):
    import run_squad

    data = str(shared_file("squad", "squad2-dev-normans-rhine.json"))
    out = tmp_path / "run"
    code = run_squad.main(["--model_type", "albert", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out),
                           "--do_train", "--do_eval", "--train_file", data, "--predict_file", data,
                           "--version_2_with_negative", "--max_seq_length", "96", "--doc_stride", "48",
                           "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "32",
                           "--max_train_samples", "24", "--max_eval_samples", "12", "--gradient_checkpointing",
                           "--max_steps", "2", "--save_steps", "0", "--logging_steps", "0",
                           "--features_cache_dir", str(tmp_path / "cache"), "--report_to", "none"])
    assert code == 0
    recorded = json.loads((out / "args.json").read_text(encoding="utf-8"))
    assert (recorded["per_gpu_train_batch_size"], recorded["per_gpu_eval_batch_size"]) == (4, 32)
    assert recorded["gradient_checkpointing"] is True and recorded["max_train_samples"] == 24
    assert not any(name.startswith("per_device") for name in recorded)
    assert "activation checkpointing on (albert layers)" in (out / "train.log").read_text(encoding="utf-8")
    (results,) = out.glob("eval_results_*.json")
    assert json.loads(results.read_text(encoding="utf-8"))["total"] == 12


def test_make_grad_ckpt_passes_the_flag():
    import subprocess

    from conftest import ROOT

    def dry_run(*variables):
        done = subprocess.run(["make", "-n", "--no-print-directory", "NGPUS=0", *variables], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        return done.returncode, done.stdout + done.stderr

    assert "--gradient_checkpointing" in dry_run("train", "GRAD_CKPT=1")[1]
    assert "gradient_checkpointing" not in dry_run("train")[1]
    assert "--no_gradient_checkpointing" in dry_run("resume", "GRAD_CKPT=no")[1]  # a recorded one switched off
    assert "gradient_checkpointing" not in dry_run("resume")[1]  # the run's record decides
    code, output = dry_run("train", "GRAD_CKPT=maybe")
    assert code != 0 and "GRAD_CKPT must be 1/yes/true/on or 0/no/false/off, got 'maybe'" in output
