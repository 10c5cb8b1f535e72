"""Run one of scripts/*.sh as a user would: `bash scripts/NAME ARGS...`, output captured as text.

    from bash_scripts import ROOT, SCRIPTS, bash
    result = bash("clean_cache.sh", "--dry-run", tmp_path)   # a subprocess.CompletedProcess
"""

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def bash(script, *args, env=None, **kwargs):
    return subprocess.run(["bash", str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=env, **kwargs)
