#!/usr/bin/env bash
# Find cached feature files and delete them, only after confirmation.
#
#   bash scripts/clean_cache.sh --dry-run data outputs     # list what would go, with sizes and a total
#   bash scripts/clean_cache.sh data                       # list, then ask "Delete ...? [y/N]" on a terminal
#   bash scripts/clean_cache.sh --yes data outputs         # no question (scripts, CI, make without a TTY)
#   make clean-cache DIRS="data outputs" [YES=1]
#
# What counts as a cache:
#   - ours (qa/features.py): folders features-<key>/ inside a .features_cache/ folder (beside each
#     data file), and the temp folders features-<key>.tmp-* of a build that was killed; with
#     --features_cache_dir elsewhere, folders named features-<32 hex digits>[.tmp-*] anywhere.
#     Their key covers the data, tokenizer and parameters, so deleting only costs recomputation;
#   - the legacy run_squad.py's files cached_train_<model>_<maxlen> and cached_dev_<model>_<maxlen>
#     (and their .lock files), which it reused even when stale: the guide's reason to clean them.
# Without a terminal and without --yes nothing is deleted (exit 1): pass --yes.
set -euo pipefail

usage() {
  echo "usage: bash scripts/clean_cache.sh [--dry-run] [--yes] DIR..." >&2
  echo "  e.g. bash scripts/clean_cache.sh --dry-run data outputs" >&2
  exit 2
}

dry_run=0
assume_yes=0
dirs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --yes|-y) assume_yes=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    --) shift; dirs+=("$@"); break ;;  # every argument after -- is a folder, even one named like an option
    -*) echo "clean_cache.sh: unknown option '$1'" >&2; usage ;;
    *) dirs+=("$1") ;;
  esac
  shift
done
[[ ${#dirs[@]} -gt 0 ]] || { echo "clean_cache.sh: no folder given" >&2; usage; }
for i in "${!dirs[@]}"; do
  [[ "${dirs[$i]}" != -* ]] || dirs[i]="./${dirs[$i]}"  # find would read a folder named -x as an expression
done
for dir in "${dirs[@]}"; do
  [[ -d "$dir" ]] || { echo "clean_cache.sh: '$dir' is not a folder; give folders to search, e.g. data outputs" >&2; exit 2; }
done

# NUL-separated so names with spaces or newlines survive; -prune: do not descend into a match.
caches=()
while IFS= read -r -d '' path; do
  caches+=("$path")
done < <(find "${dirs[@]}" -regextype posix-extended \
  \( -type d -name 'features-*' -path '*/.features_cache/features-*' -prune -print0 \) -o \
  \( -type d -regex '.*/features-[0-9a-f]{32}(\.tmp-[^/]*)?' -prune -print0 \) -o \
  \( -type f \( -name 'cached_train_*' -o -name 'cached_dev_*' \) -print0 \) | sort -z -u)

if [[ ${#caches[@]} -eq 0 ]]; then
  echo "no cached features found under: ${dirs[*]}"
  exit 0
fi

echo "cached features under: ${dirs[*]}"
du -sh -- "${caches[@]}"
total=$(du -sch -- "${caches[@]}" | tail -n 1 | cut -f 1)
echo "total: ${total} in ${#caches[@]} item(s)"

# A training run holds an OS lock on its folder's .run.lock while it runs (qa/run_lock.py; it dies with the
# process): `flock --shared --nonblock` fails exactly then. Its features may be among these (beside its data, or
# in its --features_cache_dir), so nothing is deleted while one runs.
live=()
while IFS= read -r -d '' lock; do
  flock --shared --nonblock "$lock" true 2>/dev/null || live+=("$(dirname -- "$lock")")
done < <(find "${dirs[@]}" $([[ -d outputs ]] && echo outputs) -maxdepth 4 -name .run.lock -type f -print0 2>/dev/null | sort -z -u)
for run in "${live[@]}"; do
  holder=$(sed -n 's/.*"pid": *\([0-9]*\).*"host": *"\([^"]*\)".*/pid \1 on host \2/p' "$run/.run.lock" 2>/dev/null || true)
  echo "a training run is live in $run${holder:+ ($holder)}: its features may be among these" >&2
done

# A process reading or building features holds a shared lock on .in_use.lock in their cache folder (qa/features.py;
# it dies with the process), wherever that folder is: its features-<key> folders are kept, and the others are
# deleted only under the exclusive lock, so no run can start mapping one while it goes.
in_use_note() {  # "in use by ..." when the cache folder holding $1 is locked by a live process, else nothing
  local lockf holder
  lockf="$(dirname -- "$1")/.in_use.lock"
  [[ -f "$lockf" ]] || return 0
  flock --exclusive --nonblock "$lockf" true 2>/dev/null && return 0
  holder=$(sed -n 's/.*"pid": *\([0-9]*\).*"host": *"\([^"]*\)".*/, last taken by pid \1 on host \2/p' "$lockf" 2>/dev/null || true)
  echo "in use by a live process${holder}"
}
kept=()
declare -A is_kept=()
for path in "${caches[@]}"; do
  note=$(in_use_note "$path")
  if [[ -n "$note" ]]; then
    kept+=("$path")
    is_kept[$path]=1
    echo "keeping $path: ${note}" >&2
  fi
done

if [[ $dry_run -eq 1 ]]; then
  echo "dry run: nothing deleted"
  exit 0
fi
if [[ ${#live[@]} -gt 0 ]]; then
  echo "not deleting while a run trains: run clean-cache again after it ends (make status OUTPUT_DIR=... says when)" >&2
  exit 1
fi
if [[ $assume_yes -eq 0 ]]; then
  if [[ -t 0 ]]; then
    read -r -p "Delete these ${#caches[@]} item(s) (${total})? [y/N] " answer
    if [[ ! "$answer" =~ ^[Yy]([Ee][Ss])?$ ]]; then
      echo "nothing deleted"
      exit 0
    fi
  else
    echo "not deleting: no terminal to confirm on; pass --yes to delete (make clean-cache YES=1)" >&2
    exit 1
  fi
fi

for path in "${caches[@]}"; do
  [[ -z "${is_kept[$path]:-}" ]] || continue
  lockf="$(dirname -- "$path")/.in_use.lock"
  if [[ -f "$lockf" ]]; then
    rc=0
    flock --exclusive --nonblock --conflict-exit-code 75 "$lockf" rm -rf -- "$path" || rc=$?
    if [[ $rc -eq 75 ]]; then echo "keeping $path: a process started using it" >&2; kept+=("$path"); continue; fi
    [[ $rc -eq 0 ]] || exit "$rc"
  else
    rm -rf -- "$path"
  fi
  echo "removed ${path}"
done
if [[ ${#kept[@]} -gt 0 ]]; then
  echo "kept ${#kept[@]} item(s) in use: run clean-cache again after the process using them ends"
else
  echo "freed ${total}"
fi
