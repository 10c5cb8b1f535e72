"""scripts/make_nq_sample.py (qa.nq.sample): a valid full-format NQ sample, deterministic, with every case the converter handles."""

import collections
import gzip
import json
import re
import subprocess
import sys

from conftest import ROOT
from qa.nq import convert as nq_convert
from qa.nq import document as nq_document
from qa.nq import sample as nq_sample

SCRIPT = str(ROOT / "scripts" / "make_nq_sample.py")


def test_tokens_and_candidates_match_the_html_bytes():
    for split in ("train", "dev"):
        for record in nq_sample.generate(60, seed=3, split=split):
            html = record["document_html"].encode("utf-8")
            tokens = record["document_tokens"]
            for token in tokens:
                text = html[token["start_byte"] : token["end_byte"]].decode("utf-8")
                if token["html_token"]:
                    assert text.startswith("<") and text.endswith(">")
                    assert text.lower().startswith(token["token"][:-1].lower())
                else:
                    assert text == token["token"] and not text.isspace()
            for candidate in record["long_answer_candidates"]:
                first, last = tokens[candidate["start_token"]], tokens[candidate["end_token"] - 1]
                assert (first["start_byte"], last["end_byte"]) == (candidate["start_byte"], candidate["end_byte"])
                assert first["html_token"] and last["html_token"]
            assert len(record["annotations"]) == (1 if split == "train" else 5)
            assert -(2**63) <= record["example_id"] < 2**63


def test_deterministic_and_dev_differs_from_train(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    for path in (a, b):
        subprocess.run([sys.executable, SCRIPT, "--out", str(path), "--num-examples", "30", "--seed", "1"], check=True)
    assert a.read_bytes() == b.read_bytes()
    train = {r["document_title"] for r in nq_sample.generate(300, seed=0, split="train")}
    dev = {r["document_title"] for r in nq_sample.generate(300, seed=0, split="dev")}
    assert len(train & dev) < 15  # a handful of accidental name collisions at most
    records = [json.loads(line) for line in gzip.open(a)]
    assert len(records) == 30 and records == nq_sample.generate(30, seed=1, split="train")


def test_converted_sample_has_every_case_and_a_learnable_mix(tmp_path):
    counts = {}
    for split, n in (("train", 400), ("dev", 200)):
        path = tmp_path / f"nq-{split}.jsonl.gz"
        nq_sample.write_sample(str(path), nq_sample.generate(n, seed=0, split=split))
        counts[split] = nq_convert.convert([str(path)], str(tmp_path / f"{split}.json"), nq_convert.Options())
        data = json.loads((tmp_path / f"{split}.json").read_text(encoding="utf-8"))
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    for answer in qa["answers"]:
                        start = answer["answer_start"]
                        assert paragraph["context"][start : start + len(answer["text"])] == answer["text"]
    for split, stats in counts.items():
        assert stats["bad_records"] == 0
        assert 0.6 <= stats["answerable"] / stats["kept"] <= 0.72, (split, stats)
        for key in ("skipped_no_long_answer", "yes_no_as_impossible", "multi_span_first", "context_type <Table>", "context_type <Ul>"):
            assert stats[key] > 0, (split, key)
    # yes/no answers are YES and NO, multi-span has two spans, and names with non-ASCII letters exist.
    records = nq_sample.generate(400, seed=0, split="train")
    yes_no = collections.Counter(r["annotations"][0]["yes_no_answer"] for r in records)
    assert yes_no["YES"] > 5 and yes_no["NO"] > 5
    assert any(len(r["annotations"][0]["short_answers"]) == 2 for r in records)
    assert any(any(ord(ch) > 127 for ch in r["document_html"]) for r in records)


def test_yes_no_labels_agree_with_the_facts():
    for record in nq_sample.generate(300, seed=2, split="train"):
        label = record["annotations"][0]["yes_no_answer"]
        if label == "NONE":
            continue
        question = record["question_text"]
        threshold = int(question.rsplit(" ", 2)[-2] if question.endswith((" km", " metres", " m")) else question.rsplit(" ", 1)[-1])
        long_answer = record["annotations"][0]["long_answer"]  # the facts block: distractors hold other numbers
        words = [t["token"] for t in record["document_tokens"][long_answer["start_token"] : long_answer["end_token"]]
                 if not t["html_token"]]
        numbers = [int(w) for w in words if w.isdigit()]
        if "founded before" in question:
            value = next(n for n in numbers if 1600 <= n <= 1999)
            assert label == ("YES" if value < threshold else "NO")
        else:
            unit = question.rsplit(" ", 1)[-1]
            value = next(int(w) for w, after in zip(words, words[1:]) if w.isdigit() and after == unit)
            assert label == ("YES" if value > threshold else "NO"), (question, value)


def test_pages_have_distractor_candidates_and_nested_ones():
    """Whole-document prediction needs a choice: 4-8 top-level candidates, one holding the facts."""
    top_level_counts, nested_types = collections.Counter(), collections.Counter()
    for split in ("train", "dev"):
        for record in nq_sample.generate(200, seed=4, split=split):
            tokens, candidates = record["document_tokens"], record["long_answer_candidates"]
            top = nq_document.list_candidates(record)
            top_level_counts[len(top)] += 1
            assert [c["start_token"] for c in candidates] == sorted(c["start_token"] for c in candidates)  # document order
            for index, candidate in enumerate(candidates):
                if not candidate["top_level"]:  # a row or an item, inside the top-level candidate before it
                    parent = next(c for c in reversed(candidates[:index]) if c["top_level"])
                    assert parent["start_token"] < candidate["start_token"] < candidate["end_token"] < parent["end_token"]
                    nested_types[tokens[candidate["start_token"]]["token"]] += 1
            golds = {a["long_answer"]["candidate_index"] for a in record["annotations"]} - {-1}
            assert len(golds) <= 1 and all(candidates[g]["top_level"] for g in golds)
            for gold in golds:  # the answers are in the gold candidate, and in no other top-level one
                context = nq_document.candidate_context(record, gold)
                answers = {context.text[slice(*nq_document.token_span_to_chars(context, s["start_token"], s["end_token"]))]
                           for a in record["annotations"] for s in a["short_answers"]}
                for index, _ in top:
                    if index != gold:
                        text = nq_document.candidate_context(record, index).text
                        assert not any(answer in text for answer in answers), (answers, text)
    assert set(top_level_counts) == {4, 5, 6, 7, 8}
    assert nested_types["<Tr>"] > 50 and nested_types["<Li>"] > 50


def test_sample_contexts_are_the_facts_block_as_before(tmp_path):
    """The demo learns from converted contexts: still one facts block each, never a distractor."""
    path = tmp_path / "dev.jsonl.gz"
    nq_sample.write_sample(str(path), nq_sample.generate(100, seed=0, split="dev"))
    nq_convert.convert([str(path)], str(tmp_path / "dev.json"), nq_convert.Options(all_answers=True))
    data = json.loads((tmp_path / "dev.json").read_text(encoding="utf-8"))
    starts = ("The river ", "Mount ", "Club Coach", "Club Coaches")
    for article in data["data"]:
        context = article["paragraphs"][0]["context"]
        name = article["title"].split(" (")[0].removeprefix("Mount ").removesuffix(" FC").removesuffix(" Lake")
        assert context.startswith(starts) or context.startswith(name), context
        assert not any(phrase in context for phrase in distractor_phrases), context
    assert len(distractor_phrases) == 6


# The words each distractor starts with ("Many visitors come to"), where there are at least three.
distractor_phrases = [phrase for phrase in (" ".join(re.sub(r"<[^>]+>", " ", template).split("{")[0].split())
                                            for template in nq_sample.DISTRACTORS) if phrase.count(" ") >= 2]
