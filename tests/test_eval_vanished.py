"""`make eval` while the run trains: rotation may delete the checkpoint being evaluated. One line naming it and what to
do, exit 2, and no empty or half-written evaluation folder left (issue 18, item 9)."""

import pytest

from conftest import shared_file
from helpers import PREDICT, TRAIN

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import run_dir, storage  # noqa: E402


@pytest.fixture(scope="module")
def run_with_checkpoints(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("vanished")
    run = root / "run"
    code = run_squad.main(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(run), "--do_train",
                           "--train_file", str(shared_file(*TRAIN)), "--max_train_samples", "8",
                           "--version_2_with_negative", "--max_seq_length", "128", "--doc_stride", "64",
                           "--per_gpu_train_batch_size", "4", "--max_steps", "2", "--save_steps", "1",
                           "--features_cache_dir", str(root / "cache"), "--report_to", "none"])
    assert code == 0 and [step for step, _ in run_dir.list_checkpoints(run)] == [1, 2]
    return run


def eval_argv(run, tmp_path, checkpoint):
    return ["--output_dir", str(run), "--do_eval", "--eval_checkpoint", checkpoint, "--predict_file",
            str(shared_file(*PREDICT)), "--max_eval_samples", "4", "--features_cache_dir", str(tmp_path / "cache"),
            "--report_to", "none"]


@pytest.mark.parametrize("when", ["load_tokenizer", "load_model", "prepare_features"])
def test_a_checkpoint_deleted_under_its_evaluation_is_one_line_and_leaves_no_folder(run_with_checkpoints, tmp_path,
                                                                                   monkeypatch, capsys, when):
    """Rotation (storage.remove_tree, as qa.retention deletes) takes the checkpoint away at one of the steps of its
    evaluation: the tokenizer, the features, the model."""
    run = run_with_checkpoints
    checkpoint = run / "checkpoint-1"
    copy = tmp_path / "copy"
    storage.shutil.copytree(checkpoint, copy)  # put back afterwards: the module's other tests evaluate it
    original = getattr(run_squad, when)

    def rotated_away(*args, **kwargs):
        storage.remove_tree(str(checkpoint))
        return original(*args, **kwargs)

    monkeypatch.setattr(run_squad, when, rotated_away)
    try:
        code = run_squad.main(eval_argv(run, tmp_path, "checkpoint-1"))
    finally:
        storage.shutil.copytree(copy, checkpoint, dirs_exist_ok=True)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if "checkpoint-1" in line and "deleted" in line]
    assert lines == [f"run_squad.py: {checkpoint} was deleted while it was being evaluated (the training in {run} "
                     "rotates its checkpoints: --save_total_limit): evaluate another one (--eval_checkpoint best, or "
                     "the newest checkpoint), or evaluate after the training ends"], err
    assert "Traceback" not in err and "Repo id" not in err
    assert not (run / run_dir.EVAL_DIR).exists() or not any((run / run_dir.EVAL_DIR).iterdir())


def test_an_evaluation_that_succeeds_keeps_its_folder(run_with_checkpoints, tmp_path):
    run = run_with_checkpoints
    assert run_squad.main(eval_argv(run, tmp_path, "checkpoint-2")) == 0
    assert len(list((run / run_dir.EVAL_DIR).glob("*-2/eval_results_2.json"))) == 1


def test_through_make_the_message_names_ckpt(tmp_path, monkeypatch):
    from qa import eval_guard

    monkeypatch.setenv("QA_VIA_MAKE", "1")
    with pytest.raises(eval_guard.ModelFolderDeleted, match=r"evaluate another one \(CKPT=best, or the newest"):
        eval_guard.raise_if_deleted(OSError("gone"), str(tmp_path / "checkpoint-9"), str(tmp_path))
    eval_guard.raise_if_deleted(OSError("other"), str(tmp_path), str(tmp_path))  # the folder is there: not this case
    eval_guard.raise_if_deleted(KeyboardInterrupt(), str(tmp_path / "checkpoint-9"), str(tmp_path))  # Ctrl-C stays
