"""benchmarks/bench_grouping_quality.py's arithmetic: paired differences over seeds, the verdict, the summary per
setting, the one table of speed and quality, and reusing finished runs. (The benchmark itself needs the
benchmark-only encoder package; `make bench-quality` runs it.)"""

import argparse
import importlib.util
import json

import pytest

from conftest import ROOT, shared_file


def load(name):
    """A benchmark script as a module, from its file: benchmarks/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load("bench_grouping_quality")


def run(candidate, seed, f1, has=10.0, best=55.0, setting="complexity"):
    scores = {name: 50.0 for name in bench.SCORES}
    scores.update(f1=f1, HasAns_f1=has, best_f1=best)
    return {"setting": setting, "candidate": candidate, "seed": seed, "scores": scores, "train_features_per_s": 4.0}


def test_paired_differences_and_their_standard_error():
    p = bench.paired([1.0, 2.0, 3.0])
    assert (p["mean"], p["sd"], p["min"], p["max"], p["seeds"]) == (2.0, 1.0, 1.0, 3.0, 3)
    assert p["stderr"] == pytest.approx(1 / 3 ** 0.5, abs=1e-3)
    assert bench.paired([-0.5])["sd"] == 0.0


def test_verdict_needs_a_drop_beyond_the_tolerance_and_the_noise():
    def diffs(**means):
        out = {name: {"mean": 0.0, "stderr": 0.1, "seeds": 3} for name in bench.VERDICT_SCORES}
        for name, (mean, stderr) in means.items():
            out[name] = {"mean": mean, "stderr": stderr, "seeds": 3}
        return out

    assert bench.verdict(diffs(f1=(-0.5, 0.3))) == "within noise"  # small, within two standard errors
    assert bench.verdict(diffs(f1=(-0.87, 0.37))) == "lower by less than 1 point (f1)"  # measurable, small
    assert bench.verdict(diffs(f1=(-3.0, 2.0))) == "within noise"  # within two standard errors
    assert bench.verdict(diffs(HasAns_f1=(-6.0, 1.5), best_f1=(-1.2, 0.2))) == "worse (HasAns_f1, best_f1)"
    one = {name: {"mean": -9.0, "stderr": 0.0, "seeds": 1} for name in bench.VERDICT_SCORES}
    assert bench.verdict(one).startswith("one seed")
    # a reference that answers nothing cannot show a candidate answering less: no test, whatever the differences
    assert bench.verdict(diffs(f1=(-0.1, 0.1)), reference_has_ans=0.0).startswith("no test: random order answers nothing")
    assert bench.verdict(diffs(f1=(-0.1, 0.1)), reference_has_ans=12.8) == "within noise"


def test_summarise_pairs_each_candidate_with_random_on_the_seeds_both_have():
    runs = {"random": {42: run("random", 42, 52.0, has=12.0), 1: run("random", 1, 51.0, has=6.0)},
            "grouped-50": {42: run("grouped-50", 42, 50.0, has=4.0), 1: run("grouped-50", 1, 50.0, has=2.0),
                           2: run("grouped-50", 2, 10.0, has=0.0)}}  # seed 2 has no random run: not paired
    summary = bench.summarise(runs)
    assert "minus_random" not in summary["random"]
    diff = summary["grouped-50"]["minus_random"]
    assert diff["f1"]["mean"] == -1.5 and diff["f1"]["seeds"] == 2
    assert diff["HasAns_f1"]["mean"] == -6.0 and diff["HasAns_f1"]["min"] == -8.0
    assert summary["grouped-50"]["verdict"] == "worse (f1, HasAns_f1)"
    assert summary["grouped-50"]["mean"]["f1"] == pytest.approx(110 / 3, abs=1e-3)  # its own mean: all its seeds


def test_the_table_puts_speed_beside_quality():
    speed = {"train_384": {"candidates": {"random": {"ratio_to_legacy": 1.6},  # the whole-epoch estimate wins:
                                          "grouped-50": {"ratio_to_legacy": 3.7, "epoch_ratio_to_legacy": 3.3}}},
             "train_256": {"candidates": {"random": {"ratio_to_legacy": 1.1}, "grouped-50": {"ratio_to_legacy": 1.7}}}}
    runs = {"random": {42: run("random", 42, 52.0), 1: run("random", 1, 51.0)},
            "grouped-50": {42: run("grouped-50", 42, 50.0), 1: run("grouped-50", 1, 50.0)}}
    summaries = {"complexity": bench.summarise(runs), "demo": bench.summarise({"random": runs["random"]})}
    rows = bench.table(summaries, speed)
    assert [r["candidate"] for r in rows] == ["random", "grouped-50"]
    assert rows[1]["speed_x_legacy"] == {"train_384": 3.3, "train_256": 1.7}
    assert rows[1]["settings"]["complexity"]["minus_random"]["f1"]["mean"] == -1.5
    assert "demo" not in rows[1]["settings"]
    text = bench.markdown(rows, ["complexity", "demo"])
    assert "| grouped-50 | 3.30x | 1.70x | -1.50 +- 0.50 / " in text and "| not run |" in text
    assert bench.table(summaries, None)[0]["speed_x_legacy"] == {}


def test_keep_reuses_only_runs_of_the_same_setting(tmp_path):
    args = argparse.Namespace(eval_questions=0, steps=0, seeds=None, demo_seeds=None, epochs=None, learning_rate=None)
    settings = {name: bench.effective(bench.SETTINGS[name], args) for name in ("complexity", "demo")}
    records = {name: bench.setting_record(s, args) for name, s in settings.items()}
    changed = dict(records, demo=dict(records["demo"], learning_rate=1e-3))
    path = tmp_path / "grouping_quality.json"
    path.write_text(json.dumps({"setting_records": changed, "data": {"complexity": {"train_windows": 909}, "demo": {}},
                                "runs": [run("random", 42, 50.0), run("random", 1, 50.0, setting="demo")]}))
    runs, data = bench.previous_runs(path, records)
    assert list(runs) == [("complexity", "random", 42)] and data == {"complexity": {"train_windows": 909}}
    assert bench.previous_runs(tmp_path / "missing.json", records) == ({}, {})


def test_a_setting_added_field_keeps_earlier_records_and_a_changed_rate_does_not():
    """setting_record leaves out a field at its default (a field added later must not orphan earlier reports: the
    complexity runs were recorded before held_out existed); --learning-rate is part of the record."""
    args = argparse.Namespace(eval_questions=0, steps=0, seeds=None, demo_seeds=None, epochs=None, learning_rate=None)
    record = bench.setting_record(bench.effective(bench.SETTINGS["complexity"], args), args)
    assert "held_out" not in record and "train_articles" not in record and record["learning_rate"] == 2e-4
    questions = bench.setting_record(bench.effective(bench.SETTINGS["rhine-questions"], args), args)
    assert questions["held_out"] == "questions" and questions["train_articles"] == ["Normans"]
    faster = argparse.Namespace(**dict(vars(args), learning_rate=1e-4))
    assert bench.setting_record(bench.effective(bench.SETTINGS["complexity"], faster), faster)["learning_rate"] == 1e-4
    assert bench.effective(bench.SETTINGS["demo"], faster).learning_rate == 2e-3  # the demo keeps its own


def test_questions_held_out_of_seen_paragraphs_never_train():
    """held_out "questions": every second question of each Rhine paragraph is evaluated on, the others train with
    the whole Normans article; no question is in both, nor asked again in the same words (SQuAD asks "How long is the
    Rhine?" twice of one paragraph), every evaluation paragraph trains, Complexity is left out."""
    from qa.metrics import normalize_answer

    shared_file("squad", "squad2-dev-normans-rhine.json")
    train, evaluation = bench.bench_train.split_questions(42, 0, ("Rhine",), ("Normans",))
    assert not {e.qas_id for e in train} & {e.qas_id for e in evaluation}
    asked = {(e.context, normalize_answer(e.question)) for e in train}
    assert not [e.question for e in evaluation if (e.context, normalize_answer(e.question)) in asked]
    assert {e.title for e in evaluation} == {"Rhine"} and {e.title for e in train} == {"Normans", "Rhine"}
    # Rhine's 44 paragraphs, 498 questions: 239 held out (the 2nd, 4th, ... of each), 2 of them asking a training
    # question again (dropped)
    assert len(evaluation) == 237 and len(train) == 208 + 498 - 239
    assert "How long is the Rhine?" not in {e.question for e in evaluation}
    assert {e.context for e in evaluation} <= {e.context for e in train if e.title == "Rhine"}
    assert any(e.answers for e in evaluation) and any(not e.answers for e in evaluation)
    drawn = bench.bench_train.split_questions(1, 50, ("Rhine",), ("Normans",))[1]
    assert len(drawn) == 50 and {e.qas_id for e in drawn} < {e.qas_id for e in evaluation}
    whole = bench.bench_train.split_articles(42, 0, ("Rhine",))  # articles apart: no Rhine paragraph trains
    assert not {e.context for e in whole[0]} & {e.context for e in whole[1]}
    for call, flag in ((lambda: bench.bench_train.split_questions(42, 0, ("Rhin",), ("Normans",)), "eval_articles"),
                       (lambda: bench.bench_train.split_questions(42, 0, ("Rhine",), ("Norman",)), "train_articles"),
                       (lambda: bench.bench_train.split_articles(42, 0, ("Complexity",)), "eval_articles")):
        with pytest.raises(ValueError, match=f"{flag}: no article '"):  # a misspelt title holds out nothing: refused
            call()


def test_a_setting_says_what_is_wrong_with_it():
    with pytest.raises(ValueError, match="held_out must be 'articles' or 'questions'"):
        bench.Setting("x", "minilm", ("Rhine",), 1e-4, 4, 256, 128, 8, 0, (42,), held_out="question")
    with pytest.raises(ValueError, match="train_articles is for held_out 'questions'"):
        bench.Setting("x", "minilm", ("Rhine",), 1e-4, 4, 256, 128, 8, 0, (42,), train_articles=("Normans",))


def test_from_combines_reports_of_processes_run_side_by_side(tmp_path, capsys):
    """--from REPORT reuses another process's runs (same setting records only), so random order run in one folder
    and a candidate (--no-reference) in another make one table; an unreadable report stops with its name."""
    args = argparse.Namespace(eval_questions=0, steps=0, seeds=None, demo_seeds=None, epochs=None, learning_rate=None)
    records = {"complexity": bench.setting_record(bench.effective(bench.SETTINGS["complexity"], args), args)}
    here, there = tmp_path / "here", tmp_path / "there"
    for folder, candidate in ((here, "grouped-50-half"), (there, "random")):
        folder.mkdir()
        (folder / "grouping_quality.json").write_text(json.dumps({
            "setting_records": records, "data": {"complexity": {"train_windows": 909}},
            "runs": [run(candidate, seed, 50.0 + seed) for seed in (42, 1)]}))
    for name in ("train.json", "dev.json"):
        (tmp_path / name).write_text("{}")
    args = bench.parse_args(["--out", str(here), "--settings", "demo", "--demo-dir", str(tmp_path), "--keep",
                             "--from", str(there / "grouping_quality.json"), "--no-reference",
                             "--candidates", "grouped-50-half"])
    assert args.candidates == ["grouped-50-half"] and args.from_reports == [str(there / "grouping_quality.json")]
    kept, data = bench.reused_runs(args, here, records)
    assert sorted(kept) == [("complexity", c, s) for c in ("grouped-50-half", "random") for s in (1, 42)]
    summary = bench.summarise({c: {s: kept[("complexity", c, s)] for s in (1, 42)} for c in ("random", "grouped-50-half")})
    assert summary["grouped-50-half"]["minus_random"]["f1"]["mean"] == 0.0
    (there / "grouping_quality.json").write_text("{not json")
    with pytest.raises(SystemExit, match="--from .*not a readable report"):
        bench.reused_runs(args, here, records)
    for argv, message in ((["--from", str(tmp_path / "nope.json")], "nope.json: no such file"),
                          (["--no-reference", "--candidates", "random"], "leaves no candidate to run")):
        with pytest.raises(SystemExit):
            bench.parse_args(["--out", "x", "--settings", "demo", "--demo-dir", str(tmp_path), *argv])
        assert message in capsys.readouterr().err


def test_bad_flags_say_what_is_wrong(capsys):
    for argv, message in ((["--settings", "nope"], "unknown 'nope'"), (["--seeds", "1,1"], "has a value twice"),
                          (["--learning-rate", "0"], "--learning-rate must be above 0"),
                          (["--settings", "demo", "--learning-rate", "1e-3"], "--learning-rate changes the MiniLM settings only"),
                          (["--settings", "demo", "--epochs", "3"], "--epochs changes the MiniLM settings only"),
                          (["--candidates", "grouped-3"], "unknown 'grouped-3'")):
        with pytest.raises(SystemExit):
            bench.parse_args(["--out", "x", *argv])
        assert message in capsys.readouterr().err


def test_bench_train_times_each_candidate_once_and_reports_its_ratio_to_legacy():
    train = bench.bench_train
    assert [c.name for c in train.candidate_list("random,grouped-4,random")] == ["random", "grouped-4"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown 'grouped-3'"):
        train.candidate_list("grouped-3")
    # the default (run_squad.py's defaults) is random order: that candidate is the default's run, timed once
    assert train.same_order(train.CANDIDATES["random"], train.DEFAULT)
    assert not train.same_order(train.CANDIDATES["grouped-50"], train.DEFAULT)
    kept = {"legacy": {"features_per_s": 2.0}, "default": {"features_per_s": 3.0}, "grouped-4": {"features_per_s": 5.0}}
    padding = {"random": {"padding_fraction_dynamic": 0.33}, "grouped-4": {"padding_fraction_dynamic": 0.17}}
    ratios = train.candidate_ratios(kept, padding, [train.CANDIDATES["random"], train.CANDIDATES["grouped-4"]])
    assert ratios["random"] == {"features_per_s": 3.0, "ratio_to_legacy": 1.5, "is_default": True, "derived": False,
                                "padding_fraction": 0.33}
    assert ratios["grouped-4"]["ratio_to_legacy"] == 2.5 and not ratios["grouped-4"]["is_default"]


def test_a_candidate_grouped_only_early_times_its_twin_and_mixes_the_speeds():
    """grouped-50-half is grouped-50 in the first half of the epochs, random order after: bench_train times
    grouped-50 (once, however many candidates need it) and derives the half's speed and padding from the two."""
    train = bench.bench_train
    half = train.CANDIDATES["grouped-50-half"]
    timed = train.timed_settings([half, train.CANDIDATES["grouped-50"], train.CANDIDATES["random"]])
    assert [s.name for s in timed] == ["legacy", "default", "grouped-50"]
    assert not train.same_order(half, train.CANDIDATES["grouped-50"]) and not train.same_order(half, train.DEFAULT)
    kept = {"legacy": {"features_per_s": 1.0}, "default": {"features_per_s": 2.0}, "grouped-50": {"features_per_s": 6.0}}
    padding = {"grouped-50-half": {"padding_fraction_dynamic": 0.2}}
    ratio = train.candidate_ratios(kept, padding, [half])["grouped-50-half"]
    assert ratio["derived"] and ratio["features_per_s"] == 3.0  # a window: 0.5/6 + 0.5/2 seconds
    assert train.mixed_padding(0.0, 0.5, 0.5) == round(1 - 1 / 1.5, 4)  # 1 + 2 tokens computed per real token, halved
    # the runs: --length_group_epochs is that share of the run's epochs (at least 1); the others have none
    assert train.group_epochs(half, 2) == 1 and train.group_epochs(half, 10) == 5
    for epochs in (1, 3):  # its speed is mixed half and half: a run that cannot be split so is refused
        with pytest.raises(ValueError, match="cannot be split"):
            train.group_epochs(half, epochs)
    assert train.group_epochs(train.CANDIDATES["grouped-50"], 2) is None
    args = train.train_args("o", "m", 20, 8, half, 42, 1, epochs=4)
    assert args.group_by_length and args.length_group_batches == 50 and args.length_group_epochs == 2
    assert train.train_args("o", "m", 20, 8, train.CANDIDATES["grouped-4"], 42, 1, epochs=4).length_group_epochs is None


def test_bench_train_estimates_a_whole_epoch_from_the_seconds_of_each_width():
    """The few timed batches are a sample: their widths can differ from the epoch's. step_cost fits seconds(width)
    to every timed step, epoch_speed sums it over an epoch's batches (legacy: every batch at max_seq_length)."""
    import numpy as np

    train = bench.bench_train

    def seconds(width):
        return 0.2 + 0.01 * width + 2e-5 * width ** 2

    runs = [{"steps": [[w, seconds(w)] for w in (120, 184, 256)]}, {"steps": [[384, seconds(384)]] * 3}]
    cost = train.step_cost(runs)
    assert np.allclose(np.polyval(cost, [150, 300]), [seconds(150), seconds(300)])
    lengths = np.array([60, 90, 200, 384] * 4)
    batches = [np.arange(i, i + 4) for i in range(0, 16, 4)]  # every batch as wide as its 384 window
    assert train.epoch_speed(cost, lengths, batches, 384, train.LEGACY, 1) == round(16 / (4 * seconds(384)), 3)
    short = [np.array([0, 1, 4, 5]), np.array([2, 6, 3, 7])]  # one batch of 60/90 windows, one to 384
    assert train.epoch_widths(lengths, short, 384, False, 8) == [96, 384]  # rounded up to the multiple of 8
    assert train.epoch_speed(cost, lengths, short, 384, train.DEFAULT, 8) == round(8 / (seconds(96) + seconds(384)), 3)
    # noisy steps whose free quadratic would dip below the widths timed (where an epoch's narrow batches are priced)
    # or fall: every term stays >= 0, so the cost is positive and increasing from width 0 on
    grid = np.linspace(0, 384, 50)
    for steps in ([[w, 1.0 + 5e-5 * (w - 150) ** 2] for w in (160, 200, 260, 384)],
                  [[100, 1.0], [200, 1.9], [300, 1.95], [384, 1.6]], [[100, 2.0], [200, 1.5], [300, 1.2], [384, 1.0]]):
        free = np.polyfit(*zip(*steps), 2)
        cost = train.step_cost([{"steps": steps}])
        assert np.all(cost >= 0) and np.all(np.diff(np.polyval(cost, grid)) >= 0) and np.polyval(cost, 0) > 0
        assert not np.all(np.diff(np.polyval(free, grid)) >= 0)  # what an unconstrained fit would have priced
    assert train.step_cost([{"steps": [[384, 1.0], [128, 0.5], [128, 0.6]]}]) is None  # too few widths
    kept = {"legacy": {"features_per_s": 1.0}, "default": {"features_per_s": 2.0}, "grouped-50": {"features_per_s": 6.0}}
    epoch = {"legacy": 1.0, "default": 2.5, "grouped-50": 10.0}
    padding = {"random": {"padding_fraction_dynamic": 0.3}, "grouped-50-half": {"padding_fraction_dynamic": 0.2}}
    ratios = train.candidate_ratios(kept, padding, [train.CANDIDATES["random"], train.CANDIDATES["grouped-50-half"]], epoch)
    assert ratios["random"]["epoch_ratio_to_legacy"] == 2.5 and ratios["random"]["ratio_to_legacy"] == 2.0
    assert ratios["grouped-50-half"]["epoch_features_per_s"] == 4.0  # 0.5 / 10 + 0.5 / 2.5 seconds a window


def test_report_only_combines_reports_without_running_anything(tmp_path, capsys):
    """--report-only --from A --from B: one report of the runs the two bring (each setting with its own candidates
    and seeds), printed and written, no model loaded; without --keep or --from it has nothing to report."""
    args = argparse.Namespace(eval_questions=0, steps=0, seeds=None, demo_seeds=None, epochs=None, learning_rate=None)
    records = {name: bench.setting_record(bench.effective(bench.SETTINGS[name], args), args)
               for name in ("complexity", "demo")}
    reports = []
    for name, setting, candidates in (("a", "complexity", ("random", "grouped-2")),
                                      ("b", "demo", ("random", "grouped-50-half"))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"setting_records": records, "data": {setting: {"train_windows": 9}},
                                    "runs": [run(c, s, 50.0 - s * (c != "random"), setting=setting)
                                             for c in candidates for s in (1, 2, 3)]}))
        reports += ["--from", str(path)]
    out = tmp_path / "out"
    assert bench.main(["--out", str(out), "--settings", "complexity,demo", "--demo-seeds", "1,2,3", "--report-only",
                       *reports]) == 0
    report = json.loads((out / "grouping_quality.json").read_text())
    assert len(report["runs"]) == 12 and set(report["summaries"]) == {"complexity", "demo"}
    assert report["summaries"]["complexity"]["grouped-2"]["minus_random"]["f1"]["mean"] == -2.0
    assert "grouped-2" not in report["summaries"]["demo"] and "| grouped-50-half |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", str(out), "--settings", "complexity", "--report-only"])
    assert "give one of them" in capsys.readouterr().err
