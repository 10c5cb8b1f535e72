"""A full disk while building the feature cache or writing `make eval`'s files (issue 18 item 7): one message naming
the folder and the space needed, nothing half-written. Real full disks: small tmpfs mounts (root only; skipped
with the reason elsewhere)."""

import errno
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, shared_file
from helpers import PREDICT, env, small_disk, train_tiny_run

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import checkpoints, run_dir  # noqa: E402
from qa import features as F  # noqa: E402
from qa.squad_io import read_squad  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("disk-full")
    return train_tiny_run(tiny_model_dir, root)


def test_a_full_disk_while_building_the_feature_cache_is_one_message_and_leaves_nothing(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    path = shared_file("squad", "squad2-dev-normans-rhine.json")
    examples = read_squad(path)[:60]
    params = F.FeatureParams(max_seq_length=128, doc_stride=64, max_query_length=32)
    with small_disk(tmp_path / "cache", "64k") as cache:
        with pytest.raises(checkpoints.DiskFullError) as error:
            F.load_or_build_features(path, examples, tokenizer, params, True, cache_dir=str(cache),
                                     log=lambda line: None, chunk_examples=8)
        # no half-written cache, no temporary folder (the in-use lock marks a live reader, not data: clean-cache's probe)
        assert [name for name in os.listdir(cache) if name != F.IN_USE_LOCK] == []
    message = str(error.value)
    assert message.startswith(f"not enough free disk in {cache} for the feature cache features-")
    assert "need ~" in message and "--features_cache_dir" in message and "\n" not in message
    needed = F.load_or_build_features(path, examples, tokenizer, params, True, cache_dir=str(tmp_path / "big"),
                                      log=lambda line: None)
    real = sum(os.path.getsize(os.path.join(needed.cache_folder, n)) for n in os.listdir(needed.cache_folder))
    estimate = message.split("need ~", 1)[1].split(",")[0]
    value, unit = estimate.split()
    estimated = float(value) * {"bytes": 1, "KiB": 2**10, "MiB": 2**20}[unit]
    assert 0.5 * real <= estimated <= 1.5 * real  # the space needed, estimated from what was written


def test_make_eval_on_a_full_disk_is_one_message_and_leaves_no_eval_folder(trained_run, tmp_path):
    """Before: an OSError 28 traceback, and eval/dev-N left with only predictions_N.json."""
    eval_root = trained_run / run_dir.EVAL_DIR
    with small_disk(eval_root, "12k"):
        done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "eval", f"OUTPUT_DIR={trained_run}",
                               "CKPT=final", "NGPUS=0", "THREADS=1", "REPORT_TO=none",
                               f"PREDICT_FILE={shared_file(*PREDICT)}",
                               f"EXTRA=--max_eval_samples 12 --features_cache_dir {tmp_path / 'cache'}"],
                              env=env(), capture_output=True, text=True, timeout=300)
        left = os.listdir(eval_root)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert f"not enough free disk in {eval_root} for the evaluation " in output and "need more than" in output
    assert "Traceback" not in output and "Errno 28" not in output
    assert left == []  # nothing half-written: not even a temporary folder


def test_an_evaluation_cut_after_its_predictions_leaves_the_previous_one_whole(trained_run, tmp_path, monkeypatch,
                                                                            capsys):
    """A second evaluation of the same step that fails halfway: the first one's folder stays as it was."""
    from qa import postprocess

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    argv = ["--output_dir", str(run), "--do_eval", "--eval_checkpoint", "final", "--predict_file",
            str(shared_file(*PREDICT)), "--max_eval_samples", "4", "--features_cache_dir", str(tmp_path / "cache"),
            "--report_to", "none", "--threads", "1"]
    assert run_squad.main(argv) == 0
    (folder,) = [run / run_dir.EVAL_DIR / name for name in os.listdir(run / run_dir.EVAL_DIR)]
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder) if (folder / name).is_file()}
    real = postprocess.write_prediction_files

    def full_after_the_predictions(result, output_dir, step, *args, **kwargs):
        real(result, output_dir, step, *args, **kwargs)  # predictions, n-best, null odds written: then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(output_dir, f"eval_results_{step}.json"))

    monkeypatch.setattr(postprocess, "write_prediction_files", full_after_the_predictions)
    assert run_squad.main(argv) == 2
    assert "not enough free disk in" in capsys.readouterr().err
    assert os.listdir(run / run_dir.EVAL_DIR) == [folder.name]  # no temporary folder left
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder) if (folder / name).is_file()} == before
