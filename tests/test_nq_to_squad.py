"""scripts/nq_to_squad.py and qa.nq.convert: real NQ records, hand-built records with exact outputs, workers, S3, bad input."""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib

import pytest

from conftest import shared_file
from nq_records import (
    DEADPOOL_ID,
    NQ_TO_SQUAD,
    PARAGRAPH,
    RONTGEN_ID,
    annotation,
    independent_html_text,
    nq_to_squad_main,
    qas,
    record,
    run,
    span,
    write_jsonl_gz,
)
from qa.nq import convert as nq_convert
from qa.nq import document as nq_document
from qa.nq import reader as nq_reader
from qa.nq import sample as nq_sample
from servers import moto_server, s3  # noqa: F401  (fixtures)


# ---------------------------------------------------------------------------------------------
# Real records (../shared/data/nq)
# ---------------------------------------------------------------------------------------------
def test_real_full_records_default_counts_and_exact_answers(tmp_path):
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    code, data, counts = run(tmp_path, [path])
    assert code == 0
    # By inspection of the 5 annotations of each record (majority = the official gold, 2 of 5):
    # 5 records have no long answer, Ming dynasty has 1 of 5 (skipped too); Trade winds (2 long,
    # 1 short) and Fortnite (2 long, 1 short) are long-only; Nobel (5 long, 4 short) and Deadpool answerable.
    assert {k: counts[k] for k in ("records_read", "kept", "answerable", "impossible", "skipped_no_long_answer", "bad_records")} == \
        {"records_read": 10, "kept": 4, "answerable": 2, "impossible": 2, "skipped_no_long_answer": 6, "bad_records": 0}
    found = qas(data)
    assert set(found) == {"5225754983651766092", RONTGEN_ID, DEADPOOL_ID, "-7660771254611710392"}
    context, qa = found[RONTGEN_ID]
    assert qa["answers"] == [{"text": "Wilhelm Conrad Röntgen, of Germany", "answer_start": 56}]
    assert context.startswith("The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen, of Germany, who received 150,782 SEK,")
    assert qa["question"] == "who got the first nobel prize in physics"
    context, qa = found[DEADPOOL_ID]
    assert qa["answers"][0]["text"] == "May 18, 2018"
    assert context == "Deadpool 2 is scheduled to be released in the United States on May 18, 2018. A sequel, Deadpool 3, is in development."
    assert [a["title"] for a in data["data"]][:3] == ["Trade winds", "List of Nobel laureates in Physics", "Deadpool 2"]


def test_real_full_records_other_annotation_choices(tmp_path):
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    # first: Nobel's annotator 0 chose the laureates table without a short answer; Deadpool answerable.
    _, data, counts = run(tmp_path, [path], "--annotation", "first")
    assert (counts["kept"], counts["answerable"], counts["impossible"], counts["context_type <Table>"]) == (2, 1, 1, 1)
    context, qa = qas(data)[RONTGEN_ID]
    assert qa["is_impossible"] and context.startswith("Year Laureate Country Rationale 1901 Wilhelm Conrad Röntgen Germany")
    _, _, counts = run(tmp_path, [path], "--annotation", "first", "--long-answer-types", "paragraph")
    assert (counts["kept"], counts["skipped_long_answer_type"]) == (1, 1)
    # first-long: also Ming dynasty (1 of 5 gave a long answer) and Fortnite's annotator 1 short answer.
    _, data, counts = run(tmp_path, [path], "--annotation", "first-long")
    assert (counts["kept"], counts["answerable"], counts["impossible"]) == (5, 3, 2)
    assert qas(data)["-7660771254611710392"][1]["answers"][0]["text"] == "as a cross between Minecraft and Left 4 Dead"


def test_real_simplified_records(tmp_path):
    dev = shared_file("nq", "nq-dev-10.simplified.jsonl")
    code, data, counts = run(tmp_path, [dev])
    assert code == 0 and (counts["kept"], counts["answerable"], counts["impossible"]) == (4, 2, 2)
    found = qas(data)
    # The simplified format lost the HTML spacing: tokens are joined by one space.
    assert found[RONTGEN_ID][1]["answers"][0]["text"] == "Wilhelm Conrad Röntgen , of Germany"
    assert found[DEADPOOL_ID][1]["answers"][0]["text"] == "May 18 , 2018"
    assert data["data"][1]["title"] == "List of Nobel laureates in Physics"  # from document_url
    himym = shared_file("nq", "nq-train-himym.simplified.jsonl")
    wwe = shared_file("nq", "nq-train-wwe.simplified.jsonl")
    _, data, counts = run(tmp_path, [himym, wwe])
    assert (counts["records_read"], counts["kept"], counts["skipped_no_long_answer"]) == (2, 1, 1)
    (context, qa), = qas(data).values()
    assert qa["answers"] == [{"text": "Tracy McConnell", "answer_start": 0}]


def test_fast_reader_matches_json_loads_on_real_file(tmp_path, reader):
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    expected = [json.loads(line) for line in gzip.open(path)]
    lines = list(nq_reader.iter_lines(str(path)))
    assert [n for n, _ in lines] == list(range(1, 11))
    assert [json.loads(line) for _, line in lines] == expected


# ---------------------------------------------------------------------------------------------
# Hand-built records, exact outputs
# ---------------------------------------------------------------------------------------------
def test_tags_inside_answer_non_ascii_and_punctuation(tmp_path):
    def ann(tokens, cands):
        return [annotation(tokens, cands, 1, [span(tokens, ["Ada", "Brönner", ",", "of", "Veloria"])])]

    path = write_jsonl_gz(tmp_path / "a.jsonl.gz", [record(7, PARAGRAPH, "who mapped the xarn", ann)])
    code, data, counts = run(tmp_path, [path])
    assert code == 0
    assert data == {"version": "v2.0", "data": [{"title": "Test page", "paragraphs": [{
        "context": "The river Xarn is 412 km long. It was mapped in 1843 by Ada Brönner, of Veloria, and Tom Hale.",
        "qas": [{"id": "7", "question": "who mapped the xarn", "is_impossible": False,
                 "answers": [{"text": "Ada Brönner, of Veloria", "answer_start": 56}]}]}]}]}


@pytest.mark.parametrize("mode, expected", [
    ("impossible", {"answers": [], "is_impossible": True}),
    ("keep", {"answers": [], "is_impossible": True, "yes_no_answer": "YES"}),
    ("skip", None),
])
def test_yes_no_modes(tmp_path, mode, expected):
    rec = record(2**63 - 1, PARAGRAPH, "is the xarn long", lambda t, c: [annotation(t, c, 1, yes_no="YES")])
    path = write_jsonl_gz(tmp_path / "yn.jsonl.gz", [rec])
    _, data, counts = run(tmp_path, [path], "--yes-no", mode)
    if expected is None:
        assert data["data"] == [] and counts["skipped_yes_no"] == 1 and counts["kept"] == 0
        return
    (context, qa), = qas(data).values()
    assert qa == {"id": "9223372036854775807", "question": "is the xarn long", **expected}
    assert counts["impossible"] == 1 and counts[{"impossible": "yes_no_as_impossible", "keep": "yes_no_kept"}[mode]] == 1


@pytest.mark.parametrize("mode, expected", [
    ("first", {"text": "Ada Brönner", "answer_start": 56}),
    ("span", {"text": "Ada Brönner, of Veloria, and Tom Hale", "answer_start": 56}),
    ("skip", None),
])
def test_multi_span_modes(tmp_path, mode, expected):
    def ann(tokens, cands):
        return [annotation(tokens, cands, 1, [span(tokens, ["Ada", "Brönner"]), span(tokens, ["Tom", "Hale"])])]

    path = write_jsonl_gz(tmp_path / "ms.jsonl.gz", [record(-5, PARAGRAPH, "who mapped the xarn", ann)])
    _, data, counts = run(tmp_path, [path], "--multi-span", mode)
    if expected is None:
        assert data["data"] == [] and counts["skipped_multi_span"] == 1
        return
    (_, qa), = qas(data).values()
    assert qa["answers"] == [expected] and counts[f"multi_span_{mode}"] == 1


def test_table_long_answer_with_each_type_option(tmp_path):
    def ann(tokens, cands):
        return [annotation(tokens, cands, 2, [span(tokens, ["Zoë", "Müller"])])]

    path = write_jsonl_gz(tmp_path / "t.jsonl.gz", [record(11, PARAGRAPH, "who coaches xarn fc", ann)])
    _, data, counts = run(tmp_path, [path], "--long-answer-types", "all")
    (context, qa), = qas(data).values()
    assert context == "Club Coach Xarn FC Zoë Müller"  # block tags separate cells even without whitespace
    assert qa["answers"] == [{"text": "Zoë Müller", "answer_start": 19}] and counts["context_type <Table>"] == 1
    _, data, counts = run(tmp_path, [path], "--long-answer-types", "paragraph")
    assert data["data"] == [] and counts["skipped_long_answer_type"] == 1


def test_long_only_and_no_long_answer(tmp_path):
    recs = [record(1, PARAGRAPH, "q1", lambda t, c: [annotation(t, c, 1)]),
            record(2, PARAGRAPH, "q2", lambda t, c: [annotation(t, c, None)])]
    _, data, counts = run(tmp_path, [write_jsonl_gz(tmp_path / "l.jsonl.gz", recs)])
    assert list(qas(data)) == ["1"] and qas(data)["1"][1]["is_impossible"]
    assert (counts["impossible"], counts["skipped_no_long_answer"]) == (1, 1)


def test_majority_annotation_on_five_annotators(tmp_path):
    def ann(tokens, cands):
        ada, tom = span(tokens, ["Ada", "Brönner"]), span(tokens, ["Tom", "Hale"])
        return [annotation(tokens, cands, 2),  # a lone vote for the table, no short answer
                annotation(tokens, cands, 1, [tom]),
                annotation(tokens, cands, 1, [ada]),
                annotation(tokens, cands, 1, [ada]),
                annotation(tokens, cands, None)]

    path = write_jsonl_gz(tmp_path / "m.jsonl.gz", [record(3, PARAGRAPH, "who", ann)])
    _, data, _ = run(tmp_path, [path])  # majority is the default
    (context, qa), = qas(data).values()
    assert context.startswith("The river Xarn") and qa["answers"][0]["text"] == "Ada Brönner"  # 2 votes beat 1
    _, data, _ = run(tmp_path, [path], "--annotation", "first")
    (context, qa), = qas(data).values()
    assert context.startswith("Club Coach") and qa["is_impossible"]
    _, data, _ = run(tmp_path, [path], "--annotation", "first-long")
    assert qas(data)["3"][0].startswith("Club Coach")

    # Only one of five gives a short answer: below the official threshold of 2 -> long-only.
    def one_short(tokens, cands):
        return [annotation(tokens, cands, 1, [span(tokens, ["Tom", "Hale"])])] + [annotation(tokens, cands, 1)] * 4

    path = write_jsonl_gz(tmp_path / "m1.jsonl.gz", [record(4, PARAGRAPH, "who", one_short)])
    _, data, _ = run(tmp_path, [path])
    assert qas(data)["4"][1]["is_impossible"]
    _, data, _ = run(tmp_path, [path], "--annotation", "first")
    assert qas(data)["4"][1]["answers"][0]["text"] == "Tom Hale"


def test_fraction_is_deterministic_and_nested(tmp_path):
    ids = list(range(-200, 200))
    recs = [record(i * 7919 * 2**40, PARAGRAPH, "q", lambda t, c: [annotation(t, c, 1)]) for i in ids]
    path = write_jsonl_gz(tmp_path / "f.jsonl.gz", recs)
    _, tenth_a, counts = run(tmp_path, [path], "--fraction", "0.1", name="a.json")
    _, tenth_b, _ = run(tmp_path, [path], "--fraction", "0.1", name="b.json")
    _, half, _ = run(tmp_path, [path], "--fraction", "0.5", name="c.json")
    kept_tenth, kept_half = set(qas(tenth_a)), set(qas(half))
    assert tenth_a == tenth_b and kept_tenth < kept_half
    assert 20 <= len(kept_tenth) <= 65 and 150 <= len(kept_half) <= 250  # binomial(400, p) well inside
    assert counts["skipped_fraction"] + counts["kept"] == 400
    assert kept_tenth == {str(r["example_id"]) for r in recs if nq_convert.keep_by_fraction(r["example_id"], 0.1)}


# ---------------------------------------------------------------------------------------------
# Workers, max-examples, S3
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    paths = []
    for i in range(3):
        records = nq_sample.generate(40, seed=i, split="dev")
        paths.append(write_jsonl_gz(folder / f"nq-dev-0{i}.jsonl.gz", records))
    return paths


def test_workers_output_identical(tmp_path, shards):
    out1, out2 = tmp_path / "w1.json", tmp_path / "w2.json"
    options = nq_convert.Options()
    stats1 = nq_convert.convert(shards, str(out1), options, workers=1)
    stats2 = nq_convert.convert(shards, str(out2), options, workers=2)
    assert out1.read_bytes() == out2.read_bytes() and stats1 == stats2
    assert stats1["records_read"] == 120 and stats1["kept"] > 80
    qas(json.loads(out1.read_text()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w1.json", "w2.json"]  # no part files left


def test_max_examples_cuts_exactly_with_any_workers(tmp_path, shards):
    full = nq_convert.convert(shards, str(tmp_path / "all.json"), nq_convert.Options(), workers=1)
    first_file = nq_convert.convert(shards[:1], str(tmp_path / "one.json"), nq_convert.Options(), workers=1)
    limit = first_file["kept"] + 3  # crosses into the second file
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"max{workers}.json"
        stats = nq_convert.convert(shards, str(out), nq_convert.Options(max_examples=limit), workers=workers)
        outputs.append((out.read_bytes(), stats))
    assert outputs[0] == outputs[1]
    data, stats = json.loads(outputs[0][0]), outputs[0][1]
    all_ids = list(qas(json.loads((tmp_path / "all.json").read_text())))
    assert list(qas(data)) == all_ids[:limit] and stats["kept"] == limit < full["kept"]
    assert first_file["records_read"] < stats["records_read"] < full["records_read"]


def test_s3_input_streamed_from_moto(tmp_path, s3, shards):
    s3.create_bucket(Bucket="nq-data")
    for path in shards[:2]:
        with open(path, "rb") as f:
            s3.put_object(Bucket="nq-data", Key="dev/" + path.rsplit("/", 1)[1], Body=f.read())
    local = nq_convert.convert(shards[:2], str(tmp_path / "local.json"), nq_convert.Options())
    code, data, counts = run(tmp_path, ["s3://nq-data/dev/"], "--workers", "2")
    assert code == 0 and counts == local
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "local.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def _good_lines(n):
    return [json.dumps(r).encode() for r in nq_sample.generate(n, seed=5, split="train")]


def test_truncated_gzip_names_file_and_line(tmp_path, capsys, reader):
    lines = _good_lines(6)
    whole = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "nq-dev-00.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    code, data, counts = run(tmp_path, [path])
    err = capsys.readouterr().err
    assert code == 1 and data is None and counts is None
    assert re.search(r"nq-dev-00\.jsonl\.gz:\d+: truncated", err) and "--skip-bad-records" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nq-dev-00.jsonl.gz"]  # nothing left behind
    code, data, counts = run(tmp_path, [path], "--skip-bad-records")
    line = int(re.search(r"jsonl\.gz:(\d+):", capsys.readouterr().err).group(1))
    assert code == 0 and counts["bad_records"] == 1 and counts["records_read"] == line - 1 < 6
    assert len(qas(data)) == counts["kept"]


@pytest.fixture(params=["isal", "zlib"])
def reader(request, monkeypatch):
    """The two ways gzip is inflated: isal (requirements.txt), and stdlib zlib (a bare python3)."""
    if request.param == "zlib":
        monkeypatch.setattr(nq_reader, "inflate_zlib", zlib)
    else:
        pytest.importorskip("isal")
        assert nq_reader.inflate_zlib is not zlib
    return request.param


def test_truncated_gzip_every_reader(tmp_path, reader):
    whole = gzip.compress(b"\n".join(_good_lines(4)) + b"\n")
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(whole[:-30])  # the data is cut inside the last record's compressed bytes or trailer
    got = []
    with pytest.raises(nq_reader.TruncatedInput):
        for _, line in nq_reader.iter_lines(str(path)):
            got.append(json.loads(line))  # every yielded line is complete
    assert len(got) <= 4


def test_malformed_line_and_missing_field(tmp_path, capsys):
    lines = _good_lines(4)
    broken = json.loads(lines[3])
    del broken["annotations"]
    lines[1] = lines[1][:-20]
    lines[3] = json.dumps(broken).encode()
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    code, data, _ = run(tmp_path, [path])
    assert code == 1 and data is None
    assert "bad.jsonl.gz:2: malformed JSON (" in capsys.readouterr().err
    lines[1] = _good_lines(4)[1]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    code, data, _ = run(tmp_path, [path])
    assert code == 1 and data is None
    assert f"bad.jsonl.gz:4: example {broken['example_id']}: missing field 'annotations'" in capsys.readouterr().err
    code, data, counts = run(tmp_path, [path], "--skip-bad-records")
    assert code == 0 and counts["bad_records"] == 1 and counts["records_read"] == 4
    assert len(qas(data)) == counts["kept"] == 4 - 1 - counts["skipped_no_long_answer"]


def test_answer_outside_long_answer_is_an_error(tmp_path, capsys):
    def ann(tokens, cands):
        return [annotation(tokens, cands, 2, [span(tokens, ["Ada", "Brönner"])])]  # short answer not in the table

    path = write_jsonl_gz(tmp_path / "x.jsonl.gz", [record(99, PARAGRAPH, "q", ann)])
    code, data, _ = run(tmp_path, [path])
    assert code == 1 and data is None
    assert "x.jsonl.gz:1: example 99: short answer tokens" in capsys.readouterr().err


def test_argument_checks(tmp_path, capsys):
    with pytest.raises(SystemExit):
        nq_to_squad_main(["in.jsonl", "--output", str(tmp_path / "o.json"), "--fraction", "0"])
    assert "--fraction must be in (0, 1]" in capsys.readouterr().err
    assert nq_to_squad_main([str(tmp_path / "missing.jsonl.gz"), "--output", str(tmp_path / "o.json")]) == 1
    assert "missing.jsonl.gz: no such file" in capsys.readouterr().err


def test_lazy_token_parsing_equals_full_parse(tmp_path):
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    for line in gzip.open(path):
        for mode in ("majority", "first", "first-long"):
            options = nq_convert.Options(annotation=mode)
            lazy = nq_reader.parse_line(line)
            assert nq_reader.RAW_TOKENS in lazy and "document_tokens" not in lazy
            assert nq_convert.convert_record(lazy, options) == nq_convert.convert_record(json.loads(line), options)
    # A long answer whose byte offsets match no token: the whole array is parsed instead, same result.
    rec = record(5, PARAGRAPH, "q", lambda t, c: [annotation(t, c, 1, [span(t, ["Tom", "Hale"])])])
    rec["annotations"][0]["long_answer"]["start_byte"] += 1
    line = json.dumps(rec).encode()
    tokens = nq_reader.LazyTokens(nq_reader.parse_line(line)[nq_reader.RAW_TOKENS], rec["annotations"][0]["long_answer"])
    assert tokens.all == rec["document_tokens"]
    assert nq_convert.convert_record(nq_reader.parse_line(line), nq_convert.Options())[0]["paragraphs"][0]["qas"][0]["answers"] == \
        [{"text": "Tom Hale", "answer_start": 85}]


def test_multi_member_gzip_and_plain_input(tmp_path, reader):
    lines = _good_lines(3)
    path = tmp_path / "multi.jsonl.gz"
    path.write_bytes(gzip.compress(lines[0] + b"\n") + gzip.compress(b"\n".join(lines[1:]) + b"\n"))
    got = [json.loads(line) for _, line in nq_reader.iter_lines(str(path))]
    assert got == [json.loads(line) for line in lines]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"\n".join(lines))  # no final newline
    assert [n for n, _ in nq_reader.iter_lines(str(plain))] == [1, 2, 3]


def test_every_real_paragraph_matches_an_independent_html_reading():
    """All 161 <P> candidates of the 10 real records: our token-based text equals the independent
    HTML reading. Caught: tokens whose byte span holds a tag (`'</I>s`)."""
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    checked = 0
    for line in gzip.open(path):
        record = json.loads(line)
        record["_html_bytes"] = record["document_html"].encode("utf-8")
        tokens = record["document_tokens"]
        for candidate in record["long_answer_candidates"]:
            if tokens[candidate["start_token"]]["token"] != "<P>":
                continue
            words = nq_document.full_format_words(record, tokens, candidate["start_token"], candidate["end_token"])
            assert nq_document.build_text(words)[0] == independent_html_text(record, candidate)
            checked += 1
    assert checked == 161


# ---------------------------------------------------------------------------------------------
# Simplified format: HTML tokens with attributes (`<Td_colspan="4">`) are HTML, not text
# ---------------------------------------------------------------------------------------------
def test_simplified_html_tokens_with_attributes_stay_out_of_contexts(tmp_path):
    dev = shared_file("nq", "nq-dev-10.simplified.jsonl")
    _, data, counts = run(tmp_path, [dev], "--annotation", "first")
    context, qa = qas(data)[RONTGEN_ID]  # annotator 0: the laureates table, which has 7 colspan cells
    assert counts["context_type <Table>"] == 1 and qa["is_impossible"]
    assert "colspan" not in context and "<" not in context and "_colspan" not in json.dumps(data)
    assert context.startswith("Year Laureate Country Rationale 1901 Wilhelm Conrad Röntgen Germany")
    # Every candidate of every real record: the simplified text is exactly the full format's text
    # tokens (the 117 attribute tokens, `<Th colspan="2">` in the full format, flagged html_token there).
    full = {r["example_id"]: r for r in map(json.loads, gzip.open(shared_file("nq", "nq-dev-10.full.jsonl.gz")))}
    checked = 0
    for simplified in map(json.loads, open(dev, encoding="utf-8")):
        tokens = full[simplified["example_id"]]["document_tokens"]
        for index, candidate in nq_document.list_candidates(simplified, top_level_only=False):
            words = [t["token"] for t in tokens[candidate["start_token"] : candidate["end_token"]] if not t["html_token"]]
            assert nq_document.candidate_context(simplified, index).text == " ".join(words)
            checked += 1
    assert checked == 865


# ---------------------------------------------------------------------------------------------
# --all-answers: every annotator's distinct short answer inside the chosen long answer
# ---------------------------------------------------------------------------------------------
def test_all_answers_on_the_real_nobel_record(tmp_path):
    full = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    _, data, counts = run(tmp_path, [full], "--all-answers")
    found = qas(data)
    # Annotators 1-2 gave "Wilhelm Conrad Röntgen, of Germany", 3-4 "Wilhelm Conrad Röntgen" (tokens 245-248):
    # a prediction of the name alone now scores EM 1, as in the official dev set.
    assert found[RONTGEN_ID][1]["answers"] == [{"text": "Wilhelm Conrad Röntgen, of Germany", "answer_start": 56},
                                               {"text": "Wilhelm Conrad Röntgen", "answer_start": 56}]
    assert found[DEADPOOL_ID][1]["answers"] == [{"text": "May 18, 2018", "answer_start": 63}]  # 5 times the same span
    assert (counts["kept"], counts["answerable"], counts["multi_answer_questions"], counts["extra_answers"]) == (4, 2, 1, 1)
    assert found["5225754983651766092"][1]["is_impossible"]  # Trade winds: 1 of 5 short answers, below the threshold
    _, data, counts = run(tmp_path, [full])  # off by default: one answer per question
    assert qas(data)[RONTGEN_ID][1]["answers"] == [{"text": "Wilhelm Conrad Röntgen, of Germany", "answer_start": 56}]
    assert (counts["multi_answer_questions"], counts["extra_answers"]) == (0, 0)
    _, data, counts = run(tmp_path, [shared_file("nq", "nq-dev-10.simplified.jsonl")], "--all-answers")
    assert qas(data)[RONTGEN_ID][1]["answers"] == [{"text": "Wilhelm Conrad Röntgen , of Germany", "answer_start": 56},
                                                   {"text": "Wilhelm Conrad Röntgen", "answer_start": 56}]
    assert counts["extra_answers"] == 1


@pytest.mark.parametrize("multi_span, expected", [
    ("first", ["Ada Brönner", "Tom Hale", "Ada Brönner, of Veloria"]),
    ("span", ["Ada Brönner", "Tom Hale", "Ada Brönner, of Veloria, and Tom Hale", "Ada Brönner, of Veloria"]),
    ("skip", ["Ada Brönner", "Tom Hale", "Ada Brönner, of Veloria"]),
])
def test_all_answers_hand_built_five_annotators(tmp_path, multi_span, expected):
    def ann(tokens, cands):
        ada, tom = span(tokens, ["Ada", "Brönner"]), span(tokens, ["Tom", "Hale"])
        ada_of = span(tokens, ["Ada", "Brönner", ",", "of", "Veloria"])
        return [annotation(tokens, cands, 1, [ada]),
                annotation(tokens, cands, 1, [ada]),  # the same answer again: kept once
                annotation(tokens, cands, 1, [tom]),
                annotation(tokens, cands, 1, [ada, tom]),  # two spans: as --multi-span says
                annotation(tokens, cands, 1, [ada_of]),
                annotation(tokens, cands, 2, [span(tokens, ["Zoë", "Müller"])]),  # another long answer: not in the context
                annotation(tokens, cands, 1, yes_no="YES")]

    path = write_jsonl_gz(tmp_path / "all.jsonl.gz", [record(21, PARAGRAPH, "who mapped the xarn", ann)])
    _, data, counts = run(tmp_path, [path], "--all-answers", "--multi-span", multi_span)
    (context, qa), = qas(data).values()
    assert [a["text"] for a in qa["answers"]] == expected
    assert all(a["answer_start"] == context.index(a["text"]) for a in qa["answers"])
    assert (counts["multi_answer_questions"], counts["extra_answers"]) == (1, len(expected) - 1)
    # A training file (one annotation per record) is the same with and without the flag.
    train = write_jsonl_gz(tmp_path / "train.jsonl.gz", [record(22, PARAGRAPH, "who", lambda t, c: ann(t, c)[:1])])
    assert run(tmp_path, [train], "--all-answers", name="a.json")[1] == run(tmp_path, [train], name="b.json")[1]


def test_all_answers_keeps_long_only_and_yes_no_without_answers(tmp_path):
    def long_only(tokens, cands):  # the majority says no short answer: one annotator's span does not make it answerable
        return [annotation(tokens, cands, 1, [span(tokens, ["Tom", "Hale"])])] + [annotation(tokens, cands, 1)] * 4

    def yes_no(tokens, cands):
        return [annotation(tokens, cands, 1, yes_no="NO")] * 3 + [annotation(tokens, cands, 1, [span(tokens, ["Tom", "Hale"])])] * 2

    path = write_jsonl_gz(tmp_path / "lo.jsonl.gz", [record(31, PARAGRAPH, "q", long_only), record(32, PARAGRAPH, "q", yes_no)])
    _, data, counts = run(tmp_path, [path], "--all-answers", "--yes-no", "keep")
    found = qas(data)
    assert found["31"][1]["answers"] == [] and found["32"][1] == {"id": "32", "question": "q", "answers": [],
                                                                  "is_impossible": True, "yes_no_answer": "NO"}
    assert (counts["impossible"], counts["extra_answers"]) == (2, 0)


# ---------------------------------------------------------------------------------------------
# Inputs that are not NQ data, and what a killed run leaves behind
# ---------------------------------------------------------------------------------------------
def test_directory_input_exits_2_naming_it(tmp_path, capsys):
    folder = tmp_path / "raw" / "dev"
    folder.mkdir(parents=True)
    code, data, _ = run(tmp_path, [folder])
    err = capsys.readouterr().err
    assert code == 2 and data is None
    assert err == f"nq_to_squad: error: {folder} is a directory, not an NQ file: give the files in it, e.g. '{folder}/*.jsonl.gz'\n"


def test_empty_input_warns_and_fail_on_empty_exits_2(tmp_path, capsys):
    empty = tmp_path / "nq-dev-00.jsonl.gz"
    empty.write_bytes(gzip.compress(b""))
    good = write_jsonl_gz(tmp_path / "nq-dev-01.jsonl.gz", [record(1, PARAGRAPH, "q", lambda t, c: [annotation(t, c, 1)])])
    code, data, counts = run(tmp_path, [empty, good])
    assert code == 0 and list(qas(data)) == ["1"] and counts["records_read"] == 1
    assert f"warning: {empty} holds no NQ record (an empty file)" in capsys.readouterr().err
    code, data, counts = run(tmp_path, [empty], name="only-empty.json")
    assert code == 0 and data == {"version": "v2.0", "data": []}
    capsys.readouterr()
    code, data, counts = run(tmp_path, [good, empty], "--fail-on-empty", name="strict.json")
    err = capsys.readouterr().err
    assert code == 2 and data is None and counts is None
    assert err == f"nq_to_squad: error: {empty} holds no NQ record (an empty file); nothing was written: download it again or leave it out\n"
    assert not list(tmp_path.glob("strict.json*")) and not list(tmp_path.glob(".nq_to_squad-*"))


def _dead_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_next_run_removes_what_a_killed_run_left(tmp_path, capsys):
    # A converter killed while reading: its input is a FIFO no one writes to, so it blocks after
    # creating its part folder and OUT.tmp-PID; SIGKILL leaves both, as a real kill would.
    fifo = tmp_path / "stuck.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out.json"
    script = NQ_TO_SQUAD
    killed = subprocess.Popen([sys.executable, script, str(fifo), "--output", str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    # Both files, not only OUT.tmp-PID: on a loaded machine the part file comes a moment after it.
    while not (list(tmp_path.glob("out.json.tmp-*")) and list(tmp_path.glob(".nq_to_squad-*/part-*"))):
        assert killed.poll() is None and time.monotonic() < deadline, "the converter never started writing"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "stuck.jsonl")
    assert leftovers == [f".nq_to_squad-{killed.pid}-" + leftovers[0].split("-", 2)[2], f"out.json.tmp-{killed.pid}"]
    assert [p.name for p in (tmp_path / leftovers[0]).iterdir()] == ["part-00000.jsonl"]
    # A dead run's stats file, and a live process's part folder (another converter at work) beside them.
    (tmp_path / f"out.json.stats.json.tmp-{_dead_pid()}").write_text("{")
    alive = tmp_path / f".nq_to_squad-{os.getppid()}-live"
    alive.mkdir()

    good = write_jsonl_gz(tmp_path / "good.jsonl.gz", [record(1, PARAGRAPH, "q", lambda t, c: [annotation(t, c, 1)])])
    code, data, _ = run(tmp_path, [good])
    assert code == 0 and list(qas(data)) == ["1"]
    assert "left by an interrupted run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["stuck.jsonl", "good.jsonl.gz", "out.json", "out.json.stats.json",
                                                                 alive.name])


@pytest.mark.parametrize("parser", ["orjson", "json"])
def test_non_utf8_bytes_name_file_and_line(tmp_path, capsys, monkeypatch, parser):
    if parser == "json":  # a bare python3 without orjson
        monkeypatch.setattr(nq_reader, "loads", json.loads)
        monkeypatch.setattr(nq_reader, "JSONDecodeError", json.JSONDecodeError)
        monkeypatch.setattr(nq_convert, "JSONDecodeError", json.JSONDecodeError)
    lines = _good_lines(3)
    lines[1] = lines[1].replace(b'"question_text": "', b'"question_text": "caf\xe9 ', 1)  # latin-1, not UTF-8
    path = tmp_path / "latin.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    code, data, _ = run(tmp_path, [path])
    err = capsys.readouterr().err
    byte = lines[1].index(b"\xe9")
    assert code == 1 and data is None
    assert f"latin.jsonl.gz:2: not valid UTF-8 at byte {byte} of the line (invalid continuation byte: b'\\xe9')" in err
    code, data, counts = run(tmp_path, [path], "--skip-bad-records")
    assert code == 0 and counts["bad_records"] == 1 and counts["records_read"] == 3


def test_inflated_in_bounded_pieces_and_an_overlong_line_is_refused(tmp_path, capsys, monkeypatch, reader):
    """A gzip bomb never inflates at once, and a line longer than MAX_LINE_BYTES is refused before it is held
    whole, naming the file and line (here with small limits; the real ones are 8 MB and 128 MB)."""
    monkeypatch.setattr(nq_reader, "INFLATE_CHUNK", 4096)
    zeros = tmp_path / "zeros.jsonl.gz"
    zeros.write_bytes(gzip.compress(b"0" * 5_000_000 + b"\n"))
    with open(zeros, "rb") as raw:
        pieces = list(nq_reader._gzip_chunks(raw, raw.read(nq_reader.READ_CHUNK)))
    assert max(map(len, pieces)) <= 4096 and sum(map(len, pieces)) == 5_000_001
    monkeypatch.setattr(nq_reader, "MAX_LINE_BYTES", 10_000)
    small = [b'{"example_id": %d}' % i for i in range(3)]
    for name, content in (("long.jsonl.gz", b"\n".join(small[:2] + [b"x" * 50_000] + small[2:]) + b"\n"),
                          ("long.jsonl", b"\n".join(small[:2] + [b"x" * 50_000]))):
        path = tmp_path / name
        path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
        with pytest.raises(nq_reader.InputError, match=rf"{name} line 3: longer than 0 MB \(the limit for one NQ record"):
            list(nq_reader.iter_lines(str(path)))
    code, data, _ = run(tmp_path, [tmp_path / "long.jsonl.gz"], "--skip-bad-records")  # lines 1-2: records without fields
    err = capsys.readouterr().err
    assert code == 2 and data is None and "long.jsonl.gz line 3: longer than" in err, err

