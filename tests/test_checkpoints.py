"""qa.checkpoints: atomic save, exact resume, rotation keeping the best, disk checks, safe loading."""

import collections
import errno
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

import make_tiny_model  # noqa: E402
from qa import checkpoints as ck  # noqa: E402
from qa import preflight, retention, rng, run_dir  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXTS = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy.",
    "The Rhine is a European river that begins in the Swiss canton of Graubunden.",
    "Computational complexity theory classifies computational problems according to their difficulty.",
    "Who gave their name to Normandy? Where does the Rhine begin? What does complexity theory classify?",
] * 4
SEQ = 16


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_model.train_tokenizer(TEXTS, vocab_size=100)


def make_run(tokenizer, seed=0):
    """A tiny ALBERT with AdamW, the linear warmup schedule and a (disabled) grad scaler."""
    from transformers import get_linear_schedule_with_warmup

    model = make_tiny_model.make_tiny_albert(vocab_size=len(tokenizer), seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=20)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return model, optimizer, scheduler, scaler


def train_step(model, optimizer, scheduler, scaler, vocab_size):
    """One optimizer step on a batch drawn from all three generators (torch, numpy, python)."""
    input_ids = torch.randint(5, vocab_size, (2, SEQ))
    starts = torch.tensor([int(np.random.randint(0, SEQ)), random.randrange(SEQ)])
    out = model(input_ids=input_ids, start_positions=starts, end_positions=starts)
    scaler.scale(out.loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad()
    return out.loss.item()


def save(out_dir, run, tokenizer, step, **extra):
    model, optimizer, scheduler, scaler = run
    state = {"global_step": step, "epoch": 0, "step_in_epoch": step, "seed": 42, **extra}
    return ck.save_checkpoint(str(out_dir), model, tokenizer, optimizer, scheduler, scaler, state)


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------------
def test_resume_continues_bit_identically(tmp_path, tokenizer):
    from transformers import AutoModelForQuestionAnswering, get_linear_schedule_with_warmup

    vocab = len(tokenizer)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    run = make_run(tokenizer)
    for _ in range(3):
        train_step(*run, vocab)
    path = save(tmp_path, run, tokenizer, 3, best_metric=None, args={"learning_rate": 1e-3})
    assert os.path.basename(path) == "checkpoint-3"

    # The uninterrupted run: three more steps, then one draw from each generator.
    losses = [train_step(*run, vocab) for _ in range(3)]
    draws = (random.random(), float(np.random.rand()), torch.rand(3))
    lr = run[2].get_last_lr()

    # A fresh process would start from other generator states; scramble them before resuming.
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=20)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = ck.restore_training_state(path, optimizer, scheduler, scaler)
    assert state["global_step"] == 3 and state["step_in_epoch"] == 3 and state["seed"] == 42
    assert state["args"] == {"learning_rate": 1e-3}
    resumed = [train_step(model, optimizer, scheduler, scaler, vocab) for _ in range(3)]

    assert resumed == losses  # exact, not approximately
    assert scheduler.get_last_lr() == lr
    assert random.random() == draws[0]
    assert float(np.random.rand()) == draws[1]
    assert torch.equal(torch.rand(3), draws[2])
    for (name, a), b in zip(run[0].state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_folder_loads_with_auto_classes_and_holds_no_pickled_weights(tmp_path, tokenizer):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    run = make_run(tokenizer)
    train_step(*run, len(tokenizer))
    path = save(tmp_path, run, tokenizer, 1)
    files = set(os.listdir(path))
    assert {"model.safetensors", "config.json", "tokenizer.json", "optimizer.pt", "scheduler.pt",
            "scaler.pt", "rng_state_0.pth", "trainer_state.json", "COMPLETE"} <= files
    assert not [f for f in files if f.endswith(".bin")]
    assert run_dir.is_complete(path)
    loaded = AutoModelForQuestionAnswering.from_pretrained(path)
    for a, b in zip(run[0].state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert AutoTokenizer.from_pretrained(path)("Where does the Rhine begin?")["input_ids"] == \
        tokenizer("Where does the Rhine begin?")["input_ids"]
    for name in ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state_0.pth"):
        torch.load(os.path.join(path, name), weights_only=True)  # raises on anything but plain data
    state = json.loads(pathlib.Path(path, "trainer_state.json").read_text())
    assert state["global_step"] == 1 and state["checkpoint_info"]["rng_files"] == ["rng_state_0.pth"]


def test_incomplete_folders_are_never_picked(tmp_path, tokenizer):
    run = make_run(tokenizer)
    good = save(tmp_path, run, tokenizer, 1)
    # A checkpoint-N without marker (killed before the marker, or copied by hand) ...
    no_marker = tmp_path / "checkpoint-9"
    shutil.copytree(good, no_marker)
    (no_marker / "COMPLETE").unlink()
    state = json.loads((no_marker / "trainer_state.json").read_text())
    (no_marker / "trainer_state.json").write_text(json.dumps({**state, "global_step": 9}))
    # ... a temporary folder, even one that got as far as its marker ...
    shutil.copytree(good, tmp_path / f".tmp-checkpoint-10-{os.getpid()}")
    # ... and a truncated copy whose marker lists sizes that no longer match.
    truncated = tmp_path / "checkpoint-11"
    shutil.copytree(good, truncated)
    with open(truncated / "model.safetensors", "r+b") as f:
        f.truncate(100)

    assert run_dir.list_checkpoints(tmp_path) == [(1, good)]
    assert run_dir.latest_checkpoint(tmp_path) == good
    assert run_dir.resolve_checkpoint(None, tmp_path) == good
    assert run_dir.resolve_checkpoint("auto", tmp_path) == good
    with pytest.raises(ck.CheckpointError, match=r"checkpoint-9 is incomplete \(no COMPLETE marker\).*"
                       r"use checkpoint-N instead \(complete ones: checkpoint-1\)"):
        run_dir.resolve_checkpoint("checkpoint-9", tmp_path)
    with pytest.raises(ck.CheckpointError, match="checkpoint-11 is incomplete"):
        run_dir.resolve_checkpoint(str(truncated), tmp_path)
    with pytest.raises(ck.CheckpointError, match="checkpoint-1500: no such checkpoint folder"):
        run_dir.resolve_checkpoint("checkpoint-1500", tmp_path)
    with pytest.raises(ck.CheckpointError, match="incomplete"):
        ck.restore_training_state(str(no_marker), None, None, None)


def test_no_complete_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ck.CheckpointError, match=f"no complete checkpoint in {tmp_path}"):
        run_dir.resolve_checkpoint("latest", tmp_path)
    with pytest.raises(ck.CheckpointError, match="no best_checkpoint.json"):
        run_dir.resolve_checkpoint("best", tmp_path)


@pytest.mark.slow
def test_sigkill_mid_save_leaves_previous_checkpoint_as_latest(tmp_path, tokenizer):
    first = save(tmp_path, make_run(tokenizer), tokenizer, 1)
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForQuestionAnswering
        from qa import checkpoints as ck
        model = AutoModelForQuestionAnswering.from_pretrained({first!r})
        optimizer = torch.optim.AdamW(model.parameters())
        ck.save_checkpoint({str(tmp_path)!r}, model, None, optimizer, None, None, {{"global_step": 2}})
    """)
    env = {**os.environ, ck.TEST_SLEEP_ENV: "120", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    partial = tmp_path / f".tmp-checkpoint-2-{proc.pid}"
    try:
        deadline = time.time() + 90
        while not (partial / "model.safetensors").exists():
            assert proc.poll() is None, "the saving process exited before it was killed"
            assert time.time() < deadline, "the weights were never written"
            time.sleep(0.1)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert partial.is_dir() and not (tmp_path / "checkpoint-2").exists()
    assert run_dir.latest_checkpoint(tmp_path) == first
    assert run_dir.resolve_checkpoint("auto", tmp_path) == first
    with pytest.raises(ck.CheckpointError, match="incomplete"):
        run_dir.resolve_checkpoint(str(partial), tmp_path)
    # The dead writer's folder is cleaned up by the next rotation; live checkpoints stay.
    assert retention.rotate_checkpoints(tmp_path, None) == [str(partial)]
    assert not partial.exists() and run_dir.is_complete(first)


def test_rotation_keeps_the_best_even_when_oldest(tmp_path, tokenizer):
    run = make_run(tokenizer)
    paths = [save(tmp_path, run, tokenizer, step) for step in (10, 20, 30, 40)]
    assert retention.record_best(tmp_path, paths[0], "f1", 90.0) is True
    assert [retention.record_best(tmp_path, p, "f1", v) for p, v in zip(paths[1:], (50.0, 60.0, 70.0))] == [False] * 3
    assert run_dir.best_checkpoint(tmp_path) == {"checkpoint": "checkpoint-10", "step": 10, "metric": "f1",
                                            "value": 90.0, "greater_is_better": True}
    stale = tmp_path / f".tmp-checkpoint-50-{dead_pid()}"
    stale.mkdir()
    live = tmp_path / f".tmp-checkpoint-60-{os.getppid()}"  # a live process's save in progress
    live.mkdir()

    deleted = retention.rotate_checkpoints(tmp_path, 2)
    assert sorted(deleted) == sorted([str(stale), paths[1], paths[2]])
    assert [p for _, p in run_dir.list_checkpoints(tmp_path)] == [paths[0], paths[3]]
    assert live.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".trash-")]
    assert run_dir.resolve_checkpoint("best", tmp_path) == paths[0]

    # A limit of 1 still keeps the newest (to resume from) besides the best.
    newer = save(tmp_path, run, tokenizer, 50)
    assert retention.rotate_checkpoints(tmp_path, 1) == [paths[3]]
    assert [p for _, p in run_dir.list_checkpoints(tmp_path)] == [paths[0], newer]
    assert retention.rotate_checkpoints(tmp_path, None) == [] and retention.rotate_checkpoints(tmp_path, 0) == []


def test_record_best_lower_is_better_nan_and_metric_change(tmp_path, tokenizer):
    run = make_run(tokenizer)
    a, b = save(tmp_path, run, tokenizer, 1), save(tmp_path, run, tokenizer, 2)
    assert retention.record_best(tmp_path, a, "loss", 2.0, greater_is_better=False)
    assert not retention.record_best(tmp_path, b, "loss", 3.0, greater_is_better=False)
    assert not retention.record_best(tmp_path, b, "loss", float("nan"), greater_is_better=False)
    assert retention.record_best(tmp_path, b, "loss", 1.5, greater_is_better=False)
    assert run_dir.best_checkpoint(tmp_path)["checkpoint"] == "checkpoint-2"
    assert retention.record_best(tmp_path, a, "exact", 10.0)  # another metric replaces the record
    assert run_dir.best_checkpoint(tmp_path)["metric"] == "exact"


def test_full_disk_stops_before_writing_and_keeps_previous(tmp_path, tokenizer, monkeypatch):
    run = make_run(tokenizer)
    first = save(tmp_path, run, tokenizer, 1)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**5, 10**5))
    with pytest.raises(ck.DiskFullError) as info:
        save(tmp_path, run, tokenizer, 2)
    message = str(info.value)
    assert f"not enough free disk in {tmp_path}: need ~" in message and "have 0.1 MB" in message
    assert "free space or lower --save_total_limit" in message
    assert f"previous checkpoints are intact at {first}" in message
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]
    assert run_dir.is_complete(first)


def test_enospc_while_writing_removes_the_temporary_folder(tmp_path, tokenizer, monkeypatch):
    run = make_run(tokenizer)
    first = save(tmp_path, run, tokenizer, 1)
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)  # half a file, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(ck.DiskFullError, match="disk full while writing .*checkpoint-2.*not enough free disk"):
        save(tmp_path, run, tokenizer, 2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]
    assert run_dir.latest_checkpoint(tmp_path) == first


def test_disk_full_inside_safetensors_is_recognised(tmp_path, tokenizer, monkeypatch):
    import safetensors
    import transformers.modeling_utils

    run = make_run(tokenizer)
    first = save(tmp_path, run, tokenizer, 1)

    def full_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)
        # The text safetensors' Rust writer gives an ENOSPC (it is not an OSError).
        raise safetensors.SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_save_file)
    with pytest.raises(ck.DiskFullError, match="previous checkpoints are intact at"):
        save(tmp_path, run, tokenizer, 2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"] and run_dir.is_complete(first)


def test_other_errors_while_writing_clean_up_and_propagate(tmp_path, tokenizer, monkeypatch):
    run = make_run(tokenizer)
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, run, tokenizer, 1)
    assert os.listdir(tmp_path) == []


def test_estimate_covers_adam_state_and_previous_checkpoint(tmp_path, tokenizer):
    run = make_run(tokenizer)
    model, optimizer = run[0], run[1]
    params = sum(p.numel() * 4 for p in model.parameters())
    before = preflight.estimate_checkpoint_bytes(model)
    assert before >= 3 * params  # weights + AdamW's two moments, assumed before the first step
    train_step(*run, len(tokenizer))
    assert preflight.estimate_checkpoint_bytes(model, optimizer) >= 3 * params
    path = save(tmp_path, run, tokenizer, 1)
    with open(os.path.join(path, "big.bin"), "wb") as f:
        f.truncate(5 * 10**9)  # sparse: a previous checkpoint far bigger than the estimate
    assert preflight.estimate_checkpoint_bytes(model, optimizer, tmp_path) >= 5 * 10**9


class _Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("victim", ["optimizer.pt", "rng_state_0.pth"])
def test_malicious_pickle_is_refused(tmp_path, tokenizer, victim):
    run = make_run(tokenizer)
    path = save(tmp_path / "run", run, tokenizer, 1)
    marker = tmp_path / "pwned"
    target = os.path.join(path, victim)
    torch.save({"state": {}, "param_groups": [], "evil": _Payload(str(marker))}, target)
    # Forge the marker too, so only weights_only loading stands in the way.
    complete = json.loads(pathlib.Path(path, "COMPLETE").read_text())
    complete["files"][victim] = os.path.getsize(target)
    pathlib.Path(path, "COMPLETE").write_text(json.dumps(complete))
    assert run_dir.is_complete(path)

    _, optimizer, scheduler, scaler = make_run(tokenizer)
    with pytest.raises(ck.CheckpointError, match=f"{victim}: refused .*weights_only=True"):
        ck.restore_training_state(path, optimizer, scheduler, scaler)
    assert not marker.exists()
    torch.load(target, weights_only=False)  # the payload is live: plain unpickling runs it
    assert marker.exists()


def test_step_comes_from_the_state_file_not_the_name(tmp_path, tokenizer):
    run = make_run(tokenizer)
    five, ten = save(tmp_path, run, tokenizer, 5), save(tmp_path, run, tokenizer, 10)
    os.rename(ten, tmp_path / "checkpoint-1")
    os.rename(five, tmp_path / "checkpoint-99")
    assert run_dir.list_checkpoints(tmp_path) == [(5, str(tmp_path / "checkpoint-99")), (10, str(tmp_path / "checkpoint-1"))]
    assert run_dir.latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    assert run_dir.load_train_state(run_dir.resolve_checkpoint("checkpoint-1", tmp_path))["global_step"] == 10


def test_saving_the_same_step_twice_replaces_it(tmp_path, tokenizer):
    run = make_run(tokenizer)
    first = save(tmp_path, run, tokenizer, 3, note="first")
    second = save(tmp_path, run, tokenizer, 3, note="second")
    assert first == second and run_dir.load_train_state(second)["note"] == "second"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-3"]


def test_a_symlinked_checkpoint_saved_again_is_replaced_and_its_target_left_alone(tmp_path, tokenizer, caplog):
    """Before: the link was renamed to .trash-checkpoint-3-PID and left there (rmtree refuses links), and the next
    save of that step in the process renamed the folder onto that link: NotADirectoryError mid-training."""
    import logging

    run, out = make_run(tokenizer), tmp_path / "run"
    elsewhere = tmp_path / "other-disk" / "checkpoint-3"
    elsewhere.parent.mkdir()
    shutil.move(save(out, run, tokenizer, 3, note="linked"), elsewhere)
    os.symlink(elsewhere, out / "checkpoint-3")
    with caplog.at_level(logging.WARNING, logger="qa.storage"):
        for note in ("second", "third"):
            path = save(out, run, tokenizer, 3, note=note)
            assert path == str(out / "checkpoint-3") and not os.path.islink(path)
            assert run_dir.load_train_state(path)["note"] == note
            assert sorted(os.listdir(out)) == ["checkpoint-3"]  # no .trash-* link left behind
    assert f"was a symbolic link to {elsewhere}" in caplog.text
    assert run_dir.load_train_state(elsewhere)["note"] == "linked"  # the linked folder is not ours to delete
    ck.verify_checkpoint(str(elsewhere))


def test_a_read_only_mounted_checkpoint_saved_again_is_saved_beside_it(tmp_path, tokenizer, caplog):
    """Before: EBUSY (a mount point cannot be renamed) crashed training at that save."""
    import logging

    run, out = make_run(tokenizer), tmp_path / "run"
    mounted = save(out, run, tokenizer, 3, note="read-only")
    bound = subprocess.run(["mount", "--bind", "-o", "ro", mounted, mounted], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root and mount rights): {bound.stderr.strip()}")
    try:
        with caplog.at_level(logging.WARNING, logger="qa.storage"):
            path = save(out, run, tokenizer, 3, note="new")
        assert path == f"{mounted}.resaved-{os.getpid()}"
        assert "cannot be replaced" in caplog.text and "saved beside it" in caplog.text
        assert run_dir.load_train_state(path)["note"] == "new" and run_dir.is_complete(path, check_hashes=True)
        assert run_dir.latest_checkpoint(out) == path  # resume takes the new one
        assert run_dir.load_train_state(mounted)["note"] == "read-only"
    finally:
        subprocess.run(["umount", mounted], check=True)


def test_bad_train_state_is_refused_before_writing(tmp_path, tokenizer):
    run = make_run(tokenizer)
    with pytest.raises(ValueError, match="global_step"):
        save(tmp_path, run, tokenizer, "3")
    with pytest.raises(TypeError, match=r"train_state\['args'\] is not JSON-serialisable"):
        save(tmp_path, run, tokenizer, 3, args=object())
    assert not os.path.exists(tmp_path) or os.listdir(tmp_path) == []


def test_rng_state_round_trip_is_weights_only_loadable(tmp_path):
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    state = rng.capture_rng_state()
    expected = (random.random(), np.random.normal(), torch.rand(2))  # normal() sets numpy's cached gaussian
    torch.save(state, tmp_path / "rng.pth")
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    rng.restore_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True))
    assert random.random() == expected[0] and np.random.normal() == expected[1]
    assert torch.equal(torch.rand(2), expected[2])


_DIST_SCRIPT = """
import os, shutil, sys, collections, torch, torch.distributed as dist
import make_tiny_model
from qa import checkpoints as ck
rank, out = int(os.environ["RANK"]), sys.argv[1]
dist.init_process_group("gloo", rank=rank, world_size=2)
model = make_tiny_model.make_tiny_albert(vocab_size=50)  # seeds torch itself
torch.manual_seed(100 + rank)  # each rank's generator differs, as under torchrun with per-rank seeds
path = ck.save_checkpoint(out, model, None, None, None, None, {"global_step": 7}, rank=rank, world_size=2)
expected = torch.rand(4)
torch.manual_seed(0)
state = ck.restore_training_state(path, None, None, None, rank=rank)
assert state["global_step"] == 7 and state["checkpoint_info"]["world_size"] == 2, state
assert torch.equal(torch.rand(4), expected), "rank %d: RNG not restored" % rank
torch.save(expected, os.path.join(out, "draw_%d.pt" % rank))
if rank == 0:  # only rank 0 writes, so only its disk can be full: every rank must hear of it
    usage = collections.namedtuple("usage", "total used free")
    shutil.disk_usage = lambda p: usage(1, 1, 0)
try:
    ck.save_checkpoint(out, model, None, None, None, None, {"global_step": 8}, rank=rank, world_size=2)
    raise SystemExit("rank %d: no DiskFullError" % rank)
except ck.DiskFullError as exc:
    assert "not enough free disk" in str(exc), exc
dist.destroy_process_group()
print("rank %d ok" % rank)
"""


@pytest.mark.slow
def test_two_processes_save_each_rank_rng_and_share_disk_errors(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'scripts'}"}
        procs.append(subprocess.Popen([sys.executable, "-c", _DIST_SCRIPT, str(out)], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    for rank, (proc, text) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0 and f"rank {rank} ok" in text, text
    path = out / "checkpoint-7"
    assert run_dir.is_complete(path) and {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(path))
    assert not torch.equal(torch.load(out / "draw_0.pt"), torch.load(out / "draw_1.pt"))
    assert [p for _, p in run_dir.list_checkpoints(out)] == [str(path)]


def test_grad_scaler_state_round_trips_and_fp16_can_be_switched_on(tmp_path, tokenizer, caplog):
    run = make_run(tokenizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    saved = ck.save_checkpoint(str(tmp_path), run[0], None, run[1], run[2], scaler, {"global_step": 4})
    fresh = torch.amp.GradScaler("cpu")
    ck.restore_training_state(saved, None, None, fresh)
    assert fresh.get_scale() == 1024.0 and fresh.get_growth_interval() == 7

    disabled = save(tmp_path, run, tokenizer, 5)  # saved without loss scaling (fp32 or bf16)
    switched = torch.amp.GradScaler("cpu", init_scale=64.0)
    with caplog.at_level("WARNING", logger="qa.checkpoints"):
        ck.restore_training_state(disabled, None, None, switched)
    assert switched.get_scale() == 64.0 and "grad scaler starts afresh" in caplog.text


def test_clear_previous_run_removes_what_a_fresh_run_would_read_back(tmp_path, tokenizer):
    """--overwrite_output_dir: the old run's checkpoints and records go; a live writer's folder and other files stay."""
    run = make_run(tokenizer)
    old = [save(tmp_path, run, tokenizer, step) for step in (500, 1000)]
    retention.record_best(tmp_path, old[0], "f1", 80.0)
    for name in ("metrics.jsonl", "training_summary.json", "wandb_run_id.txt", "predictions_1000.json", "command.txt"):
        (tmp_path / name).write_text("{}")
    # The old final model and its evaluations: an evaluation before the new model is saved would take them for its own.
    for name in ("config.json", "model.safetensors", "qa_config.json", "eval_results_1000.json",
                 "predictions_1000_best_thresh.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "eval" / "dev-1000").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "events.out.tfevents.1").write_text("x")
    stale = tmp_path / f".tmp-checkpoint-1500-{dead_pid()}"
    stale.mkdir()
    live = tmp_path / f".tmp-checkpoint-1500-{os.getppid()}"
    live.mkdir()

    removed = retention.clear_previous_run(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [stale.name, "best_checkpoint.json", "checkpoint-1000", "checkpoint-500", "metrics.jsonl", "runs",
         "training_summary.json", "wandb_run_id.txt", "predictions_1000.json",  # the old run's evaluations go too
         "config.json", "model.safetensors", "qa_config.json", "eval_results_1000.json",
         "predictions_1000_best_thresh.json", "eval"])
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "command.txt", "notes.txt"])  # names we do not own stay
    # A new run starting at step 1 is now the only one resume, rotation and the best record see.
    first = save(tmp_path, run, tokenizer, 1)
    assert run_dir.latest_checkpoint(tmp_path) == first and run_dir.best_checkpoint(tmp_path) is None
    assert retention.record_best(tmp_path, first, "f1", 10.0) is True
    assert retention.clear_previous_run(tmp_path / "missing") == []
