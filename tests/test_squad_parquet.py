"""The hub's SQuAD layouts read like SQuAD JSON: squad_v2 parquet and JSON Lines of the same rows.

The files are built here with pyarrow from the real records in ../shared/data/squad, in the layout of the
hub's `rajpurkar/squad_v2` (id, title, context, question, answers{text[], answer_start[]}), and must give
the same examples, the same official scores and the same run_squad.py evaluation as the original JSON."""

import json

import orjson
import pytest

from conftest import shared_file
from qa import squad_io
from qa.metrics import evaluate_predictions
from qa.squad_io import SquadFormatError, read_squad

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

RHINE = ("squad", "squad2-dev-normans-rhine.json")
# The schema `datasets` writes for squad_v2 (answer_start is int32 there).
HUB_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("context", pa.string()), ("question", pa.string()),
                        ("answers", pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))]))])


def hub_rows(path):
    """The nested SQuAD JSON file as the hub's rows, one a question."""
    dataset = json.loads(path.read_text(encoding="utf-8"))
    return [{"id": qa["id"], "title": article["title"], "context": paragraph["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]], "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in dataset["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def write_parquet(rows, path, schema=HUB_SCHEMA, row_group_size=100):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def test_parquet_and_jsonl_give_the_examples_of_the_json(tmp_path, monkeypatch):
    original = shared_file(*RHINE)
    rows = hub_rows(original)
    parquet = write_parquet(rows, tmp_path / "validation-00000-of-00001.parquet")
    jsonl = tmp_path / "validation.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    monkeypatch.setattr(squad_io, "PARQUET_BATCH_ROWS", 64)  # several batches and row groups
    expected_stats, parquet_stats, jsonl_stats = {}, {}, {}
    expected = read_squad(original, stats=expected_stats)
    assert read_squad(parquet, stats=parquet_stats) == expected
    assert read_squad(jsonl, stats=jsonl_stats) == expected
    assert parquet_stats == dict(expected_stats, format="parquet") and parquet_stats["examples"] == 706
    assert jsonl_stats == dict(expected_stats, format="jsonl")
    assert (expected_stats["answerable"], expected_stats["unanswerable"]) == (386, 320)


def test_a_scored_evaluation_is_the_same_on_parquet(tmp_path):
    # The official leaderboard predictions of bert-single, scored against the examples read from parquet:
    # the official script's numbers (../shared/data/README.md) to 4 decimals.
    parquet = write_parquet(hub_rows(shared_file(*RHINE)), tmp_path / "dev.parquet")
    predictions = json.loads(shared_file("squad", "predictions", "bert-single.json").read_text(encoding="utf-8"))
    scores = evaluate_predictions(read_squad(parquet), predictions)
    assert scores == evaluate_predictions(read_squad(shared_file(*RHINE)), predictions)
    assert (round(scores["exact"], 4), round(scores["f1"], 4), scores["total"]) == (78.0453, 81.216, 706)


def test_run_squad_evaluates_a_parquet_predict_file_like_the_json(tiny_model_dir, tmp_path, one_thread):
    import run_squad

    original = shared_file(*RHINE)
    rows = [row for row in hub_rows(original) if row["title"] == "Normans"][:24]
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [
        {"context": row["context"], "qas": [{"id": row["id"], "question": row["question"], "is_impossible": not row["answers"]["text"],
                                            "answers": [{"text": t, "answer_start": s} for t, s in
                                                        zip(row["answers"]["text"], row["answers"]["answer_start"])]}]}
        for row in rows]}]}), encoding="utf-8")
    parquet = write_parquet(rows, tmp_path / "subset.parquet")
    results = {}
    for name, data in (("json", subset), ("parquet", parquet)):
        out = tmp_path / name
        code = run_squad.main(["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_eval",
                               "--predict_file", str(data), "--max_seq_length", "128", "--doc_stride", "64",
                               "--version_2_with_negative", "--features_cache_dir", str(tmp_path / "cache"),
                               "--report_to", "none"])
        assert code == 0
        (folder,) = out.glob("eval/*-pretrained")
        predictions = json.loads((folder / "predictions_pretrained.json").read_text(encoding="utf-8"))
        scores = json.loads((folder / "eval_results_pretrained.json").read_text(encoding="utf-8"))
        results[name] = (predictions, {k: v for k, v in scores.items() if k != "step"})
    assert len(results["json"][0]) == 24 and results["parquet"] == results["json"]


def test_bad_parquet_files_are_named(tmp_path):
    rows = hub_rows(shared_file(*RHINE))[:5]
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(write_parquet(rows, tmp_path / "whole.parquet").read_bytes()[:300])
    with pytest.raises(SquadFormatError, match=r"cut\.parquet: not a readable parquet file .*Download it again"):
        read_squad(truncated)
    no_question = write_parquet([{k: v for k, v in row.items() if k != "question"} for row in rows],
                                tmp_path / "nq.parquet", schema=pa.schema([f for f in HUB_SCHEMA if f.name != "question"]))
    with pytest.raises(SquadFormatError, match=r"nq\.parquet: a parquet file without column\(s\) question"):
        read_squad(no_question)
    rows[3]["answers"]["answer_start"][0] += 1
    with pytest.raises(SquadFormatError, match=r"bad\.parquet: row 3: question id .* is not at answer_start") as error:
        read_squad(write_parquet(rows, tmp_path / "bad.parquet"))
    assert error.value.skippable
    stats = {}
    assert len(read_squad(tmp_path / "bad.parquet", skip_bad=True, stats=stats)) == 4 and stats["bad_answer"] == 1
