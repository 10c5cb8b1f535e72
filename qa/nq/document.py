"""The document model of a Natural Questions record: its long-answer candidates, their text, and the
mapping between characters of that text, NQ tokens and bytes of document_html.

    for index, candidate in list_candidates(record):          # top-level ones; top_level_only=False: all
        context = candidate_context(record, index)             # .text is exactly a converted context
        span = char_span_to_tokens(context, char_start, char_end)
        # -> {"start_token", "end_token" (exclusive), "start_byte", "end_byte"} (bytes -1 in the simplified format)

Context text is rebuilt from the UTF-8 bytes of `document_html` between the tokens' byte offsets
(tags dropped, entities decoded, one space where the HTML has whitespace or a block-level tag
between two words, nothing where it has neither): "Röntgen</A>, of" reads "Röntgen, of", not the
token-joined "Röntgen , of". The converter (qa.nq.convert) and whole-document prediction
(qa.nq.predict) both read candidates through this module. Standard library only.
"""

import dataclasses
import html
import re
import urllib.parse

from qa.nq.annotation import as_span
from qa.nq.reader import RAW_TOKENS, BadRecord, LazyTokens
from qa.text import extend_over_marks

# Tags that separate words even when the HTML has no whitespace around them: on the real dev
# records 458 word pairs are joined only by `</A></LI><LI><A>` (navigation lists); inline tags
# (`</A>,`, `<I>`, `<SPAN>`, ...) join words as the browser would.
BLOCK_TAGS = frozenset(
    b"p br hr div li ul ol dl dt dd table thead tbody tfoot tr td th caption h1 h2 h3 h4 h5 h6 "
    b"blockquote pre section center figure figcaption".split()
)
TAG_RE = re.compile(rb"<!--.*?-->|<\s*/?\s*([A-Za-z][A-Za-z0-9]*)?[^>]*>", re.DOTALL)
# An HTML token of the simplified format: `<P>`, `</Td>`, and with attributes, whose spaces the
# simplified format turns into `_`: `<Td_colspan="4">` (117 such tokens in the 10 real dev records;
# this pattern flags exactly the tokens the full format marks html_token, on all 55,966 of them).
SIMPLIFIED_HTML_TOKEN_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:_[^<>]*)?>")
TAG_NAME_RE = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)")


@dataclasses.dataclass(frozen=True)
class CandidateContext:
    """A long-answer candidate's text exactly as the converter writes it as a SQuAD context, and
    where each of the candidate's NQ tokens lies in it."""

    text: str
    start_token: int  # the candidate's first NQ token: token_spans[i] is about token start_token + i
    token_spans: tuple  # (char_start, char_end) of each token in text; None for an HTML token
    token_bytes: tuple  # full format: (start_byte, end_byte) of each token in document_html; None when simplified
    context_type: str  # the tag the candidate starts with ("<P>", "<Table>", "<Ul>", ...) or "text"

    @property
    def end_token(self):
        return self.start_token + len(self.token_spans)



def _gap_separates(gap):
    """Whether the HTML bytes between two text tokens put a space between them."""
    if not gap:
        return False
    text = gap
    if b"<" in gap:
        for match in TAG_RE.finditer(gap):
            name = match.group(1)
            if name and name.lower() in BLOCK_TAGS:
                return True
        text = TAG_RE.sub(b"", gap)
    if not text:
        return False
    if b"&" in text:  # &nbsp; and friends
        return any(ch.isspace() for ch in html.unescape(text.decode("utf-8", "replace")))
    return any(ch.isspace() for ch in text.decode("utf-8", "replace"))


def full_format_words(record, tokens, start, end):
    """(token_index, text, space_before) of the text tokens in [start, end) of a full-format record.

    Token text is the token's own bytes of document_html, tags removed, entity-decoded (the `token`
    field is normalised: `&quot;` becomes `` or '', `[` becomes `(`). Text the NQ tokenizer left
    out (citation marks like `[1]`) stays out, as in the simplified format."""
    doc = record["_html_bytes"]
    words, previous_end = [], None
    for index in range(start, end):
        token = tokens[index]
        if token["html_token"]:
            continue
        raw = doc[token["start_byte"] : token["end_byte"]]
        if b"<" in raw:  # a token's span can hold markup: "'s" is `'</I>s` in "USA Today</I>'s" (real dev record)
            raw = TAG_RE.sub(b"", raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRecord(f"token {index} is not valid UTF-8 at bytes {token['start_byte']}-{token['end_byte']} ({exc})") from exc
        if "&" in text:
            text = html.unescape(text)
        space = previous_end is not None and _gap_separates(doc[previous_end : token["start_byte"]])
        words.append((index, text, space))
        previous_end = token["end_byte"]
    return words


def simplified_words(tokens, start, end):
    """(token_index, text, space_before) of the text tokens in [start, end) of simplified document_text.

    The simplified format is `" ".join(tokens)` with spaces inside tokens replaced by `_`, so its
    only separator is a single space and the original HTML spacing is lost ("Röntgen , of")."""
    words = []
    for index in range(start, end):
        token = tokens[index]
        if SIMPLIFIED_HTML_TOKEN_RE.fullmatch(token):
            continue
        words.append((index, token, bool(words)))
    return words


def build_text(words):
    """Join words; returns (text, {token_index: char offset})."""
    pieces, offsets, length = [], {}, 0
    for index, text, space in words:
        if space and pieces:
            pieces.append(" ")
            length += 1
        offsets[index] = length
        pieces.append(text)
        length += len(text)
    return "".join(pieces), offsets


def title(record):
    """The page title: document_title, or the title= of document_url (the full format has no title field)."""
    name = record.get("document_title")
    if name:
        return name
    query = urllib.parse.urlparse(html.unescape(record.get("document_url", ""))).query
    return urllib.parse.parse_qs(query).get("title", [""])[0].replace("_", " ")


# ---------------------------------------------------------------------------------------------
# Candidates and their text: one code path for the converter and for whole-document prediction
# ---------------------------------------------------------------------------------------------
def is_full_format(record):
    """Full format (document_tokens with byte offsets, possibly left raw by parse_line) or simplified."""
    return "document_tokens" in record or RAW_TOKENS in record


def document_tokens(record, span):
    """Tokens of `record` indexable over `span` (a candidate or long answer: start/end token and byte).

    Full format: the `document_tokens` dicts (from a record that parse_line left raw, only the
    span's own tokens are parsed); simplified: the token strings of `document_text`. The HTML
    bytes and the simplified split are cached in the record (a document is read once per candidate)."""
    if is_full_format(record):
        if "_html_bytes" not in record:
            record["_html_bytes"] = record["document_html"].encode("utf-8")
        if "document_tokens" in record:
            return record["document_tokens"]
        return LazyTokens(record[RAW_TOKENS], span)
    if "_simplified_tokens" not in record:
        record["_simplified_tokens"] = record["document_text"].split(" ")
    return record["_simplified_tokens"]


def text_words(record, tokens, start, end):
    """(token_index, text, space_before) of the text tokens in [start, end), full or simplified format."""
    if is_full_format(record):
        return full_format_words(record, tokens, start, end)
    return simplified_words(tokens, start, end)


def context_type_of(record, token):
    """'<P>', '<Table>', ... for a candidate starting with that tag (attributes dropped), else 'text'."""
    if is_full_format(record):
        text = token["token"] if token["html_token"] else ""
    else:
        text = token if SIMPLIFIED_HTML_TOKEN_RE.fullmatch(token) else ""
    match = TAG_NAME_RE.match(text)
    return f"<{match.group(1)}>" if match else "text"


def span_context(record, tokens, start, end, what="candidate"):
    """The CandidateContext of tokens [start, end) (tokens: document_tokens' answer); raises BadRecord when
    they lie outside the document."""
    if not 0 <= start < end <= len(tokens):
        raise BadRecord(f"example {record.get('example_id', '?')}: {what} tokens [{start}, {end}) outside the document "
                        f"({len(tokens)} tokens)")
    words = text_words(record, tokens, start, end)
    text, offsets = build_text(words)
    spans = [None] * (end - start)
    for index, word, _ in words:
        spans[index - start] = (offsets[index], offsets[index] + len(word))
    token_bytes = None
    if is_full_format(record):
        token_bytes = tuple((tokens[i]["start_byte"], tokens[i]["end_byte"]) for i in range(start, end))
    return CandidateContext(text, start, tuple(spans), token_bytes, context_type_of(record, tokens[start]))


def list_candidates(record, top_level_only=True):
    """[(candidate_index, candidate)] of a record's long-answer candidates, in document order:
    the top-level ones (NQ's `top_level`: not nested in another candidate) by default, all of them
    with top_level_only=False (table rows, list items inside a top-level table or list)."""
    return [(index, candidate) for index, candidate in enumerate(record["long_answer_candidates"])
            if candidate.get("top_level", True) or not top_level_only]


def candidate_context(record, candidate):
    """The CandidateContext of a candidate: its index in `long_answer_candidates`, or a dict with
    start_token/end_token (a candidate, or an annotation's long_answer; with start_byte/end_byte in
    the full format), or a Span. Its text is exactly the context the converter writes for that long answer.

    Works on full-format records (from json.loads, or from parse_line, which parses only this
    candidate's tokens) and on simplified ones."""
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        candidates = record["long_answer_candidates"]
        if not 0 <= candidate < len(candidates):
            raise BadRecord(f"example {record.get('example_id', '?')}: no candidate {candidate} "
                            f"(the record has {len(candidates)})")
        candidate = candidates[candidate]
    span = as_span(candidate)
    return span_context(record, document_tokens(record, span), span.start_token, span.end_token)


def token_span_to_chars(context, start_token, end_token):
    """(char_start, char_end) in context.text of the text tokens among NQ tokens [start_token,
    end_token), or None when the span is outside the candidate or holds only HTML tokens."""
    if not context.start_token <= start_token < end_token <= context.end_token:
        return None
    spans = [s for s in context.token_spans[start_token - context.start_token : end_token - context.start_token] if s]
    return (spans[0][0], spans[-1][1]) if spans else None


def char_span_to_tokens(context, char_start, char_end):
    """A character span of context.text (a prediction) -> its NQ span, as the official prediction
    format writes it: {"start_token", "end_token" (exclusive), "start_byte", "end_byte"}.

    The span covers every token whose characters overlap [char_start, char_end), so a prediction
    cut inside a word ("Röntgen" of "Röntgen,") maps to the whole token. Bytes are those of
    document_html (full format), -1 in the simplified format, which has none. Raises ValueError
    when no token overlaps (an empty span, or one holding only a space). An end right before combining marks
    is moved past them (qa.text.extend_over_marks): a token that is only marks belongs with the letter before."""
    char_end = extend_over_marks(context.text, char_end)
    inside = [i for i, span in enumerate(context.token_spans) if span and span[0] < char_end and span[1] > char_start]
    if char_start >= char_end or not inside:
        raise ValueError(f"characters [{char_start}, {char_end}) of the candidate at token {context.start_token} "
                         f"cover no token")
    first, last = inside[0], inside[-1]
    start_byte, end_byte = -1, -1
    if context.token_bytes is not None:
        start_byte, end_byte = context.token_bytes[first][0], context.token_bytes[last][1]
    return {"start_token": context.start_token + first, "end_token": context.start_token + last + 1,
            "start_byte": start_byte, "end_byte": end_byte}
