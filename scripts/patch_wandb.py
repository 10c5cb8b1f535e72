"""Apply the guide's wandb edits to HuggingFace's legacy run_squad.py, by code pattern, not line number.

    python scripts/patch_wandb.py path/to/run_squad.py --dry-run          # show the diff, write nothing
    python scripts/patch_wandb.py path/to/run_squad.py --project albert-nq
    python scripts/patch_wandb.py path/to/run_squad.py                    # again: "already patched"

Only for users who keep the legacy script: this project's own run_squad.py needs no patch
(`--report_to wandb`). The edits, as in the guide:

    import wandb                                          # after the module's import block
    ...
    if args.local_rank in [-1, 0]:                        # main process only (guard added when
        wandb.init(project="albert-nq", sync_tensorboard=True)   # main() knows args.local_rank)
        wandb.config.update(args)
    model.to(args.device)                                 # the FIRST one in main(): the model
    if args.local_rank in [-1, 0]:                        # loaded for training; the reloads
        wandb.watch(model, log="all")                     # after training are left alone

Each edit is skipped when already present, so a second run changes nothing and says so. A
missing pattern is refused by name (exit 2), nothing written. Before writing, the original is
copied to FILE.bak (an existing FILE.bak that differs is kept; FILE.bak.1, .2, ... are used), and
the file is replaced atomically. The patched source must compile, or nothing is written.
"""

import argparse
import ast
import difflib
import json
import os
import shutil
import sys

from qa.storage import atomic_write  # noqa: E402

DEFAULT_PROJECT = "albert-nq"
MAIN_PROCESS_GUARD = "if args.local_rank in [-1, 0]:"


class PatternMissing(ValueError):
    """A code pattern the patch needs is not in the file; the message names it."""


def _is_model_to_device(node):
    """`model.to(args.device)` as a statement, or `model = model.to(args.device)`."""
    value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
    if isinstance(node, ast.Assign) and not (
        len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "model"
    ):
        return False
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "to"
        and isinstance(value.func.value, ast.Name)
        and value.func.value.id == "model"
        and len(value.args) == 1
        and isinstance(value.args[0], ast.Attribute)
        and isinstance(value.args[0].value, ast.Name)
        and value.args[0].value.id == "args"
        and value.args[0].attr == "device"
    )


def _calls_wandb(tree, attribute):
    """True when `wandb.<attribute>(...)` (e.g. wandb.init) is called anywhere in `tree`."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == attribute
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "wandb"
        ):
            return True
    return False


def _imports_wandb(module):
    for node in module.body:
        if isinstance(node, ast.Import) and any(alias.name == "wandb" and alias.asname is None for alias in node.names):
            return True
    return False


def _statements(body):
    """Statements of a function body in source order, descending into if/for/with/try but not nested defs."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                yield from _statements(children)


def _end_of_import_block(module):
    """Line number (1-based) ending the last top-level import before the first def/class.

    A `try: import x / except ImportError: ...` block counts as an import (the legacy script
    imports SummaryWriter that way)."""
    end = None
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            break
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            end = node.end_lineno
        elif isinstance(node, ast.Try) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body):
            end = node.end_lineno
    return end


def _wandb_calls(source, lines, newline, main, project, filename, need_init, need_watch):
    """The wandb.watch (after) and wandb.init (before) lines around main()'s first `model.to(args.device)`, as
    (line index, text, description) in that order; under the main-process guard when main() reads args.local_rank."""
    targets = [n for n in _statements(main.body) if _is_model_to_device(n)]
    if not targets:
        raise PatternMissing(
            f"{filename}: `model.to(args.device)` not found in main(): the wandb.init/wandb.watch "
            "lines go around it; add them by hand (see the docstring of scripts/patch_wandb.py)"
        )
    target = targets[0]  # the model loaded for training; later ones reload it for evaluation
    line = lines[target.lineno - 1]
    indent = line[: target.col_offset]
    if indent.strip():
        raise PatternMissing(
            f"{filename}:{target.lineno}: `model.to(args.device)` shares its line with other code; "
            "put it on its own line and run again"
        )
    body_indent = main.body[0].col_offset - main.col_offset
    step = " " * (body_indent or 4)
    guarded = "args.local_rank" in ast.get_source_segment(source, main)
    inner = indent + step if guarded else indent
    guard = [f"{indent}{MAIN_PROCESS_GUARD}{newline}"] if guarded else []
    calls = []
    if need_watch:
        watch = guard + [f"{inner}wandb.watch(model, log=\"all\"){newline}"]
        calls.append((target.end_lineno, "".join(watch), f"wandb.watch(model, log=\"all\") after line {target.end_lineno}"))
    if need_init:
        init = guard + [
            f"{inner}wandb.init(project={json.dumps(project)}, sync_tensorboard=True){newline}",
            f"{inner}wandb.config.update(args){newline}",
        ]
        calls.append((target.lineno - 1, "".join(init),
                      f"wandb.init(project={json.dumps(project)}, sync_tensorboard=True) + wandb.config.update(args) "
                      f"before line {target.lineno}"))
    return calls


def patch_source(source, project=DEFAULT_PROJECT, filename="run_squad.py"):
    """Return (new_source, list of applied edit descriptions). Pure: reads and writes nothing.

    Raises PatternMissing naming the pattern that is not there, SyntaxError if `source` does not parse."""
    module = ast.parse(source, filename=filename)
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"

    main = next(
        (n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "main"),
        None,
    )
    if main is None:
        raise PatternMissing(f"{filename}: no top-level `def main()`: this does not look like the legacy run_squad.py")
    # (line index, text) insertions, applied bottom-up so earlier line numbers stay valid.
    insertions = []
    applied = []

    need_init = not _calls_wandb(main, "init")
    need_watch = not _calls_wandb(main, "watch")
    if need_init or need_watch:
        for index, text, description in _wandb_calls(source, lines, newline, main, project, filename, need_init,
                                                         need_watch):
            insertions.append((index, text))
            applied.append(description)

    if not _imports_wandb(module):
        end = _end_of_import_block(module)
        if end is None:
            raise PatternMissing(f"{filename}: no import block before the first def: cannot place `import wandb`")
        insertions.append((end, f"import wandb{newline}"))
        applied.append(f"import wandb after line {end}")

    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    for index, text in sorted(insertions, key=lambda item: item[0], reverse=True):
        lines.insert(index, text)
    new_source = "".join(lines) if insertions else source
    compile(new_source, filename, "exec")  # never write a file that does not compile
    return new_source, list(reversed(applied))


def backup_path(path, current_bytes):
    """FILE.bak, unless it exists with other content: then FILE.bak.1, .2, ... (an identical one is reused)."""
    candidate, number = f"{path}.bak", 0
    while os.path.exists(candidate):
        with open(candidate, "rb") as handle:
            if handle.read() == current_bytes:
                return candidate
        number += 1
        candidate = f"{path}.bak.{number}"
    return candidate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="the legacy run_squad.py to patch in place")
    parser.add_argument("--project", default=DEFAULT_PROJECT, help=f"wandb project name (default {DEFAULT_PROJECT})")
    parser.add_argument("--dry-run", action="store_true", help="print the unified diff and write nothing")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.file):
        parser.error(f"{args.file}: no such file; give the path of the legacy run_squad.py")
    if not args.project.strip():
        parser.error("--project is empty; give a wandb project name, e.g. --project albert-nq")
    return args


def main(argv=None):
    args = parse_args(argv)
    with open(args.file, "rb") as handle:
        raw = handle.read()
    try:
        source = raw.decode("utf-8")
        new_source, applied = patch_source(source, project=args.project, filename=args.file)
    except UnicodeDecodeError as exc:
        print(f"{args.file}: not UTF-8 text ({exc}); nothing written", file=sys.stderr)
        return 2
    except SyntaxError as exc:
        print(f"{args.file}:{exc.lineno}: does not parse as Python ({exc.msg}); nothing written", file=sys.stderr)
        return 2
    except PatternMissing as exc:
        print(f"refusing to patch: {exc}; nothing written", file=sys.stderr)
        return 2

    if not applied:
        print(f"{args.file}: already patched for wandb; nothing changed")
        return 0
    diff = difflib.unified_diff(
        source.splitlines(keepends=True), new_source.splitlines(keepends=True),
        fromfile=f"{args.file} (original)", tofile=f"{args.file} (patched)",
    )
    sys.stdout.writelines(diff)
    if args.dry_run:
        print(f"dry run: {len(applied)} edit(s) shown above, nothing written")
        return 0
    backup = backup_path(args.file, raw)
    if not os.path.exists(backup):
        shutil.copy2(args.file, backup)
    with atomic_write(args.file, "wb") as handle:
        handle.write(new_source.encode("utf-8"))
    shutil.copymode(backup, args.file)
    for edit in applied:
        print(f"applied: {edit}")
    print(f"patched {args.file} (original kept as {backup})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
