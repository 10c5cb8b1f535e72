#!/usr/bin/env bash
# Reattach to the detached training session NAME (screen, else tmux); when none runs, say where its output is.
#
#   bash scripts/attach.sh qa-train                     # make attach [NAME=qa-train]
#   bash scripts/attach.sh qa-train outputs/my-run      # make attach NAME=qa-train OUTPUT_DIR=outputs/my-run
#
# scripts/detach.sh started the session and wrote "[detach] <time> start in tmux session 'NAME': CMD" into
# RUN_DIR/console.log. Without RUN_DIR the session's folder is the one under outputs/ (two levels deep)
# whose console.log names NAME most recently, so the hints point at the run that session trained.
# Exit 1 when no such session runs (after saying which ones do), 2 on a bad NAME.
set -euo pipefail

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: bash scripts/attach.sh NAME [RUN_DIR]" >&2; exit 2; }
name="$1"
run_dir="${2:-}"
[[ "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] || {
  echo "attach.sh: session NAME '$name' may only hold letters, digits, '.', '_' and '-' (e.g. qa-train)" >&2; exit 2; }

screen_sessions() { command -v screen >/dev/null && { screen -ls 2>/dev/null || true; } | awk '/^\t[0-9]+\./ {sub(/^[0-9]+\./, "", $1); print $1}'; }
tmux_sessions() { command -v tmux >/dev/null && { tmux list-sessions -F '#{session_name}' 2>/dev/null || true; }; }

if screen_sessions | grep -qxF -- "$name"; then exec screen -r "$name"; fi
if tmux_sessions | grep -qxF -- "$name"; then exec tmux attach -t "=$name"; fi

# The newest console.log under outputs/ whose detach.sh start line names this session.
session_run_dir() {
  [[ -d outputs ]] || return 0
  find outputs -maxdepth 3 -name console.log -type f -printf '%T@\t%p\0' 2>/dev/null | sort -z -rn |
    while IFS=$'\t' read -r -d '' _ log; do
      if grep -qF -- "session '$name':" "$log"; then dirname -- "$log"; break; fi
    done
}
[[ -n "$run_dir" ]] || run_dir=$(session_run_dir)

running=$( { screen_sessions || true; tmux_sessions || true; } | paste -sd ' ' -)
echo "no screen or tmux session named '$name' runs (sessions running: ${running:-none})"
if [[ -n "$run_dir" ]]; then
  shown=$(printf '%q' "$run_dir")
  echo "  its run: make status OUTPUT_DIR=$shown   (how it ended)"
  echo "  its log: make logs OUTPUT_DIR=$shown"
else
  echo "  no console.log under outputs/ names that session; another session: make attach NAME=<name>;" \
       "a run's log: make logs OUTPUT_DIR=<its folder>"
fi
exit 1
