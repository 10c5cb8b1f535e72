"""run_squad.py end to end on CPU: the guide's command line, its outputs, logging, loading the result, bad flags.

Runs in-process (main(argv)) with the tiny ALBERT of conftest and the real SQuAD 2.0 subsets.
"""

import json
import os
import pathlib

import pytest

from conftest import shared_file

torch = pytest.importorskip("torch")
import run_squad  # noqa: E402
from qa import retention, run_dir  # noqa: E402

TRAIN = ("squad", "squad2-dev-normans-rhine.json")
PREDICT = ("squad", "squad2-dev-normans-complexity.json")
EVAL_KEYS = {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
             "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh",
             "tuned_null_score_diff_threshold"}




def guide_argv(model_dir, output_dir, cache_dir, *extra):
    """The guide's command line, with the tiny model, small real data, a small max_seq_length, no --fp16 (CPU)."""
    return [
        "--model_type", "ALBERTxlv2", "--model_name_or_path", str(model_dir), "--do_train", "--do_eval",
        "--evaluate_during_training", "--train_file", str(shared_file(*TRAIN)), "--predict_file",
        str(shared_file(*PREDICT)), "--learning_rate", "3e-5", "--num_train_epochs", "7", "--max_seq_length", "128",
        "--doc_stride", "64", "--output_dir", str(output_dir), "--per_gpu_eval_batch_size=8",
        "--per_gpu_train_batch_size=1", "--threads", "2", "--version_2_with_negative",
        # small and fast: 12 questions to train on, 16 to evaluate, evaluations and checkpoints every 40 steps
        "--max_train_samples", "12", "--max_eval_samples", "16", "--logging_steps", "40", "--save_steps", "40",
        "--features_cache_dir", str(cache_dir), *extra,
    ]


@pytest.fixture(scope="module")
def guide_run(tiny_model_dir, tmp_path_factory):
    """One run of the guide's command line (with tensorboard and wandb offline), shared by the tests below."""
    root = tmp_path_factory.mktemp("guide")
    out = root / "reformatted_outputs"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_DIR"] = str(root / "wandb-dir")
    try:
        code = run_squad.main(guide_argv(tiny_model_dir, out, root / "cache", "--learning_rate=3e-4",
                                         "--report_to", "tensorboard", "wandb", "--wandb_project", "qa-tests"))
    finally:
        torch.set_num_threads(before)
        os.environ.pop("WANDB_DIR")
    assert code == 0
    return out


def test_guide_command_line_writes_every_output(guide_run):
    out = guide_run
    summary = json.loads((out / "training_summary.json").read_text())
    step = summary["global_step"]
    assert step > 40 and not summary["early_stopped"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "args.json", "command.txt", "train.log",
                 "metrics.jsonl", f"predictions_{step}.json", f"nbest_predictions_{step}.json",
                 f"null_odds_{step}.json", f"eval_results_{step}.json", f"predictions_{step}_best_thresh.json",
                 "best_checkpoint.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / f"eval_results_{step}.json").read_text())
    assert EVAL_KEYS <= set(results) and results["total"] == 16
    assert results["tuned_null_score_diff_threshold"] == results["best_f1_thresh"]
    # The predictions at the tuned threshold are the ones that score best_f1.
    from qa.metrics import evaluate_predictions
    from qa.squad_io import read_squad

    examples = read_squad(shared_file(*PREDICT))[:16]
    tuned = json.loads((out / f"predictions_{step}_best_thresh.json").read_text())
    assert evaluate_predictions(examples, tuned)["f1"] == pytest.approx(results["best_f1"])
    nbest = json.loads((out / f"nbest_predictions_{step}.json").read_text())
    assert set(nbest) == {e.qas_id for e in examples}
    # Checkpoints every 40 steps, complete, with their step inside; evaluations during training too.
    saved = run_dir.list_checkpoints(out)
    assert [s for s, _ in saved][:2] == [40, 80]
    assert (out / "eval_results_40.json").is_file() and (out / "predictions_80.json").is_file()
    # The exact command line and all arguments are kept.
    command = (out / "command.txt").read_text()
    assert "--model_type ALBERTxlv2" in command and "--per_gpu_train_batch_size=1" in command
    args = json.loads((out / "args.json").read_text())
    assert args["learning_rate"] == 3e-4 and args["threads"] == 2 and args["model_type"] == "ALBERTxlv2"
    log = (out / "train.log").read_text()
    assert "--fp16_opt_level" not in log  # not given with --fp16 here: nothing to report
    assert "informative only" in log
    card = (out / "README.md").read_text()
    assert "Tuned null threshold" in card and "| best_f1_thresh |" in card and "ALBERTxlv2" in card
    # scripts/ask.py reads the window sizes and the tuned threshold from here.
    final_results = json.loads((out / f"eval_results_{summary['global_step']}.json").read_text())
    qa_config = json.loads((out / "qa_config.json").read_text())
    assert qa_config["null_score_diff_threshold"] == final_results["best_f1_thresh"]
    assert qa_config["max_seq_length"] == args["max_seq_length"] and qa_config["doc_stride"] == args["doc_stride"]


def test_training_lowers_the_loss(guide_run):
    losses = [r["train/loss"] for r in map(json.loads, (guide_run / "metrics.jsonl").read_text().splitlines())
              if "train/loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0] * 0.9


def test_tensorboard_and_wandb_offline(guide_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = guide_run / "runs"
    acc = EventAccumulator(str(runs))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "eval/f1", "eval/best_f1"} <= tags
    assert [e.step for e in acc.Scalars("eval/f1")][:2] == [40, 80]
    wandb_runs = list((guide_run.parent / "wandb-dir").glob("**/offline-run-*/*.wandb")) + list(
        guide_run.glob("**/offline-run-*/*.wandb"))
    assert wandb_runs, "no offline wandb run was written"


def test_final_folder_loads_and_predicts_alone(guide_run, tmp_path, one_thread):
    """transformers 5.24 has no "question-answering" pipeline any more; the closest equivalent is
    AutoModelForQuestionAnswering + AutoTokenizer, and our own evaluation path on the folder alone."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.pipelines import SUPPORTED_TASKS

    assert "question-answering" not in SUPPORTED_TASKS  # if it comes back, test it here instead
    model = AutoModelForQuestionAnswering.from_pretrained(guide_run)
    tokenizer = AutoTokenizer.from_pretrained(guide_run)
    inputs = tokenizer("Who ruled?", "The Normans ruled Normandy.", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.start_logits.shape == inputs["input_ids"].shape
    # Evaluation alone, from the saved folder, reproduces the predictions made at the end of training.
    step = json.loads((guide_run / "training_summary.json").read_text())["global_step"]
    eval_dir = tmp_path / "eval"
    code = run_squad.main(["--model_name_or_path", str(guide_run), "--output_dir", str(eval_dir), "--do_eval",
                           "--predict_file", str(shared_file(*PREDICT)), "--max_eval_samples", "16",
                           "--max_seq_length", "128", "--doc_stride", "64", "--version_2_with_negative",
                           "--features_cache_dir", str(tmp_path / "cache"), "--report_to", "none"])
    assert code == 0
    (alone,) = eval_dir.glob("eval/*-pretrained/predictions_pretrained.json")  # evaluation alone: its own folder
    assert json.loads(alone.read_text()) == json.loads((guide_run / f"predictions_{step}.json").read_text())


def test_make_eval_defaults_to_the_best_checkpoint(guide_run, one_thread):
    best = run_dir.best_checkpoint(guide_run)
    code = run_squad.main(["--model_name_or_path", str(guide_run), "--output_dir", str(guide_run), "--do_eval",
                           "--predict_file", str(shared_file(*PREDICT)), "--max_eval_samples", "16",
                           "--max_seq_length", "128", "--doc_stride", "64", "--version_2_with_negative",
                           "--features_cache_dir", str(guide_run.parent / "cache"), "--report_to", "none"])
    assert code == 0
    results = json.loads(pathlib.Path(run_dir.eval_dir(guide_run, shared_file(*PREDICT), best["step"]),
                                      f"eval_results_{best['step']}.json").read_text())
    assert results[best["metric"]] == pytest.approx(best["value"])


def test_the_best_is_the_best_of_every_evaluation_the_final_one_included(guide_run):
    """Issue 19 item 4: the evaluation of the final model after training takes part in "best"."""
    best, final_step = run_dir.best_checkpoint(guide_run), run_dir.finished_step(guide_run)
    scores = {step: results["f1"] for step, results in run_dir.all_eval_results(guide_run)}
    assert final_step in scores and best["value"] == pytest.approx(max(scores.values()))
    assert scores[run_dir.model_step(run_dir.run_model(guide_run))] == pytest.approx(max(scores.values()))


def test_eval_all_checkpoints(guide_run, one_thread):
    saved = run_dir.list_checkpoints(guide_run)
    final_step = json.loads((guide_run / "training_summary.json").read_text())["global_step"]
    code = run_squad.main(["--model_name_or_path", str(guide_run), "--output_dir", str(guide_run), "--do_eval",
                           "--eval_all_checkpoints", "--predict_file", str(shared_file(*PREDICT)),
                           "--max_eval_samples", "16", "--max_seq_length", "128", "--doc_stride", "64",
                           "--version_2_with_negative", "--features_cache_dir", str(guide_run.parent / "cache"),
                           "--report_to", "none"])
    assert code == 0 and len(saved) >= 2
    def folder(step):  # evaluation alone: each in its own folder
        return pathlib.Path(run_dir.eval_dir(guide_run, shared_file(*PREDICT), step))

    for step, _ in saved:
        assert json.loads((folder(step) / f"eval_results_{step}.json").read_text())["step"] == step
    # The final model too, as legacy did (it globbed every folder holding weights, output_dir included).
    assert json.loads((folder(final_step) / f"eval_results_{final_step}.json").read_text())["step"] == final_step
    assert f"evaluating final model ({guide_run})" in (folder(final_step) / "train.log").read_text()


def eval_alone_argv(model, output_dir, cache_dir, *extra):
    return ["--model_name_or_path", str(model), "--output_dir", str(output_dir), "--do_eval", "--predict_file",
            str(shared_file(*PREDICT)), "--max_eval_samples", "16", "--max_seq_length", "128", "--doc_stride", "64",
            "--version_2_with_negative", "--features_cache_dir", str(cache_dir), "--report_to", "none", *extra]


def test_eval_alone_evaluates_model_name_or_path_as_legacy(guide_run, one_thread):
    """Legacy --do_eval without --do_train evaluated --model_name_or_path, even with a best checkpoint recorded."""
    best = run_dir.best_checkpoint(guide_run)
    step, path = next((s, p) for s, p in run_dir.list_checkpoints(guide_run) if s != best["step"])
    best_results = (guide_run / f"eval_results_{best['step']}.json").read_bytes()
    assert run_squad.main(eval_alone_argv(path, guide_run, guide_run.parent / "cache")) == 0
    folder = pathlib.Path(run_dir.eval_dir(guide_run, shared_file(*PREDICT), step))  # evaluation alone: its own folder
    assert json.loads((folder / f"eval_results_{step}.json").read_text())["step"] == step
    new_log = (folder / "train.log").read_text()
    assert f"evaluating {path} ({path})" in new_log and best["checkpoint"] not in new_log
    assert (guide_run / f"eval_results_{best['step']}.json").read_bytes() == best_results


def test_eval_alone_with_nothing_to_evaluate_fails_up_front(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_squad.main(eval_alone_argv(empty, empty, tmp_path / "cache")) == 2
    assert f"no complete checkpoint in {empty}" in capsys.readouterr().err
    assert run_squad.main(eval_alone_argv(empty, empty, tmp_path / "cache", "--eval_checkpoint", "checkpoint-9")) == 2
    assert "checkpoint-9: no such checkpoint folder" in capsys.readouterr().err
    assert sorted(os.listdir(empty)) == []  # failed before writing anything


def test_unfinished_checkpoint_as_model_is_refused(tiny_model_dir, tmp_path, capsys):
    """The guide resumes with --model_name_or_path .../checkpoint-N: one without its COMPLETE marker is refused,
    not silently trained from as if it were a pretrained model."""
    partial = tmp_path / "run" / "checkpoint-8"
    partial.mkdir(parents=True)
    for name in os.listdir(tiny_model_dir):
        (partial / name).write_bytes((tiny_model_dir / name).read_bytes())
    (partial / run_dir.STATE_FILE).write_text(json.dumps({"global_step": 8}))
    argv = ["--model_name_or_path", str(partial), "--output_dir", str(tmp_path / "other"), "--do_train",
            "--train_file", str(shared_file(*TRAIN))]
    assert run_squad.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--model_name_or_path {partial} is a checkpoint that was never completed" in err
    assert "--resume_from_checkpoint auto" in err and not (tmp_path / "other").exists()


def short_train_argv(model_dir, out, cache, *extra):
    return ["--model_name_or_path", str(model_dir), "--output_dir", str(out), "--do_train", "--train_file",
            str(shared_file(*TRAIN)), "--max_train_samples", "8", "--max_seq_length", "128", "--report_to", "none",
            "--features_cache_dir", str(cache), "--version_2_with_negative", *extra]


def test_save_and_logging_steps_zero_mean_never_and_verbose_logging(tiny_model_dir, tmp_path, one_thread):
    """Legacy: --save_steps 0 / --logging_steps 0 turn periodic saving / logging off (the last step is still logged)."""
    import transformers

    out = tmp_path / "zero"
    code = run_squad.main(short_train_argv(tiny_model_dir, out, tmp_path / "cache", "--max_steps", "4",
                                           "--save_steps", "0", "--logging_steps", "0", "--verbose_logging",
                                           "--fp16_opt_level", "O2"))
    try:
        assert code == 0
        assert transformers.logging.get_verbosity() == transformers.logging.INFO
    finally:
        transformers.logging.set_verbosity_warning()
    assert run_dir.list_checkpoints(out) == []
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4]
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 4
    assert "--fp16_opt_level O2 is unused: mixed precision is torch.amp" in (out / "train.log").read_text()
    with pytest.raises(Exception, match="--save_steps cannot be negative"):
        from qa.args import parse_args, validate_args

        validate_args(parse_args(short_train_argv(tiny_model_dir, tmp_path / "neg", tmp_path / "cache",
                                                  "--save_steps", "-1")), cuda_available=False)


def test_overwrite_output_dir_starts_a_clean_run(tiny_model_dir, tmp_path, one_thread):
    """A fresh run over an old one: the old checkpoints, best record and metrics must not be read back as the new run's
    (else resume picks the old newest checkpoint and rotation deletes the new run's)."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert run_squad.main(short_train_argv(tiny_model_dir, out, cache, "--max_steps", "6", "--save_steps", "3",
                                           "--logging_steps", "3")) == 0
    assert [s for s, _ in run_dir.list_checkpoints(out)] == [3, 6]
    retention.record_best(out, str(out / "checkpoint-6"), "f1", 99.0)
    assert run_squad.main(short_train_argv(tiny_model_dir, out, cache, "--max_steps", "2", "--save_steps", "1",
                                           "--logging_steps", "1", "--save_total_limit", "1",
                                           "--overwrite_output_dir")) == 0
    assert [s for s, _ in run_dir.list_checkpoints(out)] == [2]
    assert run_dir.best_checkpoint(out) is None
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert "--overwrite_output_dir: removed the previous run's" in (out / "train.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_fp16_without_cuda_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    code = run_squad.main(guide_argv(tiny_model_dir, tmp_path / "out", tmp_path / "cache", "--fp16"))
    assert code == 2
    err = capsys.readouterr().err
    assert "--fp16 needs a CUDA GPU" in err and "--bf16" in err
    assert not (tmp_path / "out").exists()  # nothing written before the arguments are known to be good


def test_argument_errors_say_what_to_do(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    argv = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_train", "--fp16", "--bf16",
            "--predict_file", str(tmp_path / "missing.json"), "--do_eval", "--gradient_accumulation_steps", "0"]
    assert run_squad.main(argv) == 2
    err = capsys.readouterr().err
    assert f"Output directory ({out}) already exists and is not empty. Use --overwrite_output_dir" in err
    assert "--do_train needs --train_file" in err
    assert "--fp16 and --bf16 are exclusive" in err
    assert "missing.json: no such file" in err
    assert "--gradient_accumulation_steps must be at least 1" in err
    assert run_squad.main(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_train", "--train_file",
                           str(shared_file(*TRAIN)), "--resume_from_checkpoint", "checkpoint-7"]) == 2
    assert "checkpoint-7: no such checkpoint folder" in capsys.readouterr().err


def test_data_dir_joins_file_names_as_legacy(tmp_path):
    from qa.args import parse_args

    squad_dir = shared_file(*TRAIN).parent
    args = parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--do_train", "--data_dir", str(squad_dir),
                       "--train_file", TRAIN[1], "--do_eval", "--version_2_with_negative"])
    assert args.train_file == os.path.join(str(squad_dir), TRAIN[1])
    assert args.predict_file == os.path.join(str(squad_dir), "dev-v2.0.json")  # legacy SquadV2Processor default
    assert parse_args(["--model_name_or_path", "m", "--output_dir", "o"]).null_score_diff_threshold == 0.0


def test_bf16_on_cpu_trains(tiny_model_dir, tmp_path, one_thread):
    out = tmp_path / "bf16"
    code = run_squad.main(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_train",
                           "--train_file", str(shared_file(*TRAIN)), "--max_train_samples", "8", "--max_steps", "3",
                           "--max_seq_length", "128", "--bf16", "--report_to", "none", "--logging_steps", "1",
                           "--features_cache_dir", str(tmp_path / "cache"), "--version_2_with_negative"])
    assert code == 0
    losses = [json.loads(line)["train/loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)
    assert pathlib.Path(out / "model.safetensors").is_file()


def test_legacy_flags_keep_their_defaults_and_spellings():
    """Every flag of the legacy script, with its default (transformers examples/legacy/question-answering/run_squad.py)."""
    from qa.args import parse_args

    legacy_defaults = {
        "model_type": None, "data_dir": None, "train_file": None, "predict_file": None, "config_name": "",
        "tokenizer_name": "", "cache_dir": "", "version_2_with_negative": False, "null_score_diff_threshold": 0.0,
        "max_seq_length": 384, "doc_stride": 128, "max_query_length": 64, "do_train": False, "do_eval": False,
        "evaluate_during_training": False, "do_lower_case": False, "per_gpu_train_batch_size": 8,
        "per_gpu_eval_batch_size": 8, "learning_rate": 5e-5, "gradient_accumulation_steps": 1, "weight_decay": 0.0,
        "adam_epsilon": 1e-8, "max_grad_norm": 1.0, "num_train_epochs": 3.0, "max_steps": -1, "warmup_steps": 0,
        "n_best_size": 20, "max_answer_length": 30, "verbose_logging": False, "lang_id": 0, "logging_steps": 500,
        "save_steps": 500, "eval_all_checkpoints": False, "no_cuda": False, "overwrite_output_dir": False,
        "overwrite_cache": False, "seed": 42, "local_rank": -1, "fp16": False, "fp16_opt_level": "O1",
        "server_ip": "", "server_port": "", "threads": 1,
    }
    args = vars(parse_args(["--model_name_or_path", "m", "--output_dir", "o"]))
    assert {k: args[k] for k in legacy_defaults} == legacy_defaults
    # torch.distributed.launch passes --local-rank=N (dashed) since torch 2.0; legacy scripts were given --local_rank.
    assert parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--local-rank=1"]).local_rank == 1
    assert parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--local_rank", "2"]).local_rank == 2


def test_legacy_model_flags_reach_transformers(tiny_model_dir, tmp_path, monkeypatch):
    """--config_name, --tokenizer_name, --cache_dir and --lang_id each change what is loaded or fed to the model."""
    from qa.args import parse_args
    from qa.runtime import ModelFeed, Runtime

    config_dir = tmp_path / "config"
    config_dir.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (config_dir / "config.json").write_text(json.dumps(dict(config, hidden_dropout_prob=0.375)))
    args = parse_args(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "o"),
                       "--config_name", str(config_dir), "--tokenizer_name", str(tiny_model_dir),
                       "--cache_dir", str(tmp_path / "hub-cache"), "--lang_id", "3"])
    runtime = Runtime(device=torch.device("cpu"))
    model = run_squad.load_model(str(tiny_model_dir), args, runtime)
    assert model.config.hidden_dropout_prob == 0.375  # from --config_name
    # A checkpoint being resumed keeps its own config.
    assert run_squad.load_model(str(tiny_model_dir) + "/", args, runtime).config.hidden_dropout_prob == \
        config["hidden_dropout_prob"]
    # --tokenizer_name wins over the model folder (here a folder with no tokenizer at all).
    assert len(run_squad.load_tokenizer(args, str(config_dir))) == len(run_squad.load_tokenizer(args, str(tiny_model_dir)))

    import transformers

    seen = []
    real = transformers.AutoConfig.from_pretrained.__func__

    def spy(cls, name, **kwargs):
        seen.append(kwargs.get("cache_dir"))
        return real(cls, name, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", classmethod(spy))
    run_squad.load_model(str(tiny_model_dir), args, runtime)
    assert seen == [str(tmp_path / "hub-cache")]

    class XLMLike(torch.nn.Module):
        config = type("Config", (), {"model_type": "xlm"})()

        def forward(self, input_ids=None, attention_mask=None, langs=None):
            return None

    import numpy as np

    inputs = ModelFeed(XLMLike(), Runtime(device=torch.device("cpu")), lang_id=args.lang_id)(
        {"input_ids": np.ones((2, 5), dtype=np.int32), "token_type_ids": np.zeros((2, 5))})
    assert set(inputs) == {"input_ids", "langs"} and inputs["langs"].eq(3).all()


def test_remote_debugging_waits_for_a_debugger(tiny_model_dir, tmp_path, monkeypatch):
    """--server_ip/--server_port: debugpy listens there and the run waits for a client before doing anything."""
    import sys
    import types

    calls = []

    class Attached(Exception):
        pass

    def wait_for_client():
        calls.append("wait")
        raise Attached

    fake = types.SimpleNamespace(listen=lambda address: calls.append(address), wait_for_client=wait_for_client)
    monkeypatch.setitem(sys.modules, "debugpy", fake)
    argv = short_train_argv(tiny_model_dir, tmp_path / "out", tmp_path / "cache", "--server_ip", "127.0.0.1",
                            "--server_port", "5678")
    with pytest.raises(Attached):
        run_squad.main(argv)
    assert calls == [("127.0.0.1", 5678), "wait"]
    assert not (tmp_path / "out").exists()


def test_threads_and_overwrite_cache_reach_the_feature_builder(tmp_path, monkeypatch):
    """--threads and --overwrite_cache go to the feature cache (on rank 0 only: the other ranks read what it built)."""
    from qa import features
    from qa.args import parse_args
    from qa.runtime import Runtime

    seen = []
    monkeypatch.setattr(features, "load_or_build_features",
                        lambda path, examples, tokenizer, params, training, **kw: seen.append((params, kw)) or "built")
    args = parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--threads", "5", "--overwrite_cache",
                       "--max_seq_length", "200", "--doc_stride", "50", "--max_query_length", "20"])
    log = type("Log", (), {"info": staticmethod(lambda message: None)})()
    assert run_squad.prepare_features("d.json", [], None, args, True, Runtime(device=torch.device("cpu")), log) == "built"
    params, kwargs = seen[0]
    assert (params.max_seq_length, params.doc_stride, params.max_query_length) == (200, 50, 20)
    assert kwargs["threads"] == 5 and kwargs["overwrite_cache"] is True
    # A rank other than 0 never rebuilds (its barriers are no-ops here: world_size 1).
    run_squad.prepare_features("d.json", [], None, args, True, Runtime(device=torch.device("cpu"), rank=1), log)
    assert seen[1][1]["overwrite_cache"] is False


def test_fp16_opt_level_is_reported_unused_with_fp16():
    from qa.args import parse_args, unused_flag_notes

    base = ["--model_name_or_path", "m", "--output_dir", "o"]
    assert any(n.startswith("--fp16_opt_level O1 is unused") for n in unused_flag_notes(parse_args([*base, "--fp16"])))
    assert not any("fp16_opt_level" in n for n in unused_flag_notes(parse_args(base)))


def test_bad_training_data_names_the_question_and_skip_bad_examples_counts_it(tiny_model_dir, tmp_path, capsys,
                                                                               one_thread):
    data = json.loads(shared_file(*TRAIN).read_text(encoding="utf-8"))
    first_qa = data["data"][0]["paragraphs"][0]["qas"][0]
    first_qa["answers"][0]["answer_start"] += 3  # no longer points at its text
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    argv = ["--model_name_or_path", str(tiny_model_dir), "--do_train", "--train_file", str(bad),
            "--max_train_samples", "8", "--max_steps", "2", "--max_seq_length", "128", "--report_to", "none",
            "--features_cache_dir", str(tmp_path / "cache"), "--version_2_with_negative"]
    assert run_squad.main([*argv, "--output_dir", str(tmp_path / "stopped")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and first_qa["id"] in err and "--skip_bad_examples" in err
    assert not (tmp_path / "stopped" / "model.safetensors").exists()

    assert run_squad.main([*argv, "--output_dir", str(tmp_path / "skipped"), "--skip_bad_examples"]) == 0
    log = (tmp_path / "skipped" / "train.log").read_text()
    assert "skipped 1 bad question(s)" in log and "1 with an answer that does not match" in log
