"""qa.squad_io: both formats on the real SQuAD 2.0 subsets, validation errors, skip counts, writing."""

import gzip
import json

import pytest

from conftest import shared_file
from qa.squad_io import Answer, SquadExample, SquadFormatError, read_squad, to_squad_json, write_squad

RHINE = ("squad", "squad2-dev-normans-rhine.json")
COMPLEXITY = ("squad", "squad2-dev-normans-complexity.json")


def _write_json(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _nested(qas, context="The Normans gave their name to Normandy.", title="Normans"):
    return {"version": "v2.0", "data": [{"title": title, "paragraphs": [{"context": context, "qas": qas}]}]}


def _good_qa(qid="q1", text="Normandy", start=31):
    return {"id": qid, "question": "What region?", "answers": [{"text": text, "answer_start": start}], "is_impossible": False}


# ---------------------------------------------------------------------------------------------
# Real files
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parts, total, answerable, unanswerable", [(RHINE, 706, 386, 320), (COMPLEXITY, 626, 293, 333)])
def test_reads_real_nested_files(parts, total, answerable, unanswerable):
    path = shared_file(*parts)
    stats = {}
    examples = read_squad(path, stats=stats)
    assert len(examples) == total
    assert sum(ex.has_answer for ex in examples) == answerable
    assert sum(ex.is_impossible for ex in examples) == unanswerable
    assert stats == {
        "format": "squad-json", "questions": total, "examples": total, "answerable": answerable,
        "unanswerable": unanswerable, "skipped": 0, "missing_field": 0, "bad_answer": 0,
    }
    raw = json.loads(path.read_text(encoding="utf-8"))
    ordered = [(qa["id"], qa["question"], p["context"]) for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert [(ex.qas_id, ex.question, ex.context) for ex in examples] == ordered
    for ex in examples:
        for answer in ex.answers:
            assert ex.context[answer.start : answer.start + len(answer.text)] == answer.text
        assert ex.is_impossible == (not ex.answers)


def test_contexts_are_shared_objects():
    path = shared_file(*RHINE)
    examples = read_squad(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    distinct_contexts = {p["context"] for a in raw["data"] for p in a["paragraphs"]}
    assert len(distinct_contexts) < len(examples)  # many questions per paragraph
    assert len({id(ex.context) for ex in examples}) == len(distinct_contexts)


def test_jsonl_both_answer_layouts_read_like_nested(tmp_path):
    examples = read_squad(shared_file(*RHINE))
    listed = [
        {"id": ex.qas_id, "title": ex.title, "context": ex.context, "question": ex.question,
         "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers], "is_impossible": ex.is_impossible}
        for ex in examples
    ]
    hf_style = [  # HuggingFace datasets' squad_v2 layout: no is_impossible, answers as lists
        {"id": ex.qas_id, "title": ex.title, "context": ex.context, "question": ex.question,
         "answers": {"text": [a.text for a in ex.answers], "answer_start": [a.start for a in ex.answers]}}
        for ex in examples
    ]
    for name, records in (("listed.jsonl", listed), ("hf.jsonl", hf_style)):
        stats = {}
        got = read_squad(_write_jsonl(tmp_path / name, records), stats=stats)
        assert got == examples
        assert stats["format"] == "jsonl" and stats["answerable"] == 386 and stats["unanswerable"] == 320
        assert len({id(ex.context) for ex in got}) == len({ex.context for ex in got})


def test_gzip_input(tmp_path):
    path = tmp_path / "small.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(_nested([_good_qa()]), f)
    (example,) = read_squad(path)
    assert example == SquadExample("q1", "Normans", "What region?", "The Normans gave their name to Normandy.",
                                   (Answer("Normandy", 31),), False)


def test_squad11_integer_ids_and_defaults(tmp_path):
    qa = {"id": -6218432389456109254, "question": "What region?", "answers": [{"text": "Normandy", "answer_start": 31}]}
    doc = {"data": [{"paragraphs": [{"context": "The Normans gave their name to Normandy.", "qas": [qa]}]}]}
    (example,) = read_squad(_write_json(tmp_path / "v11.json", doc))
    assert example.qas_id == "-6218432389456109254" and example.title == "" and example.is_impossible is False


def test_answer_texts_follow_the_official_gold_rule(tmp_path):
    context = "The cat sat on the mat."
    qas = [
        {"id": "only-article", "question": "?", "answers": [{"text": "The", "answer_start": 0}], "is_impossible": False},
        {"id": "mixed", "question": "?", "answers": [{"text": "the", "answer_start": 15}, {"text": "mat", "answer_start": 19}]},
        {"id": "none", "question": "?", "answers": [], "is_impossible": True},
    ]
    from qa.metrics import gold_answers, scoring_golds

    examples = read_squad(_write_json(tmp_path / "g.json", _nested(qas, context)))
    by_id = {ex.qas_id: ex for ex in examples}
    golds = {qid: scoring_golds(texts) for qid, texts in gold_answers(examples).items()}
    assert golds["only-article"] == [""] and by_id["only-article"].has_answer
    assert golds["mixed"] == ["mat"]
    assert golds["none"] == [""] and not by_id["none"].has_answer


# ---------------------------------------------------------------------------------------------
# Bad input: the error names the file and the question
# ---------------------------------------------------------------------------------------------
BAD_QAS = {
    "missing question": ({"id": "bad1", "answers": [], "is_impossible": True}, "missing field 'question'"),
    "missing answers": ({"id": "bad1", "question": "?", "is_impossible": True}, "missing field 'answers'"),
    "answer without start": ({"id": "bad1", "question": "?", "answers": [{"text": "Normandy"}]}, "answer_start"),
    "answer_start off by one": (_good_qa("bad1", "Normandy", 30), "not at answer_start 30"),
    "answer_start past the end": (_good_qa("bad1", "Normandy", 400), "outside the context"),
    "answer_start not a number": (_good_qa("bad1", "Normandy", "31"), "should be an integer"),
    "impossible with answers": (dict(_good_qa("bad1"), is_impossible=True), "is_impossible is true"),
}


@pytest.mark.parametrize("case", sorted(BAD_QAS))
def test_bad_question_error_names_file_place_and_id(tmp_path, case):
    qa, expected = BAD_QAS[case]
    path = _write_json(tmp_path / "bad.json", _nested([_good_qa("ok0"), qa]))
    with pytest.raises(SquadFormatError) as err:
        read_squad(path)
    message = str(err.value)
    assert str(path) in message and "'bad1'" in message and "data[0].paragraphs[0].qas[1]" in message
    assert expected in message and "skip_bad=True" in message


def test_missing_id_names_file_and_place(tmp_path):
    path = _write_json(tmp_path / "noid.json", _nested([_good_qa(), {"question": "?", "answers": []}]))
    with pytest.raises(SquadFormatError, match=r"noid\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: missing field 'id'"):
        read_squad(path)


def test_jsonl_errors_name_the_line(tmp_path):
    good = {"id": "a", "question": "?", "context": "Paris is in France.", "answers": [{"text": "Paris", "answer_start": 0}]}
    path = _write_jsonl(tmp_path / "x.jsonl", [good, {"id": "b", "question": "?", "answers": []}])
    with pytest.raises(SquadFormatError, match=r"x\.jsonl: line 2: question id 'b': missing field 'context'"):
        read_squad(path)
    path.write_text(json.dumps(good) + "\n" + '{"id": "c", "question": \n', encoding="utf-8")
    with pytest.raises(SquadFormatError, match=r"x\.jsonl: line 2: not valid JSON"):
        read_squad(path)
    bad_hf = dict(good, id="d", answers={"text": ["Paris", "France"], "answer_start": [0]})
    _write_jsonl(path, [good, bad_hf])
    with pytest.raises(SquadFormatError, match=r"line 2: question id 'd': answers has 2 texts but 1 answer_start"):
        read_squad(path)


def test_duplicate_id_is_an_error_even_when_skipping(tmp_path):
    path = _write_json(tmp_path / "dup.json", _nested([_good_qa("same"), _good_qa("other"), _good_qa("same")]))
    for skip_bad in (False, True):
        with pytest.raises(SquadFormatError, match=r"dup\.json: data\[0\]\.paragraphs\[0\]\.qas\[2\]: duplicate question id 'same' \(first seen at data\[0\]\.paragraphs\[0\]\.qas\[0\]\)"):
            read_squad(path, skip_bad=skip_bad)


def test_structural_errors(tmp_path):
    with pytest.raises(SquadFormatError, match=r"paragraphs\[0\] has no 'context'"):
        read_squad(_write_json(tmp_path / "a.json", {"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(SquadFormatError, match="neither SQuAD JSON"):
        read_squad(_write_json(tmp_path / "b.json", [1, 2]))
    truncated = tmp_path / "c.json"
    truncated.write_text(json.dumps(_nested([_good_qa()]), indent=1)[:-20], encoding="utf-8")
    with pytest.raises(SquadFormatError, match=r"c\.json: not valid JSON .*is the file complete"):
        read_squad(truncated)
    (tmp_path / "d.json").write_text("  \n", encoding="utf-8")
    with pytest.raises(SquadFormatError, match="empty"):
        read_squad(tmp_path / "d.json")


def test_skip_mode_counts_each_reason(tmp_path):
    qas = [_good_qa("ok1"), BAD_QAS["answer_start off by one"][0], _good_qa("ok2"),
           dict(BAD_QAS["missing question"][0], id="bad2"), dict(_good_qa("bad3", "Normans", 0))]
    path = _write_json(tmp_path / "mixed.json", _nested(qas))
    stats = {}
    examples = read_squad(path, skip_bad=True, stats=stats)
    assert [ex.qas_id for ex in examples] == ["ok1", "ok2"]
    assert stats["questions"] == 5 and stats["examples"] == 2 and stats["skipped"] == 3
    assert stats["bad_answer"] == 2 and stats["missing_field"] == 1
    # without the check, only the missing field is a problem
    assert len(read_squad(path, skip_bad=True, check_answers=False)) == 4


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def test_write_round_trips_both_formats_and_keeps_grouping(tmp_path):
    source = shared_file(*RHINE)
    examples = read_squad(source)
    for name in ("out.json", "out.jsonl"):
        write_squad(examples, tmp_path / name)
        assert read_squad(tmp_path / name) == examples
    raw = json.loads(source.read_text(encoding="utf-8"))
    written = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert written == to_squad_json(examples)
    assert [len(a["paragraphs"]) for a in written["data"]] == [len(a["paragraphs"]) for a in raw["data"]]
    assert [a["title"] for a in written["data"]] == [a["title"] for a in raw["data"]]
    assert not list(tmp_path.glob("*.tmp-*"))


def test_format_detection_layouts(tmp_path):
    """One-line, indented and padded nested files, and JSON Lines with blank lines and CRLF."""
    nested = _nested([_good_qa()])
    path = tmp_path / "x.json"
    for text in (json.dumps(nested), "\n  " + json.dumps(nested) + " \n\n", "\ufeff" + json.dumps(nested, indent=2)):
        path.write_text(text, encoding="utf-8")
        stats = {}
        assert [ex.qas_id for ex in read_squad(path, stats=stats)] == ["q1"] and stats["format"] == "squad-json"
    path.write_text(json.dumps(nested) + "\n" + json.dumps(nested) + "\n", encoding="utf-8")  # two documents
    with pytest.raises(SquadFormatError, match=r"x\.json: not valid JSON"):
        read_squad(path)
    record = {"id": "a", "question": "?", "context": "Paris is in France.", "answers": [{"text": "Paris", "answer_start": 0}]}
    path.write_bytes(("\r\n" + json.dumps(record) + "\r\n\r\n" + json.dumps(dict(record, id="b")) + "\r\n").encode())
    stats = {}
    assert [ex.qas_id for ex in read_squad(path, stats=stats)] == ["a", "b"] and stats["format"] == "jsonl"
    path.write_bytes(("\n" + json.dumps(record) + "\n\n" + json.dumps(dict(record, id="a"))).encode())
    with pytest.raises(SquadFormatError, match=r"line 4: duplicate question id 'a' \(first seen at line 2\)"):
        read_squad(path)


# ---------------------------------------------------------------------------------------------
# Size limits (issue 18, item 8): a file or line beyond a sane limit is refused, the limit named
# ---------------------------------------------------------------------------------------------
def _traced_peak(function):
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(SquadFormatError) as exc:
            function()
        return str(exc.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_refused_after_the_limit_not_read_whole(tmp_path, monkeypatch):
    """One 40 MB line in a 40 kB gzip file, a 4 MiB limit: refused naming the limit, in about the limit's memory."""
    from qa import storage

    path = tmp_path / "bomb.json.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"data": "' + b"A" * (40 << 20) + b'"}\n')
    assert path.stat().st_size < 100_000
    monkeypatch.setenv("QA_MAX_INPUT_GB", str(4 / 1024))
    monkeypatch.setattr(storage, "READ_BLOCK", 1 << 20)
    message, peak = _traced_peak(lambda: read_squad(path))
    assert message == (f"{path}: more than 4 MiB once decompressed (the limit of QA_MAX_INPUT_GB=0.00390625; "
                       "QA_MAX_INPUT_GB=N raises it to N GiB): is it the right file (not a damaged or hostile one)?")
    assert peak < 12 << 20, peak  # the whole line would be 40 MB, twice over


def test_the_default_limit_is_named_and_an_unreadable_override_refused(tmp_path, monkeypatch):
    from qa import squad_io

    path = _write_json(tmp_path / "d.json", _nested([_good_qa()]))
    monkeypatch.setattr(squad_io, "MAX_INPUT_BYTES", 100)
    with pytest.raises(SquadFormatError, match=r"more than 100 bytes \(the limit of a data file read whole, "
                                               r"MAX_INPUT_BYTES in qa/squad_io.py; QA_MAX_INPUT_GB=N raises it"):
        read_squad(path)
    monkeypatch.setenv("QA_MAX_INPUT_GB", "1")
    assert len(read_squad(path)) == 1
    for value in ("lots", "inf", "nan", "-1", "0", "1e300"):  # review #12: inf was an OverflowError traceback
        monkeypatch.setenv("QA_MAX_INPUT_GB", value)
        with pytest.raises(SquadFormatError, match=f"QA_MAX_INPUT_GB='{value}': expected a positive, finite number "
                                                   "of GiB, e.g. 8"):
            read_squad(path)


def test_a_sparse_file_is_refused_at_its_first_block(tmp_path):
    """A 200 MB sparse file (zeros, no disk space) is refused at once, not read whole and then found not JSON."""
    path = tmp_path / "train.json"
    with open(path, "wb") as f:
        f.truncate(200 << 20)
    message, peak = _traced_peak(lambda: read_squad(path))
    assert message.startswith(f"{path}: byte 0 is a NUL (0x00): not UTF-8 JSON text (a sparse or zero-filled file")
    assert peak < 40 << 20, peak


def test_a_json_lines_record_beyond_the_line_limit_is_refused(tmp_path, monkeypatch):
    from qa import squad_io

    record = {"id": "q2", "question": "What region?", "context": "Normandy " * 200, "answers": []}
    path = _write_jsonl(tmp_path / "d.jsonl", [{"id": "q1", "question": "?", "context": "c", "answers": []}, record])
    monkeypatch.setattr(squad_io, "MAX_LINE_BYTES", 1 << 10)
    with pytest.raises(SquadFormatError) as exc:
        read_squad(path, questions_only=True)
    assert str(exc.value) == (f"{path}: line 2: longer than 1 KiB (the limit for one question and its context, "
                              "MAX_LINE_BYTES in qa/squad_io.py): not a SQuAD record")
