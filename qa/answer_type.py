"""Answer types (none, short, long, yes, no): their ids, the label of a window, and reading the head's output.

    from qa import answer_type
    answer_type.TYPES[answer_type.YES]                         # "yes"; ids: none=0 short=1 long=2 yes=3 no=4
    answer_type.type_id("long")                                # 2 (ValueError naming the choices otherwise)
    answer_type.carries_types(examples)                        # True when the data was written with "answer_type"
    answer_type.resolve_flag(args.answer_type_head, examples)  # --answer_type_head: True / False / None -> bool
    probabilities = answer_type.type_probabilities(logits)     # [..., 5] logits -> softmax, float64
    answer_type.decide(probabilities[i])                       # ("yes", 0.93): the type and its probability
    answer_type.nq_short_answer(probabilities[w], span)        # ([span], "NONE") / ([], "YES") / ... for predict_nq
    answer_type.spoken_answer(*answer_type.example_type(probabilities[windows])[:1], text)   # ask: yes/no/span/""

The data format (/work/notes/answer-type-format.md, agreed with the NQ converter): a question of SQuAD JSON
may carry "answer_type"; absent, an answerable question is "short" and an impossible one "none". A window's
label is the example's type when the window holds the whole answer span, else "none" (qa.features).
BERT-joint (Alberti et al. 2019) uses the same five classes, in another order (UNKNOWN, YES, NO, SHORT, LONG).

Standard library only (numpy where arrays come in): qa.squad_io and the NQ converter import the names.
The head itself, a torch module beside any AutoModelForQuestionAnswering, is qa/answer_type_head.py.
"""

TYPES = ("none", "short", "long", "yes", "no")  # index = type id, the order of the head's logits
NONE, SHORT, LONG, YES, NO = range(len(TYPES))
TYPE_IDS = {name: index for index, name in enumerate(TYPES)}
# The key of a question in SQuAD JSON (and the attribute of qa.squad_io.SquadExample).
KEY = "answer_type"


def type_id(name):
    """The id of a type name; ValueError naming the valid ones otherwise."""
    try:
        return TYPE_IDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"answer_type should be one of {', '.join(TYPES)}, got {name!r:.40}") from None


def default_type(impossible):
    """The type of a question written without "answer_type": "none" when impossible, else "short"."""
    return TYPES[NONE] if impossible else TYPES[SHORT]


def check_type(name, impossible):
    """ValueError unless `name` is a type that fits the question: "none" exactly for impossible questions."""
    type_id(name)
    if impossible and name != TYPES[NONE]:
        raise ValueError(f"is_impossible is true but answer_type is {name!r}: an impossible question is \"none\"")
    if not impossible and name == TYPES[NONE]:
        raise ValueError("answer_type is \"none\" but the question has an answer: use short, long, yes or no "
                         "(or is_impossible true)")


def carries_types(examples):
    """True when any example's record carried "answer_type" (candidate-mode NQ data writes it; SQuAD never does)."""
    return any(getattr(example, "typed", False) for example in examples)


def resolve_flag(flag, examples):
    """--answer_type_head: True or False as given; None (not given) means on exactly for data that carries types."""
    return carries_types(examples) if flag is None else bool(flag)


def type_probabilities(logits):
    """Softmax over the last axis of the head's logits ([5] for one window, [N, 5] for several), in float64."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[-1:] != (len(TYPES),):
        raise ValueError(f"answer-type logits need a last axis of {len(TYPES)} ({', '.join(TYPES)}), got shape "
                         f"{logits.shape}")
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def decide(probabilities):
    """(name, probability) of the most probable type of one window's probabilities (ties: the lower id)."""
    best = max(range(len(TYPES)), key=lambda index: (probabilities[index], -index))
    return TYPES[best], float(probabilities[best])


def decide_answer(probabilities):
    """(name, probability) of the most probable answering type (short, long, yes, no) of one window: for a window
    already chosen as the answer's (predict_nq's best candidate), where "none" is not an option any more."""
    best = max(range(SHORT, len(TYPES)), key=lambda index: (probabilities[index], -index))
    return TYPES[best], float(probabilities[best])


def example_type(window_probabilities):
    """(name, probability) of one example from its windows' probabilities [W, 5]: the type of the window most
    likely to hold an answer (lowest "none"), decided over all five types there."""
    window = min(range(len(window_probabilities)), key=lambda w: (window_probabilities[w][NONE], w))
    return decide(window_probabilities[window])


def spoken_answer(type_name, span_text):
    """What `ask` says: "yes" / "no" for those types, "" (no answer) for none, else the answer span's text."""
    return {"yes": "yes", "no": "no", "none": ""}.get(type_name, span_text)


def nq_short_answer(probabilities, short_span):
    """(short_answers, yes_no_answer) of NQ's official prediction format for the chosen window's type
    probabilities: short -> [short_span] and "NONE"; long -> [] and "NONE" (the long answer alone); yes / no ->
    [] and "YES" / "NO" (the official scorer counts a yes/no as the short answer)."""
    kind, _ = decide_answer(probabilities)
    if kind == TYPES[SHORT]:
        return ([short_span] if short_span is not None else []), "NONE"
    return [], kind.upper() if kind in (TYPES[YES], TYPES[NO]) else "NONE"


def nq_prediction_with_type(entry, window_probabilities):
    """An official NQ prediction (predict_nq's entry for a page, its long answer chosen) given the type
    probabilities [W, 5] of the chosen candidate's windows: the window most likely to hold an answer (lowest
    "none") decides among short, long, yes and no (nq_short_answer). A new dict; the scores are unchanged."""
    window = min(range(len(window_probabilities)), key=lambda w: (window_probabilities[w][NONE], w))
    span = entry["short_answers"][0] if entry["short_answers"] else None
    short_answers, yes_no = nq_short_answer(window_probabilities[window], span)
    return {**entry, "short_answers": short_answers, "yes_no_answer": yes_no}


def answer_probabilities(probabilities):
    """{type name: probability} of one window, for JSON output (`ask`, predictions)."""
    return {name: round(float(p), 6) for name, p in zip(TYPES, probabilities)}
