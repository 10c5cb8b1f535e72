"""scripts/add_swap.sh: dry runs and refusals only (no swap is created in tests)."""

import os
import shutil
import subprocess
import uuid

import pytest

from bash_scripts import SCRIPTS, bash


@pytest.mark.parametrize("size, message", [
    ("32", "not a whole number of M or G"), ("1.5G", "not a whole number of M or G"), ("-1G", "unknown option"),
    ("0G", "below the 64M minimum"), ("10M", "below the 64M minimum"), ("2048G", "larger than the 1024G limit"),
    ("99999999999999999999G", "larger than the 1024G limit"),
])
def test_add_swap_rejects_bad_sizes(tmp_path, size, message):
    result = bash("add_swap.sh", size, "--file", tmp_path / "swapfile", "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "swapfile").exists()


def test_add_swap_dry_run_prints_each_command(tmp_path):
    swapfile = tmp_path / "swap file"
    result = bash("add_swap.sh", "1G", "--file", swapfile, "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert commands == [f"+ fallocate -l 1024M -- {swapfile}", f"+ chmod 600 -- {swapfile}",
                        f"+ mkswap -- {swapfile}", f"+ swapon -- {swapfile}"]
    assert not swapfile.exists()


def test_add_swap_persist_entry_is_not_duplicated(tmp_path):
    swapfile, fstab = tmp_path / "swapfile", tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n")
    env = dict(os.environ, FSTAB=str(fstab))
    fresh = bash("add_swap.sh", "512M", "--file", swapfile, "--persist", "--dry-run", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert f"+ echo '{swapfile} none swap sw 0 0' >> {fstab}" in fresh.stdout
    fstab.write_text(f"UUID=abc / ext4 defaults 0 1\n{swapfile} none swap sw 0 0\n")
    present = bash("add_swap.sh", "512M", "--file", swapfile, "--persist", "--dry-run", env=env)
    assert present.returncode == 0
    assert "already has a swap entry" in present.stdout and ">> " not in present.stdout
    assert fstab.read_text() == f"UUID=abc / ext4 defaults 0 1\n{swapfile} none swap sw 0 0\n"  # dry run: untouched


def test_add_swap_refuses_existing_file_and_too_little_disk(tmp_path):
    existing = tmp_path / "swapfile"
    existing.write_text("mine")
    result = bash("add_swap.sh", "1G", "--file", existing, "--dry-run")
    assert result.returncode == 1 and "already exists" in result.stderr
    assert existing.read_text() == "mine"
    free_gib = shutil.disk_usage(tmp_path).free // 2**30
    if free_gib + 1 > 1024:
        pytest.skip(f"{free_gib} GiB free here: no size within the 1024G limit exceeds it")
    too_big = bash("add_swap.sh", f"{free_gib + 1}G", "--file", tmp_path / "big", "--dry-run")
    assert too_big.returncode == 1
    assert "not enough free disk" in too_big.stderr and "MiB margin" in too_big.stderr


def test_add_swap_needs_root_without_dry_run(tmp_path):
    path = f"/tmp/qa-swap-test-{uuid.uuid4().hex}"  # a folder every user can see
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: cannot run the script as another user")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    result = subprocess.run([*prefix, "bash", str(SCRIPTS / "add_swap.sh"), "100M", "--file", path],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "needs root" in result.stderr and "sudo" in result.stderr
    assert not os.path.exists(path)
