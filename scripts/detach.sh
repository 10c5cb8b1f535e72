#!/usr/bin/env bash
# Run a command in a detached screen session (tmux if screen is missing), its output appended to a log.
#
#   bash scripts/detach.sh qa-train outputs/nq-albert-xlarge-v2/console.log -- make train EPOCHS=2
#   screen -r qa-train          # or: tmux attach -t qa-train   (make attach NAME=qa-train)
#   make logs                   # follow the run's train.log from any shell
#
# `make train DETACH=1` / `make resume DETACH=1` call it with OUTPUT_DIR/console.log: the only
# file run_squad.py accepts in a fresh output folder (not train.log, which run_squad.py writes).
# Why: a training run on a cloud GPU box must survive a dropped SSH connection; the guide pastes
# its command into `screen`. The log gets everything the command prints (stdout and stderr, via
# tee -a) and a last line with its exit status, so a run that ended while nobody watched can be
# read afterwards (`make status` reads these "[detach]" lines). A session NAME that already runs
# is refused rather than joined. MULTIPLEXER=screen|tmux forces one of the two.
set -euo pipefail

usage() {
  echo "usage: bash scripts/detach.sh NAME LOG -- CMD [ARG...]" >&2
  echo "  e.g. bash scripts/detach.sh qa-train outputs/run/train.log -- make train" >&2
  exit 2
}

[[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && { sed -n '2,14p' "$0"; exit 0; }
[[ $# -ge 4 && "$3" == "--" ]] || usage
name="$1"
log="$2"
shift 3
[[ "$name" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] || {
  echo "detach.sh: session NAME '$name' may only hold letters, digits, '.', '_' and '-' (e.g. qa-train)" >&2; exit 2; }
[[ -n "$log" ]] || { echo "detach.sh: LOG is empty; give a log file path" >&2; exit 2; }

multiplexer="${MULTIPLEXER:-}"
if [[ -z "$multiplexer" ]]; then
  if command -v screen >/dev/null; then multiplexer=screen
  elif command -v tmux >/dev/null; then multiplexer=tmux
  else
    echo "detach.sh: neither screen nor tmux is installed; install one: sudo apt-get install -y screen" >&2
    exit 1
  fi
fi
case "$multiplexer" in
  screen|tmux) command -v "$multiplexer" >/dev/null || {
    echo "detach.sh: MULTIPLEXER=$multiplexer but $multiplexer is not installed: sudo apt-get install -y $multiplexer" >&2; exit 1; } ;;
  *) echo "detach.sh: MULTIPLEXER must be screen or tmux, got '$multiplexer'" >&2; exit 2 ;;
esac

session_exists() {
  if [[ "$multiplexer" == screen ]]; then
    # `screen -ls` lists "PID.NAME<TAB>(Detached)"; it exits non-zero when nothing runs.
    { screen -ls || true; } | awk -v n="$name" '{sub(/^[0-9]+\./, "", $1)} $1 == n {found = 1} END {exit !found}'
  else
    tmux has-session -t "=$name" 2>/dev/null
  fi
}
if session_exists; then
  echo "detach.sh: a $multiplexer session named '$name' already runs; attach to it" \
       "($([[ $multiplexer == screen ]] && echo "screen -r $name" || echo "tmux attach -t $name"))" \
       "or choose another NAME" >&2
  exit 1
fi

run_dir=$(dirname -- "$log")  # as given (relative to where make runs): the OUTPUT_DIR of the hints below
mkdir -p -- "$run_dir"
log="$(cd -- "$(dirname -- "$log")" && pwd)/$(basename -- "$log")"
command_line=$(printf '%q ' "$@")
quoted_log=$(printf '%q' "$log")
# Inside the session: the command's output to the terminal and appended to the log; its exit
# status (not tee's) recorded last.
echo "[detach] $(date '+%F %T') start in $multiplexer session '$name': $command_line" >> "$log"
inner="set -o pipefail; $command_line 2>&1 | tee -a $quoted_log; status=\$?; \
echo \"[detach] \$(date '+%F %T') exit status \$status\" | tee -a $quoted_log; exit \$status"

if [[ "$multiplexer" == screen ]]; then
  screen -dmS "$name" bash -c "$inner"
  attach="screen -r $name"
else
  # A tmux session gets the environment of the tmux *server*, which may be an older one: hand
  # this shell's environment over in a private (0600) file that the session reads and deletes.
  env_file=$(mktemp "${TMPDIR:-/tmp}/detach-env.XXXXXX")
  export -p > "$env_file"
  tmux new-session -d -s "$name" -c "$PWD" bash -c ". $(printf '%q' "$env_file"); rm -f $(printf '%q' "$env_file"); $inner"
  attach="tmux attach -t $name"
fi

shown_dir=$(printf '%q' "$run_dir")
echo "started in a detached $multiplexer session '$name': $command_line"
echo "  reattach:        make attach NAME=$name   ($attach; detach again with Ctrl-a d / Ctrl-b d)"
echo "  training log:    make logs OUTPUT_DIR=$shown_dir   (console output: tail -F $quoted_log)"
echo "  how it goes:     make status OUTPUT_DIR=$shown_dir   (step, ETA, exit status)"
