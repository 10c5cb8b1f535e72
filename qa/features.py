"""SQuAD examples -> model windows and labels, with fast tokenizers, in bounded memory, cached safely.

    python -m qa.features data/squad/dev-v2.0.json --tokenizer outputs/demo/tiny-albert
    python -m qa.features data/squad/train-v2.0.json --tokenizer albert-xlarge-v2 --training --threads 4
    python -m qa.features data/nq/nq_dev.json --tokenizer DIR --max_seq_length 512 --doc_stride 128 \
        --max_query_length 64 --cache_dir /mnt/cache

Each run prints one JSON line: examples, features, seconds, peak memory (MB), and the cache folder.

In code:

    features = load_or_build_features("dev.json", examples, tokenizer, FeatureParams(), training=False)
    batch = features.batch([0, 1, 2])          # dict of numpy arrays, trimmed to the longest window

Every parameter keeps the meaning it had in the legacy converter (HuggingFace
`squad_convert_examples_to_features`, google-research/bert `run_squad.py`):
- `max_seq_length`: tokens per window, special tokens included.
- `doc_stride`: the step between window starts (NOT the overlap, which is what the tokenizers'
  `stride` argument means). Windows start at 0, doc_stride, 2*doc_stride, ... and stop at the
  first one that reaches the end of the context.
- `max_query_length`: questions are cut to that many tokens.
- token-is-max-context: a context token seen by several windows counts only in the window where
  it has the most context on both sides (score = min(left, right) + 0.01 * window length).
- a window that does not contain the whole answer (or an unanswerable question) is labelled with
  the CLS index, and answer type "none"; a window that does gets the example's answer type
  (qa/answer_type.py: short, long, yes, no), the label of the answer-type head.

What differs from the legacy converter is how: each distinct context is tokenised once (with
character offsets) instead of word by word per question, questions are tokenised in batches, and
windows are assembled with numpy; chunks of examples go straight to disk, so memory does not grow
with the data. The legacy converter made about 190 features/s per core on SQuAD; see
`benchmarks/bench_features.py` for this one.
"""

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import resource
import socket
import sys
import time

import numpy as np

from qa import answer_type, storage, text

# Bump whenever the meaning or layout of the cached arrays changes: old caches then stop matching.
CODE_VERSION = "features-4"  # 2: COMPLETE lists every file's size and blake2b; 3: answer_types labels;
# 4: offsets end past the combining marks after a token (qa.text)
# Examples per chunk: a chunk's arrays (about 5 KB per 384-token window, 1-3 windows an example
# on SQuAD) are what the build holds in memory, so 2,000 examples stay around 10-30 MB.
CHUNK_EXAMPLES = 2000
# Test hook: seconds to sleep after each chunk is written, so a test can kill a build half-way.
SLEEP_ENV = "QA_FEATURES_TEST_SLEEP_AFTER_CHUNK"
COMPLETE = storage.MARKER  # written last into a cache folder, with every array file's size and hash

# name -> (dtype, per-feature shape as a function of max_seq_length); the order is the file layout.
ARRAY_SPECS = {
    "input_ids": (np.int32, lambda L: (L,)),
    "token_type_ids": (np.int8, lambda L: (L,)),
    "lengths": (np.int32, lambda L: ()),
    "example_index": (np.int32, lambda L: ()),
    "cls_index": (np.int32, lambda L: ()),
    "offsets": (np.int32, lambda L: (L, 2)),
    "token_is_max_context": (np.bool_, lambda L: (L,)),
    "start_positions": (np.int32, lambda L: ()),
    "end_positions": (np.int32, lambda L: ()),
    "answer_types": (np.int8, lambda L: ()),
}
LABEL_ARRAYS = ("start_positions", "end_positions", "answer_types")


def padded_width(longest, max_length, pad_to_max_length=False, pad_to_multiple_of=1):
    """The width a batch is padded to: its longest window (`longest` tokens, at least 1) rounded up to a multiple of
    `pad_to_multiple_of` (tensor cores want multiples of 8), never past `max_length`; `max_length` with
    pad_to_max_length."""
    if pad_to_max_length:
        return max_length
    return min(max_length, -(-max(int(longest), 1) // pad_to_multiple_of) * pad_to_multiple_of)


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    max_seq_length: int = 384  # tokens per window, special tokens included
    doc_stride: int = 128  # legacy meaning: step between window starts (NOT the overlap)
    max_query_length: int = 64  # questions are cut to this many tokens

    def check(self, num_special_tokens):
        """Raise ValueError saying what to change when no context token would fit in a window."""
        for name in ("max_seq_length", "doc_stride", "max_query_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_seq_length - self.max_query_length - num_special_tokens < 1:
            raise ValueError(
                f"max_seq_length {self.max_seq_length} leaves no room for the context after a question of "
                f"max_query_length {self.max_query_length} and {num_special_tokens} special tokens: "
                f"raise --max_seq_length or lower --max_query_length"
            )


@dataclasses.dataclass
class Features:
    """N windows as numpy arrays (memory-mapped when loaded from the cache).

    offsets are character offsets in the example's context for context tokens, -1 elsewhere;
    start/end_positions are None unless built for training."""

    input_ids: np.ndarray  # int32 [N, max_seq_length], padded with the tokenizer's pad id
    token_type_ids: np.ndarray  # int8 [N, max_seq_length]
    lengths: np.ndarray  # int32 [N] real tokens; attention mask = arange < length
    example_index: np.ndarray  # int32 [N] index into the examples list
    cls_index: np.ndarray  # int32 [N]
    offsets: np.ndarray  # int32 [N, max_seq_length, 2]
    token_is_max_context: np.ndarray  # bool [N, max_seq_length]
    start_positions: np.ndarray | None = None  # int32 [N], training only
    end_positions: np.ndarray | None = None
    answer_types: np.ndarray | None = None  # int8 [N], training only: qa.answer_type id, NONE unless the span is in
    # Not a dataclass field (no annotation): the cache folder the arrays are mapped from, else None.
    cache_folder = None

    def __len__(self):
        return len(self.lengths)

    def batch(self, indices, pad_to_max_length=False, pad_to_multiple_of=1):
        """Model inputs for the windows at `indices`, trimmed to the longest one (rounded up to a multiple
        of `pad_to_multiple_of`: tensor cores want multiples of 8) unless pad_to_max_length."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = np.asarray(self.lengths[indices])
        width = padded_width(lengths.max(initial=0), self.input_ids.shape[1], pad_to_max_length, pad_to_multiple_of)
        batch = {
            "input_ids": np.asarray(self.input_ids[indices, :width], dtype=np.int64),
            "token_type_ids": np.asarray(self.token_type_ids[indices, :width], dtype=np.int64),
            "attention_mask": (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64),
        }
        if self.start_positions is not None:
            batch["start_positions"] = np.asarray(self.start_positions[indices], dtype=np.int64)
            batch["end_positions"] = np.asarray(self.end_positions[indices], dtype=np.int64)
        if self.answer_types is not None:
            batch["answer_types"] = np.asarray(self.answer_types[indices], dtype=np.int64)
        return batch


# ---------------------------------------------------------------------------------------------
# Pure pieces: windows, max-context flags, answer labels
# ---------------------------------------------------------------------------------------------
def window_spans(num_tokens, max_tokens_for_doc, doc_stride):
    """(start, length) of each window over `num_tokens` context tokens, exactly the legacy loop.

    An empty context still gets one empty window, so every example has a prediction."""
    spans = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans or [(0, 0)]


def max_context_flags(spans, num_tokens):
    """For each span, a bool array over its tokens: is this the span where the token has most context?

    Legacy `_new_check_is_max_context`: score = min(left, right) + 0.01 * length, the first span
    with the best score wins."""
    if len(spans) == 1:
        return [np.ones(spans[0][1], dtype=bool)]
    # One pass over the spans with a running best per token: memory is O(num_tokens), where a dense
    # [spans x tokens] score tried to allocate 1.48 TiB for a 5 MB context.
    best_score = np.full(num_tokens, -np.inf)
    best_span = np.zeros(num_tokens, dtype=np.int64)
    for k, (start, length) in enumerate(spans):
        position = np.arange(length)
        score = np.minimum(position, length - 1 - position) + 0.01 * length
        better = score > best_score[start:start + length]  # strict: the first span with the best score wins
        best_score[start:start + length][better] = score[better]
        best_span[start:start + length][better] = k
    return [best_span[start:start + length] == k for k, (start, length) in enumerate(spans)]


@functools.cache
def _mark_table():
    """bool [sys.maxunicode + 1]: is this code point a combining mark (qa.text.is_mark)."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for first, last in text.mark_ranges():
        table[first:last + 1] = True
    return table


def extend_over_marks(context, offsets):
    """Token offsets [T, 2] of `context` with each token's end moved past the combining marks right after it,
    never into the next token: a tokenizer that strips accents ends "Cafe" before the U+0301 of a decomposed
    "é", and the answer would be cut without it. ASCII contexts are returned as they are, at once."""
    if context.isascii() or len(offsets) == 0:
        return offsets
    marks = _mark_table()[np.frombuffer(context.encode("utf-32-le"), dtype=np.uint32)]
    edges = np.diff(marks.astype(np.int8), prepend=0, append=0)
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(run_starts) == 0:
        return offsets
    ends = offsets[:, 1]
    run = np.minimum(np.searchsorted(run_starts, ends), len(run_starts) - 1)
    follows = (run_starts[run] == ends) & (ends > offsets[:, 0])
    if not follows.any():
        return offsets
    next_start = np.r_[offsets[1:, 0], np.iinfo(np.int32).max]
    extended = offsets.copy()
    extended[follows, 1] = np.minimum(run_ends[run[follows]], np.maximum(next_start[follows], ends[follows]))
    return extended


def answer_token_span(token_offsets, answer_start, answer_end):
    """First and last context token covering the answer characters [answer_start, answer_end), or None.

    Start = first token ending after answer_start; end = last token starting before answer_end."""
    if len(token_offsets) == 0 or answer_end <= answer_start:
        return None
    first = int(np.searchsorted(token_offsets[:, 1], answer_start, side="right"))
    last = int(np.searchsorted(token_offsets[:, 0], answer_end, side="left")) - 1
    if first >= len(token_offsets) or last < first:
        return None
    return first, last


# ---------------------------------------------------------------------------------------------
# The tokenizer side: a private copy of the Rust tokenizer and the special-token template
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Template:
    """Where question (A) and context (B) go among the special tokens, from one encoded pair."""

    head_ids: tuple  # specials before the question
    head_types: tuple
    question_type: int
    middle_ids: tuple  # specials between question and context
    middle_types: tuple
    context_type: int
    tail_ids: tuple  # specials after the context
    tail_types: tuple
    cls_id: int | None

    @property
    def num_special(self):
        return len(self.head_ids) + len(self.middle_ids) + len(self.tail_ids)


def _backend(tokenizer):
    """An independent copy of the Rust tokenizer with no truncation or padding configured."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(
            f"{type(tokenizer).__name__} has no fast (Rust) tokenizer: load it with "
            f"AutoTokenizer.from_pretrained(...) so that it has a tokenizer.json"
        )
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def _template(backend, tokenizer):
    """Read the pair template (e.g. [CLS] A [SEP] B [SEP]) from one pair of known lengths."""
    question = backend.encode("a b", add_special_tokens=False)  # lengths differ, so A and B are told apart
    context = backend.encode("a b c d e", add_special_tokens=False)
    pair = backend.post_process(question, context, add_special_tokens=True)
    parts = []  # runs of ("S", [ids], [types]) and ("T", length, type)
    for token_id, type_id, special in zip(pair.ids, pair.type_ids, pair.special_tokens_mask):
        kind = "S" if special else "T"
        if parts and parts[-1][0] == kind:
            parts[-1][1].append(token_id)
            parts[-1][2].append(type_id)
        else:
            parts.append((kind, [token_id], [type_id]))
    texts = [p for p in parts if p[0] == "T"]
    if [len(p[1]) for p in texts] != [len(question.ids), len(context.ids)]:
        raise NotImplementedError(f"{type(tokenizer).__name__}: pair template not of the form [specials] A [specials] B [specials]")
    segments = []  # head, middle, tail specials
    current = ([], [])
    for kind, ids, types in parts:
        if kind == "S":
            current[0].extend(ids)
            current[1].extend(types)
        else:
            segments.append(current)
            current = ([], [])
    segments.append(current)
    (head, middle, tail) = segments
    return _Template(
        tuple(head[0]), tuple(head[1]), texts[0][2][0], tuple(middle[0]), tuple(middle[1]), texts[1][2][0],
        tuple(tail[0]), tuple(tail[1]), getattr(tokenizer, "cls_token_id", None),
    )


# ---------------------------------------------------------------------------------------------
# One chunk of examples -> arrays
# ---------------------------------------------------------------------------------------------
def _build_chunk(examples, first_index, backend, template, params, training, pad_id):
    """Features of examples[...] (whose global index starts at first_index) as a dict of arrays."""
    L = params.max_seq_length
    # Every distinct context once (contexts of one paragraph are the same string), then all questions.
    context_slot = {}
    for example in examples:
        context_slot.setdefault(example.context, len(context_slot))
    contexts = list(context_slot)
    context_encodings = backend.encode_batch(contexts, add_special_tokens=False)
    context_ids = [np.array(e.ids, dtype=np.int32) for e in context_encodings]
    context_offsets = [extend_over_marks(context, np.array(e.offsets, dtype=np.int32).reshape(-1, 2))
                       for context, e in zip(contexts, context_encodings)]
    del context_encodings
    question_ids = [
        np.array(e.ids[: params.max_query_length], dtype=np.int32)
        for e in backend.encode_batch_fast([ex.question for ex in examples], add_special_tokens=False)
    ]

    # Windows of every example first, so the chunk's arrays are allocated once.
    plans = []
    for example, question in zip(examples, question_ids):
        slot = context_slot[example.context]
        max_tokens_for_doc = L - len(question) - template.num_special
        spans = window_spans(len(context_ids[slot]), max_tokens_for_doc, params.doc_stride)
        plans.append((slot, spans))
    n = sum(len(spans) for _, spans in plans)
    out = {
        "input_ids": np.full((n, L), pad_id, dtype=np.int32),
        "token_type_ids": np.zeros((n, L), dtype=np.int8),
        "lengths": np.zeros(n, dtype=np.int32),
        "example_index": np.zeros(n, dtype=np.int32),
        "cls_index": np.zeros(n, dtype=np.int32),
        "offsets": np.full((n, L, 2), -1, dtype=np.int32),
        "token_is_max_context": np.zeros((n, L), dtype=bool),
    }
    if training:
        out["start_positions"] = np.zeros(n, dtype=np.int32)
        out["end_positions"] = np.zeros(n, dtype=np.int32)
        out["answer_types"] = np.zeros(n, dtype=np.int8)  # answer_type.NONE

    t = template
    row = 0
    for local_index, (example, question, (slot, spans)) in enumerate(zip(examples, question_ids, plans)):
        ids, offsets = context_ids[slot], context_offsets[slot]
        head_ids = np.concatenate([t.head_ids, question, t.middle_ids]).astype(np.int32)
        head_types = np.array(
            list(t.head_types) + [t.question_type] * len(question) + list(t.middle_types), dtype=np.int8
        )
        head = len(head_ids)
        cls_index = t.head_ids.index(t.cls_id) if t.cls_id in t.head_ids else 0
        answer = None
        if training and not example.is_impossible and example.answers:
            gold = example.answers[0]
            answer = answer_token_span(offsets, gold.start, gold.start + len(gold.text))
        flags = max_context_flags(spans, len(ids))
        for (start, length), flag in zip(spans, flags):
            end = head + length
            total = end + len(t.tail_ids)
            out["input_ids"][row, :head] = head_ids
            out["input_ids"][row, head:end] = ids[start:start + length]
            out["input_ids"][row, end:total] = t.tail_ids
            out["token_type_ids"][row, :head] = head_types
            out["token_type_ids"][row, head:end] = t.context_type
            out["token_type_ids"][row, end:total] = t.tail_types
            out["offsets"][row, head:end] = offsets[start:start + length]
            out["token_is_max_context"][row, head:end] = flag
            if t.cls_id is not None and t.cls_id in t.tail_ids:  # XLNet-style: CLS at the end
                cls_index = end + t.tail_ids.index(t.cls_id)
            out["lengths"][row] = total
            out["example_index"][row] = first_index + local_index
            out["cls_index"][row] = cls_index
            if training:
                if answer is not None and start <= answer[0] and answer[1] < start + length:
                    out["start_positions"][row] = head + answer[0] - start
                    out["end_positions"][row] = head + answer[1] - start
                    out["answer_types"][row] = answer_type.type_id(example.answer_type)  # the window holds the span
                else:
                    out["start_positions"][row] = out["end_positions"][row] = cls_index
            row += 1
    return out


def _chunks(examples, tokenizer, params, training, threads, chunk_examples):
    """Yield each chunk's arrays in order; at most 2 * threads chunks are in flight at once."""
    backend = _backend(tokenizer)
    template = _template(backend, tokenizer)
    params.check(template.num_special)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    starts = range(0, len(examples), chunk_examples)

    def work(first):
        return _build_chunk(examples[first:first + chunk_examples], first, backend, template, params, training, pad_id)

    if threads <= 1:
        for first in starts:
            yield work(first)
        return
    # The Rust tokenizer releases the GIL, so threads over chunks run the tokenisation in parallel.
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        pending = collections.deque()
        for first in starts:
            pending.append(pool.submit(work, first))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _empty(params, training):
    return {
        name: np.zeros((0, *shape(params.max_seq_length)), dtype=dtype)
        for name, (dtype, shape) in ARRAY_SPECS.items()
        if training or name not in LABEL_ARRAYS
    }


def build_features(examples, tokenizer, params, training, threads=1, chunk_examples=CHUNK_EXAMPLES):
    """All windows of `examples`, in memory (use load_or_build_features for big data)."""
    parts = list(_chunks(examples, tokenizer, params, training, threads, chunk_examples))
    parts = parts or [_empty(params, training)]
    return Features(**{name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


# ---------------------------------------------------------------------------------------------
# The cache: keyed by content, written to a temp folder, COMPLETE marker last, renamed atomically
# ---------------------------------------------------------------------------------------------
def file_sha256(path):
    """sha256 of the file's bytes (local path or s3:// URI)."""
    digest = hashlib.sha256()
    with contextlib.closing(storage.open_raw(path)) as raw:
        # 64 KB blocks: as fast as 1 MB ones (0.2 s for 200 MB either way) and a smaller constant
        # in the peak memory of a build.
        for block in iter(lambda: raw.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_sha256(tokenizer):
    """sha256 of what the windows depend on: the Rust tokenizer's full definition (vocabulary, normalizer,
    pre-tokenizer, pair template) and the pad/CLS ids. Not the files' bytes: the copy a checkpoint saves has
    another tokenizer_config.json (metadata only), and a resume must not rebuild the cache (~20 minutes for
    the guide's NQ subset) for it."""
    digest = hashlib.sha256()
    digest.update(_backend(tokenizer).to_str().encode())
    digest.update(repr((tokenizer.pad_token_id, getattr(tokenizer, "cls_token_id", None))).encode())
    return digest.hexdigest()


def examples_sha256(examples):
    """Digest of which questions, in which order, and their answer types (the windows' type labels): a subset
    (--max_train_samples) gets its own cache."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.qas_id}\t{example.answer_type}\n".encode())
    return digest.hexdigest()


def cache_key(data_file, tokenizer, params, training, examples=None):
    """Hex key of everything the features depend on: data bytes, which examples of it, tokenizer, parameters,
    training, code. Without `examples` the key stands for the whole file."""
    described = {
        "code_version": CODE_VERSION,
        "data_sha256": file_sha256(data_file),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "params": dataclasses.asdict(params),
        "training": bool(training),
    }
    if examples is not None:
        described["examples_sha256"] = examples_sha256(examples)
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def default_cache_dir(data_file):
    """`<folder of the data file>/.features_cache` (the current folder for s3:// data)."""
    if storage.is_s3(data_file):
        return os.path.join(os.getcwd(), ".features_cache")
    return os.path.join(os.path.dirname(os.path.abspath(data_file)), ".features_cache")


class DamagedCacheError(ValueError):
    """A cache folder whose files do not match its COMPLETE marker, or whose arrays are out of bounds."""


def open_cached_features(folder, check_hashes=True):
    """Memory-map a complete cache folder, verified first: every array file against the size and blake2b of
    its COMPLETE marker (about 1 s per GB), then shapes and label bounds. Raises FileNotFoundError when there
    is no complete cache, DamagedCacheError (naming the file) when it cannot be trusted."""
    problem = storage.folder_problem(folder, COMPLETE, check_hashes=check_hashes)
    meta = storage.read_marker(folder, COMPLETE)
    if meta is None:
        raise FileNotFoundError(f"{folder}: {problem}")
    if problem is not None:
        raise DamagedCacheError(f"{folder}: {problem}")
    arrays = {}
    for name, spec in meta["arrays"].items():
        shape = tuple(spec["shape"])
        path = os.path.join(folder, f"{name}.bin")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize
        if os.path.getsize(path) != expected:
            raise DamagedCacheError(f"{path}: {os.path.getsize(path)} bytes, the shape {shape} needs {expected}")
        if shape[0] == 0:  # np.memmap cannot map an empty file
            arrays[name] = np.zeros(shape, dtype=spec["dtype"])
        else:
            arrays[name] = np.memmap(path, dtype=spec["dtype"], mode="r", shape=shape)
    features = Features(**arrays)
    _check_bounds(features, folder)
    features.cache_folder = folder
    return features


def _check_bounds(features, folder):
    """Labels and lengths inside their windows: what a same-size garbage file would break silently."""
    width = features.input_ids.shape[1]
    checks = [("lengths", features.lengths, 0, width)]
    if features.start_positions is not None:
        checks += [("start_positions", features.start_positions, 0, width - 1),
                   ("end_positions", features.end_positions, 0, width - 1)]
    if features.answer_types is not None:
        checks.append(("answer_types", features.answer_types, 0, len(answer_type.TYPES) - 1))
    for name, values, low, high in checks:
        if len(values) and (int(values.min()) < low or int(values.max()) > high):
            raise DamagedCacheError(f"{os.path.join(folder, name + '.bin')}: values outside [{low}, {high}]")


def _write_cache(final, examples, tokenizer, params, training, threads, chunk_examples, log):
    """Build chunk by chunk into a temp folder beside `final` (storage.atomic_folder: COMPLETE with every
    file's hash written last, then renamed)."""
    cache_dir, final_name = os.path.split(final)
    storage.reap_abandoned(cache_dir)  # temp folders of builds whose process is gone (killed, crashed)
    started = time.time()
    names = [n for n in ARRAY_SPECS if training or n not in LABEL_ARRAYS]
    meta = {"code_version": CODE_VERSION, "examples": len(examples), "params": dataclasses.asdict(params),
            "training": bool(training)}
    done = {"examples": 0, "bytes": 0}  # for the space a full disk needed: bytes per example so far, times all
    try:
        with storage.atomic_folder(final, COMPLETE, extra=lambda: meta, replace=False,
                                   tmp=f"{final}.tmp-{os.getpid()}") as tmp:
            rows = _write_arrays(tmp, names, examples, tokenizer, params, training, threads, chunk_examples, done)
            meta.update(features=rows, seconds=round(time.time() - started, 3), arrays={
                name: {"dtype": np.dtype(ARRAY_SPECS[name][0]).str,
                       "shape": [rows, *ARRAY_SPECS[name][1](params.max_seq_length)]}
                for name in names})
    except Exception as exc:
        from qa.checkpoints import DiskFullError, is_disk_full

        if not is_disk_full(exc):
            raise
        per_example = done["bytes"] / done["examples"] if done["examples"] else 0
        raise DiskFullError(storage.no_space_message(
            cache_dir, int(per_example * len(examples)) or done["bytes"], f"the feature cache {final_name}",
            "free space there, or give " + ("EXTRA=--features_cache_dir DIR" if os.environ.get("QA_VIA_MAKE") == "1"
                                            else "--features_cache_dir") + " a folder on a bigger disk",
            at_least=not per_example)) from exc
    return meta


def _write_arrays(tmp, names, examples, tokenizer, params, training, threads, chunk_examples, done):
    """Every array file of the cache, chunk by chunk; returns the number of features (rows)."""
    sleep = float(os.environ.get(SLEEP_ENV, "0") or 0)
    rows = 0
    with contextlib.ExitStack() as stack:  # every file closed even when closing one fails (a full disk)
        files = {name: stack.enter_context(open(os.path.join(tmp, f"{name}.bin"), "wb")) for name in names}
        for chunk in _chunks(examples, tokenizer, params, training, threads, chunk_examples):
            done["bytes"] += sum(chunk[name].nbytes for name in names)
            done["examples"] = min(len(examples), done["examples"] + chunk_examples)
            for name in names:
                # The array's own buffer, not a .tobytes() copy (the offsets of a chunk are ~6 MB).
                files[name].write(np.ascontiguousarray(chunk[name]).reshape(-1).view(np.uint8))
            rows += len(chunk["lengths"])
            # Let go of this chunk before the next one is built: `chunk` would otherwise keep it
            # alive during the next build, and two chunks would be the floor of the peak.
            del chunk
            if sleep:
                time.sleep(sleep)
    return rows


# A process that reads or writes a cache folder holds a shared flock on this file in it until it ends (the kernel
# drops it then, however the process ends): scripts/clean_cache.sh deletes a features-<key> folder only under
# the exclusive lock, so never one a live run maps. The file's text names the last process that took it.
IN_USE_LOCK = ".in_use.lock"
_held_cache_locks = {}  # cache folder -> open descriptor holding the shared lock, for the process's lifetime


def hold_cache_dir(cache_dir):
    """Take (once per process) the shared lock of `cache_dir`; filesystems without locks go on unprotected."""
    cache_dir = os.path.abspath(cache_dir)
    if cache_dir in _held_cache_locks:
        return
    fd = os.open(os.path.join(cache_dir, IN_USE_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while clean_cache.sh deletes a folder here
    except OSError:
        os.close(fd)
        return
    with contextlib.suppress(OSError):
        note = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
    _held_cache_locks[cache_dir] = fd


def release_cache_dirs():
    """Drop every cache lock this process holds (a process that goes on after its features are done, e.g. a test
    that unmounts the folder; a run keeps its locks until it ends)."""
    while _held_cache_locks:
        os.close(_held_cache_locks.popitem()[1])


def load_or_build_features(data_file, examples, tokenizer, params, training, cache_dir=None, threads=1,
                           overwrite_cache=False, log=print, chunk_examples=CHUNK_EXAMPLES, check_hashes=True):
    """Features of `examples` (read from `data_file`), from the cache when it matches, else built into it.

    check_hashes: verify every array file against the blake2b of its marker (about a second per GB); under
    torchrun rank 0 does, the others (reading the cache rank 0 just verified or built) check sizes and bounds.

    The cache folder is `cache_dir/features-<cache_key>/`; it is only read when its COMPLETE marker
    exists, and only written through a temp folder renamed at the end."""
    cache_dir = cache_dir or default_cache_dir(data_file)
    os.makedirs(cache_dir, exist_ok=True)
    hold_cache_dir(cache_dir)
    final = os.path.join(cache_dir, f"features-{cache_key(data_file, tokenizer, params, training, examples)}")
    meta = storage.read_marker(final, COMPLETE)
    if meta is not None and not overwrite_cache:
        if meta.get("examples") == len(examples):
            try:
                features = open_cached_features(final, check_hashes=check_hashes)
                log(f"features: using cache {final} ({meta['features']} features of {meta['examples']} examples)")
                return features
            except DamagedCacheError as exc:
                log(f"features: the cache cannot be trusted ({exc}): rebuilding it")
        else:
            log(f"features: cache {final} has {meta.get('examples')} examples, not {len(examples)}: rebuilding")
    if os.path.exists(final):
        storage.remove_tree(final)  # renamed out of sight first: the final name never holds a half-deleted folder
    log(f"features: building {len(examples)} examples of {data_file} into {final}")
    meta = _write_cache(final, examples, tokenizer, params, training, threads, chunk_examples, log)
    log(f"features: built {meta['features']} features in {meta['seconds']} s")
    return open_cached_features(final, check_hashes=False)  # just written and hashed


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="SQuAD-format JSON file")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder or hub name (AutoTokenizer)")
    parser.add_argument("--max_seq_length", type=int, default=FeatureParams.max_seq_length)
    parser.add_argument("--doc_stride", type=int, default=FeatureParams.doc_stride, help="step between window starts")
    parser.add_argument("--max_query_length", type=int, default=FeatureParams.max_query_length)
    parser.add_argument("--training", action="store_true", help="add start/end labels (training features)")
    parser.add_argument("--threads", type=int, default=1, help="threads over chunks of examples")
    parser.add_argument("--cache_dir", default=None, help="default: .features_cache beside the data file")
    parser.add_argument("--overwrite_cache", action="store_true", help="rebuild even when a matching cache exists")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if not storage.is_s3(args.data) and not os.path.exists(args.data):
        parser.error(f"{args.data}: no such file (run `make data` first)")
    return args


def main(argv=None):
    args = parse_args(argv)
    from transformers import AutoTokenizer

    from qa.squad_io import SquadFormatError, read_squad

    params = FeatureParams(args.max_seq_length, args.doc_stride, args.max_query_length)
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    try:
        examples = read_squad(args.data)
    except SquadFormatError as exc:  # its message names the file and the question already
        raise SystemExit(f"error: {exc}") from exc
    try:
        features = load_or_build_features(
            args.data, examples, tokenizer, params, args.training, cache_dir=args.cache_dir,
            threads=args.threads, overwrite_cache=args.overwrite_cache, log=lambda m: print(m, file=sys.stderr),
        )
    except ValueError as exc:
        raise SystemExit(f"{args.data}: {exc}") from exc
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "examples": len(examples), "features": len(features), "seconds": round(time.time() - started, 3),
        "peak_memory_mb": round(peak_mb, 1), "cache": features.cache_folder,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
