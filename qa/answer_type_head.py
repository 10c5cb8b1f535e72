"""The answer-type head beside any question-answering model: a linear layer over the first token's final hidden state.

    from qa.answer_type_head import AnswerTypeQA, attach, load_qa_model
    model = load_qa_model("outputs/nq-cand")        # the QA model, with its head when the folder holds one
    model = attach(qa_model, folder, want=True)      # a head: the folder's, or a new one (torch's RNG)
    out = model(input_ids=..., attention_mask=..., start_positions=..., end_positions=..., answer_types=...)
    out.loss, out.start_logits, out.end_logits, out.answer_type_logits   # [batch, 5]: qa.answer_type.TYPES
    model.save_pretrained(folder)                    # the QA model's own files + answer_type_head.{safetensors,json}

How it is built, and why:
- `AnswerTypeQA` wraps the unchanged `AutoModelForQuestionAnswering` model (`.qa_model`) and calls it with
  `output_hidden_states=True`: the last hidden state is what the model's span layer (qa_outputs) reads, for
  ALBERT, BERT, RoBERTa, DistilBERT and ELECTRA alike (tests/test_answer_type.py checks it), so no encoder's
  internals are named here. The head reads position 0 (the [CLS] / <s> token).
- Loss (BERT-joint, google-research/language run_nq.py): (start + end + type) / 3. The QA model's own loss is
  (start + end) / 2, so the total is (2 * qa_loss + type_loss) / 3. BERT-joint puts its type layer on BERT's
  pooler (a tanh layer over [CLS]); the QA models of transformers have no pooler, so this reads [CLS] directly.
- Saved apart: `save_pretrained` writes the QA model exactly as before (AutoModelForQuestionAnswering still
  loads the folder, and ignores the head) plus HEAD_WEIGHTS (safetensors: weight [5, hidden], bias [5]) and
  HEAD_CONFIG (JSON: the type names in logit order, the hidden size). Checkpoints and final models are saved
  through save_pretrained, so both files are in them and in their COMPLETE marker's hashes.
- `forward` takes the QA models' inputs by name (ModelFeed reads its signature) and passes on only those
  the wrapped model accepts (DistilBERT has no token_type_ids).
"""

import dataclasses
import inspect
import json
import os

import torch
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from qa import answer_type
from qa.run_dir import CheckpointError
from qa.storage import atomic_write

HEAD_WEIGHTS = "answer_type_head.safetensors"
HEAD_CONFIG = "answer_type_head.json"
HEAD_FILES = (HEAD_WEIGHTS, HEAD_CONFIG)
HEAD_FORMAT = 1


class HeadError(CheckpointError):
    """A head file that cannot be used (damaged, another hidden size, other types), or a resume that would add or
    drop the head; the message names the file and what to do (run_squad.py: one line, exit 2)."""


@dataclasses.dataclass
class AnswerTypeQAOutput(QuestionAnsweringModelOutput):
    """The QA model's output plus the type logits [batch, 5] and, with labels, the type loss alone."""

    answer_type_logits: torch.FloatTensor | None = None
    answer_type_loss: torch.FloatTensor | None = None


def hidden_size(config):
    """The width of the encoder's final hidden states (DistilBERT's `dim` answers to hidden_size too)."""
    size = getattr(config, "hidden_size", None)
    if not isinstance(size, int):
        raise ValueError(f"{type(config).__name__} has no integer hidden_size: the answer-type head needs one")
    return size


def new_head(config):
    """A fresh linear layer hidden -> 5, initialised like the encoder's own layers (normal, initializer_range)."""
    head = torch.nn.Linear(hidden_size(config), len(answer_type.TYPES))
    torch.nn.init.normal_(head.weight, std=getattr(config, "initializer_range", 0.02))
    torch.nn.init.zeros_(head.bias)
    return head


class AnswerTypeQA(torch.nn.Module):
    """A question-answering model plus the answer-type head; trains, evaluates and saves like the model alone."""

    def __init__(self, qa_model, head=None):
        super().__init__()
        self.qa_model = qa_model
        self.answer_type_head = head if head is not None else new_head(qa_model.config)
        self.accepted = frozenset(inspect.signature(qa_model.forward).parameters)

    @property
    def config(self):
        return self.qa_model.config

    def __getattr__(self, name):
        """What the wrapper lacks is the QA model's (supports_gradient_checkpointing, activation_checkpointing_enable,
        dtype, device, ...): code written for the model alone keeps working."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            qa_model = self.__dict__.get("_modules", {}).get("qa_model")
            if qa_model is None:
                raise
            return getattr(qa_model, name)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                langs=None, start_positions=None, end_positions=None, answer_types=None):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "position_ids": position_ids, "inputs_embeds": inputs_embeds, "langs": langs,
                 "start_positions": start_positions, "end_positions": end_positions}
        inputs = {name: value for name, value in given.items() if value is not None and name in self.accepted}
        out = self.qa_model(**inputs, output_hidden_states=True, return_dict=True)
        type_logits = self.answer_type_head(out.hidden_states[-1][:, 0])
        loss, type_loss = out.loss, None
        if answer_types is not None:
            type_loss = torch.nn.functional.cross_entropy(type_logits.float(), answer_types)
            # BERT-joint: (start + end + type) / 3, where the QA model's loss is (start + end) / 2
            loss = type_loss if loss is None else (2 * loss + type_loss) / 3
        return AnswerTypeQAOutput(loss=loss, start_logits=out.start_logits, end_logits=out.end_logits,
                                  answer_type_logits=type_logits, answer_type_loss=type_loss)

    def save_pretrained(self, folder, **kwargs):
        """The QA model's files as save_pretrained writes them, then the head's two files."""
        self.qa_model.save_pretrained(folder, **kwargs)
        save_head(self.answer_type_head, folder)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def has_head(folder):
    """True when `folder` (a local path) holds a saved answer-type head."""
    return isinstance(folder, (str, os.PathLike)) and os.path.isfile(os.path.join(folder, HEAD_WEIGHTS))


def save_head(head, folder):
    """HEAD_WEIGHTS and HEAD_CONFIG into `folder` (each written atomically)."""
    from safetensors.torch import save

    tensors = {"weight": head.weight.detach().cpu().contiguous(), "bias": head.bias.detach().cpu().contiguous()}
    with atomic_write(os.path.join(folder, HEAD_WEIGHTS), "wb") as f:
        f.write(save(tensors, metadata={"format": "pt"}))
    config = {"format": HEAD_FORMAT, "types": list(answer_type.TYPES), "hidden_size": head.in_features,
              "input": "final hidden state of the first token"}
    with atomic_write(os.path.join(folder, HEAD_CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def load_head(folder, config):
    """The head saved in `folder` for a model of `config`; HeadError naming the file when it does not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, config_path = os.path.join(folder, HEAD_WEIGHTS), os.path.join(folder, HEAD_CONFIG)
    try:
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        raise HeadError(f"{config_path}: unreadable ({exc}); the answer-type head needs it beside {HEAD_WEIGHTS}: "
                        "copy the model folder again") from None
    if not isinstance(saved, dict) or saved.get("types") != list(answer_type.TYPES):
        raise HeadError(f"{config_path}: types {saved.get('types') if isinstance(saved, dict) else saved!r:.80} are not "
                        f"{list(answer_type.TYPES)}: a head of another format; retrain it or remove {HEAD_WEIGHTS}")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise HeadError(f"{weights}: damaged ({exc}); copy the model folder again") from None
    head = new_head(config)
    expected = {name: tuple(p.shape) for name, p in head.named_parameters()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        raise HeadError(f"{weights}: tensors {found} do not fit this model (expected {expected}); the head belongs to "
                        "another model")
    with torch.no_grad():
        head.weight.copy_(tensors["weight"])
        head.bias.copy_(tensors["bias"])
    return head


def attach(qa_model, folder=None, want=None):
    """`qa_model` with an answer-type head, or as it is.

    want: True: a head, `folder`'s when it holds one, else a new one (training starts); False: no head (a saved
    one is ignored); None: the folder's head when there is one (evaluation, prediction, ask)."""
    if want is False or (want is None and not has_head(folder)):
        return qa_model
    head = load_head(folder, qa_model.config) if has_head(folder) else None
    return AnswerTypeQA(qa_model, head)


def training_head(flag, examples, resume_from=None, say=None):
    """--answer_type_head decided for a training run: as given, else on exactly for data that carries answer types
    (qa.answer_type.resolve_flag). A resume keeps its checkpoint's choice (the optimizer state holds the head's
    parameters, or not; a run recorded before the flag existed takes the checkpoint's): asking for the other one
    raises HeadError."""
    if flag is None and resume_from is not None:  # a record from before the flag: the checkpoint says
        flag = has_head(resume_from)
    want = answer_type.resolve_flag(flag, examples)
    if resume_from is not None and has_head(resume_from) != want:
        saved = "with" if has_head(resume_from) else "without"
        raise HeadError(f"{resume_from} was trained {saved} the answer-type head, and this run asks for "
                        f"{'one' if want else 'none'}: a resume continues the same model. Leave --answer_type_head / "
                        "--no_answer_type_head out to take the run's own choice")
    if say is not None:
        why = "as asked, or as the run was trained" if flag is not None else (
            "the training data carries answer types" if want else "the training data carries no answer types")
        say(f"answer-type head: {'on' if want else 'off'} ({why})")
    return want


def load_qa_model(folder, **from_pretrained_kwargs):
    """The one loader for inference: AutoModelForQuestionAnswering.from_pretrained(folder), with the folder's
    answer-type head attached when it has one. Move it to a device with .to(device) as any model."""
    from transformers import AutoModelForQuestionAnswering

    return attach(AutoModelForQuestionAnswering.from_pretrained(folder, **from_pretrained_kwargs), folder)


def has_type_output(model):
    """True when `model` (maybe wrapped by DDP or torch.compile) returns answer_type_logits."""
    model = getattr(model, "module", model)
    return isinstance(getattr(model, "_orig_mod", model), AnswerTypeQA)
