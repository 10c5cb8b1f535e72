"""run_squad.py's command line forgives nothing silently (qa/args.py): no flag abbreviations, one-line errors
that say what to do, Makefile variable names through make, and a mistyped model folder caught up front.

    .venv/bin/python -m pytest tests/test_args.py -q
"""

import os
import re
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file
from qa import args as qa_args
from qa.args import ArgumentError, flag_name, looks_local, model_source_problem, parse_args, validate_args

BASE = ["--model_name_or_path", "m", "--output_dir", "o"]


@pytest.fixture(autouse=True)
def _not_via_make(monkeypatch):
    # `make test` must not leak the Makefile's QA_VIA_MAKE=1 into the tests that expect flag names.
    monkeypatch.delenv("QA_VIA_MAKE", raising=False)


def exit_message(argv, capsys):
    """parse_args(argv) must exit 2; its stderr (stdout must stay empty)."""
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def eval_argv(tmp_path, *extra):
    """A valid evaluation command line but for what `extra` changes."""
    return ["--output_dir", str(tmp_path / "out"), "--do_eval",
            "--predict_file", str(shared_file("squad", "squad2-dev-normans-rhine.json")), *extra]


# --- unknown flags --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag, suggestion", [
    ([*BASE, "--learning_rat", "1e-4"], "--learning_rat", "--learning_rate"),
    ([*BASE, "--learning_rat=1e-4"], "--learning_rat", "--learning_rate"),  # the = form too
    ([*BASE, "--num_train_epoch", "2"], "--num_train_epoch", "--num_train_epochs"),
    ([*BASE, "--do_trian"], "--do_trian", "--do_train"),
    # A mistyped required flag is named, not reported as "the following arguments are required".
    (["--model_name_or_pth", "m", "--output_dir", "o"], "--model_name_or_pth", "--model_name_or_path"),
])
def test_no_prefix_matching_and_the_closest_flag_is_suggested(argv, flag, suggestion, capsys):
    # Legacy argparse took --learning_rat 1e-4 for --learning_rate and trained with it, silently.
    assert exit_message(argv, capsys) == f"run_squad.py: error: unknown flag {flag} (did you mean {suggestion}?)\n"


def test_unknown_flag_without_a_close_one_and_stray_values(capsys):
    assert exit_message([*BASE, "--zzqqxx"], capsys) == \
        "run_squad.py: error: unknown flag --zzqqxx (run_squad.py --help lists every flag)\n"
    assert exit_message([*BASE, "-x"], capsys) == "run_squad.py: error: unknown flag -x (run_squad.py --help lists every flag)\n"
    err = exit_message([*BASE, "--do_train", "yes"], capsys)
    assert err.startswith("run_squad.py: error: unexpected value 'yes': every value follows the flag") and err.count("\n") == 1


def test_exact_spellings_still_parse():
    args = parse_args([*BASE, "--learning_rate", "1e-4", "--local-rank=1", "--no_group_by_length", "--seed=7"])
    assert (args.learning_rate, args.local_rank, args.group_by_length, args.seed) == (1e-4, 1, False, 7)


# --- bad values: one line, no usage dump ---------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    ([*BASE, "--num_train_epochs", "abc"], "argument --num_train_epochs: invalid float value: 'abc'"),
    ([*BASE, "--per_gpu_train_batch_size", "4.5"], "argument --per_gpu_train_batch_size: invalid int value: '4.5'"),
    ([*BASE, "--report_to", "tb"], "argument --report_to: invalid choice: 'tb' (choose from 'tensorboard', 'wandb', 'none')"),
    ([*BASE, "--learning_rate"], "argument --learning_rate: expected one argument"),
    (["--output_dir", "o"], "the following arguments are required: --model_name_or_path"),
])
def test_bad_value_is_one_line_without_usage(argv, message, capsys):
    err = exit_message(argv, capsys)
    assert err == f"run_squad.py: error: {message}\n"
    assert "usage:" not in err


def test_help_is_still_the_full_usage(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: run_squad.py")
    # Every flag is listed, with its default.
    flags = [o for o in qa_args.build_parser().option_strings() if o.startswith("--")]
    assert len(flags) > 50 and all(flag in out for flag in flags)
    assert "(default: 5e-05)" in out and len(out.splitlines()) > 100


def test_through_a_real_process_nothing_is_trained_with_a_mistyped_flag(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "run_squad.py"), "--model_name_or_path", "albert-base-v2",
                           "--output_dir", str(out), "--do_train", "--learning_rat", "1e-4"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "QA_VIA_MAKE": ""})
    assert done.returncode == 2
    assert done.stderr == "run_squad.py: error: unknown flag --learning_rat (did you mean --learning_rate?)\n"
    assert done.stdout == "" and not out.exists()


# --- through make: the Makefile's variable names --------------------------------------------------

def test_flag_name_maps_the_makefile_variables_only_through_make(monkeypatch):
    assert flag_name("--num_train_epochs") == "--num_train_epochs"
    monkeypatch.setenv("QA_VIA_MAKE", "1")
    assert flag_name("--num_train_epochs") == "EPOCHS" and flag_name("--resume_from_checkpoint") == "CKPT"
    assert flag_name("--max_query_length") == "--max_query_length"  # no Makefile variable: the flag itself
    assert flag_name("--learning_rate", {}) == "--learning_rate"  # an explicit environment wins


def test_every_variable_of_make_train_is_named_as_the_makefile_spells_it():
    # Read from the Makefile itself, so a variable renamed there and not here fails this test.
    makefile = (ROOT / "Makefile").read_text()
    train_args = re.search(r"^TRAIN_ARGS = (.*?)(?:\n\n|\n[^ \t\n].*?=)", makefile, re.S | re.M)[1]
    # --flag $(VAR), --flag=$(call q,$(VAR)) (quoted once) or $(call flag,--flag,$(VAR))
    pairs = re.findall(r"(--\w+)[ =]\$\((?:call q,\$\()?(\w+)\)", train_args)
    pairs += re.findall(r"\$\(call flag,(--\w+),\$\((\w+)\)\)", train_args)
    assert len(pairs) >= 15, train_args
    environ = {"QA_VIA_MAKE": "1"}
    assert {flag: flag_name(flag, environ) for flag, _ in pairs} == dict(pairs)
    assert re.search(r"--resume_from_checkpoint[ =]\$\((?:call q,\$\()?or \$\(CKPT\)", makefile)
    assert flag_name("--resume_from_checkpoint", environ) == "CKPT"
    assert re.search(r"--eval_checkpoint[ =]\$\(CKPT\)|call flag,--eval_checkpoint,\$\(CKPT\)", makefile)
    assert flag_name("--eval_checkpoint", environ) == "CKPT"


def test_errors_through_make_name_the_variables(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QA_VIA_MAKE", "1")
    assert exit_message([*BASE, "--num_train_epochs", "abc"], capsys) == \
        "run_squad.py: error: argument EPOCHS: invalid float value: 'abc'\n"
    model = tmp_path / "model"
    model.mkdir()
    args = parse_args(["--model_name_or_path", str(model), "--output_dir", str(tmp_path / "out"), "--do_train",
                       "--train_file", str(tmp_path / "missing.json"), "--threads", "0", "--learning_rate", "0",
                       "--per_gpu_train_batch_size", "0"])
    with pytest.raises(ArgumentError) as failed:
        validate_args(args, cuda_available=False)
    message = str(failed.value)
    assert f"TRAIN_FILE {tmp_path / 'missing.json'}: no such file (run `make data`, or check DATA_DIR)" in message
    assert "THREADS must be at least 1 (got 0)" in message and "BATCH must be at least 1 (got 0)" in message
    assert "LR and EPOCHS (or --max_steps) must be positive" in message
    assert "--train_file" not in message and "--threads" not in message


def test_non_empty_output_dir_through_make_says_make_resume(tmp_path, monkeypatch):
    model, out = tmp_path / "model", tmp_path / "out"
    model.mkdir()
    out.mkdir()
    (out / "train.log").write_text("an earlier run\n")
    (out / "checkpoint-5").mkdir()  # a run's (only a failed start's leftovers are taken: test_failed_start.py)
    argv = ["--model_name_or_path", str(model), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file("squad", "squad2-dev-normans-rhine.json"))]
    with pytest.raises(ArgumentError, match=r"Use --overwrite_output_dir to overcome \(or --resume_from_checkpoint auto to "
                                            "continue"):
        validate_args(parse_args(argv), cuda_available=False)
    monkeypatch.setenv("QA_VIA_MAKE", "1")
    with pytest.raises(ArgumentError, match=rf"Use EXTRA=--overwrite_output_dir to overcome \(or `make resume "
                                            rf"OUTPUT_DIR={out}` to continue"):
        validate_args(parse_args(argv), cuda_available=False)


# --- the model, tokenizer and config must be loadable ---------------------------------------------

@pytest.mark.parametrize("name, local", [
    ("./model", True), ("../model", True), ("/abs/model", True), ("~/model", True), (".", True),
    ("outputs/demo/tiny-albrt", True),  # two '/': never a hub id
    ("albert-base-v2", False), ("google/electra-small-discriminator", False),
])
def test_looks_local(name, local):
    assert looks_local(name) is local


def test_looks_local_when_the_parent_folder_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_local("runs/model")  # "org/name": a hub id, as far as anyone can tell
    (tmp_path / "runs").mkdir()
    assert looks_local("runs/model")  # runs/ is here: the user meant a folder in it


def test_mistyped_local_model_folder_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import run_squad

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "demo" / "tiny-albert").mkdir(parents=True)
    out = tmp_path / "outputs" / "demo" / "run"
    code = run_squad.main(["--model_name_or_path", "outputs/demo/tiny-albrt", "--output_dir", str(out), "--do_train",
                           "--train_file", str(shared_file("squad", "squad2-dev-normans-rhine.json"))])
    assert code == 2
    err = capsys.readouterr().err
    assert err == ("run_squad.py: error: --model_name_or_path outputs/demo/tiny-albrt: no such folder, and not a model "
                   "id (did you mean outputs/demo/tiny-albert?)\n")
    assert not out.exists()


def test_tokenizer_and_config_names_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = parse_args(eval_argv(tmp_path, "--model_name_or_path", str(model), "--tokenizer_name", str(tmp_path / "tok"),
                                "--config_name", str(tmp_path / "conf.json")))
    with pytest.raises(ArgumentError) as failed:
        validate_args(args, cuda_available=False)
    lines = str(failed.value).splitlines()
    assert lines == [f"error: --tokenizer_name {tmp_path / 'tok'}: no such folder, and not a model id (check the path)",
                     f"error: --config_name {tmp_path / 'conf.json'}: no such folder, and not a model id (check the path)"]
    # A config file (legacy allowed one) and a folder pass; the model itself must be a folder.
    args = parse_args(eval_argv(tmp_path, "--model_name_or_path", str(model), "--tokenizer_name", str(model),
                                "--config_name", str(model / "config.json")))
    assert validate_args(args, cuda_available=False) is args
    assert model_source_problem("--model_name_or_path", str(model / "config.json")) == \
        f"--model_name_or_path {model / 'config.json'} is a file: give the folder that holds config.json and the weights"


def test_hub_ids_pass_online_and_need_the_cache_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # no folder named like the ids below
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty hub cache
    with socket.socket() as hub:  # a hub that accepts connections, on loopback
        hub.bind(("127.0.0.1", 0))
        hub.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")
        args = parse_args(eval_argv(tmp_path, "--model_name_or_path", "org/name", "--tokenizer_name", "albert-base-v2"))
        assert validate_args(args, cuda_available=False) is args  # may be downloaded: not ours to refuse
    # Not a model id at all (a space), and not a folder either.
    assert model_source_problem("--model_name_or_path", "my model") == \
        "--model_name_or_path my model: no such folder, and not a model id (check the path)"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ArgumentError) as failed:
        validate_args(parse_args(eval_argv(tmp_path, "--model_name_or_path", "org/name")), cuda_available=False)
    assert str(failed.value) == ("error: --model_name_or_path org/name: not a folder here and not in the model cache, "
                                 "and HF_HUB_OFFLINE=1 forbids downloading it: give a local folder, or download it "
                                 "once with the network on")
    # Downloaded before (the hub cache's own layout, in --cache_dir): offline is fine.
    repo = tmp_path / "hub" / "models--org--name"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "config.json").write_text("{}")
    args = parse_args(eval_argv(tmp_path, "--model_name_or_path", "org/name", "--cache_dir", str(tmp_path / "hub")))
    assert validate_args(args, cuda_available=False) is args
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert "TRANSFORMERS_OFFLINE=yes forbids downloading it" in model_source_problem("--model_name_or_path", "org/other")


def test_a_quoted_tilde_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    args = parse_args(eval_argv(tmp_path, "--model_name_or_path", "~/models/tiny"))
    assert args.model_name_or_path == str(tmp_path / "models" / "tiny")
    assert validate_args(args, cuda_available=False) is args


def test_precision_given_overrides_both_recorded_flags():
    """A run recorded with --fp16 resumed with PRECISION=fp32 (a machine without CUDA): --precision counts as
    giving both --fp16 and --bf16, so the record cannot switch fp16 back on."""
    from qa.args import given_settings
    from qa.resume_record import apply_record

    argv = [*BASE, "--precision", "fp32"]
    args = parse_args(argv)
    assert (args.fp16, args.bf16) == (False, False)
    given = given_settings(argv)
    assert {"fp16", "bf16", "precision"} <= given
    changed = apply_record(args, given, {"fp16": True, "bf16": False, "precision": None}, ["fp16", "bf16"])
    assert (args.fp16, args.bf16) == (False, False) and changed == [("fp16", True, False)]
    assert parse_args([*BASE, "--precision", "bf16"]).bf16 is True
    with pytest.raises(SystemExit):  # the CLI: one line, exit 2
        parse_args([*BASE, "--precision", "fp32", "--fp16"])
    # The library raises an error the CLI turns into that line, never SystemExit itself.
    contradicting = parse_args([*BASE, "--fp16"])
    contradicting.precision = "fp32"
    with pytest.raises(ArgumentError, match="--precision fp32 contradicts --fp16"):
        qa_args.apply_precision(contradicting)
