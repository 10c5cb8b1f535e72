"""benchmarks/bench_grouping_quality.py's arithmetic: paired differences over seeds, the verdict, the mean curves.
(The benchmark itself needs the benchmark-only encoder package; `make bench-quality` runs it.)"""

import importlib.util
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("bench_grouping_quality", ROOT / "benchmarks" / "bench_grouping_quality.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def run(f1, forced, loss_curve, heldout=2.5):
    scores = {name: 50.0 for name in bench.SCORES}
    scores.update(f1=f1, forced_HasAns_f1=forced, heldout_loss=heldout)
    return {"scores": scores, "loss_curve": loss_curve, "final_loss_mean": bench.tail_mean(loss_curve)}


def test_paired_differences_and_their_standard_error():
    p = bench.paired([1.0, 2.0, 3.0])
    assert (p["mean"], p["sd"], p["min"], p["max"], p["seeds"]) == (2.0, 1.0, 1.0, 3.0, 3)
    assert p["stderr"] == pytest.approx(1 / 3 ** 0.5, abs=1e-3)
    assert bench.paired([-0.5])["sd"] == 0.0


def test_verdict_needs_a_drop_beyond_the_tolerance_and_the_noise():
    def diff(mean, stderr):
        return {"mean": mean, "stderr": stderr, "seeds": 3}

    assert bench.verdict({"f1": diff(-0.5, 0.1), "forced_HasAns_f1": diff(+2.0, 0.5)}).startswith("no drop")
    assert bench.verdict({"f1": diff(-3.0, 2.0), "forced_HasAns_f1": diff(0.0, 0.1)}).startswith("no drop")  # noise
    worse = bench.verdict({"f1": diff(0.0, 0.1), "forced_HasAns_f1": diff(-2.5, 0.5)})
    assert worse.startswith("grouping is worse (forced_HasAns_f1)")
    assert bench.verdict({"f1": {"mean": -9, "stderr": 0, "seeds": 1}}).startswith("one seed")


def test_curves_are_compared_at_the_steps_every_run_logged():
    assert bench.mean_curve([[[10, 3.0], [20, 2.0], [25, 1.0]], [[10, 1.0], [20, 4.0]]]) == [(10, 2.0), (20, 3.0)]
    assert bench.tail_mean([[1, 4.0], [2, 3.0], [3, 2.0], [4, 1.0]]) == 1.0  # the last quarter
    assert bench.tail_mean([[1, 4.0], [2, 3.0], [3, 2.0], [4, 1.0], [5, 1.0], [6, 3.0], [7, 3.0], [8, 3.0]]) == 3.0


def test_summarise_pairs_each_seed_and_averages_the_curves():
    runs = {
        42: {"grouped": run(50.0, 20.0, [[10, 3.0], [20, 2.0]]), "random": run(49.0, 18.0, [[10, 3.5], [20, 2.5]])},
        1: {"grouped": run(51.0, 16.0, [[10, 2.0], [20, 1.0]]), "random": run(51.0, 15.0, [[10, 2.5], [20, 1.5]])},
    }
    summary = bench.summarise(runs)
    assert summary["loss_table"] == [[10, 2.5, 3.0], [20, 1.5, 2.0]]
    assert summary["mean_scores"]["forced_HasAns_f1"] == {"grouped": 18.0, "random": 16.5}
    assert summary["grouped_minus_random"]["forced_HasAns_f1"]["mean"] == 1.5
    assert summary["grouped_minus_random"]["f1"]["min"] == 0.0
    assert summary["grouped_minus_random"]["train_loss_last_quarter"]["mean"] == -0.5
    assert summary["verdict"].startswith("no drop")
