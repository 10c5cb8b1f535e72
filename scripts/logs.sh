#!/usr/bin/env bash
# Follow a run's train.log (tail -F: survives its rotation; Ctrl-C stops), or say which runs there are.
#
#   bash scripts/logs.sh outputs/nq-albert-xlarge-v2     # make logs [OUTPUT_DIR=outputs/nq-albert-xlarge-v2]
#
# Before train.log exists, a detached run's console.log (scripts/detach.sh: everything the session
# printed, e.g. a bad flag that stopped run_squad.py before it wrote train.log). A folder that does not
# exist is not waited on: the runs under outputs/ with a log are listed, newest first, as make commands.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: bash scripts/logs.sh RUN_DIR" >&2; exit 2; }
run_dir="$1"

if [[ ! -d "$run_dir" ]]; then
  echo "logs.sh: OUTPUT_DIR $run_dir: no such folder; give the run's folder: make logs OUTPUT_DIR=..." >&2
  if [[ -d outputs ]]; then
    runs=$(find outputs -maxdepth 3 \( -name train.log -o -name console.log \) -type f -printf '%T@\t%h\n' 2>/dev/null |
             sort -rn | cut -f 2 | awk '!seen[$0]++' | head -n 5)
    if [[ -n "$runs" ]]; then
      echo "  runs here (newest first):" >&2
      while IFS= read -r dir; do echo "    make logs OUTPUT_DIR=$(printf '%q' "$dir")" >&2; done <<< "$runs"
    fi
  fi
  exit 2
fi
if [[ ! -e "$run_dir/train.log" && -e "$run_dir/console.log" ]]; then
  echo "no train.log in $run_dir yet: following console.log, the detached session's whole output"
  exec tail -n 50 -F -- "$run_dir/console.log"
fi
[[ -e "$run_dir/train.log" ]] || echo "no train.log in $run_dir yet: waiting for the run to write it (Ctrl-C stops)"
exec tail -n 50 -F -- "$run_dir/train.log"
