"""qa.sampling: the training data order is a pure function, covers every window once, splits evenly across
processes, groups by length on real SQuAD windows, and keeps the pre-grouping order exactly in legacy mode."""

import math
import random

import numpy as np
import pytest

from conftest import shared_file
from qa import sampling as S

torch = pytest.importorskip("torch")


def old_order(num_items, batch_size, epoch, seed, rank, world_size):
    """The order qa.trainer produced before qa.sampling, written out from torch.randperm."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + epoch)).numpy()
    per_rank = math.ceil(num_items / world_size)
    padded = np.concatenate([order, order[: per_rank * world_size - num_items]])[rank::world_size]
    return [padded[i : i + batch_size] for i in range(0, len(padded), batch_size)]


@pytest.fixture(scope="module")
def real_lengths(tiny_model_dir):
    """Window lengths of the real SQuAD 2.0 dev subset (Normans, Rhine) at 384/128 and 256/128."""
    from transformers import AutoTokenizer

    from qa.features import FeatureParams, build_features
    from qa.squad_io import read_squad

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    examples = read_squad(shared_file("squad", "squad2-dev-normans-rhine.json"))
    return {length: np.asarray(build_features(examples, tokenizer, FeatureParams(length, 128, 64), training=True).lengths)
            for length in (384, 256)}


def synthetic_lengths(n, seed=0):
    return np.random.default_rng(seed).integers(20, 385, size=n)


# ---------------------------------------------------------------------------------------------
# Legacy mode
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_items,batch_size,world_size", [(42, 2, 1), (42, 4, 1), (1000, 8, 1), (43, 3, 2),
                                                             (1001, 8, 4), (7, 8, 3), (2, 1, 3)])
@pytest.mark.parametrize("epoch,seed", [(0, 42), (3, 7)])
def test_legacy_mode_gives_exactly_the_old_order(num_items, batch_size, world_size, epoch, seed):
    lengths = synthetic_lengths(num_items)
    for rank in range(world_size):
        got = S.epoch_batches(lengths, batch_size, epoch, seed, rank, world_size, group_by_length=False)
        want = old_order(num_items, batch_size, epoch, seed, rank, world_size)
        assert len(got) == len(want)
        for got_batch, want_batch in zip(got, want):
            assert got_batch.tolist() == want_batch.tolist()


def test_legacy_mode_ignores_lengths_and_still_shares_fairly_with_fewer_windows_than_processes():
    a = S.epoch_batches(np.full(10, 5), 4, 1, 3, group_by_length=False)
    b = S.epoch_batches(synthetic_lengths(10), 4, 1, 3, group_by_length=False)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    # 2 windows, 5 processes: the old padding (order + order[:3]) came up one short, so rank 4 got
    # nothing and DDP would hang; every rank gets one window now.
    shares = [S.epoch_batches(np.ones(2), 1, 0, 0, rank, 5, group_by_length=False) for rank in range(5)]
    assert [len(s) for s in shares] == [1] * 5
    assert {int(s[0][0]) for s in shares} == {0, 1}


# ---------------------------------------------------------------------------------------------
# Both modes: determinism, coverage, equal shares, counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group_by_length", [True, False])
def test_a_pure_function_of_its_arguments(group_by_length):
    lengths = synthetic_lengths(500)
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    first = S.epoch_batches(lengths, 8, 2, 42, 1, 3, group_by_length)
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # global RNGs elsewhere do not matter
    second = S.epoch_batches(lengths, 8, 2, 42, 1, 3, group_by_length)
    assert [b.tolist() for b in first] == [b.tolist() for b in second]
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    after_reseed = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    S.epoch_batches(lengths, 8, 2, 42, 1, 3, group_by_length)
    assert torch.equal(torch.get_rng_state(), after_reseed[0])  # no global RNG advanced
    assert np.random.get_state()[1].tolist() == after_reseed[1][1].tolist()
    assert random.getstate() == after_reseed[2]
    torch.set_rng_state(states[0]), np.random.set_state(states[1]), random.setstate(states[2])


@pytest.mark.parametrize("num_items,batch_size", [(1, 8), (8, 8), (42, 2), (43, 4), (1000, 8), (1003, 16), (5, 1)])
def test_grouped_every_window_exactly_once_per_epoch(num_items, batch_size):
    lengths = synthetic_lengths(num_items)
    for epoch in range(3):
        batches = S.epoch_batches(lengths, batch_size, epoch, 42)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(num_items))
        assert len(batches) == S.num_micro_batches(num_items, batch_size)
        # all batches full but the last
        assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        assert len(batches[-1]) == num_items - (len(batches) - 1) * batch_size


@pytest.mark.parametrize("group_by_length", [True, False])
@pytest.mark.parametrize("num_items,batch_size,world_size", [(1000, 8, 2), (1001, 8, 4), (43, 3, 3), (999, 8, 8),
                                                             (5, 4, 4)])
def test_ranks_are_disjoint_equal_and_pad_like_distributed_sampler(num_items, batch_size, world_size, group_by_length):
    lengths = synthetic_lengths(num_items)
    shares = [S.epoch_batches(lengths, batch_size, 1, 42, rank, world_size, group_by_length) for rank in range(world_size)]
    per_rank = math.ceil(num_items / world_size)
    # the same number of micro-batches everywhere, and at each position batches of the same size
    assert {len(s) for s in shares} == {S.num_micro_batches(num_items, batch_size, world_size)}
    for position in range(len(shares[0])):
        assert len({len(s[position]) for s in shares}) == 1
    assert all(sum(len(b) for b in s) == per_rank for s in shares)
    flat = np.concatenate([np.concatenate(s) for s in shares])
    assert sorted(set(flat.tolist())) == list(range(num_items))
    # the windows used twice are the first ones of the epoch's permutation, as DistributedSampler reuses
    counts = np.bincount(flat, minlength=num_items)
    permutation = torch.randperm(num_items, generator=torch.Generator().manual_seed(42 + 1)).numpy()
    reused = per_rank * world_size - num_items
    assert sorted(np.flatnonzero(counts == 2).tolist()) == sorted(permutation[:reused].tolist())
    assert counts.max() <= 2


@pytest.mark.parametrize("group_by_length", [True, False])
def test_batch_count_matches_steps_per_epoch(group_by_length):
    lengths = synthetic_lengths(1001)
    for batch_size, grad_accum, world_size in [(8, 1, 1), (8, 3, 1), (4, 2, 3), (2, 5, 8)]:
        batches = S.epoch_batches(lengths, batch_size, 0, 1, 0, world_size, group_by_length)
        assert len(batches) == S.num_micro_batches(1001, batch_size, world_size)
        assert S.steps_per_epoch(1001, batch_size, grad_accum, world_size) == math.ceil(len(batches) / grad_accum)
    # 1001 windows, batches of 8 on 1 process: 126 micro-batches, 63 steps at accumulation 2
    assert S.num_micro_batches(1001, 8) == 126 and S.steps_per_epoch(1001, 8, 2) == 63
    assert S.total_steps(1001, 8, 2, num_train_epochs=2.5) == 158  # ceil(63 * 2.5)
    assert S.total_steps(1001, 8, 2, num_train_epochs=2, max_steps=10) == 10
    assert S.total_steps(3, 8, 1, num_train_epochs=0.1) == 1


@pytest.mark.parametrize("group_by_length", [True, False])
def test_epochs_and_seeds_give_different_orders(group_by_length):
    lengths = synthetic_lengths(400)

    def compositions(epoch, seed):
        return [frozenset(b.tolist()) for b in S.epoch_batches(lengths, 4, epoch, seed, group_by_length=group_by_length)]

    base = compositions(0, 42)
    for other in (compositions(1, 42), compositions(0, 43)):
        assert other != base
        # not just a reordering: most batches hold a different set of windows
        assert len(set(other) & set(base)) < len(base) / 2


# ---------------------------------------------------------------------------------------------
# Grouped mode: what grouping buys, on real windows
# ---------------------------------------------------------------------------------------------
def mean_spread(lengths, batches):
    return float(np.mean([lengths[b].max() - lengths[b].min() for b in batches]))


@pytest.mark.parametrize("max_seq_length", [384, 256])
def test_grouped_batches_hold_similar_lengths_on_real_squad_windows(real_lengths, max_seq_length):
    lengths = real_lengths[max_seq_length]
    assert len(lengths) > 600 and len(np.unique(lengths)) > 100  # real, varied lengths
    for epoch in range(3):
        grouped = S.epoch_batches(lengths, 8, epoch, 42)
        random_batches = S.epoch_batches(lengths, 8, epoch, 42, group_by_length=False)
        # (measured with this tokenizer: 0.09x at 384, 0.06x at 256)
        assert mean_spread(lengths, grouped) < 0.15 * mean_spread(lengths, random_batches)
        # padding each batch to its longest window: 21-32% of the tokens at random, 1.5-3.5% grouped
        random_padding = S.padding_fraction(lengths, random_batches)
        assert random_padding > 0.2
        assert S.padding_fraction(lengths, grouped) < 0.2 * random_padding


def test_longest_batches_come_first_one_per_rank():
    lengths = synthetic_lengths(1000)
    for epoch in range(3):
        assert lengths[S.epoch_batches(lengths, 8, epoch, 42)[0]].max() == lengths.max()
        shares = [S.epoch_batches(lengths, 8, epoch, 42, rank, 4) for rank in range(4)]
        widths = sorted((int(lengths[b].max()) for s in shares for b in s if len(b) == 8), reverse=True)
        assert sorted(int(lengths[s[0]].max()) for s in shares) == sorted(widths[:4])


def test_batch_order_is_shuffled_not_sorted():
    lengths = synthetic_lengths(2000)
    widths = [int(lengths[b].max()) for b in S.epoch_batches(lengths, 8, 0, 42)[1:]]
    # sorted mega-batches read in order would fall monotonically within each of them; shuffled,
    # consecutive batches go up about as often as down
    ups = sum(b > a for a, b in zip(widths, widths[1:]))
    assert 0.35 < ups / (len(widths) - 1) < 0.65


def test_small_data_still_changes_batch_membership_between_epochs():
    # 42 windows in batches of 2 (the resume test): one mega-batch would sort the whole epoch and pair
    # the same windows every epoch; at least 4 mega-batches keep the pairs changing.
    lengths = np.arange(100, 142)
    pairs = [{frozenset(b.tolist()) for b in S.epoch_batches(lengths, 2, epoch, 7)} for epoch in range(2)]
    assert len(pairs[0] & pairs[1]) < 0.5 * len(pairs[0])
    spread = mean_spread(lengths, S.epoch_batches(lengths, 2, 0, 7))
    assert spread < 0.3 * mean_spread(lengths, S.epoch_batches(lengths, 2, 0, 7, group_by_length=False))


def test_mega_batch_size_trades_padding_for_randomness():
    lengths = synthetic_lengths(20000)
    fractions = [S.padding_fraction(lengths, S.epoch_batches(lengths, 8, 0, 42, mega_batch_size=m)) for m in (1, 10, 50)]
    random_fraction = S.padding_fraction(lengths, S.epoch_batches(lengths, 8, 0, 42, group_by_length=False))
    assert abs(fractions[0] - random_fraction) < 0.03  # a mega-batch of one batch groups nothing
    assert fractions[0] > fractions[1] > fractions[2]
    assert fractions[2] < 0.03


def test_padding_fraction_counts_pad_tokens():
    lengths = np.array([2, 4, 4, 1])
    batches = [np.array([0, 1]), np.array([2, 3])]
    assert S.padding_fraction(lengths, batches) == pytest.approx(1 - 11 / 16)
    assert S.padding_fraction(lengths, batches, pad_to=8) == pytest.approx(1 - 11 / 32)
    assert S.padding_fraction(lengths, []) == 0.0


def test_empty_data_gives_no_batches():
    assert S.epoch_batches(np.zeros(0, dtype=np.int32), 8, 0, 1) == []
    assert S.epoch_batches(np.zeros(0, dtype=np.int32), 8, 0, 1, group_by_length=False) == []


@pytest.mark.parametrize("call,message", [
    (lambda: S.epoch_batches(np.ones(10), 8, 0, 1, rank=2, world_size=2), "rank 2 is not below world_size 2"),
    (lambda: S.epoch_batches(np.ones(10), 0, 0, 1), "batch_size must be an integer >= 1, got 0"),
    (lambda: S.epoch_batches(np.ones(10), 8, -1, 1), "epoch must be an integer >= 0, got -1"),
    (lambda: S.epoch_batches(np.ones((2, 5)), 8, 0, 1), "1-D array), got an array of shape (2, 5)"),
    (lambda: S.epoch_batches(np.ones(10), 8, 0, 1.5), "seed must be an integer, got 1.5"),
    (lambda: S.epoch_batches(np.ones(10), 8, 0, 1, mega_batch_size=0), "mega_batch_size must be an integer >= 1"),
])
def test_bad_arguments_say_what_is_wrong(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------
# run_squad.py's default order, and resuming runs recorded under the old default (issue 21)
# ---------------------------------------------------------------------------------------------
def trainer_order(argv, record=None):
    """The micro-batches qa.trainer runs in epoch 0 for run_squad.py's `argv`, resumed on `record` if given."""
    from qa import trainer
    from qa.args import given_settings, parse_args
    from qa.resume_record import NOT_FROM_RECORD, apply_record
    from qa.runtime import Runtime

    args = parse_args(argv)
    if record is not None:
        apply_record(args, given_settings(argv), record, [name for name in vars(args) if name not in NOT_FROM_RECORD])
    plan = {}
    lengths = synthetic_lengths(800)
    trainer.next_group(type("Windows", (), {"lengths": lengths})(), trainer.TrainState(), args,
                       Runtime(device=torch.device("cpu")), plan)
    return args, [b.tolist() for b in plan[0]]


def same(a, b):
    return [x.tolist() for x in a] == b


def test_the_default_is_random_order_and_grouping_is_opt_in():
    """Since issue 21 run_squad.py trains in random order (each batch padded to its longest window): grouped
    batches answered less on real SQuAD articles. --group_by_length [--length_group_batches N] turns grouping on."""
    base = ["--model_name_or_path", "m", "--output_dir", "o"]
    lengths = synthetic_lengths(800)
    args, order = trainer_order(base)
    assert args.group_by_length is False and same(S.epoch_batches(lengths, 8, 0, 42, group_by_length=False), order)
    _, grouped = trainer_order([*base, "--group_by_length", "--length_group_batches", "4"])
    assert same(S.epoch_batches(lengths, 8, 0, 42, mega_batch_size=4), grouped)


@pytest.mark.parametrize("record,grouped", [
    ({"group_by_length": True, "length_group_batches": 50}, True),  # a run started under the old default
    ({"group_by_length": True}, True),  # ... before --length_group_batches existed (50, MEGA_BATCH_SIZE)
    ({}, False),  # a run made before grouping existed: the random order it had
])
def test_a_resume_keeps_the_order_its_run_recorded(record, grouped):
    resume = ["--model_name_or_path", "m", "--output_dir", "o", "--resume_from_checkpoint", "auto"]
    args, order = trainer_order(resume, record)
    lengths = synthetic_lengths(800)
    expected = S.epoch_batches(lengths, 8, 0, 42, group_by_length=grouped, mega_batch_size=S.MEGA_BATCH_SIZE)
    assert args.group_by_length is grouped and same(expected, order)


def test_length_group_epochs_groups_only_the_first_epochs(tmp_path):
    """--group_by_length --length_group_epochs 1: epoch 0 grouped, later epochs in the random order of
    --no_group_by_length (a pure function of the epoch, so a resume in epoch 1 stays in random order)."""
    from qa import trainer
    from qa.args import ArgumentError, parse_args, validate_args
    from qa.resume_record import ORDER_SETTINGS
    from qa.runtime import Runtime

    assert [S.grouped_in_epoch(e, True, 2) for e in range(4)] == [True, True, False, False]
    assert S.grouped_in_epoch(7, True) and not S.grouped_in_epoch(0, False) and not S.grouped_in_epoch(0, False, 3)
    with pytest.raises(ValueError, match="group_epochs must be an integer >= 1"):
        S.grouped_in_epoch(0, True, 0)
    lengths = synthetic_lengths(800)
    windows = type("Windows", (), {"lengths": lengths})()
    argv = ["--model_name_or_path", "m", "--output_dir", "o", "--group_by_length", "--length_group_epochs", "1"]
    args = parse_args(argv)
    for epoch, grouped in ((0, True), (1, False), (2, False)):
        plan = {}
        trainer.next_group(windows, trainer.TrainState(epoch=epoch), args, Runtime(device=torch.device("cpu")), plan)
        assert same(S.epoch_batches(lengths, 8, epoch, 42, group_by_length=grouped), [b.tolist() for b in plan[epoch]])
    assert "grouped by length (50 batches sorted together) in the first 1 epoch(s), then random order" == \
        trainer.order_description(parse_args([*argv, "--length_group_batches", "50"]))
    assert trainer.order_description(args, epochs=1).endswith("in every epoch (--length_group_epochs 1 covers all 1)")
    # a small epoch caps the pool at a quarter of its batches: the log says the pool epoch_batches sorts
    assert S.pool_batches(503, 8) == 15 and S.pool_batches(503, 8, mega_batch_size=2) == 2 and S.pool_batches(9, 8) == 1
    assert S.pool_batches(8 * 800, 8, world_size=2) == 50 and S.pool_batches(8 * 40, 8, world_size=2) == 10
    capped = trainer.order_description(args, epochs=4, pool=15)
    assert capped.startswith("grouped by length (15 batches sorted together: an epoch keeps at least 4 pools, "
                             "--length_group_batches 50 is more) in the first 1 epoch(s)")
    assert trainer.order_description(args, epochs=4, pool=50) == trainer.order_description(args, epochs=4)
    assert "length_group_epochs" in ORDER_SETTINGS  # changing it on resume needs --allow_changed_order
    # ... also against a record made before the flag existed (that run grouped every epoch)
    from qa.resume_record import apply_record
    assert ("length_group_epochs", None, 1) in apply_record(args, {"group_by_length", "length_group_epochs"},
                                                            {"group_by_length": True}, ["length_group_epochs"])
    for bad, message in ((["--group_by_length", "--length_group_epochs", "0"], "--length_group_epochs must be at least 1"),
                         (["--length_group_epochs", "1"], "it needs --group_by_length")):
        with pytest.raises(ArgumentError, match=message):
            validate_args(parse_args(["--model_name_or_path", "m", "--output_dir", "o", *bad]), cuda_available=False)
    # a resume that turns a recorded grouping off keeps the recorded value, unused: not refused for it
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.json").write_text('{"group_by_length": true, "length_group_epochs": 1}')
    resume = parse_args(["--model_name_or_path", "m", "--output_dir", str(run), "--do_train", "--resume_from_checkpoint",
                         "auto", "--no_group_by_length", "--length_group_epochs", "1"])
    with pytest.raises(ArgumentError) as refused:  # (for other reasons: no model "m", no training file)
        validate_args(resume, cuda_available=False)
    assert "--length_group_epochs" not in str(refused.value)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(epoch=0, seed=42), "2abbefaa63f1cff0"),
    (dict(epoch=3, seed=7, group_by_length=False), "7b506529facb77a4"),
    (dict(epoch=1, seed=42, rank=1, world_size=2, mega_batch_size=2), "0797c5851489cd65"),
])
def test_the_order_of_an_epoch_does_not_change_between_versions(kwargs, expected):
    """A checkpoint made by an earlier version resumes in the order that version would have gone on in: the batches
    of fixed windows are pinned (digests taken before the pool rule became sampling.pool_batches, commit 28e90ec).
    The resume tests compare two runs of the same code and cannot see such a change."""
    import hashlib

    digest = hashlib.sha256()
    for batch in S.epoch_batches(synthetic_lengths(1000), 8, **kwargs):
        digest.update(np.asarray(batch, dtype=np.int64).tobytes() + b"|")
    assert digest.hexdigest()[:16] == expected
