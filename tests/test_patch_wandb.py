"""scripts/patch_wandb.py on a legacy-structured run_squad.py (tests/fixtures/legacy_run_squad.py)."""

import argparse
import ast
import difflib
import pathlib
import py_compile
import subprocess
import sys
import textwrap

import pytest

import patch_wandb

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "patch_wandb.py"
FIXTURE = ROOT / "tests" / "fixtures" / "legacy_run_squad.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def legacy(tmp_path):
    path = tmp_path / "run_squad.py"
    path.write_bytes(FIXTURE.read_bytes())
    return path


def test_dry_run_shows_diff_and_writes_nothing(legacy):
    result = run(legacy, "--dry-run", "--project", "albert-nq")
    assert result.returncode == 0, result.stderr
    assert "+import wandb" in result.stdout
    assert '+        wandb.init(project="albert-nq", sync_tensorboard=True)' in result.stdout
    assert "+        wandb.watch(model, log=\"all\")" in result.stdout
    assert legacy.read_bytes() == FIXTURE.read_bytes()
    assert not (legacy.parent / "run_squad.py.bak").exists()


def test_patch_compiles_keeps_backup_and_is_idempotent(legacy):
    result = run(legacy, "--project", "my-proj")
    assert result.returncode == 0, result.stderr
    patched = legacy.read_text()
    py_compile.compile(str(legacy), cfile=str(legacy.parent / "compiled.pyc"), doraise=True)
    assert (legacy.parent / "run_squad.py.bak").read_bytes() == FIXTURE.read_bytes()
    assert patched.count("import wandb\n") == 1
    assert patched.count('wandb.init(project="my-proj", sync_tensorboard=True)') == 1
    assert patched.count("wandb.config.update(args)") == 1
    assert patched.count('wandb.watch(model, log="all")') == 1
    # The reloads after training and in the evaluation loop stay as they were.
    def moves(text):
        return sum(line.strip() == "model.to(args.device)" for line in text.splitlines())

    assert moves(patched) == moves(FIXTURE.read_text()) == 3
    # Only lines were added, and only these.
    original_lines, patched_lines = FIXTURE.read_text().splitlines(), patched.splitlines()
    opcodes = difflib.SequenceMatcher(None, original_lines, patched_lines, autojunk=False).get_opcodes()
    assert {tag for tag, *_ in opcodes} == {"equal", "insert"}
    inserted = [line.strip() for tag, _, _, j1, j2 in opcodes if tag == "insert" for line in patched_lines[j1:j2]]
    assert inserted == ["import wandb", "if args.local_rank in [-1, 0]:", 'wandb.init(project="my-proj", sync_tensorboard=True)',
                        "wandb.config.update(args)", "if args.local_rank in [-1, 0]:", 'wandb.watch(model, log="all")']

    again = run(legacy, "--project", "my-proj")
    assert again.returncode == 0
    assert "already patched" in again.stdout
    assert legacy.read_text() == patched
    assert not (legacy.parent / "run_squad.py.bak.1").exists()


def _init_and_watch_fragment(source):
    """The statements of main() from the wandb.init guard through the wandb.watch guard, as code."""
    main = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "main")
    lines = source.splitlines(keepends=True)
    start = next(n for n in main.body if "wandb.init" in ast.unparse(n))
    end = next(n for n in main.body if "wandb.watch" in ast.unparse(n))
    return textwrap.dedent("".join(lines[start.lineno - 1 : end.end_lineno]))


class FakeWandb:
    def __init__(self, events):
        self.events = events
        self.config = self

    def init(self, **kwargs):
        self.events.append(("wandb.init", kwargs))

    def update(self, args):
        self.events.append(("wandb.config.update", vars(args)))

    def watch(self, model, log):
        self.events.append(("wandb.watch", log))


class FakeModel:
    def __init__(self, events):
        self.events = events

    def to(self, device):
        self.events.append(("model.to", device))
        return self


@pytest.mark.parametrize("local_rank, expect_wandb", [(-1, True), (0, True), (1, False)])
def test_patched_code_inits_wandb_before_moving_the_model(legacy, local_rank, expect_wandb):
    assert run(legacy, "--project", "p").returncode == 0
    fragment = _init_and_watch_fragment(legacy.read_text())
    events = []
    args = argparse.Namespace(local_rank=local_rank, device="cuda:0")
    exec(compile(fragment, str(legacy), "exec"), {"wandb": FakeWandb(events), "model": FakeModel(events), "args": args})
    names = [name for name, _ in events]
    if expect_wandb:
        assert names == ["wandb.init", "wandb.config.update", "model.to", "wandb.watch"]
        assert events[0][1] == {"project": "p", "sync_tensorboard": True}
        assert events[1][1]["device"] == "cuda:0"
        assert events[3][1] == "all"
    else:  # other ranks of a distributed run do not report
        assert names == ["model.to"]


def test_refuses_when_model_to_device_is_missing(legacy):
    text = FIXTURE.read_text()
    first = text.index("    model.to(args.device)\n\n    logger.info")
    legacy.write_text(text[:first] + text[first + len("    model.to(args.device)\n"):].replace("model.to(args.device)", "model.cuda()"))
    before = legacy.read_bytes()
    result = run(legacy)
    assert result.returncode == 2
    assert "`model.to(args.device)` not found in main()" in result.stderr
    assert legacy.read_bytes() == before
    assert not (legacy.parent / "run_squad.py.bak").exists()


def test_refuses_without_main(tmp_path):
    path = tmp_path / "other.py"
    path.write_text("import torch\n\ndef train(args):\n    model.to(args.device)\n")
    result = run(path)
    assert result.returncode == 2
    assert "no top-level `def main()`" in result.stderr
    assert path.read_text() == "import torch\n\ndef train(args):\n    model.to(args.device)\n"


def test_existing_different_backup_is_not_overwritten(legacy):
    (legacy.parent / "run_squad.py.bak").write_text("an older backup\n")
    assert run(legacy).returncode == 0
    assert (legacy.parent / "run_squad.py.bak").read_text() == "an older backup\n"
    assert (legacy.parent / "run_squad.py.bak.1").read_bytes() == FIXTURE.read_bytes()


def test_pure_patch_without_local_rank_is_unguarded_and_quotes_the_project():
    source = "import os\n\n\ndef main():\n    model = load()\n    model = model.to(args.device)\n    return model\n"
    new, applied = patch_wandb.patch_source(source, project='a "quoted" name')
    assert len(applied) == 3
    assert new == (
        "import os\nimport wandb\n\n\ndef main():\n    model = load()\n"
        '    wandb.init(project="a \\"quoted\\" name", sync_tensorboard=True)\n'
        "    wandb.config.update(args)\n"
        "    model = model.to(args.device)\n"
        '    wandb.watch(model, log="all")\n'
        "    return model\n"
    )
    assert patch_wandb.patch_source(new) == (new, [])


def test_missing_file_is_a_usage_error(tmp_path):
    result = run(tmp_path / "nope.py")
    assert result.returncode == 2
    assert "no such file" in result.stderr
