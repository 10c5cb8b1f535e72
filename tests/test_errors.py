"""Every mistake gets a message, not a traceback: run_squad.py exits 2 with one or two lines that name the file
and say what to do, and offers --skip_bad_examples only where it helps.

    .venv/bin/python -m pytest tests/test_errors.py -q

run_squad.main runs in-process (capsys reads its stderr) with the tiny model of conftest and files made from the
real SQuAD 2.0 subset in ../shared/data/.
"""

import json
import os
import shutil
import types

import pytest

from conftest import shared_file

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import checkpoints, run_dir, storage  # noqa: E402
from qa.squad_io import FIX_HINT, SquadFormatError, read_squad  # noqa: E402

SQUAD = ("squad", "squad2-dev-normans-rhine.json")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's


def train_argv(model_dir, output_dir, train_file, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), "--do_train",
            "--train_file", str(train_file), "--max_seq_length", "128", "--doc_stride", "64",
            "--features_cache_dir", str(output_dir) + "-cache", "--report_to", "none", *extra]


def run_cli(capsys, argv):
    """(exit code, run_squad.py's own lines on stderr), after checking that nothing else went wrong."""
    capsys.readouterr()
    code = run_squad.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("run_squad.py:")]
    assert 1 <= len(lines) <= 2, err  # one or two lines, each said once
    return code, "\n".join(lines)


def real_squad():
    return json.loads(shared_file(*SQUAD).read_text(encoding="utf-8"))


def first_paragraph(document):
    return document["data"][0]["paragraphs"][0]


# -- the output folder ------------------------------------------------------------------------------
def test_output_dir_that_is_a_file(tiny_model_dir, tmp_path, capsys):
    afile = tmp_path / "run"
    afile.write_text("notes\n")
    code, err = run_cli(capsys, train_argv(tiny_model_dir, afile, shared_file(*SQUAD)))
    assert code == 2 and f"--output_dir {afile} is a file, not a folder: give a folder" in err
    assert afile.read_text() == "notes\n"  # nothing written over it
    code, err = run_cli(capsys, train_argv(tiny_model_dir, afile / "inside", shared_file(*SQUAD)))
    assert code == 2 and f"{afile} is a file, so no folder can be made inside it" in err


def unwritable_folder(tmp_path):
    """A folder this user cannot write into, as os.access sees it: a 0o500 folder, or as root (who writes
    anywhere chmod says not to) a process folder of /proc, which no one can make folders in."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    os.chmod(folder, 0o500)
    if not os.access(folder, os.W_OK):
        return folder
    if not os.access("/proc/1", os.W_OK):
        return "/proc/1"
    pytest.skip("running as root, and no folder here refuses root's writes (chmod does not, and /proc/1 does not)")


def test_output_dir_without_write_permission(tiny_model_dir, tmp_path, capsys):
    folder = unwritable_folder(tmp_path)
    try:
        code, err = run_cli(capsys, train_argv(tiny_model_dir, os.path.join(folder, "run"), shared_file(*SQUAD)))
    finally:
        os.chmod(tmp_path / "read-only", 0o700)  # so that pytest can remove it
    assert code == 2 and f"{folder} is not writable by this user: give a folder you can write" in err
    assert "chmod u+w" in err


# -- training data without questions ----------------------------------------------------------------
def test_empty_training_file(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "train.json"
    empty.write_bytes(b"")
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run", empty))
    assert code == 2 and f"{empty}: the file is empty (0 bytes)" in err
    assert "--skip_bad_examples" not in err  # skipping questions cannot help a file that has none


def test_training_file_without_questions(tiny_model_dir, tmp_path, capsys):
    nothing = tmp_path / "train.json"
    nothing.write_text('{"version": "v2.0", "data": []}')
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run", nothing))
    assert code == 2 and f"no questions to train on in {nothing}: it holds none" in err
    assert "--skip_bad_examples" not in err
    # Evaluation alone says so for its file too.
    code, err = run_cli(capsys, ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "eval"),
                                 "--do_eval", "--predict_file", str(nothing), "--report_to", "none"])
    assert code == 2 and f"no questions to evaluate in {nothing}" in err


def test_training_file_whose_every_question_is_skipped(tiny_model_dir, tmp_path, capsys):
    document = real_squad()
    document["data"] = document["data"][:1]
    document["data"][0]["paragraphs"] = document["data"][0]["paragraphs"][:2]
    questions = [qa for p in document["data"][0]["paragraphs"] for qa in p["qas"]]
    for qa in questions:
        del qa["question"]
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(document))
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run", bad, "--skip_bad_examples"))
    assert code == 2
    assert f"no questions to train on in {bad}: all {len(questions)} were skipped as bad ({len(questions)} missing a field" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


# -- damaged model files ----------------------------------------------------------------------------
@pytest.fixture
def garbage_model_dir(tiny_model_dir, tmp_path):
    """A plain model folder (config.json, tokenizer) whose model.safetensors is random bytes."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    return folder


def test_broken_safetensors_in_a_model_folder(garbage_model_dir, tmp_path, capsys):
    code, err = run_cli(capsys, train_argv(garbage_model_dir, tmp_path / "run", shared_file(*SQUAD)))
    weights = garbage_model_dir / "model.safetensors"
    assert code == 2 and f"--model_name_or_path {garbage_model_dir}: {weights} is damaged" in err
    assert "copy or download the model again" in err and "SafetensorError" not in err
    assert not (tmp_path / "run").exists()  # refused before anything is written
    # Evaluation alone refuses it the same way.
    code, err = run_cli(capsys, ["--model_name_or_path", str(garbage_model_dir), "--output_dir", str(tmp_path / "eval"),
                                 "--do_eval", "--predict_file", str(shared_file(*SQUAD)), "--report_to", "none"])
    assert code == 2 and f"{weights} is damaged" in err


def test_config_that_is_not_json_in_a_model_folder(tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text('{"model_type": "albert", ')  # cut short
    code, err = run_cli(capsys, train_argv(folder, tmp_path / "run", shared_file(*SQUAD)))
    assert code == 2 and f"{folder / 'config.json'} is not a JSON object (damaged or cut short)" in err


def test_load_model_names_a_damaged_file_that_validation_did_not_see(garbage_model_dir):
    # E.g. a model of the hub cache damaged there: load_model itself turns the SafetensorError into one line.
    args = types.SimpleNamespace(config_name=None, model_name_or_path=str(garbage_model_dir), cache_dir=None)
    runtime = types.SimpleNamespace(device=torch.device("cpu"))
    with pytest.raises(checkpoints.CheckpointError) as error:
        run_squad.load_model(str(garbage_model_dir), args, runtime)
    message = str(error.value)
    assert message.startswith(f"{garbage_model_dir / 'model.safetensors'}: the model cannot be loaded (")
    assert "\n" not in message
    (garbage_model_dir / "config.json").write_text("{not json")
    with pytest.raises(checkpoints.CheckpointError, match="the model cannot be loaded"):
        run_squad.load_model(str(garbage_model_dir), args, runtime)


def test_resume_from_a_checkpoint_whose_optimizer_is_random_bytes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = train_argv(tiny_model_dir, out, shared_file(*SQUAD), "--max_train_samples", "4", "--save_steps", "2")
    assert run_squad.main([*argv, "--max_steps", "2"]) == 0
    checkpoint = out / "checkpoint-2"
    (checkpoint / "optimizer.pt").write_bytes(os.urandom(4096))
    # The marker rewritten to match: the hash check passes, only torch.load can tell.
    marker = storage.read_marker(str(checkpoint), run_dir.COMPLETE)
    storage.write_marker(str(checkpoint), run_dir.COMPLETE, {k: v for k, v in marker.items() if k != "files"})
    code, err = run_cli(capsys, [*argv, "--max_steps", "4", "--resume_from_checkpoint", "auto", "--continue_finished"])
    assert code == 2 and f"{checkpoint / 'optimizer.pt'}: refused or unreadable" in err
    assert "use another checkpoint" in err and "weights_only=False" not in err
    assert not (out / "checkpoint-4").exists()


# -- hints only where they help ---------------------------------------------------------------------
def test_a_bad_answer_offers_skip_bad_examples(tiny_model_dir, tmp_path, capsys):
    document = real_squad()
    qa = next(qa for qa in first_paragraph(document)["qas"] if qa["answers"])
    qa["answers"][0]["answer_start"] += 3
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(SquadFormatError) as error:
        read_squad(bad)
    assert error.value.skippable and FIX_HINT in str(error.value)
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run", bad))
    assert code == 2 and f"question id {qa['id']!r}" in err and "--skip_bad_examples" in err
    assert len(read_squad(bad, skip_bad=True)) == len(read_squad(shared_file(*SQUAD))) - 1  # and it does help


def test_a_duplicate_id_never_offers_skip_bad_examples(tiny_model_dir, tmp_path, capsys):
    document = real_squad()
    qas = first_paragraph(document)["qas"]
    qas[1]["id"] = qas[0]["id"]
    dup = tmp_path / "train.json"
    dup.write_text(json.dumps(document))
    with pytest.raises(SquadFormatError) as error:
        read_squad(dup, skip_bad=True)
    assert not error.value.skippable and "skip_bad" not in str(error.value)
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run", dup))
    assert code == 2 and f"duplicate question id {qas[0]['id']!r}" in err and "ids must be unique" in err
    assert "skip_bad" not in err
    # Given anyway, the flag is said not to help (rather than suggested again).
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run2", dup, "--skip_bad_examples"))
    assert code == 2 and "duplicate question id" in err
    assert "(--skip_bad_examples skips only questions with a missing field or a bad answer, not this)" in err


@pytest.mark.parametrize("damage", ["not UTF-8", "invalid JSON", "one line without data"])
def test_file_level_problems_name_the_file_and_the_cure(tiny_model_dir, tmp_path, capsys, damage):
    path = tmp_path / "train.json"
    text = json.dumps(real_squad(), ensure_ascii=False)
    if damage == "not UTF-8":
        # The real file's own non-ASCII text (e.g. "Normandy's Viking founder Rollo", accents) saved as Latin-1.
        path.write_bytes(text.encode("latin-1", errors="replace"))
        expected = f"{path}: not UTF-8 text"
        cure = "convert the file to UTF-8"
    elif damage == "invalid JSON":
        path.write_text(text[: len(text) // 2], encoding="utf-8")  # cut short, as by a full disk
        expected = f"{path}: not valid JSON"
        cure = "is the file complete?"
    else:
        path.write_text(json.dumps({"version": "v2.0", "articles": real_squad()["data"]}), encoding="utf-8")
        expected = f"{path}: a JSON object without a 'data' list (keys: version, articles)"
        cure = 'SQuAD JSON needs {"data": [...]}'
    with pytest.raises(SquadFormatError) as error:
        read_squad(path, skip_bad=True)
    assert not error.value.skippable
    code, err = run_cli(capsys, train_argv(tiny_model_dir, tmp_path / "run", path))
    assert code == 2 and expected in err and cure in err
    assert "skip_bad" not in err
