"""The hub's Natural Questions parquet files read like the jsonl.gz shards (qa/nq/parquet.py).

The parquet files are built here with pyarrow from the real dev records in ../shared/data/nq, in the schema of
`google-research-datasets/natural_questions` (sequences of dicts as structs of parallel lists, yes_no_answer a
class label, ids as strings), and must give the converter's very bytes, the same official metrics and the same
predict_nq predictions as the original jsonl.gz."""

import gzip
import json
import runpy
import sys

import pytest

from conftest import ROOT, shared_file
from qa.nq import parquet as nq_parquet
from qa.nq.evaluate import main as nq_eval_main
from qa.nq.reader import InputError, iter_lines
from servers import moto_server, s3  # noqa: F401  (fixtures)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

nq_to_squad_main = runpy.run_path(str(ROOT / "scripts" / "nq_to_squad.py"))["main"]
predict_nq_main = runpy.run_path(str(ROOT / "scripts" / "predict_nq.py"))["main"]

SPAN = ("end_byte", "end_token", "start_byte", "start_token")
I64, STR = pa.int64(), pa.string()
# The features of the hub's dataset card (fields sorted by name, as `datasets` wrote them), as arrow types.
HUB_SCHEMA = pa.schema([
    ("id", STR),
    ("document", pa.struct([("html", STR), ("title", STR),
                            ("tokens", pa.struct([("end_byte", pa.list_(I64)), ("is_html", pa.list_(pa.bool_())),
                                                  ("start_byte", pa.list_(I64)), ("token", pa.list_(STR))])),
                            ("url", STR)])),
    ("question", pa.struct([("text", STR), ("tokens", pa.list_(STR))])),
    ("long_answer_candidates", pa.struct([*((name, pa.list_(I64)) for name in SPAN), ("top_level", pa.list_(pa.bool_()))])),
    ("annotations", pa.struct([
        ("id", pa.list_(STR)),
        ("long_answer", pa.list_(pa.struct([("candidate_index", I64), *((name, I64) for name in SPAN)]))),
        ("short_answers", pa.list_(pa.struct([*((name, pa.list_(I64)) for name in SPAN), ("text", pa.list_(STR))]))),
        ("yes_no_answer", pa.list_(I64)),
    ])),
])
# What the original loading script wrote: tokens without byte offsets, no candidates, no candidate_index.
OLD_SCHEMA = pa.schema([
    ("id", STR),
    ("document", pa.struct([("title", STR), ("url", STR), ("html", STR),
                            ("tokens", pa.struct([("token", pa.list_(STR)), ("is_html", pa.list_(pa.bool_()))]))])),
    ("question", pa.struct([("text", STR), ("tokens", pa.list_(STR))])),
    ("annotations", pa.struct([
        ("id", pa.list_(STR)),
        ("long_answer", pa.list_(pa.struct([(name, I64) for name in SPAN]))),
        ("short_answers", pa.list_(pa.struct([*((name, pa.list_(I64)) for name in SPAN), ("text", pa.list_(STR))]))),
        ("yes_no_answer", pa.list_(I64)),
    ])),
])
CLASS_LABEL = {"NO": 0, "YES": 1, "NONE": -1}


def columns(items, names):
    return {name: [item[name] for item in items] for name in names}


def hub_row(record):
    """A full-format jsonl record as the hub's row."""
    tokens = record["document_tokens"]

    def text(short):
        return " ".join(t["token"] for t in tokens[short["start_token"] : short["end_token"]] if not t["html_token"])

    annotations = record["annotations"]
    return {
        "id": str(record["example_id"]),
        "document": {"html": record["document_html"], "title": record["document_title"], "url": record["document_url"],
                     "tokens": {"end_byte": [t["end_byte"] for t in tokens], "is_html": [t["html_token"] for t in tokens],
                                "start_byte": [t["start_byte"] for t in tokens], "token": [t["token"] for t in tokens]}},
        "question": {"text": record["question_text"], "tokens": record["question_tokens"]},
        "long_answer_candidates": columns(record["long_answer_candidates"], (*SPAN, "top_level")),
        "annotations": {"id": [str(a["annotation_id"]) for a in annotations],
                        "long_answer": [dict(a["long_answer"]) for a in annotations],
                        "short_answers": [{**columns(a["short_answers"], SPAN), "text": [text(s) for s in a["short_answers"]]}
                                          for a in annotations],
                        "yes_no_answer": [CLASS_LABEL[a["yes_no_answer"]] for a in annotations]},
    }


def old_cache_row(record):
    row = hub_row(record)
    del row["long_answer_candidates"]
    row["document"]["tokens"] = {"token": row["document"]["tokens"]["token"], "is_html": row["document"]["tokens"]["is_html"]}
    for long_answer in row["annotations"]["long_answer"]:
        del long_answer["candidate_index"]
    return row


def write_parquet(path, rows, schema=HUB_SCHEMA, row_group_size=4):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def jsonl_path():
    return shared_file("nq", "nq-dev-10.full.jsonl.gz")


@pytest.fixture(scope="module")
def records(jsonl_path):
    return [json.loads(line) for line in gzip.open(jsonl_path)]


@pytest.fixture(scope="module")
def hub_dir(records, tmp_path_factory):
    """The 10 records in two shards named as the hub's (dev/validation-0000N-of-00002.parquet), 3 row groups each."""
    folder = tmp_path_factory.mktemp("hub") / "dev"
    folder.mkdir()
    for index, part in enumerate((records[:5], records[5:])):
        write_parquet(folder / f"validation-{index:05d}-of-00002.parquet", [hub_row(r) for r in part], row_group_size=2)
    return folder


def convert(tmp_path, inputs, *flags, name="out.json"):
    out, stats = tmp_path / name, tmp_path / f"{name}.stats.json"
    code = nq_to_squad_main([*map(str, inputs), "--output", str(out), "--stats-json", str(stats), *flags])
    return code, out, (json.loads(stats.read_text())["counts"] if stats.exists() else None)


# ---------------------------------------------------------------------------------------------
# Rows read as records
# ---------------------------------------------------------------------------------------------
def test_each_row_is_the_record_of_the_jsonl(hub_dir, records):
    got = [json.loads(line) for path in sorted(hub_dir.glob("*.parquet")) for _, line in iter_lines(str(path))]
    assert got == records
    assert [n for n, _ in iter_lines(str(hub_dir / "validation-00001-of-00002.parquet"))] == [1, 2, 3, 4, 5]
    # The yes/no class labels and a non-ASCII short answer survive the round trip.
    row = hub_row(records[0])
    row["annotations"]["yes_no_answer"] = [1, 0, -1, -1, -1]
    assert [a["yes_no_answer"] for a in nq_parquet.record_from_row(row)["annotations"]] == ["YES", "NO", "NONE", "NONE", "NONE"]
    # Sequences stored as lists of dicts (not the hub's layout, but arrow's other one) read the same; the viewer
    # shows annotation ids above 2**63 (13676402902866580638): kept exact.
    listed = hub_row(records[0])
    listed["document"]["tokens"] = nq_parquet._rows(listed["document"]["tokens"])
    listed["long_answer_candidates"] = nq_parquet._rows(listed["long_answer_candidates"])
    listed["annotations"]["id"][0] = "13676402902866580638"
    record = json.loads(nq_parquet.dumps(nq_parquet.record_from_row(listed)))
    assert record["annotations"][0]["annotation_id"] == 13676402902866580638
    assert record == {**records[0], "annotations": [{**records[0]["annotations"][0], "annotation_id": 13676402902866580638},
                                                    *records[0]["annotations"][1:]]}
    row["annotations"]["yes_no_answer"][0] = 2
    with pytest.raises(ValueError, match="yes_no_answer 2 is not a class label"):
        nq_parquet.record_from_row(row)


def test_fields_read_only_their_columns(hub_dir, records, monkeypatch):
    asked = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("columns"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    path = str(hub_dir / "validation-00000-of-00002.parquet")
    got = [json.loads(line) for _, line in iter_lines(path, fields=("example_id", "annotations"))]
    assert asked == [["annotations", "id"]]
    assert got == [{"example_id": r["example_id"], "annotations": r["annotations"]} for r in records[:5]]


def test_rows_are_read_in_small_batches_through_a_buffered_stream(records, tmp_path, monkeypatch):
    """A file of several row groups is decoded BATCH_ROWS rows at a time, never a row group at once."""
    path = write_parquet(tmp_path / "validation.parquet", [hub_row(r) for r in records], row_group_size=5)
    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    opened, batches = [], []
    original_init, original_batches = pq.ParquetFile.__init__, pq.ParquetFile.iter_batches

    def init(self, source, **kwargs):
        opened.append(kwargs)
        original_init(self, source, **kwargs)

    def iter_batches(self, *args, **kwargs):
        for batch in original_batches(self, *args, **kwargs):
            batches.append((kwargs["batch_size"], batch.num_rows))
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "__init__", init)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", iter_batches)
    assert sum(1 for _ in iter_lines(str(path))) == 10
    assert opened == [{"buffer_size": nq_parquet.READ_BUFFER, "pre_buffer": False}]
    assert {size for size, _ in batches} == {nq_parquet.BATCH_ROWS} and nq_parquet.BATCH_ROWS <= 16
    monkeypatch.setattr(nq_parquet, "BATCH_ROWS", 2)
    batches.clear()
    assert [json.loads(line) for _, line in iter_lines(str(path))] == records
    assert [rows for _, rows in batches] == [2] * 5


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [("--all-answers",), ("--context", "candidates", "--keep-negatives", "0.5")],
                         ids=["guide-all-answers", "candidates"])
def test_converter_writes_the_same_bytes_from_parquet(hub_dir, jsonl_path, tmp_path, flags):
    code, expected, expected_counts = convert(tmp_path, [jsonl_path], *flags, name="jsonl.json")
    assert code == 0 and expected_counts["kept"] > 0
    code, got, counts = convert(tmp_path, [hub_dir / "validation-*.parquet"], *flags, "--workers", "2", name="parquet.json")
    assert code == 0
    assert got.read_bytes() == expected.read_bytes()
    assert counts == dict(expected_counts, files=2)


def test_converter_and_nq_eval_read_parquet_from_s3(hub_dir, jsonl_path, tmp_path, s3, capsys):  # noqa: F811  (the fixture)
    s3.create_bucket(Bucket="nq-hub")
    for path in sorted(hub_dir.glob("*.parquet")):
        s3.upload_file(str(path), "nq-hub", f"natural_questions/dev/{path.name}")
    code, expected, _ = convert(tmp_path, [jsonl_path], "--all-answers", name="jsonl.json")
    code, got, counts = convert(tmp_path, ["s3://nq-hub/natural_questions/dev/"], "--all-answers", name="s3.json")
    assert code == 0 and counts["records_read"] == 10
    assert got.read_bytes() == expected.read_bytes()
    # The official evaluation reads its gold columns from s3:// the same way.
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(official_predictions([json.loads(line) for line in gzip.open(jsonl_path)])))
    capsys.readouterr()  # the converter's tables
    results = []
    for gold in (jsonl_path, "s3://nq-hub/natural_questions/dev/"):
        assert nq_eval_main(["--gold_path", str(gold), "--predictions_path", str(predictions), "--num_threads", "1"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[1] == results[0]


def test_old_cache_is_refused_naming_the_missing_columns(records, tmp_path, capsys):
    old = write_parquet(tmp_path / "validation-00000-of-00001.parquet", [old_cache_row(r) for r in records[:2]], OLD_SCHEMA)
    code, out, _ = convert(tmp_path, [old])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert f"{old}: not the hub's Natural Questions parquet: it lacks document.tokens.start_byte, document.tokens.end_byte, " \
           "long_answer_candidates, annotations.long_answer.candidate_index. Files written by the original loading script " \
           "(older `datasets` caches) have no token byte offsets or long-answer candidates" in err
    with pytest.raises(SystemExit) as exit_:
        nq_eval_main(["--gold_path", str(old), "--predictions_path", str(tmp_path / "p.json")])
    assert exit_.value.code == 2 and f"{old}: not the hub's Natural Questions parquet" in capsys.readouterr().err


def test_damaged_parquet_and_missing_pyarrow_are_named(hub_dir, jsonl_path, tmp_path, capsys, monkeypatch):
    whole = (hub_dir / "validation-00000-of-00002.parquet").read_bytes()
    cut = tmp_path / "validation-cut.parquet"
    cut.write_bytes(whole[: len(whole) // 2])
    code, _, _ = convert(tmp_path, [cut])
    assert code == 2 and f"{cut}: not a readable parquet file" in capsys.readouterr().err
    # Without pyarrow: the jsonl.gz shards convert as before, a parquet file is refused saying what to install.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    code, _, counts = convert(tmp_path, [jsonl_path], name="jsonl.json")
    assert code == 0 and counts["records_read"] == 10
    code, _, _ = convert(tmp_path, [hub_dir / "validation-00000-of-00002.parquet"])
    assert code == 2 and "reading parquet needs pyarrow: pip install -r requirements.txt" in capsys.readouterr().err
    with pytest.raises(InputError, match="needs pyarrow"):
        next(iter_lines(str(hub_dir / "validation-00000-of-00002.parquet")))


# ---------------------------------------------------------------------------------------------
# The official evaluation and predict_nq
# ---------------------------------------------------------------------------------------------
def official_predictions(records):
    """Predictions that score non-trivially: the first annotator's answer where there is one, else candidate 0."""
    entries = []
    for i, record in enumerate(records):
        given = [a for a in record["annotations"] if a["long_answer"]["candidate_index"] >= 0]
        long_answer = given[0]["long_answer"] if given else record["long_answer_candidates"][0]
        shorts = given[0]["short_answers"] if given else []
        entries.append({"example_id": record["example_id"], "long_answer": {k: long_answer[k] for k in SPAN},
                        "long_answer_score": float(i if given else -i),
                        "short_answers": [{k: s[k] for k in SPAN} for s in shorts], "short_answers_score": float(i),
                        "yes_no_answer": "NONE"})
    return {"predictions": entries}


def test_nq_eval_scores_parquet_gold_as_the_jsonl(hub_dir, jsonl_path, records, tmp_path, capsys):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(official_predictions(records)))
    results = []
    for gold in (jsonl_path, hub_dir / "validation-*.parquet", hub_dir):  # a file, a glob, a folder
        assert nq_eval_main(["--gold_path", str(gold), "--predictions_path", str(predictions)]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["long-best-threshold-f1"] > 0 and results[0]["short-best-threshold-f1"] > 0
    assert results[1] == results[0] and results[2] == results[0]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny ALBERT as a final model folder (window sizes in qa_config.json), as tests/test_predict_nq.py builds it."""
    import shutil

    folder = tmp_path_factory.mktemp("model") / "run"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "qa_config.json").write_text(json.dumps({"max_seq_length": 128, "doc_stride": 64, "max_query_length": 32,
                                                       "max_answer_length": 30, "n_best_size": 20,
                                                       "version_2_with_negative": True, "null_score_diff_threshold": 0.0}))
    (folder / "training_summary.json").write_text(json.dumps({"global_step": 12, "early_stopped": False}))
    return folder


def test_predict_nq_reads_parquet_with_the_same_predictions(model_dir, hub_dir, jsonl_path, tmp_path, capsys):
    outputs = []
    for name, source in (("jsonl", jsonl_path), ("parquet", hub_dir / "validation-*.parquet")):
        out = tmp_path / name / "nq_predictions.json"
        code = predict_nq_main(["--model_dir", str(model_dir), "--input", str(source), "--output", str(out),
                                "--max_examples", "4"])
        assert code == 0, capsys.readouterr().err
        outputs.append(out)
    assert outputs[1].read_bytes() == outputs[0].read_bytes()
    assert len(json.loads(outputs[0].read_text())["predictions"]) == 4
    scores = [json.loads(out.with_name("nq_eval_results_12.json").read_text()) for out in outputs]
    metric_keys = [key for key in scores[0] if "f1" in key or "recall" in key or "precision" in key]
    assert metric_keys and {k: scores[1][k] for k in metric_keys} == {k: scores[0][k] for k in metric_keys}


# ---------------------------------------------------------------------------------------------
# make data NQ_PARQUET=...
# ---------------------------------------------------------------------------------------------
def test_split_files_take_the_dev_config_and_name_what_is_missing(tmp_path):
    for name in ("default/train-00001-of-00002.parquet", "default/train-00000-of-00002.parquet",
                 "default/validation-00000-of-00001.parquet", "dev/validation-00000-of-00001.parquet"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"PAR1")
    assert nq_parquet.split_files(str(tmp_path), "train") == [str(tmp_path / f"default/train-0000{i}-of-00002.parquet")
                                                               for i in (0, 1)]
    assert nq_parquet.split_files(str(tmp_path), "dev") == [str(tmp_path / "dev/validation-00000-of-00001.parquet")]
    (tmp_path / "dev/validation-00000-of-00001.parquet").rename(tmp_path / "dev/other.parquet")
    (tmp_path / "more").mkdir()
    (tmp_path / "more/validation-00000-of-00001.parquet").write_bytes(b"PAR1")
    with pytest.raises(InputError, match=r"validation-\*.parquet files in several folders"):
        nq_parquet.split_files(str(tmp_path), "dev")
    with pytest.raises(InputError, match="no train-\\*.parquet file under it"):
        nq_parquet.split_files(str(tmp_path / "dev"), "train")


def test_make_data_converts_the_hubs_parquet(hub_dir, records, jsonl_path, tmp_path):
    """make data NQ_PARQUET=<the hub's folder>: both splits converted from parquet, the dev file the jsonl's bytes;
    a second run converts nothing."""
    import subprocess

    hub = hub_dir.parent  # holds dev/validation-*; default/ gets a train file and the validation split again
    (hub / "default").mkdir(exist_ok=True)
    write_parquet(hub / "default" / "train-00000-of-00001.parquet", [hub_row(r) for r in records])
    write_parquet(hub / "default" / "validation-00000-of-00001.parquet", [hub_row(r) for r in records])
    data_dir = tmp_path / "data"
    command = ["make", "--no-print-directory", "-o", str(ROOT / ".venv" / ".installed"), "data", f"PY={sys.executable}",
               f"DATA_DIR={data_dir}", f"NQ_PARQUET={hub}", "WORKERS=2"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (data_dir / "nq" / "nq_dev.inputs").read_text().splitlines() == [str(p) for p in sorted(hub_dir.glob("*.parquet"))]
    code, expected, _ = convert(tmp_path, [jsonl_path], "--all-answers", name="jsonl.json")
    assert (data_dir / "nq" / "nq_dev.json").read_bytes() == expected.read_bytes()
    train = json.loads((data_dir / "nq" / "nq_train.json").read_text())
    assert json.loads((data_dir / "nq" / "nq_train.json.stats.json").read_text())["counts"]["records_read"] == 10
    assert train["data"]
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nq_to_squad" not in again.stdout, again.stdout
