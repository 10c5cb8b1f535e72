"""Spans and annotations of Natural Questions: one type for the converter, prediction and the evaluation.

    span = as_span(record["long_answer_candidates"][3])           # a dict with offsets -> Span
    gold = choose_annotation(record["annotations"], "majority")    # -> Annotation (NULL_SPAN: no long answer)
    gold.long_answer.start_token, gold.yes_no_answer                # 'yes', 'no' or 'none' (lower case)

Offsets are end-exclusive; -1 (any negative) means "not given" (the simplified format has no bytes).
"""

import collections
from typing import NamedTuple

# The official evaluation's defaults (nq_eval.py / eval_utils.py of google-research-datasets/natural-questions):
# gold has a long (short) answer when at least this many of the 5 dev annotators gave one. The converter's
# --annotation majority uses the same rule (with min(2, annotators) on 1-annotation train records).
LONG_NON_NULL_THRESHOLD = 2
SHORT_NON_NULL_THRESHOLD = 2


class Span(NamedTuple):
    """Byte and token offsets, end-exclusive; -1 (any negative) means "not given"."""

    start_byte: int
    end_byte: int
    start_token: int
    end_token: int

    def is_null(self):
        return self.start_byte < 0 and self.end_byte < 0 and self.start_token < 0 and self.end_token < 0

    def has_bytes(self):
        return self.start_byte >= 0 and self.end_byte >= 0

    def has_tokens(self):
        return self.start_token >= 0 and self.end_token >= 0

    def as_dict(self):
        """The official prediction format's span object."""
        return {"start_token": self.start_token, "end_token": self.end_token,
                "start_byte": self.start_byte, "end_byte": self.end_byte}


NULL_SPAN = Span(-1, -1, -1, -1)


class Annotation(NamedTuple):
    """One annotator's answer; yes_no_answer is lower case: 'yes', 'no' or 'none'.

    long_answer_candidate: the index of the long answer in long_answer_candidates (-1: none or not given)."""

    long_answer: Span
    short_answers: tuple
    yes_no_answer: str
    long_answer_candidate: int = -1


NO_ANNOTATION = Annotation(NULL_SPAN, (), "none")


def as_span(span):
    """A Span from a Span or an NQ dict with start_token/end_token (start_byte/end_byte -1 when absent).
    KeyError when a token offset is missing."""
    if isinstance(span, Span):
        return span
    return Span(span.get("start_byte", -1), span.get("end_byte", -1), span["start_token"], span["end_token"])


# ---------------------------------------------------------------------------------------------
# The converter's choice of one gold annotation (the raw record dicts in, an Annotation out)
# ---------------------------------------------------------------------------------------------
def _has_long(annotation):
    return annotation["long_answer"]["start_token"] >= 0


def _has_short(annotation):
    return bool(annotation["short_answers"]) or annotation.get("yes_no_answer", "NONE") != "NONE"


def _long_span(annotation):
    la = annotation["long_answer"]
    return la["start_token"], la["end_token"]


def _short_key(annotation):
    spans = tuple((s["start_token"], s["end_token"]) for s in annotation["short_answers"])
    return spans, annotation.get("yes_no_answer", "NONE")


def annotation_of(annotation, with_short=True):
    """The Annotation of one raw annotation dict (None or a null long answer: NO_ANNOTATION)."""
    if annotation is None or not _has_long(annotation):
        return NO_ANNOTATION
    long_answer = annotation["long_answer"]
    candidate = long_answer.get("candidate_index", -1)
    if not with_short:
        return Annotation(as_span(long_answer), (), "none", candidate)
    return Annotation(as_span(long_answer), tuple(as_span(s) for s in annotation["short_answers"]),
                      annotation.get("yes_no_answer", "NONE").lower(), candidate)


def _most_voted(keys):
    """The most common key; ties go to the earliest."""
    votes = collections.Counter(keys)
    return max(votes, key=lambda key: (votes[key], -keys.index(key)))


def choose_annotation(annotations, mode):
    """Pick the gold long/short answer of a record ("first", "first-long" or "majority").

    majority, our reading of the official NQ evaluation (qa/nq/evaluate.py): a long answer is
    gold-present when at least LONG_NON_NULL_THRESHOLD annotators gave a non-null long answer, a short
    answer when at least SHORT_NON_NULL_THRESHOLD gave a non-null short answer or a yes/no answer. The
    official script then accepts a prediction matching ANY annotator; a converter needs one span, so we
    take the most common non-null long answer span (ties: the earliest annotator), and the most common
    short answer (spans + yes/no) among the annotators who gave that long answer (ties: earliest).
    If no annotator of that long answer gave a short answer, the example is long-only.
    Records with fewer annotators (train has 1) use min(threshold, n) as the threshold.
    """
    if not annotations:
        return NO_ANNOTATION
    if mode == "first":
        return annotation_of(annotations[0])
    if mode == "first-long":
        return annotation_of(next((a for a in annotations if _has_long(a)), None))
    with_long = [a for a in annotations if _has_long(a)]
    if len(with_long) < min(LONG_NON_NULL_THRESHOLD, len(annotations)):
        return NO_ANNOTATION
    best_long = _most_voted([_long_span(a) for a in with_long])
    agreeing = [a for a in with_long if _long_span(a) == best_long]
    if sum(_has_short(a) for a in annotations) < min(SHORT_NON_NULL_THRESHOLD, len(annotations)):
        return annotation_of(agreeing[0], with_short=False)
    with_short = [a for a in agreeing if _has_short(a)]
    if not with_short:
        return annotation_of(agreeing[0], with_short=False)
    short_keys = [_short_key(a) for a in with_short]
    return annotation_of(with_short[short_keys.index(_most_voted(short_keys))])
