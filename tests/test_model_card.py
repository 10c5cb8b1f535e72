"""The model card names the base model, data, hyperparameters, metrics and the tuned threshold."""

from qa.model_card import render_model_card, write_model_card

ARGS = {
    "model_name_or_path": "albert-xlarge-v2", "model_type": "ALBERTxlv2", "train_file": "data/nq/nq_train.json",
    "predict_file": "data/nq/nq_dev.json", "version_2_with_negative": True, "learning_rate": 3e-5,
    "num_train_epochs": 7.0, "max_seq_length": 384, "doc_stride": 128,
}
RESULTS = {"exact": 61.25, "f1": 64.5, "total": 800, "HasAns_f1": 70.125, "NoAns_exact": 58.0,
           "best_exact": 62.0, "best_exact_thresh": -1.5, "best_f1": 66.0, "best_f1_thresh": -1.25}


def test_card_contents(tmp_path):
    path = write_model_card(str(tmp_path), ARGS, RESULTS, {"checkpoint": "checkpoint-1500", "step": 1500,
                                                           "metric": "f1", "value": 66.0})
    text = open(path, encoding="utf-8").read()
    assert text == render_model_card(ARGS, RESULTS, {"checkpoint": "checkpoint-1500", "step": 1500,
                                                     "metric": "f1", "value": 66.0})
    assert "`albert-xlarge-v2`" in text and "data/nq/nq_train.json" in text and "data/nq/nq_dev.json" in text
    assert "| learning_rate | 3e-05 |" in text and "| doc_stride | 128 |" in text
    assert "| HasAns_f1 | 70.125 |" in text and "| total | 800 |" in text
    assert "Tuned null threshold: -1.25" in text and "checkpoint-1500" in text
    assert "At this threshold F1 is 66; at 0 (the threshold the evaluation ran with) it is 64.5." in text
    assert "## Evaluation on `data/nq/nq_dev.json` (official SQuAD 2.0 metrics)" in text
    assert 'AutoModelForQuestionAnswering.from_pretrained("THIS_FOLDER")' in text


def test_card_table_holds_the_listed_hyperparameters_of_a_real_namespace_and_nothing_else():
    # run_squad.py hands the card vars(args) whole: some 60 flags, among them local paths, the cache folder,
    # the wandb project and the debug server. Only these 15 training settings may become rows.
    from qa.args import parse_args

    args = vars(parse_args(["--model_type", "ALBERTxlv2", "--model_name_or_path", "albert-xlarge-v2",
                            "--output_dir", "/home/me/private-run", "--do_train", "--train_file", "data/nq/nq_train.json",
                            "--learning_rate", "3e-5", "--cache_dir", "/home/me/hf-cache", "--wandb_project",
                            "team-internal-proj", "--server_ip", "10.1.2.3", "--server_port", "5678", "--bf16"]))
    args["world_size"] = 8  # added by run_squad.py
    text = render_model_card(args)
    table = text.split("## Hyperparameters\n\n| name | value |\n|---|---|\n")[1].split("\n\n")[0]
    assert table.splitlines() == [
        "| learning_rate | 3e-05 |", "| num_train_epochs | 3 |", "| max_steps | -1 |", "| per_gpu_train_batch_size | 8 |",
        "| gradient_accumulation_steps | 1 |", "| world_size | 8 |", "| warmup_steps | 0 |", "| weight_decay | 0 |",
        "| max_grad_norm | 1 |", "| max_seq_length | 384 |", "| doc_stride | 128 |", "| max_query_length | 64 |",
        "| fp16 | False |", "| bf16 | True |", "| seed | 42 |"]
    for private in ("/home/me/private-run", "/home/me/hf-cache", "team-internal-proj", "10.1.2.3", "5678"):
        assert private not in text


def test_qa_config_holds_the_tuned_threshold(tmp_path):
    import json

    from qa.model_card import write_qa_config

    args = dict(ARGS, max_query_length=64, max_answer_length=30, n_best_size=20, null_score_diff_threshold=0.0)
    config = json.loads(open(write_qa_config(str(tmp_path), args)).read())
    assert config["null_score_diff_threshold"] == 0.0 and "not evaluated" in config["null_threshold_source"]
    config = json.loads(open(write_qa_config(str(tmp_path), args, RESULTS)).read())
    assert config["null_score_diff_threshold"] == -1.25 and config["max_seq_length"] == 384
    assert config["doc_stride"] == 128 and "data/nq/nq_dev.json" in config["null_threshold_source"]


def test_card_without_evaluation():
    text = render_model_card(ARGS)
    assert "## Evaluation" not in text and "Tuned null threshold" not in text and "albert-xlarge-v2" in text


def test_card_names_the_evaluated_step_and_its_threshold():
    results = dict(RESULTS, step=3000, null_score_diff_threshold=-0.5)
    text = render_model_card(ARGS, results)
    assert "## Evaluation on `data/nq/nq_dev.json` (official SQuAD 2.0 metrics, step 3000)" in text
    assert "at -0.5 (the threshold the evaluation ran with) it is 64.5." in text
