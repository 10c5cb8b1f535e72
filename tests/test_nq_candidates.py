"""Candidate mode of the converter (nq_to_squad.py --context candidates, qa.nq.convert.candidate_questions): one
question per top-level candidate, the labels of each (gold short, long-only, yes/no, negatives, pages without a long
answer), the deterministic keep rate of the negatives, and the guide mode left as it was."""

import collections
import gzip
import json

import pytest

from conftest import shared_file
from nq_records import PARAGRAPH, annotation, page, record, run, span, write_jsonl_gz
from qa.nq import convert as nq_convert
from qa.nq import document as nq_document
from qa.nq import reader as nq_reader
from qa.nq import sample as nq_sample

RIVER = "The river Xarn is 412 km long. It was mapped in 1843 by Ada Brönner, of Veloria, and Tom Hale."
TABLE = "Club Coach Xarn FC Zoë Müller"


def questions(data):
    """{id: (context, qa)} of a candidate-mode file, each answer checked against its context."""
    found = {}
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            (qa,) = paragraph["qas"]
            for answer in qa["answers"]:
                start = answer["answer_start"]
                assert paragraph["context"][start : start + len(answer["text"])] == answer["text"]
            assert qa["is_impossible"] == (not qa["answers"]) == (qa["answer_type"] == "none")
            found[qa["id"]] = (paragraph["context"], qa)
    return found


def convert_one(tmp_path, rec, *flags):
    path = write_jsonl_gz(tmp_path / "one.jsonl.gz", [rec])
    code, data, counts = run(tmp_path, [path], "--context", "candidates", "--keep-negatives", "1", *flags)
    assert code == 0
    return questions(data), counts


def test_gold_candidate_carries_the_short_answer_every_other_one_is_impossible(tmp_path):
    rec = record(7, PARAGRAPH, "who mapped the xarn", lambda t, c: [annotation(t, c, 1, [span(t, ["Ada", "Brönner"])])])
    found, counts = convert_one(tmp_path, rec)
    assert list(found) == ["7:0", "7:1", "7:2"]  # every top-level candidate, in document order
    assert [context for context, _ in found.values()] == ["Jump", RIVER, TABLE]
    assert found["7:1"][1] == {"id": "7:1", "question": "who mapped the xarn", "is_impossible": False, "answer_type": "short",
                               "answers": [{"text": "Ada Brönner", "answer_start": RIVER.index("Ada")}]}
    for qas_id in ("7:0", "7:2"):
        assert found[qas_id][1] == {"id": qas_id, "question": "who mapped the xarn", "answers": [], "is_impossible": True,
                                    "answer_type": "none"}
    assert (counts["kept"], counts["questions"], counts["positives"], counts["negatives_kept"], counts["short_answer_targets"],
            counts["answerable"], counts["impossible"]) == (1, 3, 1, 2, 1, 1, 2)
    # The contexts are the text the guide's conversion and predict_nq build for these candidates.
    text, tokens, candidates = page(PARAGRAPH)
    full = {"example_id": 7, "document_html": text, "document_tokens": tokens, "long_answer_candidates": candidates}
    assert [nq_document.candidate_context(full, i).text for i in range(3)] == ["Jump", RIVER, TABLE]


@pytest.mark.parametrize("flag, expected, key", [
    ((), {"answers": [], "is_impossible": True, "answer_type": "none"}, "long_as_impossible"),
    (("--long-answers", "whole"), {"answers": [{"text": RIVER, "answer_start": 0}], "is_impossible": False,
                                   "answer_type": "long"}, "long_as_whole"),
    (("--long-answers", "impossible"), {"answers": [], "is_impossible": True, "answer_type": "none"}, "long_as_impossible"),
])
def test_long_answer_without_a_short_one(tmp_path, flag, expected, key):
    found, counts = convert_one(tmp_path, record(8, PARAGRAPH, "q", lambda t, c: [annotation(t, c, 1)]), *flag)
    assert found["8:1"][1] == {"id": "8:1", "question": "q", **expected}
    assert counts[key] == counts["positives"] == 1 and counts["short_answer_targets"] == 0


@pytest.mark.parametrize("yes_no, answer_type", [("YES", "yes"), ("NO", "no")])
def test_yes_no_is_the_whole_candidate_with_its_type(tmp_path, yes_no, answer_type):
    rec = record(9, PARAGRAPH, "is the xarn long", lambda t, c: [annotation(t, c, 1, yes_no=yes_no)])
    found, counts = convert_one(tmp_path, rec, "--long-answers", "whole")
    assert found["9:1"][1]["answers"] == [{"text": RIVER, "answer_start": 0}] and found["9:1"][1]["answer_type"] == answer_type
    assert counts["yes_no_as_whole"] == 1 and counts["answerable"] == 1
    found, counts = convert_one(tmp_path, rec)  # the default: impossible
    assert found["9:1"][1]["is_impossible"] and counts["yes_no_as_impossible"] == 1 and counts["answerable"] == 0


def test_page_without_a_long_answer_is_kept_all_negative(tmp_path):
    found, counts = convert_one(tmp_path, record(10, PARAGRAPH, "q", lambda t, c: [annotation(t, c)]))
    assert list(found) == ["10:0", "10:1", "10:2"] and all(qa["is_impossible"] for _, qa in found.values())
    assert (counts["records_without_long_answer"], counts["positives"], counts["negatives_kept"], counts["kept"]) == (1, 0, 3, 1)
    assert counts["skipped_no_long_answer"] == 0  # the guide skips such a record; candidate mode keeps it


def test_nested_gold_takes_its_top_level_parents_place(tmp_path):
    def with_row(tokens, candidates):
        row = max(i for i, t in enumerate(tokens) if t["token"] == "<Tr>")  # the second row: Xarn FC, Zoë Müller
        end = next(i for i in range(row, len(tokens)) if tokens[i]["token"] == "</Tr>") + 1
        candidates.append({"start_token": row, "end_token": end, "start_byte": tokens[row]["start_byte"],
                           "end_byte": tokens[end - 1]["end_byte"], "top_level": False})
        return [annotation(tokens, candidates, 3, [span(tokens, ["Zoë", "Müller"])])]

    found, counts = convert_one(tmp_path, record(11, PARAGRAPH, "who coaches xarn fc", with_row))
    assert list(found) == ["11:0", "11:1", "11:3"] and counts["skipped_gold_parent"] == 1
    assert found["11:3"] == ("Xarn FC Zoë Müller", {"id": "11:3", "question": "who coaches xarn fc", "is_impossible": False,
                                                    "answer_type": "short", "answers": [{"text": "Zoë Müller", "answer_start": 8}]})


def test_keep_rate_is_deterministic_and_nested(tmp_path):
    path = tmp_path / "sample.jsonl.gz"
    whole = ("--context", "candidates", "--long-answers", "whole")  # every impossible question is then a negative
    nq_sample.write_sample(str(path), nq_sample.generate(300, seed=2, split="train"))
    kept = {}
    for rate in (0.0, 0.3, 0.6, 1.0):
        _, data, counts = run(tmp_path, [path], *whole, "--keep-negatives", str(rate), name=f"{rate}.json")
        found = questions(data)
        kept[rate] = {qas_id for qas_id, (_, qa) in found.items() if qa["is_impossible"]}
        negatives = counts["negatives_kept"] + counts["negatives_dropped"]
        assert counts["negatives_kept"] == len(kept[rate]) and counts["positives"] == 300 - counts["records_without_long_answer"]
        assert abs(counts["negatives_kept"] / negatives - rate) < 0.05, (rate, counts)
    assert not kept[0.0] and kept[0.3] < kept[0.6] < kept[1.0]  # a higher rate keeps a superset
    # Same input, rate and seed: the same bytes, with any number of workers; another seed: other negatives.
    again = tmp_path / "again.json"
    shards = [write_jsonl_gz(tmp_path / f"s{i}.jsonl.gz", [json.loads(line) for line in gzip.open(path)][i::2]) for i in range(2)]
    for workers in ("1", "2"):
        run(tmp_path, shards, *whole, "--keep-negatives", "0.3", "--workers", workers, name="again.json")
        split = {qas_id for qas_id, (_, qa) in questions(json.loads(again.read_text())).items() if qa["is_impossible"]}
        assert split == kept[0.3]
    _, data, _ = run(tmp_path, [path], *whole, "--keep-negatives", "0.3", name="0.3b.json")
    assert (tmp_path / "0.3b.json").read_bytes() == (tmp_path / "0.3.json").read_bytes()
    _, data, _ = run(tmp_path, [path], *whole, "--keep-negatives", "0.3", "--negative-seed", "1", name="s1.json")
    other = {qas_id for qas_id, (_, qa) in questions(data).items() if qa["is_impossible"]}
    assert other != kept[0.3] and abs(len(other) - len(kept[0.3])) < 0.2 * len(kept[0.3])
    assert nq_convert.keep_negative(5, 3, 0.3) == nq_convert.keep_negative(5, 3, 0.3, seed=0)


def test_default_is_the_guide_without_answer_types(tmp_path):
    path = tmp_path / "sample.jsonl.gz"
    nq_sample.write_sample(str(path), nq_sample.generate(50, seed=0, split="dev"))
    run(tmp_path, [path], name="default.json")
    run(tmp_path, [path], "--context", "guide", name="guide.json")
    assert (tmp_path / "default.json").read_bytes() == (tmp_path / "guide.json").read_bytes()
    assert b"answer_type" not in (tmp_path / "default.json").read_bytes()


def test_flags_of_the_other_mode_are_refused(tmp_path, capsys):
    path = write_jsonl_gz(tmp_path / "x.jsonl.gz", [record(1, PARAGRAPH, "q", lambda t, c: [annotation(t, c, 1)])])
    for flags, message in ((["--keep-negatives", "0.5"], "--keep-negatives only apply with --context candidates"),
                           (["--context", "candidates", "--yes-no", "keep"], "--yes-no only apply with --context guide"),
                           (["--context", "candidates", "--keep-negatives", "1.5"], "--keep-negatives must be in [0, 1]")):
        with pytest.raises(SystemExit) as exc:
            run(tmp_path, [path], *flags)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_real_records_every_top_level_candidate_once(tmp_path):
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    code, data, counts = run(tmp_path, [path], "--context", "candidates", "--keep-negatives", "1", "--long-answers", "whole")
    assert code == 0
    found = questions(data)
    expected = {}
    for line in gzip.open(path):
        rec = nq_reader.parse_line(line)
        for index, _ in nq_document.list_candidates(rec):
            text = nq_document.candidate_context(rec, index).text
            if text:
                expected[f"{rec['example_id']}:{index}"] = text
    assert {qas_id: context for qas_id, (context, _) in found.items()} == expected
    answerable = {qas_id: qa["answer_type"] for qas_id, (_, qa) in found.items() if not qa["is_impossible"]}
    # 4 records have a gold long answer (2 of 5 annotators or more): 2 with a gold short answer, 2 long-only (a
    # whole-candidate target); the 6 without one keep all their candidates, as negatives.
    assert len(answerable) == counts["positives"] == 4 and counts["records_without_long_answer"] == 6
    assert collections.Counter(answerable.values()) == {"short": 2, "long": 2}
    assert counts["records_read"] == counts["kept"] == 10 and counts["questions"] == len(expected)
