"""make export: an ONNX model that scores like the PyTorch one on the run's dev file, or no export at all; ask runs it."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from qa import onnx_export  # noqa: E402
from qa.storage import folder_problem  # noqa: E402


@pytest.fixture
def run(tiny_model_dir, tmp_path):
    """A run folder as training leaves it: the final model, and args.json naming the dev file (24 real questions)."""
    folder = tmp_path / "run"
    shutil.copytree(tiny_model_dir, folder)
    dataset = json.loads(shared_file("squad", "squad2-dev-normans-rhine.json").read_text(encoding="utf-8"))
    dataset["data"] = dataset["data"][:1]
    dataset["data"][0]["paragraphs"] = dataset["data"][0]["paragraphs"][:3]
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(dataset), encoding="utf-8")
    (folder / "qa_config.json").write_text(json.dumps({"max_seq_length": 96, "doc_stride": 48, "max_query_length": 24,
                                                        "null_score_diff_threshold": 0.5}))
    (folder / "args.json").write_text(json.dumps({"predict_file": str(dev)}))
    return folder


def export(*args):
    return subprocess.run(["make", "--no-print-directory", "export", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def break_export(folder):
    """A conversion gone wrong: the span head's weights negated in model.onnx (the folder still looks complete)."""
    import onnx
    from onnx import numpy_helper

    from qa.storage import write_marker

    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    graph = onnx.load(str(folder / "model.onnx"))
    (head,) = [t for t in graph.graph.initializer if list(t.dims) == [hidden, 2]]  # qa_outputs, as a MatMul
    head.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(head), head.name))
    onnx.save(graph, str(folder / "model.onnx"))
    write_marker(str(folder), onnx_export.ONNX_MARKER)


@pytest.mark.slow
def test_make_export_writes_an_export_that_scores_the_same_and_ask_runs_it(run, tmp_path):
    done = export(f"OUTPUT_DIR={run}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = run / "onnx"
    assert folder_problem(str(out), onnx_export.ONNX_MARKER, check_hashes=True) is None
    assert {"model.onnx", "tokenizer.json", "config.json", "qa_config.json", "onnx_check.json"} <= {p.name for p in out.iterdir()}
    check = json.loads((out / "onnx_check.json").read_text())
    assert check["passed"] and check["questions"] == 21 and check["max_logit_difference"] < 1e-4
    assert check["onnx"]["f1"] == pytest.approx(check["pytorch"]["f1"], abs=0.1) and check["pytorch"]["windows_per_s"] > 0
    config = json.loads((out / "qa_config.json").read_text())
    assert (config["max_seq_length"], config["null_score_diff_threshold"], config["exported_from"]) == (96, 0.5, str(run))
    assert "scores like" in done.stdout

    # ask on the export: onnxruntime, the same answers as the PyTorch model, the same windows and threshold.
    import ask
    from qa.squad_io import read_squad

    examples = read_squad(check["predict_file"], questions_only=True)
    by_onnx = ask.QuestionAnswerer(out)
    assert isinstance(by_onnx.model, onnx_export.OnnxQAModel)
    onnx_answers = by_onnx.answer_many(examples, top_k=2)
    torch_answers = ask.QuestionAnswerer(run).answer_many(examples, top_k=2)
    assert onnx_answers.keys() == torch_answers.keys()
    for qas_id, answers in torch_answers.items():
        assert [(a["answer"], a["start"], a["end"]) for a in onnx_answers[qas_id]] == \
            [(a["answer"], a["start"], a["end"]) for a in answers]
        assert [a["score"] for a in onnx_answers[qas_id]] == pytest.approx([a["score"] for a in answers], abs=1e-5)

    # make eval CKPT=onnx: the run's dev file through onnxruntime, the predictions of the PyTorch model.
    for ckpt in ("onnx", "final"):
        done = subprocess.run(["make", "--no-print-directory", "eval", f"OUTPUT_DIR={run}", f"CKPT={ckpt}", "REPORT_TO=none",
                               f"PREDICT_FILE={check['predict_file']}", "MAX_SEQ_LENGTH=96", "DOC_STRIDE=48"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (by_onnx_eval,) = run.glob("eval/*-onnx/predictions_onnx.json")
    (by_torch_eval,) = run.glob("eval/*-final/predictions_final.json")
    assert json.loads(by_onnx_eval.read_text()) == json.loads(by_torch_eval.read_text())

    # The same export broken on purpose: --check-only refuses it.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    break_export(broken)
    refused = subprocess.run([sys.executable, "scripts/export_onnx.py", "--check-only", "--", str(broken)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and f"{broken} does NOT score like {run}" in refused.stderr
    again = subprocess.run([sys.executable, "scripts/export_onnx.py", "--check-only", "--", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr


def test_an_export_that_scores_differently_is_refused_and_not_written(run, monkeypatch, capsys, one_thread):
    import export_onnx

    write_onnx = onnx_export.write_onnx

    def wrong_conversion(model, path, opset=onnx_export.OPSET):
        with torch.no_grad():
            model.qa_outputs.weight.neg_()  # what the file gets is not the model that is checked against
        write_onnx(model, path, opset)

    monkeypatch.setattr(onnx_export, "write_onnx", wrong_conversion)
    assert export_onnx.main(["--", str(run)]) == 1
    err = capsys.readouterr().err
    assert "refused: the export's exact or F1 (at the threshold, or always answering) differs" in err and f"nothing was written to {run / 'onnx'}" in err
    assert not (run / "onnx").exists() and not [p for p in run.iterdir() if p.name.startswith(".tmp-")]
    report = onnx_export.check_export  # the parity numbers themselves, on a broken export written by hand
    monkeypatch.undo()
    broken = run.parent / "broken"
    broken.mkdir()
    onnx_export.export_onnx(str(run), str(broken))
    break_export(broken)
    result = report(str(run), str(broken), json.loads((run / "args.json").read_text())["predict_file"])
    assert not result["passed"] and result["max_logit_difference"] > 1e-3


def test_a_broken_export_is_refused_even_when_neither_model_answers(run, one_thread):
    # Review #3: at a null threshold no span reaches, both models answer "" to every question and their exact/F1
    # agree exactly; the scores of the best non-null answers and the logits themselves still tell them apart.
    broken = run.parent / "silent"
    broken.mkdir()
    onnx_export.export_onnx(str(run), str(broken))
    config = json.loads((broken / "qa_config.json").read_text())
    (broken / "qa_config.json").write_text(json.dumps(dict(config, null_score_diff_threshold=-1e9)))
    break_export(broken)
    predict_file = json.loads((run / "args.json").read_text())["predict_file"]
    result = onnx_export.check_export(str(run), str(broken), predict_file)
    assert result["pytorch"]["exact"] == result["onnx"]["exact"] and result["pytorch"]["f1"] == result["onnx"]["f1"]
    assert not result["passed"]
    assert result["max_logit_difference"] > onnx_export.LOGIT_TOLERANCE * result["logit_scale"]
    lines = onnx_export.describe_check(result)
    assert "always answering: exact" in lines[0] and "(allowed " in lines[2]


def test_export_errors_say_what_to_do(run, tmp_path, capsys):
    import export_onnx

    (run / "args.json").unlink()
    assert export_onnx.main(["--", str(run)]) == 2
    assert "give --predict_file (make export PREDICT_FILE=...)" in capsys.readouterr().err
    assert export_onnx.main(["--checkpoint", "checkpoint-5", "--", str(run)]) == 2
    assert "checkpoint-5: no such checkpoint folder" in capsys.readouterr().err


def test_predict_nq_runs_an_export_like_the_model(run, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    onnx_export.export_onnx(str(run), str(export))  # predict_nq needs no scores: the export alone
    from qa.storage import write_marker

    write_marker(str(export), onnx_export.ONNX_MARKER)
    records = shared_file("nq", "nq-dev-10.simplified.jsonl")
    outputs = {}
    for name, model in (("onnx", export), ("pytorch", run)):
        outputs[name] = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, "scripts/predict_nq.py", "--model_dir", str(model), "--input", str(records),
                               "--output", str(outputs[name]), "--max_examples", "3"], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    by_onnx, by_torch = (json.loads(outputs[n].read_text())["predictions"] for n in ("onnx", "pytorch"))
    assert len(by_torch) == 3
    for mine, theirs in zip(by_onnx, by_torch):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert mine[key] == (pytest.approx(value, abs=1e-4) if isinstance(value, float) else value), key
