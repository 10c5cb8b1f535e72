"""The answer-type head (none/short/long/yes/no): reading the types, the windows' labels, the head beside any
encoder, its loss, its files (a plain from_pretrained still loads the folder), resume, and that it learns."""

import json
import os

import numpy as np
import pytest

from qa import answer_type
from qa import features as F
from qa.squad_io import Answer, SquadExample, SquadFormatError, read_squad, write_squad

torch = pytest.importorskip("torch")
from qa import answer_type_head as H  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Tiny encoders built here: ALBERT and BERT (the save/load tests), RoBERTa, DistilBERT, ELECTRA too
# ---------------------------------------------------------------------------------------------
def tiny_config(kind):
    import transformers as T

    common = {"vocab_size": 120, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}
    return {
        "albert": lambda: T.AlbertConfig(embedding_size=16, hidden_size=32, **common),
        "bert": lambda: T.BertConfig(hidden_size=32, **common),
        "roberta": lambda: T.RobertaConfig(hidden_size=32, **common),
        "electra": lambda: T.ElectraConfig(embedding_size=16, hidden_size=32, **common),
        "distilbert": lambda: T.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=2, hidden_dim=37),
    }[kind]()


def tiny_qa_model(kind, seed=0):
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    return AutoModelForQuestionAnswering.from_config(tiny_config(kind)).eval()


def inputs(batch=3, length=9, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.parametrize("kind", ["albert", "bert", "roberta", "distilbert", "electra"])
def test_the_head_reads_the_first_token_of_what_the_span_layer_reads(kind, one_thread):
    model = tiny_qa_model(kind)
    wrapped = H.AnswerTypeQA(model)
    seen = []
    hook = model.qa_outputs.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        out = wrapped(**inputs())  # token_type_ids too: DistilBERT's model does not take them, the wrapper drops them
        alone = model(**{k: v for k, v in inputs().items() if k in wrapped.accepted})
    hook.remove()
    assert torch.equal(out.start_logits, alone.start_logits) and torch.equal(out.end_logits, alone.end_logits)
    assert out.answer_type_logits.shape == (3, len(answer_type.TYPES))
    assert torch.allclose(out.answer_type_logits, wrapped.answer_type_head(seen[0][:, 0]))


def test_loss_is_bert_joints_average_of_start_end_and_type(one_thread):
    model = H.AnswerTypeQA(tiny_qa_model("albert"))
    starts, ends, types = torch.tensor([0, 3, 5]), torch.tensor([0, 4, 7]), torch.tensor([0, 1, 3])
    with torch.no_grad():
        out = model(**inputs(), start_positions=starts, end_positions=ends, answer_types=types)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(out.start_logits, starts) + ce(out.end_logits, ends) + ce(out.answer_type_logits, types)) / 3
    assert torch.allclose(out.loss, expected)
    assert torch.allclose(out.answer_type_loss, ce(out.answer_type_logits, types))
    with torch.no_grad():  # without type labels: the QA model's own loss, unchanged
        plain = model(**inputs(), start_positions=starts, end_positions=ends)
    assert torch.allclose(plain.loss, (ce(out.start_logits, starts) + ce(out.end_logits, ends)) / 2)
    # the type loss reaches the head and the encoder
    model.train()
    model(**inputs(), start_positions=starts, end_positions=ends, answer_types=types).loss.backward()
    assert model.answer_type_head.weight.grad.abs().sum() > 0
    assert model.qa_model.qa_outputs.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["albert", "bert"])
def test_saved_folder_loads_plainly_and_with_the_head(kind, tmp_path, one_thread):
    from transformers import AutoModelForQuestionAnswering

    model = H.AnswerTypeQA(tiny_qa_model(kind))
    model.save_pretrained(tmp_path)
    assert {H.HEAD_WEIGHTS, H.HEAD_CONFIG, "config.json", "model.safetensors"} <= set(os.listdir(tmp_path))
    # AutoModelForQuestionAnswering loads the folder as before: no missing or unexpected weights, the same logits
    plain, info = AutoModelForQuestionAnswering.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    plain.eval()
    loaded = H.load_qa_model(tmp_path).eval()
    assert isinstance(loaded, H.AnswerTypeQA) and H.has_type_output(loaded) and not H.has_type_output(plain)
    with torch.no_grad():
        before, after, alone = model(**inputs()), loaded(**inputs()), plain(**inputs())
    assert torch.equal(before.start_logits, alone.start_logits)
    assert torch.equal(before.answer_type_logits, after.answer_type_logits)
    assert torch.equal(model.answer_type_head.weight, loaded.answer_type_head.weight)
    assert json.loads((tmp_path / H.HEAD_CONFIG).read_text())["types"] == list(answer_type.TYPES)
    # attach: False ignores a saved head; True keeps the folder's one
    assert H.attach(plain, tmp_path, want=False) is plain
    assert torch.equal(H.attach(plain, tmp_path, want=True).answer_type_head.bias, model.answer_type_head.bias)


def test_a_folder_without_a_head_loads_as_the_plain_model_and_a_bad_head_is_named(tmp_path, one_thread):
    tiny_qa_model("bert").save_pretrained(tmp_path)
    assert not H.has_head(tmp_path)
    assert not isinstance(H.load_qa_model(tmp_path), H.AnswerTypeQA)
    fresh = H.attach(tiny_qa_model("bert"), tmp_path, want=True)  # training starts: a new head
    assert isinstance(fresh, H.AnswerTypeQA)
    # a head saved for another hidden size is refused, naming its file
    H.AnswerTypeQA(tiny_qa_model("bert")).save_pretrained(tmp_path)
    wide = H.new_head(type("Config", (), {"hidden_size": 48})())
    H.save_head(wide, tmp_path)
    with pytest.raises(H.HeadError, match=H.HEAD_WEIGHTS):
        H.load_qa_model(tmp_path)
    # a damaged weights file, and a config of other types
    (tmp_path / H.HEAD_WEIGHTS).write_bytes(b"\0" * 40)
    with pytest.raises(H.HeadError, match="damaged"):
        H.load_qa_model(tmp_path)
    (tmp_path / H.HEAD_CONFIG).write_text(json.dumps({"types": ["unknown", "yes", "no", "short", "long"]}))
    with pytest.raises(H.HeadError, match="another format"):
        H.load_qa_model(tmp_path)


@pytest.mark.parametrize("kind", ["albert", "bert"])
def test_the_wrapped_model_keeps_what_the_trainer_asks_of_the_model(kind, one_thread):
    from qa.activation_checkpointing import enable_activation_checkpointing

    model = H.AnswerTypeQA(tiny_qa_model(kind))
    assert model.dtype == torch.float32 and model.device.type == "cpu"  # the QA model's, through the wrapper
    how = enable_activation_checkpointing(model)  # --gradient_checkpointing: transformers' own, or ALBERT's layers
    assert how == ("albert layers" if kind == "albert" else "transformers")
    model.train()
    out = model(**inputs(), start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([1, 2, 3]),
                answer_types=torch.tensor([1, 0, 4]))
    out.loss.backward()
    assert model.answer_type_head.weight.grad is not None
    with pytest.raises(AttributeError):
        getattr(model, "no_such_attribute")  # noqa: B009


# ---------------------------------------------------------------------------------------------
# The data: "answer_type" in SQuAD JSON, and each window's label
# ---------------------------------------------------------------------------------------------
CONTEXT = ("Is the Rhine longer than the Danube? No. The Rhine rises in the Swiss Alps and flows north through "
           "Germany and the Netherlands to the North Sea. Its length is about 1,230 kilometres, and it carries "
           "more water than any other river of Germany. Many castles stand along the middle Rhine valley.")


def squad_file(path, qas):
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Rhine", "paragraphs": [
        {"context": CONTEXT, "qas": qas}]}]}))
    return path


def qa(qas_id, answer=None, kind=None, start=None):
    record = {"id": qas_id, "question": "what about the rhine?", "is_impossible": answer is None,
              "answers": [] if answer is None else [{"text": answer, "answer_start":
                                                     CONTEXT.index(answer) if start is None else start}]}
    if kind is not None:
        record["answer_type"] = kind
    return record


def test_answer_types_are_read_defaulted_checked_and_written_back(tmp_path):
    path = squad_file(tmp_path / "typed.json", [
        qa("s", "Swiss Alps", "short"), qa("l", CONTEXT, "long"), qa("y", CONTEXT, "yes"), qa("n", "No.", "no"),
        qa("none", None, "none"), qa("plain", "North Sea"), qa("plain-impossible")])
    examples = {e.qas_id: e for e in read_squad(path)}
    assert {k: e.answer_type for k, e in examples.items()} == {
        "s": "short", "l": "long", "y": "yes", "n": "no", "none": "none", "plain": "short", "plain-impossible": "none"}
    assert [e.typed for e in examples.values()] == [True] * 5 + [False] * 2
    assert answer_type.carries_types(examples.values()) and not answer_type.carries_types([examples["plain"]])
    write_squad(list(examples.values()), tmp_path / "again.jsonl")
    assert read_squad(tmp_path / "again.jsonl") == list(examples.values())  # the key comes back only where it was
    for bad, message in [(qa("x", "No.", "maybe"), "one of none, short, long, yes, no"),
                         (qa("x", None, "short"), "an impossible question is \"none\""),
                         (qa("x", "No.", "none"), "has an answer")]:
        with pytest.raises(SquadFormatError, match=message) as error:
            read_squad(squad_file(tmp_path / "bad.json", [bad]))
        assert "question id 'x'" in str(error.value) and error.value.skippable
        assert read_squad(tmp_path / "bad.json", skip_bad=True) == []


def test_resolve_flag_turns_the_head_on_for_typed_data_only():
    typed = [SquadExample("a", "t", "q", "c", (Answer("c", 0),), False, "long", True)]
    untyped = [SquadExample("b", "t", "q", "c", (), True)]  # SQuAD 2.0: impossible questions are "none", untyped
    assert untyped[0].answer_type == "none" and not untyped[0].typed
    assert answer_type.resolve_flag(None, typed) is True and answer_type.resolve_flag(None, untyped) is False
    assert answer_type.resolve_flag(False, typed) is False and answer_type.resolve_flag(True, untyped) is True


def test_training_head_follows_the_checkpoint_when_resuming(tmp_path, one_thread):
    typed = [SquadExample("a", "t", "q", "c", (Answer("c", 0),), False, "long", True)]
    with_head, without = tmp_path / "with", tmp_path / "without"
    H.AnswerTypeQA(tiny_qa_model("bert")).save_pretrained(with_head)
    tiny_qa_model("bert").save_pretrained(without)
    said = []
    assert H.training_head(None, typed, without, said.append) is False  # a record from before the flag
    assert H.training_head(None, [], with_head) is True
    assert H.training_head(True, typed, with_head) is True and H.training_head(None, typed, None) is True
    with pytest.raises(H.HeadError, match="trained without the answer-type head"):
        H.training_head(True, typed, without)
    assert said == ["answer-type head: off (as asked, or as the run was trained)"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_each_window_is_labelled_with_the_type_only_when_it_holds_the_span(tokenizer):
    examples = [SquadExample("yes", "t", "is it long?", CONTEXT, (Answer("Its length is about 1,230 kilometres",
                                                                        CONTEXT.index("Its length")),), False, "yes", True),
                SquadExample("long", "t", "which river?", CONTEXT, (Answer(CONTEXT, 0),), False, "long", True),
                SquadExample("none", "t", "which sea?", CONTEXT, (), True, "none", True),
                SquadExample("short", "t", "where?", CONTEXT, (Answer("Swiss Alps", CONTEXT.index("Swiss Alps")),), False)]
    params = F.FeatureParams(max_seq_length=40, doc_stride=12, max_query_length=8)
    features = F.build_features(examples, tokenizer, params, training=True)
    by_example = {e.qas_id: np.flatnonzero(features.example_index == i) for i, e in enumerate(examples)}
    spans = features.start_positions != features.cls_index
    for qas_id, kind in [("yes", answer_type.YES), ("short", answer_type.SHORT)]:
        rows = by_example[qas_id]
        assert len(rows) > 1 and spans[rows].any() and not spans[rows].all()  # some windows hold it, some do not
        assert (features.answer_types[rows] == np.where(spans[rows], kind, answer_type.NONE)).all()
    # the whole context as the answer fits no 40-token window: every window is "none", like BERT-joint's
    assert (features.answer_types[by_example["long"]] == answer_type.NONE).all()
    assert (features.answer_types[by_example["none"]] == answer_type.NONE).all()
    wide = F.build_features(examples[1:2], tokenizer, F.FeatureParams(max_seq_length=256), training=True)
    assert wide.answer_types.tolist() == [answer_type.LONG]
    batch = features.batch([0, 1])
    assert batch["answer_types"].dtype == np.int64 and batch["answer_types"].tolist() == features.answer_types[:2].tolist()
    assert F.build_features(examples, tokenizer, params, training=False).answer_types is None


def test_the_cache_key_and_its_check_cover_the_types(tokenizer, tmp_path):
    path = squad_file(tmp_path / "typed.json", [qa("y", "Swiss Alps", "yes"), qa("s", "North Sea", "short"), qa("n")])
    examples = read_squad(path)
    params = F.FeatureParams(max_seq_length=64, doc_stride=16, max_query_length=8)
    retyped = [SquadExample(e.qas_id, e.title, e.question, e.context, e.answers, e.is_impossible, "short", True)
               for e in examples]
    assert F.cache_key(path, tokenizer, params, True, examples) != F.cache_key(path, tokenizer, params, True, retyped)
    features = F.load_or_build_features(path, examples, tokenizer, params, True, cache_dir=tmp_path / "cache",
                                        log=lambda message: None)
    kind = np.array([answer_type.YES, answer_type.SHORT, answer_type.NONE])[features.example_index]
    spans = features.start_positions != features.cls_index
    assert features.answer_types.tolist() == np.where(spans, kind, answer_type.NONE).tolist()
    folder = features.cache_folder
    types = np.fromfile(os.path.join(folder, "answer_types.bin"), dtype=np.int8)
    types[0] = 9  # a type id that does not exist, same size: only the bounds check can see it without hashes
    types.tofile(os.path.join(folder, "answer_types.bin"))
    with pytest.raises(F.DamagedCacheError, match="answer_types"):
        F.open_cached_features(folder, check_hashes=False)
    with pytest.raises(F.DamagedCacheError, match="answer_types"):
        F.open_cached_features(folder)  # the marker's hash sees it first


def test_type_probabilities_and_the_decision():
    probabilities = answer_type.type_probabilities([[0.0, 0.0, 0.0, 3.0, 0.0], [5.0, 1.0, 1.0, 1.0, 1.0]])
    assert np.allclose(probabilities.sum(axis=-1), 1)
    assert answer_type.decide(probabilities[0])[0] == "yes" and answer_type.decide(probabilities[1])[0] == "none"
    assert answer_type.decide([0.2] * 5) == ("none", 0.2)
    assert answer_type.answer_probabilities(probabilities[0])["yes"] == pytest.approx(probabilities[0][3], abs=1e-6)
    with pytest.raises(ValueError, match="last axis of 5"):
        answer_type.type_probabilities([1.0, 2.0])


def test_what_predict_nq_and_ask_make_of_the_types():
    span = {"start_token": 3, "end_token": 5}
    p = answer_type.type_probabilities
    # the chosen window's type, none left out: it was chosen as holding the answer
    assert answer_type.nq_short_answer(p([9.0, 2.0, 0.0, 0.0, 0.0]), span) == ([span], "NONE")
    assert answer_type.nq_short_answer(p([0.0, 0.0, 2.0, 0.0, 0.0]), span) == ([], "NONE")
    assert answer_type.nq_short_answer(p([0.0, 0.0, 0.0, 2.0, 0.0]), span) == ([], "YES")
    assert answer_type.nq_short_answer(p([0.0, 0.0, 0.0, 0.0, 2.0]), span) == ([], "NO")
    # ask: the window most likely to hold an answer decides, over all five types
    windows = p([[5.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0, 0.0]])
    assert answer_type.example_type(windows)[0] == "yes"
    assert [answer_type.spoken_answer(kind, "Swiss Alps") for kind in answer_type.TYPES] == [
        "", "Swiss Alps", "Swiss Alps", "yes", "no"]
    # predict_nq's entry: the candidate's window least likely "none" decides; scores stay
    entry = {"example_id": 1, "long_answer": {"start_token": 0}, "long_answer_score": 6.0, "short_answers": [span],
             "short_answers_score": 6.0, "yes_no_answer": "NONE"}
    no_window = p([[0.0, 0.0, 0.0, 0.0, 3.0], [0.0, 9.0, 0.0, 0.0, 0.0]])  # 2nd window: "none" least likely
    assert answer_type.nq_prediction_with_type(entry, no_window) == {**entry}  # short wins there: unchanged
    assert answer_type.nq_prediction_with_type(entry, no_window[:1]) == {**entry, "short_answers": [],
                                                                        "yes_no_answer": "NO"}
    assert entry["short_answers"] == [span]  # not changed in place


# ---------------------------------------------------------------------------------------------
# Through run_squad.py: the flag, resume with the head, and a tiny training that learns the types
# ---------------------------------------------------------------------------------------------
ANIMALS = ["fox", "owl", "bear", "wolf", "deer", "hare", "crow", "seal", "lynx", "mole", "frog", "swan"]
PLACES = ["the forest", "the river", "the hills", "the city", "the marsh", "the coast", "the valley"]
FOODS = ["fish", "berries", "grass", "seeds", "insects", "roots"]


def candidate_style_file(path, first, count):
    """Candidate-mode-like SQuAD JSON: short contexts (one window each) and a question of each type per context,
    the type told by the question's first word (short: where, yes: does, no: was, long: what, none: who)."""
    paragraphs = []
    for n in range(first, first + count):
        animal, place, food = ANIMALS[n % len(ANIMALS)], PLACES[n % len(PLACES)], FOODS[n % len(FOODS)]
        context = f"The {animal} lives in {place}. It eats {food} every day."
        whole = {"text": context, "answer_start": 0}
        paragraphs.append({"context": context, "qas": [
            {"id": f"{n}-short", "question": f"where does the {animal} live?", "answer_type": "short",
             "answers": [{"text": place, "answer_start": context.index(place)}], "is_impossible": False},
            {"id": f"{n}-yes", "question": f"does the {animal} eat {food}?", "answer_type": "yes",
             "answers": [whole], "is_impossible": False},
            {"id": f"{n}-no", "question": f"was the {animal} born in {place}?", "answer_type": "no",
             "answers": [whole], "is_impossible": False},
            {"id": f"{n}-long", "question": f"what is known about the {animal}?", "answer_type": "long",
             "answers": [whole], "is_impossible": False},
            {"id": f"{n}-none", "question": f"who painted the {animal}?", "answer_type": "none", "answers": [],
             "is_impossible": True}]})
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "animals", "paragraphs": paragraphs}]}))
    return path


def run_squad(argv, **extra_env):
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", **extra_env}
    return subprocess.run([sys.executable, str(ROOT / "run_squad.py"), *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def train_argv(model_dir, train_file, output_dir, cache_dir, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), "--do_train", "--train_file",
            str(train_file), "--version_2_with_negative", "--max_seq_length", "64", "--doc_stride", "32",
            "--max_query_length", "24", "--features_cache_dir", str(cache_dir), "--report_to", "none", "--seed", "7",
            *extra]


def type_accuracy(model, data_file, tokenizer):
    """Share of windows whose most probable type is their label."""
    examples = read_squad(data_file)
    features = F.build_features(examples, tokenizer, F.FeatureParams(64, 32, 24), training=True)
    batch = {k: torch.as_tensor(v) for k, v in features.batch(np.arange(len(features))).items()}
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).answer_type_logits
    return float((logits.argmax(-1) == batch["answer_types"]).float().mean())


def test_training_on_candidate_style_data_learns_the_types(tiny_model_dir, tokenizer, tmp_path):
    train = candidate_style_file(tmp_path / "train.json", 0, 24)
    held_out = candidate_style_file(tmp_path / "dev.json", 100, 8)  # other animal/place/food combinations
    done = run_squad(train_argv(tiny_model_dir, train, tmp_path / "run", tmp_path / "cache", "--num_train_epochs", "20",
                                "--per_gpu_train_batch_size", "8", "--learning_rate", "2e-3", "--save_steps", "0",
                                "--logging_steps", "10"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "run" / "args.json").read_text())["answer_type_head"] is True  # on by default
    assert "answer-type head: on (the training data carries answer types)" in (tmp_path / "run" / "train.log").read_text()
    trained = H.load_qa_model(tmp_path / "run")
    torch.manual_seed(7)
    untrained = H.attach(H.load_qa_model(tiny_model_dir), tiny_model_dir, want=True)
    before, after = type_accuracy(untrained, held_out, tokenizer), type_accuracy(trained, held_out, tokenizer)
    # five balanced classes: chance is 0.2
    print(f"type accuracy on held-out questions: {before:.3f} before training, {after:.3f} after")
    assert after >= 0.5 and after > before + 0.25, (before, after)


@pytest.mark.slow
def test_resume_with_the_head_is_bit_identical(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from qa import checkpoints, run_dir

    train = candidate_style_file(tmp_path / "train.json", 0, 6)  # 30 windows: 15 micro-batches of 2 an epoch
    common = ["--per_gpu_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--num_train_epochs", "2",
              "--save_steps", "4", "--logging_steps", "3", "--learning_rate", "1e-3", "--warmup_steps", "2"]
    cache = tmp_path / "cache"
    whole = run_squad(train_argv(tiny_model_dir, train, tmp_path / "a", cache, *common))
    assert whole.returncode == 0, whole.stdout + whole.stderr
    # micro-batch 20 = the 5th of epoch 2: after checkpoint-8 (16 micro-batches), before step 12
    killed = run_squad(train_argv(tiny_model_dir, train, tmp_path / "b", cache, *common),
                       QA_TEST_KILL_AT_MICRO_STEP="20")
    assert killed.returncode < 0, killed.stdout + killed.stderr
    checkpoint = tmp_path / "b" / "checkpoint-8"
    assert (checkpoint / H.HEAD_WEIGHTS).exists() and run_dir.is_complete(checkpoint)
    # the head is in the checkpoint's hash record: a changed byte is refused before anything is loaded
    marker = json.loads((checkpoint / run_dir.COMPLETE).read_text())
    assert set(H.HEAD_FILES) <= set(marker["files"])
    resumed = run_squad(train_argv(tiny_model_dir, train, tmp_path / "b", cache, *common,
                                   "--resume_from_checkpoint", "auto"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    for name in ("model.safetensors", H.HEAD_WEIGHTS):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    initial = H.attach(H.load_qa_model(tiny_model_dir), None, want=True)  # the run did move the head
    trained = load_file(tmp_path / "a" / H.HEAD_WEIGHTS)
    assert trained["weight"].shape == initial.answer_type_head.weight.shape
    assert not torch.equal(trained["bias"], torch.zeros_like(trained["bias"]))
    # a resume that would drop the head is refused in one line, naming the checkpoint
    data = bytearray((checkpoint / H.HEAD_WEIGHTS).read_bytes())
    refused = run_squad(train_argv(tiny_model_dir, train, tmp_path / "b", cache, *common, "--resume_from_checkpoint",
                                   "checkpoint-8", "--no_answer_type_head", "--continue_finished"))
    assert refused.returncode == 2 and "trained with the answer-type head" in refused.stderr, refused.stderr
    data[-1] ^= 1
    (checkpoint / H.HEAD_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=H.HEAD_WEIGHTS):
        checkpoints.verify_checkpoint(checkpoint)


@pytest.mark.slow
def test_untyped_squad_data_trains_without_the_head_unless_asked(tiny_model_dir, tmp_path):
    path = squad_file(tmp_path / "squad.json", [qa("s", "Swiss Alps"), qa("i")])  # SQuAD 2.0: no answer_type keys
    common = ["--max_steps", "1", "--per_gpu_train_batch_size", "2", "--save_steps", "0"]
    plain = run_squad(train_argv(tiny_model_dir, path, tmp_path / "plain", tmp_path / "cache", *common))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert not (tmp_path / "plain" / H.HEAD_WEIGHTS).exists()
    assert json.loads((tmp_path / "plain" / "args.json").read_text())["answer_type_head"] is False
    asked = run_squad(train_argv(tiny_model_dir, path, tmp_path / "asked", tmp_path / "cache", *common,
                                 "--answer_type_head"))
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert H.has_head(tmp_path / "asked") and isinstance(H.load_qa_model(tmp_path / "asked"), H.AnswerTypeQA)
    typed = candidate_style_file(tmp_path / "typed.json", 0, 2)
    off = run_squad(train_argv(tiny_model_dir, typed, tmp_path / "off", tmp_path / "cache", *common,
                               "--no_answer_type_head"))
    assert off.returncode == 0, off.stdout + off.stderr
    assert not H.has_head(tmp_path / "off")


def test_predict_logits_returns_the_type_logits_of_every_window(tokenizer, one_thread):
    from transformers import AutoModelForQuestionAnswering

    from qa.inference import predict_logits
    from qa.runtime import Runtime

    torch.manual_seed(0)
    config = tiny_config("albert")
    config.vocab_size = len(tokenizer)
    model = H.AnswerTypeQA(AutoModelForQuestionAnswering.from_config(config)).eval()
    examples = [SquadExample(f"q{i}", "t", question, CONTEXT, (), True)
                for i, question in enumerate(["where does the rhine rise?", "is the rhine long?"])]
    features = F.build_features(examples, tokenizer, F.FeatureParams(48, 16, 12), training=False)
    runtime = Runtime(device=torch.device("cpu"))
    starts, ends, types = predict_logits(model, features, 3, runtime, with_types=True)
    assert types.shape == (len(features), len(answer_type.TYPES)) and len(features) > 3
    batch = {k: torch.as_tensor(v) for k, v in features.batch(np.arange(len(features)), pad_to_max_length=True).items()}
    with torch.no_grad():
        direct = model(**batch)
    assert np.allclose(types, direct.answer_type_logits.numpy(), atol=1e-5)  # feature order, every window
    assert np.allclose(starts, direct.start_logits.numpy(), atol=1e-5)
    assert len(predict_logits(model, features, 3, runtime)) == 2  # callers that do not ask are unchanged
    assert predict_logits(model.qa_model, features, 3, runtime, with_types=True)[2] is None  # no head: None


# ---------------------------------------------------------------------------------------------
# predict_nq: yes_no_answer and the short answer from the head
# ---------------------------------------------------------------------------------------------
def planted_model(tiny_model_dir, folder, bias=None):
    """The tiny model as a final model folder (predict_nq reads qa_config.json), with a head whose type logits are
    `bias` for every window (weight 0), or no head."""
    import shutil

    shutil.copytree(tiny_model_dir, folder)
    (folder / "qa_config.json").write_text(json.dumps({
        "max_seq_length": 128, "doc_stride": 64, "max_query_length": 32, "max_answer_length": 30, "n_best_size": 20,
        "version_2_with_negative": True, "null_score_diff_threshold": 0.0}))
    if bias is not None:
        model = H.attach(H.load_qa_model(tiny_model_dir), None, want=True)
        with torch.no_grad():
            model.answer_type_head.weight.zero_()
            model.answer_type_head.bias.copy_(torch.tensor(bias))
        model.save_pretrained(folder)
    return folder


def test_predict_nq_answers_yes_no_and_long_alone_from_the_head(tiny_model_dir, tmp_path, capsys, one_thread):
    import runpy

    from conftest import ROOT, shared_file

    records = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    main = runpy.run_path(str(ROOT / "scripts" / "predict_nq.py"))["main"]

    def predictions(name, bias):
        model = planted_model(tiny_model_dir, tmp_path / name, bias)
        out = tmp_path / f"{name}.json"
        assert main(["--model_dir", str(model), "--input", str(records), "--output", str(out), "--max_examples", "3",
                     "--no-eval", "--rank", "margin"]) == 0, capsys.readouterr().err
        return json.loads(out.read_text())["predictions"]

    plain = predictions("plain", None)
    answered = [p for p in plain if p["long_answer"]["start_token"] >= 0]
    assert answered and all(p["short_answers"] and p["yes_no_answer"] == "NONE" for p in answered)
    for name, bias, short, yes_no in [("yes", [0, 0, 0, 9, 0], False, "YES"), ("no", [9, 0, 0, 1, 5], False, "NO"),
                                      ("long", [0, 1, 5, 0, 0], False, "NONE"), ("short", [9, 5, 0, 0, 0], True, "NONE")]:
        typed = predictions(name, bias)
        # the long answers and the scores are the span's, as without the head (the same encoder weights)
        assert [(p["long_answer"], p["long_answer_score"]) for p in typed] == [
            (p["long_answer"], p["long_answer_score"]) for p in plain], name
        for with_head, without in zip(typed, plain):
            if without["long_answer"]["start_token"] < 0:
                assert with_head == without
                continue
            assert with_head["yes_no_answer"] == yes_no, name
            assert with_head["short_answers"] == (without["short_answers"] if short else []), name


def test_the_flag_in_evaluation_alone_is_said_to_do_nothing():
    from qa.args import parse_args, unused_flag_notes

    common = ["--model_name_or_path", "x", "--do_eval", "--predict_file", "dev.json", "--output_dir", "out"]
    assert parse_args(common + ["--answer_type_head"]).answer_type_head is True
    assert parse_args(common).answer_type_head is None
    notes = unused_flag_notes(parse_args(common + ["--no_answer_type_head"]))
    assert any("apply to training" in note for note in notes)
    assert not any("answer_type_head" in note for note in unused_flag_notes(parse_args(common)))
