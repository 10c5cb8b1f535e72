"""A deterministic, learnable sample in the FULL Natural Questions format (for `make demo` and tests).

    records = generate(2000, seed=0, split="train")     # list of NQ records (dicts)
    write_sample("data/demo/raw/nq-train-sample.jsonl.gz", records)

The command line is scripts/make_nq_sample.py.

Each record is a small wiki-like page (`document_html` with real-looking tags, `document_tokens`
with exact UTF-8 byte offsets and `html_token` flags, `long_answer_candidates`, annotations)
about one made-up entity: a river, a mountain, a city (paragraphs), a football club (a table)
or a lake (a list). The block holding the facts is one of 4-8 top-level long-answer candidates;
the others are distractor paragraphs, tables and lists about the same entity that never hold the
answer, and table rows and list items are nested candidates (`top_level` false), as in real NQ,
so that whole-document prediction has to find the right candidate. The gold long answer is
always the facts block, so converted contexts are the same kind as before: the model learns
from them unchanged. Facts are templated and question words point at the answer ("how long" ->
"412 km", "who first mapped" -> a person, "when" -> a year), so a 2-layer ALBERT learns them on
CPU in minutes. Mix of the records (by design, before conversion):

    answerable, one short answer        52 %   (paragraphs; tables and lists included)
    answerable, two short answers        6 %   (multi-span: "first mapped by A and B")
    long answer only (unanswerable)     20 %   (asks a fact the paragraph does not give)
    yes/no                              10 %   ("is the river x longer than 300 km")
    no long answer (skipped)            12 %   (the page lacks the facts block: nobody finds an answer)

so about 66 % of the kept examples are answerable. Train records carry one annotation like the
real train set; dev records carry five (with disagreeing annotators, as in the real dev set),
and dev entities come from a different name stream than train. Names include non-ASCII
letters, and linked names (`<A href=...>Ada Brenner</A>`) put tags inside answers.
Same arguments, same bytes (gzip mtime 0).
"""

import gzip
import json
import random
import re
import string

from qa.storage import atomic_write

SPLIT_SEED_OFFSET = {"train": 0, "dev": 1_000_003}  # dev draws from its own random stream
KIND_WEIGHTS = {"answerable": 52, "multi_span": 6, "long_only": 20, "yes_no": 10, "null": 12}

SYLLABLES = ["var", "len", "tor", "mi", "sa", "ko", "rin", "dal", "bro", "ve", "lo", "na", "thu", "gar", "es",
             "mö", "ré", "å", "zel", "qui", "ban", "fen", "ost", "ul", "cai", "dor", "pel", "wyn"]
REGIONS = ["Veloria", "Ostmark", "Brenland", "Västmark", "Calderra", "Norvenia", "Solbruk", "Ardenne",
           "Kelvoria", "Mirensk", "Tarrow", "Élandre"]
FIRST_NAMES = ["Ada", "Tom", "Zoë", "José", "Mira", "Lars", "Ines", "Karl", "Nadia", "Otto", "Lena", "Hugo",
               "Sofía", "Emil", "Greta", "Anton"]
LAST_NAMES = ["Brenner", "Hale", "Müller", "Ångström", "Costa", "Novak", "Reyes", "Lind", "Fischer", "Dubois",
              "Kowal", "Marsh", "Öberg", "Varga", "Quinn", "Sato"]

# One topic = the long answer's HTML template (fields in braces; `person*` fields are linked),
# answerable questions (question template, answer field), an unanswerable question, and a
# yes/no question on the number field.
TOPICS = {
    "river": {
        "title": "{name} (river)",
        "block": "<P>The river {name} flows through {region} and is {length} long. It was first mapped in {year} by {person}.</P>",
        "multi": "<P>The river {name} flows through {region} and is {length} long. It was first mapped in {year} by {person} and {person2}.</P>",
        "questions": [("how long is the river {lname}", "length"), ("who first mapped the river {lname}", "person"),
                      ("when was the river {lname} first mapped", "year"), ("which region does the river {lname} flow through", "region")],
        "multi_question": "who first mapped the river {lname}",
        "unanswerable": ["what fish live in the river {lname}", "what is the source of the river {lname}"],
        "yes_no": ("is the river {lname} longer than {threshold} km", "length_value"),
    },
    "mountain": {
        "title": "Mount {name}",
        "block": "<P>Mount {name} is a peak in {region} with a height of {height}. It was first climbed in {year} by {person}.</P>",
        "multi": "<P>Mount {name} is a peak in {region} with a height of {height}. It was first climbed in {year} by {person} and {person2}.</P>",
        "questions": [("how high is mount {lname}", "height"), ("who first climbed mount {lname}", "person"),
                      ("when was mount {lname} first climbed", "year"), ("in which region is mount {lname}", "region")],
        "multi_question": "who first climbed mount {lname}",
        "unanswerable": ["what is the weather like on mount {lname}", "how many tourists visit mount {lname}"],
        "yes_no": ("is mount {lname} higher than {threshold} metres", "height_value"),
    },
    "city": {
        "title": "{name}",
        "block": "<P>{name} is a city in {region}, founded in {year}. Its mayor is {person} and it has {population} inhabitants.</P>",
        "multi": "<P>{name} is a city in {region}, founded in {year}. Its mayors were {person} and {person2} and it has {population} inhabitants.</P>",
        "questions": [("who is the mayor of {lname}", "person"), ("when was {lname} founded", "year"),
                      ("how many people live in {lname}", "population"), ("in which region is the city of {lname}", "region")],
        "multi_question": "who were the mayors of {lname}",
        "unanswerable": ["what is the main dish of {lname}", "who designed the flag of {lname}"],
        "yes_no": ("was {lname} founded before {threshold}", "year_value"),
    },
    "club": {
        "title": "{name} FC",
        "block": "<Table><Tr><Th>Club</Th><Th>Coach</Th><Th>Founded</Th><Th>Home</Th></Tr>"
                 "<Tr><Td>{name} FC</Td><Td>{person}</Td><Td>{year}</Td><Td>{region}</Td></Tr></Table>",
        "multi": "<Table><Tr><Th>Club</Th><Th>Coaches</Th><Th>Founded</Th><Th>Home</Th></Tr>"
                 "<Tr><Td>{name} FC</Td><Td>{person}, {person2}</Td><Td>{year}</Td><Td>{region}</Td></Tr></Table>",
        "questions": [("who is the coach of {lname} fc", "person"), ("when was {lname} fc founded", "year"),
                      ("where does {lname} fc play", "region")],
        "multi_question": "who coached {lname} fc",
        "unanswerable": ["what colour is the kit of {lname} fc", "who owns {lname} fc"],
        "yes_no": ("was {lname} fc founded before {threshold}", "year_value"),
    },
    "lake": {
        "title": "{name} Lake",
        "block": "<Ul><Li>{name} Lake lies in {region}.</Li><Li>Its depth is {depth}.</Li><Li>It was named by {person} in {year}.</Li></Ul>",
        "multi": "<Ul><Li>{name} Lake lies in {region}.</Li><Li>Its depth is {depth}.</Li><Li>It was named by {person} and {person2} in {year}.</Li></Ul>",
        "questions": [("how deep is {lname} lake", "depth"), ("who named {lname} lake", "person"),
                      ("when was {lname} lake named", "year"), ("where is {lname} lake", "region")],
        "multi_question": "who named {lname} lake",
        "unanswerable": ["what birds nest at {lname} lake", "how cold is {lname} lake in winter"],
        "yes_no": ("is {lname} lake deeper than {threshold} m", "depth_value"),
    },
}
TOPIC_WEIGHTS = {"river": 30, "mountain": 25, "city": 25, "club": 10, "lake": 10}
# The other candidates of a page: 3-7 of these around the answer block, so that whole-document
# prediction has to find the right one. They never hold the answer's fields (other people, years and
# regions, drawn distinct from the entity's); tables and lists bring nested candidates (rows, items).
DISTRACTORS = [
    "<P>{name} is mentioned in several old chronicles of {other_region}.</P>",
    "<P>Many visitors come to {other_region} every summer, and the local museum tells its history.</P>",
    "<P>The name {name} comes from an old word for a meeting place, according to {other_person}.</P>",
    "<P>In {other_year} a severe storm damaged several buildings near {name}.</P>",
    "<P>A festival is held in {other_region} each spring, with music, markets and boat races.</P>",
    "<P>The nearest railway station opened in {other_year} and is run by a regional company.</P>",
    "<P>Local schools teach the history of {name} and of the valleys around it.</P>",
    "<P>A study published by {other_person} describes the plants and animals of the area.</P>",
    "<Table><Tr><Th>Event</Th><Th>Year</Th></Tr><Tr><Td>Great storm</Td><Td>{other_year}</Td></Tr>"
    "<Tr><Td>First festival</Td><Td>{other_year2}</Td></Tr></Table>",
    "<Ul><Li>Neighbouring region: {other_region}</Li><Li>Partner town: {other_region2}</Li></Ul>",
]
DISTRACTOR_COUNT = (3, 7)  # -> 4 to 8 top-level candidates a page
NESTED_TAGS = {"<Tr>": "</Tr>", "<Li>": "</Li>"}  # candidates inside a table or list (top_level false), as in NQ

PIECE_RE = re.compile(r"<[^>]+>|\s+|[.,;:!?]|[^\s<.,;:!?]+")


class Page:
    """A document being written: UTF-8 HTML bytes plus NQ tokens with exact byte offsets."""

    def __init__(self):
        self.html = bytearray()
        self.tokens = []

    def raw(self, markup):
        self.html += markup.encode("utf-8")

    def token(self, text, html_token, markup=None):
        start = len(self.html)
        self.html += (markup or text).encode("utf-8")
        self.tokens.append({"end_byte": len(self.html), "html_token": html_token, "start_byte": start, "token": text})

    def emit(self, template, values):
        """Write a template; returns {field: (start_token, end_token, start_byte, end_byte)} of its fields."""
        spans = {}
        for literal, field, _, _ in string.Formatter().parse(template):
            self._pieces(literal)
            if field is None:
                continue
            value = str(values[field])
            linked = "person" in field
            if linked:
                slug = value.replace(" ", "_")
                self.token("<A>", True, f'<A href="/wiki/{slug}" title="{value}">')
            start_token, start_byte = len(self.tokens), len(self.html)
            self._pieces(value)
            spans[field] = (start_token, len(self.tokens), start_byte, len(self.html))
            if linked:
                self.token("</A>", True)
        return spans

    def _pieces(self, text):
        for piece in PIECE_RE.findall(text):
            if piece.isspace():
                self.raw(" ")
            elif piece.startswith("<"):
                self.token(re.sub(r"\s.*", "", piece.rstrip(">")) + ">", True, piece)
            else:
                self.token(piece, False)


def entity_name(rng):
    name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
    return name[0].upper() + name[1:]


def person(rng):
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _null_long():
    return {"candidate_index": -1, "end_byte": -1, "end_token": -1, "start_byte": -1, "start_token": -1}


def _annotation(rng, long_answer, short_spans=(), yes_no="NONE"):
    shorts = [{"end_byte": s[3], "end_token": s[1], "start_byte": s[2], "start_token": s[0]} for s in short_spans]
    return {"annotation_id": rng.getrandbits(64), "long_answer": long_answer or _null_long(), "short_answers": shorts,
            "yes_no_answer": yes_no}


def _other(rng, draw, *taken):
    """A value from draw(rng) different from every value in taken."""
    while True:
        value = draw(rng)
        if value not in taken:
            return value


def _candidates(page, start_token, start_byte):
    """The block just written as a top-level candidate, then its rows or items as nested candidates."""
    block = [{"end_byte": len(page.html), "end_token": len(page.tokens), "start_byte": start_byte,
              "start_token": start_token, "top_level": True}]
    for index in range(start_token, len(page.tokens)):
        closing = NESTED_TAGS.get(page.tokens[index]["token"])
        if closing:
            end = next(j for j in range(index, len(page.tokens)) if page.tokens[j]["token"] == closing) + 1
            block.append({"end_byte": page.tokens[end - 1]["end_byte"], "end_token": end,
                          "start_byte": page.tokens[index]["start_byte"], "start_token": index, "top_level": False})
    return block


def make_record(rng, split):
    """One NQ full-format record; the kind of example is drawn with KIND_WEIGHTS."""
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    topic_name = rng.choices(list(TOPIC_WEIGHTS), weights=list(TOPIC_WEIGHTS.values()))[0]
    topic = TOPICS[topic_name]
    length, height, depth = rng.randint(40, 990), rng.randint(800, 4800), rng.randint(5, 300)
    values = {
        "name": entity_name(rng), "region": rng.choice(REGIONS), "year": rng.randint(1650, 1950),
        "person": person(rng), "person2": person(rng), "length": f"{length} km", "height": f"{height} metres",
        "depth": f"{depth} m", "population": f"{rng.randint(2, 900)},{rng.randint(0, 999):03d}",
        "length_value": length, "height_value": height, "depth_value": depth,
    }
    values["year_value"] = values["year"]
    values["lname"] = values["name"].lower()
    values["other_person"] = _other(rng, person, values["person"], values["person2"])
    values["other_year"] = _other(rng, lambda r: r.randint(1650, 1990), values["year"])
    values["other_year2"] = _other(rng, lambda r: r.randint(1650, 1990), values["year"], values["other_year"])
    values["other_region"] = _other(rng, lambda r: r.choice(REGIONS), values["region"])
    values["other_region2"] = _other(rng, lambda r: r.choice(REGIONS), values["region"], values["other_region"])
    title = topic["title"].format(**values)

    page = Page()
    page.raw(f"<HTML><HEAD><TITLE>{title} - Wikipedia</TITLE></HEAD><BODY>")
    page.token(title.split()[0], False)  # the page title line, as in real NQ pages ("Trade winds - wikipedia")
    for word in title.split()[1:] + ["-", "Wikipedia"]:
        page.raw(" ")
        page.token(word, False)
    page.raw(" ")
    page.emit("<H1>{title}</H1>", {"title": title})
    low, high = DISTRACTOR_COUNT
    extra = kind == "null"  # no facts block there: one more distractor keeps 4-8 top-level candidates
    blocks = [(template, False) for template in rng.sample(DISTRACTORS, rng.randint(low + extra, high + extra))]
    # A null page lacks the facts block: its question is answered nowhere on it (as when NQ's annotators find
    # no answer), so a whole-document reader can be right to abstain there.
    position = rng.randint(0, len(blocks))
    if kind != "null":
        blocks.insert(position, (topic["multi" if kind == "multi_span" else "block"], True))
    candidates, answer_candidate, spans = [], None, None
    for template, is_answer in blocks:
        page.raw("\n")
        start_token, start_byte = len(page.tokens), len(page.html)
        block_spans = page.emit(template, values)
        if is_answer:
            answer_candidate, spans = len(candidates), block_spans
        candidates += _candidates(page, start_token, start_byte)
    page.raw("\n</BODY></HTML>")
    long_answer = None
    if answer_candidate is not None:
        candidate = candidates[answer_candidate]
        long_answer = {"candidate_index": answer_candidate,
                       **{k: candidate[k] for k in ("end_byte", "end_token", "start_byte", "start_token")}}

    threshold = None
    if kind == "null":
        question, _ = rng.choice(topic["questions"])
        shorts = []
    elif kind == "answerable":
        question, field = rng.choice(topic["questions"])
        shorts = [spans[field]]
    elif kind == "multi_span":
        question, shorts = topic["multi_question"], [spans["person"], spans["person2"]]
    elif kind == "long_only":
        question, shorts = rng.choice(topic["unanswerable"]), []
    else:
        question, value_field = topic["yes_no"]
        value = values[value_field]
        threshold = value + rng.choice((-1, 1)) * rng.randint(1, max(2, value // 4))
        shorts = []
    values["threshold"] = threshold
    question = question.format(**values)
    yes_no = "NONE"
    if kind == "yes_no":
        bigger = values[topic["yes_no"][1]] > threshold
        before = "before" in topic["yes_no"][0]  # "founded before Y" is YES when the year is smaller
        yes_no = "YES" if bigger != before else "NO"

    annotations = _annotations(rng, split, kind, long_answer, shorts, yes_no)
    return {
        "annotations": annotations,
        "document_html": page.html.decode("utf-8"),
        "document_title": title,
        "document_tokens": page.tokens,
        "document_url": f"https://en.wikipedia.org//w/index.php?title={title.replace(' ', '_')}&amp;oldid={rng.randint(10**8, 10**9)}",
        "example_id": rng.getrandbits(64) - 2**63,  # signed 64-bit, as in NQ (often beyond 2**53)
        "long_answer_candidates": candidates,
        "question_text": question,
        "question_tokens": question.split(),
    }


def _annotations(rng, split, kind, long_answer, shorts, yes_no):
    """One annotation for train; five for dev, where the majority (2 of 5) gives the intended gold."""
    if kind == "null":  # the page does not hold the answer: nobody gives one
        gold, others = _annotation(rng, None), [_annotation(rng, None)] * 4
    elif kind == "long_only":
        gold, others = _annotation(rng, long_answer), [_annotation(rng, long_answer)] * 2 + [_annotation(rng, None)] * 2
    elif kind == "yes_no":
        gold = _annotation(rng, long_answer, yes_no=yes_no)
        others = [_annotation(rng, long_answer, yes_no=yes_no)] * 2 + [_annotation(rng, long_answer), _annotation(rng, None)]
    else:
        gold = _annotation(rng, long_answer, shorts)
        others = [_annotation(rng, long_answer, shorts)] * 2 + [_annotation(rng, long_answer, shorts[:1]), _annotation(rng, None)]
    if split == "train":
        return [gold]
    return [gold] + [dict(a, annotation_id=rng.getrandbits(64)) for a in others]


def generate(num_examples, seed, split):
    rng = random.Random(seed + SPLIT_SEED_OFFSET[split])
    return [make_record(rng, split) for _ in range(num_examples)]


def write_sample(path, records):
    with atomic_write(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
