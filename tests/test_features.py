"""qa.features: windows, labels and max-context flags held against the legacy definition, and the cache."""

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from conftest import ROOT, shared_file
from qa import features as F
from qa.squad_io import Answer, SquadExample, read_squad, write_squad

SMALL = F.FeatureParams(max_seq_length=64, doc_stride=16, max_query_length=16)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def rhine():
    path = shared_file("squad", "squad2-dev-normans-rhine.json")
    return path, read_squad(path)


def example(question, context, answer=None, answer_start=None, qas_id="q"):
    answers = () if answer is None else (Answer(answer, context.index(answer) if answer_start is None else answer_start),)
    return SquadExample(qas_id, "t", question, context, answers, answer is None)


# ---------------------------------------------------------------------------------------------
# The legacy converter, per example and per whitespace word (google-research/bert run_squad.py,
# HuggingFace squad_convert_example_to_features): slow, simple, the reference.
# ---------------------------------------------------------------------------------------------
def _is_whitespace(c):
    return c in " \t\r\n" or ord(c) == 0x202F


def legacy_words(context):
    words, char_to_word, previous_is_whitespace = [], [], True
    for c in context:
        if _is_whitespace(c):
            previous_is_whitespace = True
        else:
            if previous_is_whitespace:
                words.append(c)
            else:
                words[-1] += c
            previous_is_whitespace = False
        char_to_word.append(len(words) - 1)
    return words, char_to_word


def legacy_is_max_context(doc_spans, cur_span_index, position):
    best_score, best_span_index = None, None
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_span_index = score, span_index
    return cur_span_index == best_span_index


# Exempt from C901 (complexity 13 > 12): a copy of the legacy converter's one loop, kept whole on purpose.
def legacy_features(ex, tokenizer, params, training, word_cache):  # noqa: C901
    """List of (input_ids, start, end, max_context flags over the context part) for one example."""
    if ex.context not in word_cache:
        words, char_to_word = legacy_words(ex.context)
        orig_to_tok, all_doc_tokens = [], []
        for word in words:
            orig_to_tok.append(len(all_doc_tokens))
            all_doc_tokens.extend(tokenizer.tokenize(word))
        word_cache[ex.context] = (words, char_to_word, orig_to_tok, all_doc_tokens)
    words, char_to_word, orig_to_tok, all_doc_tokens = word_cache[ex.context]
    query = tokenizer.encode(ex.question, add_special_tokens=False)[: params.max_query_length]

    tok_start = tok_end = None
    if training and not ex.is_impossible:
        answer = ex.answers[0]
        start_word = char_to_word[answer.start]
        end_word = char_to_word[answer.start + len(answer.text) - 1]
        tok_start = orig_to_tok[start_word]
        tok_end = orig_to_tok[end_word + 1] - 1 if end_word < len(words) - 1 else len(all_doc_tokens) - 1
        # _improve_answer_span: the tightest sub-token span whose tokens equal the answer's tokens.
        wanted = " ".join(tokenizer.tokenize(answer.text))
        found = False
        for new_start in range(tok_start, tok_end + 1):
            for new_end in range(tok_end, new_start - 1, -1):
                if " ".join(all_doc_tokens[new_start:new_end + 1]) == wanted:
                    tok_start, tok_end, found = new_start, new_end, True
                    break
            if found:
                break

    max_tokens_for_doc = params.max_seq_length - len(query) - 3
    doc_spans, start_offset = [], 0
    while start_offset < len(all_doc_tokens):
        length = min(len(all_doc_tokens) - start_offset, max_tokens_for_doc)
        doc_spans.append((start_offset, length))
        if start_offset + length == len(all_doc_tokens):
            break
        start_offset += min(length, params.doc_stride)

    out = []
    for span_index, (doc_start, length) in enumerate(doc_spans):
        doc_tokens = all_doc_tokens[doc_start:doc_start + length]
        ids = [tokenizer.cls_token_id, *query, tokenizer.sep_token_id]
        ids += tokenizer.convert_tokens_to_ids(doc_tokens) + [tokenizer.sep_token_id]
        flags = [legacy_is_max_context(doc_spans, span_index, doc_start + i) for i in range(length)]
        start = end = None
        if training:
            doc_offset = len(query) + 2
            if ex.is_impossible or not (doc_start <= tok_start and tok_end <= doc_start + length - 1):
                start = end = 0
            else:
                start, end = tok_start - doc_start + doc_offset, tok_end - doc_start + doc_offset
        out.append((ids, start, end, flags))
    return out


# ---------------------------------------------------------------------------------------------
# Windows and labels
# ---------------------------------------------------------------------------------------------
def test_window_spans_hand_worked():
    # 100 context tokens, max_seq_length 32, a 5-token question, 3 specials: 24 context tokens a window.
    # Starts step by doc_stride 10 until a window reaches token 100: 80 + 20 = 100 stops it.
    spans = F.window_spans(100, 32 - 5 - 3, 10)
    assert spans == [(0, 24), (10, 24), (20, 24), (30, 24), (40, 24), (50, 24), (60, 24), (70, 24), (80, 20)]
    # doc_stride larger than a window: the step is cut to the window length, no token is skipped.
    assert F.window_spans(10, 4, 7) == [(0, 4), (4, 4), (8, 2)]
    assert F.window_spans(5, 24, 10) == [(0, 5)]
    assert F.window_spans(0, 24, 10) == [(0, 0)]  # an empty context still gets its (empty) window


def test_max_context_hand_worked():
    spans = F.window_spans(100, 24, 10)
    flags = F.max_context_flags(spans, 100)
    # token 12: window 0 (left 12, right 11 -> 11.24) beats window 10 (left 2 -> 2.24)
    assert flags[0][12] and not flags[1][12 - 10]
    # token 17: window 0 (right 6 -> 6.24) loses to window 10 (left 7, right 16 -> 7.24)
    assert not flags[0][17] and flags[1][17 - 10]
    # token 85: window 70 (left 15, right 8 -> 8.24) beats the short last window 80 (left 5 -> 5.20)
    assert flags[7][85 - 70] and not flags[8][85 - 80]
    # every token is max-context in exactly one window
    counts = np.zeros(100, dtype=int)
    for (start, length), flag in zip(spans, flags):
        counts[start:start + length] += flag
    assert counts.tolist() == [1] * 100


def test_windows_of_a_long_context_hand_worked(tokenizer):
    question = "who was the norman king"
    assert len(tokenizer.tokenize(question)) == 5  # precondition of the hand-worked numbers
    words = ["the", "normans", "river", "rhine"]
    context = " ".join(words[i % 4] for i in range(100))
    assert len(tokenizer.tokenize(context)) == 100
    answer_start = len(" ".join(words[i % 4] for i in range(91))) + 1  # word 91 is a 'rhine'
    ex = example(question, context, answer="rhine", answer_start=answer_start)
    feats = F.build_features([ex], tokenizer, F.FeatureParams(32, 10, 20), training=True)
    assert len(feats) == 9
    window_starts = [context[: feats.offsets[i, 7, 0]].count(" ") for i in range(len(feats))]  # first context token at 1+5+1
    assert window_starts == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert feats.lengths.tolist() == [32] * 8 + [7 + 20 + 1]
    assert (feats.offsets[:, :7] == -1).all() and (feats.token_type_ids[:, :7] == 0).all()
    assert (feats.token_type_ids[0, 7:32] == 1).all()
    # the answer, word 91, is inside windows 70 (70..93) and 80 (80..99) only
    labelled = [i for i in range(9) if feats.start_positions[i] != feats.cls_index[i]]
    assert labelled == [7, 8]
    assert feats.start_positions[7] == 7 + 91 - 70 and feats.start_positions[8] == 7 + 91 - 80
    assert (feats.start_positions == feats.end_positions).all()


def test_max_query_length_truncates_the_question(tokenizer):
    question = "who was the duke of normandy in the year of the conquest of england"
    question_ids = tokenizer.encode(question, add_special_tokens=False)
    assert len(question_ids) > 6
    ex = example(question, "the normans came from normandy in france .", answer="normandy")
    feats = F.build_features([ex], tokenizer, F.FeatureParams(24, 8, 6), training=True)
    row = feats.input_ids[0]
    assert row[0] == tokenizer.cls_token_id and row[1:7].tolist() == question_ids[:6] and row[7] == tokenizer.sep_token_id
    assert feats.offsets[0, 8, 0] == 0  # the context starts right after the truncated question
    assert row[feats.lengths[0] - 1] == tokenizer.sep_token_id
    assert (row[feats.lengths[0]:] == tokenizer.pad_token_id).all()


def test_params_that_leave_no_room_for_context_are_refused(tokenizer):
    with pytest.raises(ValueError, match="raise --max_seq_length or lower --max_query_length"):
        F.build_features([example("q", "c")], tokenizer, F.FeatureParams(64, 16, 61), training=False)


def test_agrees_with_the_legacy_converter_on_real_examples(tokenizer, rhine):
    _, examples = rhine
    feats = F.build_features(examples, tokenizer, SMALL, training=True, chunk_examples=300)
    cache = {}
    legacy = [legacy_features(ex, tokenizer, SMALL, True, cache) for ex in examples]
    assert len(feats) == sum(len(windows) for windows in legacy) > 2 * len(examples)  # many multi-window examples
    row = 0
    for index, windows in enumerate(legacy):
        for ids, start, end, flags in windows:
            where = f"example {examples[index].qas_id} window row {row}"
            assert feats.example_index[row] == index, where
            assert feats.input_ids[row, : feats.lengths[row]].tolist() == ids, where
            head = feats.lengths[row] - 1 - len(flags)
            assert feats.token_is_max_context[row, head:head + len(flags)].tolist() == flags, where
            assert (feats.start_positions[row], feats.end_positions[row]) == (start, end), where
            row += 1


def test_labelled_offsets_give_back_the_answer(tokenizer, rhine):
    _, examples = rhine
    for params in (SMALL, F.FeatureParams()):
        feats = F.build_features(examples, tokenizer, params, training=True)
        labelled = np.flatnonzero(feats.start_positions != feats.cls_index)
        assert len(labelled) >= sum(not ex.is_impossible for ex in examples)  # every answer lands in a window
        for row in labelled:
            ex = examples[feats.example_index[row]]
            start_char = feats.offsets[row, feats.start_positions[row], 0]
            end_char = feats.offsets[row, feats.end_positions[row], 1]
            assert " ".join(ex.context[start_char:end_char].split()) == " ".join(ex.answers[0].text.split()), ex.qas_id
        impossible = np.array([examples[i].is_impossible for i in feats.example_index])
        assert (feats.start_positions[impossible] == feats.cls_index[impossible]).all()


def test_not_training_has_no_labels_and_threads_give_the_same_arrays(tokenizer, rhine):
    _, examples = rhine
    one = F.build_features(examples, tokenizer, SMALL, training=False, chunk_examples=100)
    two = F.build_features(examples, tokenizer, SMALL, training=False, threads=2, chunk_examples=100)
    assert one.start_positions is None and one.end_positions is None
    for field in dataclasses.fields(F.Features):
        a, b = getattr(one, field.name), getattr(two, field.name)
        assert (a is None and b is None) or np.array_equal(a, b), field.name
    assert one.input_ids.dtype == np.int32 and one.token_type_ids.dtype == np.int8
    assert one.offsets.shape == (len(one), 64, 2) and one.token_is_max_context.dtype == np.bool_


def test_batch_trims_to_the_longest_window(tokenizer):
    examples = [example("who", "the normans"), example("who", "the normans came from normandy in france")]
    feats = F.build_features(examples, tokenizer, F.FeatureParams(32, 8, 8), training=True)
    short, long = int(feats.lengths[0]), int(feats.lengths[1])
    assert short < long < 32
    batch = feats.batch([0])
    assert batch["input_ids"].shape == (1, short) and batch["attention_mask"].tolist() == [[1] * short]
    batch = feats.batch([1, 0])
    assert batch["input_ids"].shape == (2, long)
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (long - short)
    assert batch["input_ids"][1, short:].tolist() == [tokenizer.pad_token_id] * (long - short)
    assert batch["start_positions"].tolist() == [0, 0]
    assert feats.batch([0], pad_to_max_length=True)["input_ids"].shape == (1, 32)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
class Log(list):
    def __call__(self, message):
        self.append(message)

    def built(self):
        return any("building" in m for m in self)


def test_cache_is_reused_then_memory_mapped(tokenizer, rhine, tmp_path):
    path, examples = rhine
    first_log, second_log = Log(), Log()
    built = F.load_or_build_features(path, examples, tokenizer, SMALL, True, cache_dir=tmp_path, log=first_log)
    assert first_log.built()
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("features-")]
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tokenizer.name_or_path)  # a fresh object, same files
    cached = F.load_or_build_features(path, examples, reloaded, SMALL, True, cache_dir=tmp_path, log=second_log)
    assert not second_log.built() and any("using cache" in m for m in second_log)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    assert isinstance(cached.input_ids, np.memmap) and isinstance(cached.offsets, np.memmap)
    assert not cached.input_ids.flags.writeable
    in_memory = F.build_features(examples, tokenizer, SMALL, True)
    for field in dataclasses.fields(F.Features):
        assert np.array_equal(getattr(cached, field.name), getattr(in_memory, field.name)), field.name
        assert np.array_equal(getattr(built, field.name), getattr(in_memory, field.name)), field.name
    meta = json.loads((folder / "COMPLETE").read_text())
    assert meta["features"] == len(in_memory) and meta["examples"] == len(examples)
    # overwrite_cache rebuilds
    third_log = Log()
    F.load_or_build_features(path, examples, tokenizer, SMALL, True, cache_dir=tmp_path, overwrite_cache=True, log=third_log)
    assert third_log.built()


def test_cache_key_changes_with_every_input(tokenizer, tiny_model_dir, rhine, tmp_path):
    path, _ = rhine
    base = F.cache_key(path, tokenizer, SMALL, True)
    assert F.cache_key(path, tokenizer, SMALL, True) == base
    keys = {base}
    for change in ({"max_seq_length": 65}, {"doc_stride": 17}, {"max_query_length": 15}):
        keys.add(F.cache_key(path, tokenizer, dataclasses.replace(SMALL, **change), True))
    keys.add(F.cache_key(path, tokenizer, SMALL, False))
    # the data file's content: one character of a question changed, same size, same name
    changed = tmp_path / "data.json"
    text = path.read_text(encoding="utf-8")
    changed.write_text(text, encoding="utf-8")
    assert F.cache_key(changed, tokenizer, SMALL, True) == base  # the content is the key, not the path
    changed.write_text(text.replace("In what country is Normandy located?", "In what country is Normandy locatex?"), encoding="utf-8")
    keys.add(F.cache_key(changed, tokenizer, SMALL, True))
    # the tokenizer's files: a copy is the same key; an edited vocabulary is not
    from transformers import AutoTokenizer

    copy = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, copy)
    assert F.cache_key(path, AutoTokenizer.from_pretrained(str(copy)), SMALL, True) == base
    tokenizer_json = json.loads((copy / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    vocab["normanz"] = vocab.pop("normans")
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    keys.add(F.cache_key(path, AutoTokenizer.from_pretrained(str(copy)), SMALL, True))
    assert len(keys) == 7


def test_changed_data_is_rebuilt(tokenizer, rhine, tmp_path):
    path, examples = rhine
    data = tmp_path / "data.json"
    shutil.copy(path, data)
    log = Log()
    F.load_or_build_features(data, examples, tokenizer, SMALL, False, log=log)  # default cache dir: beside the data
    assert log.built() and (tmp_path / ".features_cache").is_dir()
    log.clear()
    F.load_or_build_features(data, examples, tokenizer, SMALL, False, log=log)
    assert not log.built()
    data.write_text(data.read_text(encoding="utf-8").replace("Normandy", "Normandx"), encoding="utf-8")
    changed_examples = read_squad(data)
    feats = F.load_or_build_features(data, changed_examples, tokenizer, SMALL, False, log=log)
    assert log.built()
    assert len(list((tmp_path / ".features_cache").glob("features-*"))) == 2
    assert np.array_equal(feats.input_ids, F.build_features(changed_examples, tokenizer, SMALL, False).input_ids)


def test_a_subset_has_its_own_cache_beside_the_full_one(tokenizer, rhine, tmp_path):
    """--max_eval_samples runs must not evict (or be served) the cache of the whole file."""
    path, examples = rhine
    subset = examples[:50]
    for chosen in (examples, subset):
        log = Log()
        F.load_or_build_features(path, chosen, tokenizer, SMALL, False, cache_dir=tmp_path, log=log)
        assert log.built()
    assert len(list(tmp_path.glob("features-*"))) == 2
    for chosen in (examples, subset):
        log = Log()
        feats = F.load_or_build_features(path, chosen, tokenizer, SMALL, False, cache_dir=tmp_path, log=log)
        assert not log.built() and feats.example_index.max() == len(chosen) - 1
    # Same count, other questions: another key, never the first 50's features.
    assert F.cache_key(path, tokenizer, SMALL, False, examples[50:100]) != F.cache_key(path, tokenizer, SMALL, False, subset)


def test_a_folder_without_complete_marker_is_never_read(tokenizer, rhine, tmp_path):
    path, examples = rhine
    final = tmp_path / f"features-{F.cache_key(path, tokenizer, SMALL, False, examples)}"
    final.mkdir()
    (final / "input_ids.bin").write_bytes(b"\0" * 100)  # half-written arrays, no COMPLETE
    log = Log()
    feats = F.load_or_build_features(path, examples, tokenizer, SMALL, False, cache_dir=tmp_path, log=log)
    assert log.built() and (final / "COMPLETE").exists()
    assert np.array_equal(feats.input_ids, F.build_features(examples, tokenizer, SMALL, False).input_ids)


def _traced_peak(build):
    """(result, peak bytes numpy and Python allocated while it ran); numpy reports to tracemalloc."""
    tracemalloc.start()
    try:
        result = build()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_cached_build_memory_does_not_grow_with_the_data(tokenizer, tmp_path):
    """Chunks go to disk and are let go: the peak of a cached build is about one chunk's arrays,
    for 300 examples as for 3,000, while the in-memory build grows with the data."""
    words = "the normans river rhine came from normandy in france".split()

    def make(n):
        contexts = [" ".join(words[(i + j) % len(words)] for j in range(120)) + f" copy {i}" for i in range(n)]
        return [example("who was the norman king", c, answer="rhine", qas_id=f"q{i}") for i, c in enumerate(contexts)]

    chunk, peaks = 100, {}
    for n in (300, 3000):
        examples = make(n)
        data = tmp_path / f"data-{n}.json"
        write_squad(examples, data)
        cached, peaks["cached", n] = _traced_peak(lambda: F.load_or_build_features(
            data, examples, tokenizer, SMALL, True, cache_dir=tmp_path / "cache", log=lambda m: None, chunk_examples=chunk))
        assert isinstance(cached.input_ids, np.memmap) and len(cached) >= 5 * n  # 120 words: several windows each
        bytes_per_window = sum(np.asarray(getattr(cached, name)[:1]).nbytes for name in F.ARRAY_SPECS)
        chunk_bytes = bytes_per_window * len(cached) * chunk / n
        in_memory, peaks["memory", n] = _traced_peak(lambda: F.build_features(examples, tokenizer, SMALL, True, chunk_examples=chunk))
        assert in_memory.input_ids.nbytes == cached.input_ids.nbytes
        del cached, in_memory
        # One chunk's arrays plus the temporaries of building it; two chunks alive at once would fail.
        assert peaks["cached", n] < 1.9 * chunk_bytes, (n, peaks["cached", n], chunk_bytes)
    assert peaks["memory", 3000] > 5 * peaks["memory", 300]  # the measurement sees growth where there is some
    assert peaks["cached", 3000] < 1.2 * peaks["cached", 300], peaks


KILL_SCRIPT = """
import sys
from transformers import AutoTokenizer
from qa import features as F
from qa.squad_io import read_squad
data, tokenizer_dir, cache_dir = sys.argv[1:]
F.load_or_build_features(data, read_squad(data), AutoTokenizer.from_pretrained(tokenizer_dir),
                         F.FeatureParams(64, 16, 16), True, cache_dir=cache_dir, chunk_examples=50)
"""


@pytest.mark.slow
def test_a_build_killed_half_way_is_never_read(tokenizer, tiny_model_dir, rhine, tmp_path):
    path, examples = rhine
    cache_dir = tmp_path / "cache"
    env = {**os.environ, F.SLEEP_ENV: "0.3", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(tiny_model_dir), str(cache_dir)], env=env)
    try:
        deadline = time.time() + 60
        written = 0
        while time.time() < deadline and written < 3 * 50 * 64 * 4:  # a few chunks of input_ids on disk
            temps = list(cache_dir.glob("features-*.tmp-*/input_ids.bin")) if cache_dir.exists() else []
            written = temps[0].stat().st_size if temps else 0
            assert process.poll() is None, "the build finished before it could be killed"
            time.sleep(0.05)
        assert written, "the build never started writing"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not list(cache_dir.glob("features-*/COMPLETE"))
    assert [p for p in cache_dir.iterdir() if ".tmp-" in p.name]  # the half-written folder is there...
    log = Log()
    feats = F.load_or_build_features(path, examples, tokenizer, SMALL, True, cache_dir=cache_dir, log=log)
    assert log.built()
    assert not [p for p in cache_dir.iterdir() if ".tmp-" in p.name]  # ...and removed by the next build
    reference = F.build_features(examples, tokenizer, SMALL, True)
    assert np.array_equal(feats.input_ids, reference.input_ids)
    assert np.array_equal(feats.start_positions, reference.start_positions)


def test_cli_prints_one_json_line(tiny_model_dir, rhine, tmp_path):
    path, examples = rhine
    argv = [str(path), "--tokenizer", str(tiny_model_dir), "--max_seq_length", "64", "--doc_stride", "16",
            "--max_query_length", "16", "--training", "--cache_dir", str(tmp_path)]
    result = subprocess.run([sys.executable, "-m", "qa.features", *argv], cwd=ROOT, capture_output=True, text=True, check=True)
    line = json.loads(result.stdout.strip())
    assert line["examples"] == len(examples) and line["features"] > len(examples)
    assert line["peak_memory_mb"] > 0 and line["seconds"] > 0
    assert "building" in result.stderr
    folder = pathlib.Path(line["cache"])  # the docstring promises the cache folder in the line
    assert folder.parent == tmp_path and (folder / "COMPLETE").is_file()
    with pytest.raises(SystemExit):
        F.parse_args([str(tmp_path / "missing.json"), "--tokenizer", "x"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": [
        {"id": "x1", "question": "q", "answers": [{"text": "zz", "answer_start": 0}]}]}]}]}))
    with pytest.raises(SystemExit, match=r"bad\.json: .*question id 'x1': answer 0 'zz' is not at answer_start 0"):
        F.main([str(bad), "--tokenizer", str(tiny_model_dir), "--cache_dir", str(tmp_path)])


def test_a_tokenizer_saved_into_a_checkpoint_keeps_the_cache_key(tokenizer, rhine, tmp_path):
    """A resume loads the tokenizer its checkpoint saved (other metadata in tokenizer_config.json): the features
    are the same, so the cache (~20 minutes to build on the guide's NQ subset) must be found again."""
    from transformers import AutoTokenizer

    path, _ = rhine
    tokenizer.save_pretrained(str(tmp_path / "checkpoint-9"))
    saved = AutoTokenizer.from_pretrained(str(tmp_path / "checkpoint-9"))
    assert F.cache_key(path, saved, SMALL, True) == F.cache_key(path, tokenizer, SMALL, True)


# ---------------------------------------------------------------------------------------------
# Combining marks (issue 18, item 5): a tokenizer that strips accents ends "Cafe" before U+0301
# ---------------------------------------------------------------------------------------------
CAFE = "Cafe\u0301 au lait: nai\u0308ve Cafe\u0301\u0323 food."  # decomposed é, ï, and e + two marks


def test_offsets_end_past_the_combining_marks_after_a_token(tokenizer):
    encoding = tokenizer(CAFE, add_special_tokens=False, return_offsets_mapping=True)
    raw = np.array(encoding["offset_mapping"], dtype=np.int32)
    assert [tuple(o) for o in raw if o[1] in (4, 24)] == [(3, 4), (23, 24)]  # the tokenizer stops before the marks
    extended = F.extend_over_marks(CAFE, raw)
    ends = {CAFE[a:b] for a, b in extended}
    assert "e\u0301" in ends and "e\u0301\u0323" in ends  # over one mark, and over a run of two
    assert (extended[:, 0] == raw[:, 0]).all() and (extended[1:, 0] >= extended[:-1, 1]).all()  # never into the next
    assert F.extend_over_marks("plain ascii", raw) is raw


def test_a_labelled_answer_ending_in_a_combining_mark_is_predicted_whole(tokenizer):
    """The issue's case: gold "Café" (decomposed in the context), logits exactly on the gold span -> "Café", EM 1."""
    from qa.metrics import evaluate
    from qa.postprocess import postprocess_predictions

    ex = example("What is open?", "Cafe\u0301 is open on Sundays.", answer="Cafe\u0301")
    feats = F.build_features([ex], tokenizer, SMALL, training=True)
    start = np.full((len(feats), SMALL.max_seq_length), -10.0, dtype=np.float32)
    end = start.copy()
    start[0, feats.start_positions[0]] = end[0, feats.end_positions[0]] = 5.0
    result = postprocess_predictions([ex], feats, start, end)
    assert result.predictions == {"q": "Cafe\u0301"}
    assert evaluate([ex], result.predictions)["exact"] == 100.0


def test_max_context_flags_match_the_dense_rule_in_memory_of_the_tokens():
    """The running-best pass gives the legacy flags (a dense [spans x tokens] score, as qa.features had it), in
    memory of the order of the tokens: the dense score of a 5 MB context tried to allocate 1.48 TiB (issue 18)."""
    def dense(spans, num_tokens):
        starts = np.array([s for s, _ in spans])[:, None]
        lengths = np.array([n for _, n in spans])[:, None]
        position = np.arange(num_tokens)[None, :]
        score = np.minimum(position - starts, starts + lengths - 1 - position) + 0.01 * lengths
        best = np.argmax(np.where((position >= starts) & (position < starts + lengths), score, -np.inf), axis=0)
        return [best[s:s + n] == k for k, (s, n) in enumerate(spans)]

    for num_tokens, room, stride in ((1, 5, 2), (17, 5, 2), (100, 10, 3), (100, 10, 10), (257, 64, 16)):
        spans = F.window_spans(num_tokens, room, stride)
        assert all((a == b).all() for a, b in zip(F.max_context_flags(spans, num_tokens), dense(spans, num_tokens)))
    num_tokens = 20_000  # 1,247 windows: a dense score is 200 MB of float64, and the dense rule made several
    spans = F.window_spans(num_tokens, 64, 16)
    tracemalloc.start()
    try:
        flags = F.max_context_flags(spans, num_tokens)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(int(f.sum()) for f in flags) == num_tokens  # each token has its max context in exactly one window
    assert peak < 20 * num_tokens * 8, peak  # 3.2 MB: a few arrays of the tokens' length, and the flags


def test_two_builds_of_one_cache_at_once_keep_the_first_complete_one(tokenizer, rhine, tmp_path, monkeypatch):
    """Two processes building the same cache (benchmarks/gpu_check.sh trains two runs at once on one data file): the
    other one puts its complete folder in place between this one's check and its rename. Before: OSError
    "Directory not empty" and the run died; now this one keeps the other's cache and trains on it."""
    from qa import storage

    path, examples = rhine
    real_replace = os.replace
    raced = []

    def replace(src, dst):
        if str(src).endswith(f".tmp-{os.getpid()}") and not raced:  # the other process wins the race, just now
            other = f"{dst}.tmp-other"
            shutil.copytree(src, other)
            real_replace(other, dst)
            raced.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace)
    log = Log()
    features = F.load_or_build_features(path, examples, tokenizer, SMALL, True, cache_dir=tmp_path, log=log)
    monkeypatch.undo()
    assert raced and log.built()
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("features-")]  # no temporary folder left
    assert str(folder) == raced[0] and storage.folder_problem(str(folder), F.COMPLETE) is None
    in_memory = F.build_features(examples, tokenizer, SMALL, True)
    assert np.array_equal(features.input_ids, in_memory.input_ids)
