"""A full disk while converting NQ (issue 18 item 7): one message naming the output folder and the space needed,
exit 2, nothing half-written (no output temporary file, no part folder) and a previous output left as it was.
ENOSPC is injected into the converter's writes, and a real full disk is a small tmpfs (root only; skipped with
the reason elsewhere)."""

import errno
import os
import subprocess
import sys

import pytest

from conftest import shared_file
from helpers import small_disk
from nq_records import NQ_TO_SQUAD, nq_to_squad_main, write_jsonl_gz
from qa import storage
from qa.nq import convert as nq_convert
from qa.nq import sample as nq_sample

PREVIOUS = b'{"version": "v2.0", "data": []}\n'


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nq-shards")
    return [str(write_jsonl_gz(folder / f"nq-dev-0{i}.jsonl.gz", nq_sample.generate(40, seed=i, split="dev")))
            for i in range(3)]


class _FillingFile:
    """A file opened for writing whose disk fills after `room` bytes: write raises OSError(ENOSPC) as a real one."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def fill_after(monkeypatch, module, room, which):
    """Files that `module` opens for writing and whose name contains `which` hold only `room` bytes."""
    def filling_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        return _FillingFile(handle, room) if "w" in mode and which in os.path.basename(str(path)) else handle

    monkeypatch.setattr(module, "open", filling_open, raising=False)


def convert_with_previous(tmp_path, inputs, capsys):
    """The command line over a folder holding a previous output; (exit code, stderr lines, output path)."""
    out = tmp_path / "nq_dev.json"
    out.write_bytes(PREVIOUS)
    code = nq_to_squad_main([*inputs, "--output", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines, out


def assert_nothing_half_written(out):
    assert out.read_bytes() == PREVIOUS  # the previous output, intact
    assert sorted(os.listdir(out.parent)) == [out.name]  # no OUTPUT.tmp-PID, no .nq_to_squad-PID-* part folder


def needed_bytes(message):
    value, unit = message.split("need ", 1)[1].split(",")[0].lstrip("~").removeprefix("more than ").split()
    return float(value) * {"bytes": 1, "KiB": 2**10, "MiB": 2**20}[unit]


def test_a_full_disk_while_writing_the_output_is_one_message_with_the_space_needed(tmp_path, shards, capsys,
                                                                                     monkeypatch):
    whole = tmp_path / "whole"
    whole.mkdir()
    nq_convert.convert(shards, str(whole / "nq_dev.json"), nq_convert.Options())
    real = os.path.getsize(whole / "nq_dev.json")
    fill_after(monkeypatch, storage, int(real * 0.6), ".tmp-")  # the output fills up in the second input
    folder = tmp_path / "out"
    folder.mkdir()
    code, lines, out = convert_with_previous(folder, shards, capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nq_to_squad: error: not enough free disk in {folder} for the converted file nq_dev.json: "
                               "need ~")
    assert "nothing half-written is kept" in lines[0] and "--output on a bigger disk" in lines[0]
    assert 0.5 * real <= needed_bytes(lines[0]) <= 1.5 * real  # scaled from the inputs fully written
    assert_nothing_half_written(out)


def test_a_full_disk_while_writing_a_part_names_at_least_what_was_written(tmp_path, shards, capsys, monkeypatch):
    fill_after(monkeypatch, nq_convert, 2000, "part-")  # the first input's part file fills the disk
    code, lines, out = convert_with_previous(tmp_path, shards, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"not enough free disk in {tmp_path} for the converted file nq_dev.json: need more than " in lines[0]
    assert needed_bytes(lines[0]) > 1000  # what the part had on disk when it filled up
    assert_nothing_half_written(out)


def test_a_full_statistics_file_keeps_the_converted_file_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    fill_after(monkeypatch, storage, 10, ".stats.json.tmp-")
    out, stats = tmp_path / "nq_dev.json", tmp_path / "nq_dev.json.stats.json"
    code = nq_to_squad_main([str(shared_file("nq", "nq-dev-10.full.jsonl.gz")), "--output", str(out), "--stats-json", str(stats)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"nq_to_squad: error: not enough free disk in {tmp_path} for the statistics file "
                               "nq_dev.json.stats.json: need more than ")
    assert sorted(os.listdir(tmp_path)) == ["nq_dev.json"]


def test_a_real_full_disk_for_the_command_line(tmp_path, shards):
    with small_disk(tmp_path / "disk", "16k") as disk:
        out = disk / "nq_dev.json"
        out.write_bytes(PREVIOUS)
        done = subprocess.run([sys.executable, "-I", NQ_TO_SQUAD, *shards, "--output", str(out)],
                              capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith(f"nq_to_squad: error: not enough free disk in {disk} for the converted file nq_dev.json: "
                                   "need ")
        assert_nothing_half_written(out)
