"""make ask with the answer-type head (issue 17): yes / no / the span / no answer, decided by the head."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

torch = pytest.importorskip("torch")

from qa import answer_type_head as H  # noqa: E402

# Type logits of every window (the head's weight is zero): none, short, long, yes, no
PLANTED = {"none": [9, 1, 0, 0, 0], "short": [0, 9, 0, 0, 1], "long": [0, 1, 9, 0, 0], "yes": [1, 0, 0, 9, 0],
           "no": [0, 0, 1, 0, 9]}
# A threshold that no null score beats downwards: without the head every question is "no answer", so an answer
# below can only come from the head.
CONFIG = {"max_seq_length": 64, "doc_stride": 32, "max_query_length": 16, "max_answer_length": 30, "n_best_size": 20,
          "version_2_with_negative": True, "null_score_diff_threshold": -1e9}


def model_folder(tiny_model_dir, folder, bias=None):
    """The tiny model as a final model folder, with a head whose type logits are `bias` for every window, or none."""
    shutil.copytree(tiny_model_dir, folder)
    (folder / "qa_config.json").write_text(json.dumps(CONFIG))
    if bias is not None:
        model = H.attach(H.load_qa_model(tiny_model_dir), None, want=True)
        with torch.no_grad():
            model.answer_type_head.weight.zero_()
            model.answer_type_head.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        model.save_pretrained(folder)
    return folder


def questions(tmp_path):
    dataset = json.loads(shared_file("squad", "squad2-dev-normans-rhine.json").read_text(encoding="utf-8"))
    paragraph = dataset["data"][0]["paragraphs"][0]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"id": qa["id"], "question": qa["question"], "context": paragraph["context"]}) + "\n"
                            for qa in paragraph["qas"][:3]), encoding="utf-8")
    return path, paragraph["context"]


def make_ask(*variables):
    done = subprocess.run(["make", "--no-print-directory", "ask", *variables], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_make_ask_says_what_the_head_decides(tiny_model_dir, tmp_path):
    path, context = questions(tmp_path)
    plain = model_folder(tiny_model_dir, tmp_path / "plain")
    make_ask(f"MODEL_DIR={plain}", f"QUESTIONS_FILE={path}", f"OUT={tmp_path / 'plain.json'}")
    without = json.loads((tmp_path / "plain.json").read_text(encoding="utf-8"))
    assert without and set(without.values()) == {""}  # no head: the threshold says no answer, as before
    spans = {}
    for kind, bias in PLANTED.items():
        folder = model_folder(tiny_model_dir, tmp_path / kind, bias)
        out = tmp_path / f"{kind}.json"
        make_ask(f"MODEL_DIR={folder}", f"QUESTIONS_FILE={path}", f"OUT={out}")
        said = json.loads(out.read_text(encoding="utf-8"))
        assert set(said) == set(without), kind
        if kind in ("yes", "no"):
            assert set(said.values()) == {kind}, said
        elif kind == "none":
            assert set(said.values()) == {""}, said
        else:  # short and long: the best span of the document, though the threshold alone says no answer
            assert all(text and text in context for text in said.values()), (kind, said)
            spans[kind] = said
    assert spans["short"] == spans["long"]  # the same encoder and span layer: the same best span


@pytest.mark.slow
def test_terminal_and_top_k_carry_the_type(tiny_model_dir, tmp_path):
    path, context = questions(tmp_path)
    doc = tmp_path / "doc.txt"
    doc.write_text(context, encoding="utf-8")
    yes = model_folder(tiny_model_dir, tmp_path / "yes", PLANTED["yes"])
    done = make_ask(f"MODEL_DIR={yes}", "QUESTION=is the sky blue", f"CONTEXT_FILE={doc}")
    assert "Answer: yes\n" in done.stdout and "answer type yes (none " in done.stdout
    none = model_folder(tiny_model_dir, tmp_path / "none", PLANTED["none"])
    done = make_ask(f"MODEL_DIR={none}", "QUESTION=is the sky blue", f"CONTEXT_FILE={doc}")
    assert "No answer" in done.stdout and "answer type none" in done.stdout
    out = tmp_path / "top.json"
    make_ask(f"MODEL_DIR={yes}", f"QUESTIONS_FILE={path}", f"OUT={out}", "TOP_K=2")
    shaped = json.loads(out.read_text(encoding="utf-8"))
    for answers in shaped.values():
        assert answers and all(a["answer_type"] == "yes" for a in answers)
        assert all(max(a["answer_type_probabilities"], key=a["answer_type_probabilities"].get) == "yes" for a in answers)
        assert all(a["answer"] == context[a["start"]:a["end"]] for a in answers)  # the spans stay the span layer's
    # Without a head, the entries are the pipeline's four keys, as before.
    plain = model_folder(tiny_model_dir, tmp_path / "plain")
    done = subprocess.run([sys.executable, "scripts/ask.py", str(plain), "--questions-file", str(path), "--top_k", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(set(a) == {"answer", "score", "start", "end"} for a in json.loads(done.stdout).values())
