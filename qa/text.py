"""Text helpers shared by the SQuAD and NQ code. Standard library only (qa/nq runs without numpy or torch).

    end = extend_over_marks("Cafe\\u0301 au lait", 4)     # 5: the span "Cafe" becomes "Café"

A tokenizer that strips accents (BERT's and ALBERT's uncased normalizers) maps a decomposed "é" ("e" + U+0301
COMBINING ACUTE ACCENT) to "e", and its character offsets end before the accent: a span cut with them reads
"Cafe" where the context says "Café" (an exact-match miss). A span's end therefore extends over the combining
marks that follow it: every character of Unicode category M (Mn nonspacing, Mc spacing, Me enclosing; all
characters with a nonzero canonical combining class are among them), as a grapheme cluster does.
"""

import functools
import sys
import unicodedata


def is_mark(char):
    """True for a combining mark: Unicode category Mn, Mc or Me."""
    return unicodedata.category(char)[0] == "M"


def extend_over_marks(text, end):
    """`end` (exclusive) of a span of `text`, moved past the combining marks right after it."""
    while 0 < end < len(text) and is_mark(text[end]):
        end += 1
    return end


@functools.cache
def mark_ranges():
    """[(first, last)] code point ranges (inclusive) of every combining mark, built once (~0.3 s)."""
    ranges, first, previous = [], None, None
    for code in range(sys.maxunicode + 1):
        if is_mark(chr(code)):
            if first is None:
                first = code
            previous = code
        elif first is not None:
            ranges.append((first, previous))
            first = None
    if first is not None:
        ranges.append((first, previous))
    return ranges
