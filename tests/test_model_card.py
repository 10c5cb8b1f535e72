"""The model card names the base model, data, hyperparameters, metrics and the tuned threshold."""

from qa.model_card import render_model_card, write_model_card

ARGS = {
    "model_name_or_path": "albert-xlarge-v2", "model_type": "ALBERTxlv2", "train_file": "data/nq/nq_train.json",
    "predict_file": "data/nq/nq_dev.json", "version_2_with_negative": True, "learning_rate": 3e-5,
    "num_train_epochs": 7.0, "max_seq_length": 384, "doc_stride": 128, "hub_token": "secret",
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
    assert "secret" not in text  # only the listed hyperparameters are written
    assert 'pipeline("question-answering"' in text


def test_card_without_evaluation():
    text = render_model_card(ARGS)
    assert "## Evaluation" not in text and "Tuned null threshold" not in text and "albert-xlarge-v2" in text
