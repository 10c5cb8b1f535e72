"""qa.nq.document: a record's candidates, their text (exactly the converter's contexts) and the mapping of a
predicted character span back to NQ tokens and bytes, on the real records and hand-built pages."""

import collections
import gzip
import json

import pytest

from conftest import shared_file
from nq_records import PARAGRAPH, RONTGEN_ID, independent_html_text, page, qas, real_records, run, span
from qa.nq import annotation as nq_annotation
from qa.nq import document as nq_document
from qa.nq import reader as nq_reader


# ---------------------------------------------------------------------------------------------
# candidate_context / char_span_to_tokens: what whole-document prediction maps its spans with
# ---------------------------------------------------------------------------------------------
def test_every_real_gold_short_answer_maps_back_to_its_exact_tokens_and_bytes():
    checked = collections.Counter()
    for form, rec in real_records():
        for ann in rec["annotations"]:
            for short in ann["short_answers"]:
                context = nq_document.candidate_context(rec, ann["long_answer"]["candidate_index"])
                char_start, char_end = nq_document.token_span_to_chars(context, short["start_token"], short["end_token"])
                expected = {"start_token": short["start_token"], "end_token": short["end_token"],
                            "start_byte": short["start_byte"] if form == "full" else -1,
                            "end_byte": short["end_byte"] if form == "full" else -1}
                assert nq_document.char_span_to_tokens(context, char_start, char_end) == expected
                # A prediction cut inside the first and last word still maps to the whole tokens.
                first = context.token_spans[short["start_token"] - context.start_token]
                last = context.token_spans[short["end_token"] - 1 - context.start_token]
                if first[1] - first[0] > 1 and last[1] - last[0] > 1:
                    assert nq_document.char_span_to_tokens(context, char_start + 1, char_end - 1) == expected
                checked[form] += 1
    # dev: Trade winds 1, Nobel 4, Deadpool 5, Fortnite 1 (each annotator's); train-1 and himym 1 each.
    assert checked == {"full": 11, "simplified": 13}


def test_candidate_context_is_the_converted_context_on_real_records(tmp_path):
    path = shared_file("nq", "nq-dev-10.full.jsonl.gz")
    _, data, _ = run(tmp_path, [path], "--annotation", "first-long")
    converted = {qa_id: context for qa_id, (context, _) in qas(data).items()}
    paragraphs = 0
    for line in gzip.open(path):
        full, lazy = json.loads(line), nq_reader.parse_line(line)  # lazy: only the candidate's tokens parsed
        gold = nq_annotation.choose_annotation(full["annotations"], "first-long")
        if not gold.long_answer.is_null() and full["document_tokens"][gold.long_answer.start_token]["token"] == "<P>":
            # Both are checked against the HTML read without the converter's code (both sides of
            # `candidate_context(...).text == converted` come from the same qa.nq.document.span_context).
            expected = independent_html_text(full, full["long_answer_candidates"][gold.long_answer_candidate])
            assert converted[str(full["example_id"])] == expected
            assert nq_document.candidate_context(full, gold.long_answer_candidate).text == expected
            paragraphs += 1
        for index, _ in nq_document.list_candidates(full, top_level_only=False):
            assert nq_document.candidate_context(lazy, index) == nq_document.candidate_context(full, index)
        # A span given without byte offsets cannot be found in the raw tokens: they are all parsed, same text.
        first = full["long_answer_candidates"][0]
        tokens_only = {"start_token": first["start_token"], "end_token": first["end_token"]}
        assert nq_document.candidate_context(lazy, tokens_only) == nq_document.candidate_context(full, 0)
    assert len(converted) == 5 and paragraphs == 4  # the fifth gold long answer is a <Table> (Röntgen)


def test_list_candidates_top_level_and_all():
    records = real_records()
    full = [rec for form, rec in records if form == "full"]
    assert sum(len(nq_document.list_candidates(rec)) for rec in full) == 200
    assert sum(len(nq_document.list_candidates(rec, top_level_only=False)) for rec in full) == 865
    nobel = next(rec for rec in full if str(rec["example_id"]) == RONTGEN_ID)
    top = nq_document.list_candidates(nobel)
    assert all(candidate["top_level"] for _, candidate in top) and [index for index, _ in top][:3] == [0, 1, 2]
    nested = [index for index, candidate in nq_document.list_candidates(nobel, top_level_only=False) if not candidate["top_level"]]
    assert nested and nq_document.candidate_context(nobel, nested[0]).context_type == "<Tr>"  # a row of the laureates table


def test_char_span_to_tokens_hand_built():
    text, tokens, candidates = page(PARAGRAPH)
    rec = {"example_id": 1, "document_html": text, "document_tokens": tokens, "long_answer_candidates": candidates}
    context = nq_document.candidate_context(rec, 1)
    assert context.text == "The river Xarn is 412 km long. It was mapped in 1843 by Ada Brönner, of Veloria, and Tom Hale."
    assert context.context_type == "<P>" and context.start_token == candidates[1]["start_token"]
    ada = span(tokens, ["Ada", "Brönner"])
    char_start = context.text.index("Ada")
    assert nq_document.token_span_to_chars(context, *ada) == (char_start, char_start + len("Ada Brönner"))
    expected = {"start_token": ada[0], "end_token": ada[1], "start_byte": tokens[ada[0]]["start_byte"],
                "end_byte": tokens[ada[1] - 1]["end_byte"]}
    assert text.encode("utf-8")[expected["start_byte"] : expected["end_byte"]].decode("utf-8") == "Ada Brönner"
    assert nq_document.char_span_to_tokens(context, char_start, char_start + len("Ada Brönner")) == expected
    assert nq_document.char_span_to_tokens(context, char_start - 1, char_start + len("Ada Brön")) == expected  # leading space, cut word
    with pytest.raises(ValueError, match="cover no token"):
        nq_document.char_span_to_tokens(context, char_start - 1, char_start)  # only the space before "Ada"
    with pytest.raises(ValueError, match="cover no token"):
        nq_document.char_span_to_tokens(context, char_start, char_start)
    assert context.token_spans[0] is None  # <P>: an HTML token has no characters
    assert nq_document.token_span_to_chars(context, 0, 1) is None  # outside the candidate
    simplified = {"example_id": 1, "long_answer_candidates": [{"start_token": 2, "end_token": 6, "top_level": True}],
                  "document_text": 'Jump <P> Ada <Td_colspan="2"> Brönner </P>'}
    context = nq_document.candidate_context(simplified, 0)
    assert (context.text, context.token_spans, context.token_bytes) == ("Ada Brönner", ((0, 3), None, (4, 11), None), None)
    assert nq_document.char_span_to_tokens(context, 4, 11) == {"start_token": 4, "end_token": 5, "start_byte": -1, "end_byte": -1}


def test_a_span_ending_before_combining_marks_takes_the_token_of_marks():
    """A decomposed "Café": the acute accent is its own NQ token, joined to "Cafe" in the text (no space in the
    HTML). A predicted span "Cafe" (characters 0-4) must map to both tokens, not cut the accent off."""
    html = "<P>Cafe\u0301 is</P>"
    data = html.encode("utf-8")
    pieces = [("<P>", True), ("Cafe", False), ("\u0301", False), ("is", False), ("</P>", True)]
    tokens, position = [], 0
    for piece, is_tag in pieces:
        start = data.index(piece.encode("utf-8"), position)
        tokens.append({"token": piece, "html_token": is_tag, "start_byte": start, "end_byte": start + len(piece.encode("utf-8"))})
        position = tokens[-1]["end_byte"]
    candidate = {"start_token": 0, "end_token": 5, "start_byte": 0, "end_byte": len(data), "top_level": True}
    rec = {"example_id": 1, "document_html": html, "document_tokens": tokens, "long_answer_candidates": [candidate]}
    context = nq_document.candidate_context(rec, 0)
    assert context.text == "Cafe\u0301 is" and context.token_spans[1:4] == ((0, 4), (4, 5), (6, 8))
    assert nq_document.char_span_to_tokens(context, 0, 4) == {"start_token": 1, "end_token": 3, "start_byte": 3,
                                                              "end_byte": tokens[2]["end_byte"]}

