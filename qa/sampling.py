"""The order of training windows: which micro-batches each process runs in each epoch, as a pure function.

    from qa.sampling import epoch_batches, steps_per_epoch, padding_fraction
    batches = epoch_batches(features.lengths, 8, 0, 42, group_by_length=False)                # random order: run_squad.py's
                                                                                              # default, as before grouping
    batches = epoch_batches(features.lengths, batch_size=8, epoch=0, seed=42)                 # grouped by length
    batches = epoch_batches(features.lengths, 8, epoch=3, seed=42, rank=1, world_size=4)      # rank 1 of 4
    grouped_in_epoch(epoch=2, group_by_length=True, group_epochs=1)                           # False: epoch 2 random
    for indices in batches[step_in_epoch:]:                                                   # resume mid-epoch
        inputs = features.batch(indices)                                                      # trimmed to its longest
    steps_per_epoch(len(features), batch_size=8, grad_accum=2, world_size=4)                  # optimizer steps
    padding_fraction(features.lengths, batches)                                               # 0.05: 5% pad tokens

This module is the one owner of the training data order. `epoch_batches` depends on nothing but its
arguments (window lengths, batch size, epoch, seed, rank, process count, mode): no global RNG is
read or advanced, so (epoch, micro-batches consumed in it) fully determines the rest of a run, and
resuming skips the consumed micro-batches without running them.

Two modes:
- `group_by_length=False` (run_squad.py's default since issue 21): exactly the order of the runs made
  before grouping (a seeded `torch.randperm` with seed + epoch, padded and sharded like torch's
  DistributedSampler: padded[rank::world_size], cut into consecutive micro-batches), so those runs
  resume identically. The trainer still pads each batch to its own longest window (not to
  max_seq_length, unless --pad_to_max_length).
- `group_by_length=True` (run_squad.py --group_by_length, the default of this function; run_squad.py's
  default from the speed issue until issue 21), in the spirit of the HuggingFace Trainer's
  LengthGroupedSampler: the same seeded permutation, cut into mega-batches of `mega_batch_size`
  micro-batches, each mega-batch sorted by length (longest first), cut into micro-batches, the
  micro-batches shuffled (seeded) and dealt to the processes in turn. A batch then holds windows of
  similar length, so padding each batch to its longest window wastes little: on the real SQuAD 2.0
  windows of ../shared/data/squad (both dev subsets, 1,124 questions, all-MiniLM-L6-v2's tokenizer:
  1,131 windows at 384/128, median 151 tokens), batches of 8 are 58.9% padding when padded to 384,
  35.3% when random batches are padded to their longest, and 3.0% when grouped (1,175 windows at
  256/128: 39.1%, 31.0%, 2.1%; means over epochs 0-4, seed 42). See
  benchmarks/bench_train.py for what that does to the training speed.
  The cost: a grouped batch is no longer a random sample. In SQuAD the questions of one paragraph have
  windows of nearly the same length, so they share a batch (batches of 8 at 256/128 hold 7.5
  paragraphs in random order, 6.8 with mega_batch_size 4, 5.2 with 50), and wherever the answerable
  share depends on length, a batch is mostly one kind. Fine-tuned so, models answered less (issue 21;
  benchmarks/bench_grouping_quality.py measures each mega_batch_size against random order).

Both modes give every process ceil(ceil(N / world_size) / batch_size) micro-batches, all processes
the same count (DDP needs equal step counts): when N is not a multiple of world_size, the first
windows of the permutation are used twice, as DistributedSampler does (at most world_size - 1 of
them). Every window is in exactly one micro-batch of one process otherwise. When the windows of a
process are not a multiple of batch_size, every process's LAST micro-batch is the short one, in
both modes, so the processes of a DDP step always hold batches of the same size.

Grouped mode puts, every epoch, the world_size longest micro-batches (by longest window) first,
one per process, as HuggingFace does: the memory peak of the epoch comes at step 1, so a batch
that does not fit on the GPU fails within a minute, not hours into the run; and the CUDA caching
allocator then reserves its largest blocks first, which later, smaller batches reuse.
"""

import math
import numbers

import numpy as np
import torch

# Micro-batches per mega-batch (the unit that is sorted by length); HuggingFace uses 50 too. With the
# real SQuAD window lengths above resampled to 100,000 windows, batches of 8, the padding of grouped
# batches is 35% at 1 (random batches), 17% at 4, 8.6% at 10, 3.8% at 25, 1.9% at 50, 0.9% at 100:
# about 1/size. Past 50 at most 2% of the compute is left to win (and padding to a multiple of 8 on
# CUDA adds ~3.5 tokens a batch, 2% of a 150-token batch, anyway), while a larger mega-batch makes a
# batch's members more alike from epoch to epoch: less randomness in what is averaged together.
MEGA_BATCH_SIZE = 50
# At least this many mega-batches per epoch (HuggingFace uses 4 as well): with a small training set
# (the resume test: 42 windows, 21 batches of 2) one mega-batch would sort the whole epoch and the
# same windows would share a batch every epoch; with 4, each batch's members come from a random quarter.
MIN_MEGA_BATCHES = 4


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check(lengths, batch_size, epoch, rank, world_size, mega_batch_size):
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be one number per window (a 1-D array), got an array of shape {lengths.shape}")
    _check_int("batch_size", batch_size, 1)
    _check_int("epoch", epoch, 0)
    _check_int("world_size", world_size, 1)
    _check_int("mega_batch_size", mega_batch_size, 1)
    _check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank {rank} is not below world_size {world_size}: ranks are 0 .. world_size - 1")


def _generator(seed, epoch):
    # seed + epoch, as the runs made before grouping (and DistributedSampler) seed their permutation.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return torch.Generator().manual_seed(int(seed) + int(epoch))


def _longest_first(indices, lengths):
    return indices[np.argsort(-lengths[indices], kind="stable")]


def epoch_order(num_items, epoch, seed, rank=0, world_size=1):
    """This rank's window indices for `epoch` before grouping: a seeded permutation, padded and sharded
    like DistributedSampler (padded[rank::world_size]); the order of the runs made before grouping."""
    order = torch.randperm(num_items, generator=_generator(seed, epoch)).numpy()
    per_rank = math.ceil(num_items / world_size)
    # np.resize repeats the permutation cyclically: order + order[:pad] whenever pad <= num_items (the
    # same windows DistributedSampler reuses), and still world_size equal shares when there are fewer
    # windows than processes.
    padded = np.resize(order, per_rank * world_size)
    return padded[rank::world_size]


def micro_batches(indices, batch_size):
    """Consecutive chunks of `indices` (the last one may be shorter)."""
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def num_micro_batches(num_items, batch_size, world_size=1):
    """Micro-batches each process runs in one epoch, in both modes of epoch_batches."""
    return math.ceil(math.ceil(num_items / world_size) / batch_size)


def steps_per_epoch(num_items, batch_size, grad_accum, world_size=1):
    """Optimizer steps in one epoch; a short last group of micro-batches still makes a step."""
    return math.ceil(num_micro_batches(num_items, batch_size, world_size) / grad_accum)


def total_steps(num_items, batch_size, grad_accum, num_train_epochs, max_steps=0, world_size=1):
    """Optimizer steps of the whole run: max_steps if above 0, else epochs x steps per epoch (at least 1);
    a fractional num_train_epochs (legacy allows 2.5) rounds up."""
    if max_steps > 0:
        return max_steps
    return max(1, math.ceil(steps_per_epoch(num_items, batch_size, grad_accum, world_size) * num_train_epochs))


def _full_batches(num_items, batch_size, world_size):
    """(windows per rank, batches per rank, size of each rank's last batch, full batches of all ranks together)."""
    per_rank = math.ceil(num_items / world_size)
    batches_per_rank = math.ceil(per_rank / batch_size)
    last_size = per_rank - (batches_per_rank - 1) * batch_size  # 1 .. batch_size
    num_full = world_size * (batches_per_rank if last_size == batch_size else batches_per_rank - 1)
    return per_rank, batches_per_rank, last_size, num_full


def pool_batches(num_items, batch_size, world_size=1, mega_batch_size=None):
    """Micro-batches sorted by length together in a grouped epoch: `mega_batch_size` (None: MEGA_BATCH_SIZE), at
    most a MIN_MEGA_BATCHES-th of the epoch's full batches, at least 1."""
    mega_batch_size = MEGA_BATCH_SIZE if mega_batch_size is None else mega_batch_size
    num_full = _full_batches(num_items, batch_size, world_size)[3]
    return max(1, min(mega_batch_size, num_full // MIN_MEGA_BATCHES))


def epoch_batches(lengths, batch_size, epoch, seed, rank=0, world_size=1, group_by_length=True,
                  mega_batch_size=None):
    """This rank's micro-batches for `epoch`: a list of int64 index arrays into the windows.

    `lengths` holds the real tokens of each window (Features.lengths); only its size matters when
    group_by_length is False. `mega_batch_size` (run_squad.py --length_group_batches): None for
    MEGA_BATCH_SIZE. Every rank gets num_micro_batches(len(lengths), batch_size, world_size)
    batches; see the module docstring for the order."""
    lengths = np.asarray(lengths)
    mega_batch_size = MEGA_BATCH_SIZE if mega_batch_size is None else mega_batch_size
    _check(lengths, batch_size, epoch, rank, world_size, mega_batch_size)
    num_items = len(lengths)
    if not group_by_length:
        return micro_batches(epoch_order(num_items, epoch, seed, rank, world_size), batch_size)
    if num_items == 0:
        return []
    generator = _generator(seed, epoch)
    order = torch.randperm(num_items, generator=generator).numpy()
    per_rank, batches_per_rank, last_size, num_full = _full_batches(num_items, batch_size, world_size)
    padded = np.resize(order, per_rank * world_size)  # the windows legacy mode reuses, reused here too

    # Mega-batches of the shuffled full part, each sorted by length, longest first. The stable sort
    # keeps windows of equal length in their random order, so ties do not always pair the same windows.
    lengths = lengths.astype(np.int64)  # negated below: no unsigned wrap-around
    per_mega = pool_batches(num_items, batch_size, world_size, mega_batch_size)  # in micro-batches
    mega_windows = per_mega * batch_size
    whole = num_full // per_mega * mega_windows  # windows in complete mega-batches
    megas = padded[:whole].reshape(-1, mega_windows)
    megas = np.take_along_axis(megas, np.argsort(-lengths[megas], axis=1, kind="stable"), axis=1)
    # then the incomplete last mega-batch, and the short last batches (one per rank) on their own
    last_mega = _longest_first(padded[whole : num_full * batch_size], lengths)
    full = np.concatenate([megas.reshape(-1), last_mega]).reshape(num_full, batch_size)
    short = _longest_first(padded[num_full * batch_size :], lengths).reshape(-1, last_size)

    # Shuffle the batches, then move the world_size longest to the front: each rank's first batch.
    full = full[torch.randperm(num_full, generator=generator).numpy()]
    if num_full:
        widths = lengths[full].max(axis=1)
        longest = np.sort(np.argsort(-widths, kind="stable")[:world_size])
        rest = np.ones(num_full, dtype=bool)
        rest[longest] = False
        full = np.concatenate([full[longest], full[rest]])
    mine = list(full[rank::world_size])
    if len(short):
        mine.append(short[rank])
    return mine


def grouped_in_epoch(epoch, group_by_length, group_epochs=None):
    """Whether `epoch` is grouped by length: every epoch with `group_by_length`, or only epochs below
    `group_epochs` (run_squad.py --length_group_epochs; None: all), so the last epochs, which decide what the
    model ends as, see random batches. A pure function of the epoch: a resume groups exactly as the run did."""
    if group_epochs is not None:
        _check_int("group_epochs", group_epochs, 1)
    return bool(group_by_length) and (group_epochs is None or epoch < group_epochs)


def padding_fraction(lengths, batches, pad_to=None):
    """Share of the tokens computed that are padding: each batch padded to its longest window, or every
    batch to `pad_to` tokens (what --pad_to_max_length does with pad_to=max_seq_length)."""
    lengths = np.asarray(lengths)
    real = sum(int(lengths[b].sum()) for b in batches)
    computed = sum(len(b) * (pad_to if pad_to else int(lengths[b].max(initial=1))) for b in batches)
    return 1.0 - real / computed if computed else 0.0
