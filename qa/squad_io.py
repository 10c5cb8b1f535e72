"""Read SQuAD 1.1/2.0 data: nested JSON (data/paragraphs/qas) or JSON Lines, one question a line.

    examples = read_squad("data/nq/nq_dev.json")

Each question becomes one `SquadExample`; contexts are shared objects, so a paragraph with
many questions is stored (and tokenised by qa.features) once.
"""

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset of the answer in the context


@dataclasses.dataclass(frozen=True)
class SquadExample:
    qas_id: str
    title: str
    question: str
    context: str
    answers: tuple  # of Answer; empty for an unanswerable question
    is_impossible: bool

    @property
    def answer_texts(self):
        """Gold answer texts as the official evaluation sees them ([""] when unanswerable)."""
        texts = [a.text for a in self.answers if a.text.strip()]
        return texts or [""]


class SquadFormatError(ValueError):
    """Bad input data; the message names the file and the example."""


def read_squad(path):
    """Read a SQuAD-format file into a list of SquadExample."""
    with open(path, encoding="utf-8") as f:
        dataset = json.load(f)
    examples = []
    for article in dataset["data"]:
        title = article.get("title", "")
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = tuple(Answer(a["text"], a["answer_start"]) for a in qa.get("answers", []))
                examples.append(
                    SquadExample(str(qa["id"]), title, qa["question"], context, answers, bool(qa.get("is_impossible", False)))
                )
    return examples
