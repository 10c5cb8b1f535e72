"""A model whose logits are NaN, evaluated outside training (run_squad.py --do_eval): one line naming the model
folder and exit 2, not a traceback (review #9)."""

import shutil

import pytest

from conftest import shared_file
from helpers import plant_nan_qa_head

torch = pytest.importorskip("torch")


def test_evaluating_a_model_with_nan_weights_says_so_in_one_line(tiny_model_dir, tmp_path, capsys, one_thread):
    import run_squad

    broken = tmp_path / "broken model"
    shutil.copytree(tiny_model_dir, broken)
    plant_nan_qa_head(broken)
    code = run_squad.main(["--model_name_or_path", str(broken), "--output_dir", str(tmp_path / "eval"), "--do_eval",
                           "--predict_file", str(shared_file("squad", "squad2-dev-normans-rhine.json")),
                           "--max_eval_samples", "4", "--max_seq_length", "128", "--version_2_with_negative",
                           "--features_cache_dir", str(tmp_path / "cache"), "--report_to", "none"])
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    assert f"run_squad.py: {broken}: the model's logits are not finite (NaN): its weights are broken" in err
