"""Natural Questions records for tests: hand-built full-format pages with exact byte offsets, the real
records of ../shared/data/nq, an independent reading of a paragraph's HTML, and the converter's
command line run in-process."""

import gzip
import json
import re
import runpy

from conftest import ROOT, shared_file

RONTGEN_ID, DEADPOOL_ID = "-3290814144789249484", "8851020722386421469"
NQ_TO_SQUAD = str(ROOT / "scripts" / "nq_to_squad.py")
nq_to_squad_main = runpy.run_path(NQ_TO_SQUAD)["main"]  # the command line, in-process


# ---------------------------------------------------------------------------------------------
# Helpers: hand-built full-format records
# ---------------------------------------------------------------------------------------------
TOKEN_RE = re.compile(r"<[^>]+>|[.,]|[^\s<.,]+")


def page(html_text):
    """document_html + document_tokens (byte offsets into the UTF-8 HTML) + top-level candidates."""
    data = html_text.encode("utf-8")
    tokens, candidates, open_block = [], [], None
    for match in TOKEN_RE.finditer(html_text):
        start = len(html_text[: match.start()].encode("utf-8"))
        piece = match.group()
        is_tag = piece.startswith("<")
        name = ("<" + re.match(r"</?\w+", piece).group()[1:] + ">") if is_tag else piece
        tokens.append({"end_byte": start + len(piece.encode("utf-8")), "html_token": is_tag, "start_byte": start, "token": name})
        if name in ("<P>", "<Table>", "<Ul>") and open_block is None:
            open_block = (len(tokens) - 1, name)
        elif open_block and name == "</" + open_block[1][1:]:
            first = tokens[open_block[0]]
            candidates.append({"start_token": open_block[0], "end_token": len(tokens), "start_byte": first["start_byte"],
                               "end_byte": tokens[-1]["end_byte"], "top_level": True})
            open_block = None
    assert data.decode("utf-8") == html_text
    return html_text, tokens, candidates


def span(tokens, words):
    """(start_token, end_token) of the first run of text tokens equal to `words` (html tokens skipped)."""
    texts = [(i, t["token"]) for i, t in enumerate(tokens) if not t["html_token"]]
    for k in range(len(texts) - len(words) + 1):
        if [w for _, w in texts[k : k + len(words)]] == words:
            return texts[k][0], texts[k + len(words) - 1][0] + 1
    raise AssertionError(f"{words} not in page")


def annotation(tokens, candidates, candidate=None, shorts=(), yes_no="NONE"):
    if candidate is None:
        long_answer = {"candidate_index": -1, "start_token": -1, "end_token": -1, "start_byte": -1, "end_byte": -1}
    else:
        c = candidates[candidate]
        long_answer = {"candidate_index": candidate, **{k: c[k] for k in ("start_token", "end_token", "start_byte", "end_byte")}}
    short_answers = [{"start_token": s, "end_token": e, "start_byte": tokens[s]["start_byte"], "end_byte": tokens[e - 1]["end_byte"]}
                     for s, e in shorts]
    return {"annotation_id": 1, "long_answer": long_answer, "short_answers": short_answers, "yes_no_answer": yes_no}


def record(example_id, html_text, question, make_annotations, title="Test page"):
    text, tokens, candidates = page(html_text)
    return {"example_id": example_id, "question_text": question, "document_title": title, "document_html": text,
            "document_tokens": tokens, "long_answer_candidates": candidates, "document_url": "https://x",
            "annotations": make_annotations(tokens, candidates)}


def write_jsonl_gz(path, records):
    with gzip.open(path, "wb") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n")
    return str(path)


def run(tmp_path, inputs, *flags, name="out.json"):
    """The CLI in-process; returns (exit code, output dict or None, stats dict or None)."""
    out, stats = tmp_path / name, tmp_path / (name + ".stats.json")
    code = nq_to_squad_main([*map(str, inputs), "--output", str(out), "--stats-json", str(stats), *flags])
    data = json.loads(out.read_text(encoding="utf-8")) if out.exists() else None
    counts = json.loads(stats.read_text())["counts"] if stats.exists() else None
    return code, data, counts


def qas(data):
    """{id: (context, qa)} of a SQuAD file, every answer checked against its context."""
    found = {}
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                for answer in qa["answers"]:
                    start = answer["answer_start"]
                    assert paragraph["context"][start : start + len(answer["text"])] == answer["text"]
                assert qa["is_impossible"] == (not qa["answers"])
                found[qa["id"]] = (paragraph["context"], qa)
    return found


PARAGRAPH = ('<P>Jump</P>\n<P>The river <A href="/wiki/Xarn">Xarn</A> is 412 km long. It was mapped in 1843 '
             'by <A href="/wiki/Ada_Br%C3%B6nner" title="Ada Brönner">Ada Brönner</A>, of Veloria, and Tom Hale.</P>\n'
             "<Table><Tr><Th>Club</Th><Th>Coach</Th></Tr><Tr><Td>Xarn FC</Td><Td>Zoë Müller</Td></Tr></Table>")



def independent_html_text(record, candidate):
    """A <P> candidate's text read straight from the HTML, without the converter's code: <SUP> citation
    marks removed (the NQ tokenizer leaves them out), tags stripped, entities decoded, whitespace collapsed."""
    import html as html_module

    markup = record["document_html"].encode("utf-8")[candidate["start_byte"] : candidate["end_byte"]].decode("utf-8")
    markup = re.sub(r"<SUP\b.*?</SUP>", "", markup, flags=re.DOTALL)
    return " ".join(html_module.unescape(re.sub(r"<[^>]*>", "", markup)).split())


def real_records():
    """(format, record) of every real NQ record in ../shared/data/nq."""
    records = [("full", json.loads(line)) for line in gzip.open(shared_file("nq", "nq-dev-10.full.jsonl.gz"))]
    for name in ("nq-dev-10.simplified.jsonl", "nq-train-1.simplified.jsonl", "nq-train-himym.simplified.jsonl",
                 "nq-train-wwe.simplified.jsonl"):
        records += [("simplified", json.loads(line)) for line in open(shared_file("nq", name), encoding="utf-8")]
    return records
