#!/usr/bin/env bash
# Create and enable a swap file, with the checks the guide skips.
#
#   sudo bash scripts/add_swap.sh 32G                         # /swapfile, 32 GiB, enabled now
#   sudo bash scripts/add_swap.sh 64G --file /mnt/swapfile --persist   # and an /etc/fstab entry
#   bash scripts/add_swap.sh 32G --dry-run                    # print each command; no root needed
#   make swap SIZE=32G [SWAPFILE=/mnt/swapfile] [PERSIST=1] [DRY_RUN=1]
#
# Why: converting NQ examples to features with the legacy script needed more RAM than most GPU
# boxes have; swap turns an out-of-memory kill into a slow run. (This project's converter works in
# bounded memory, so swap is an explicit opt-in.)
# Checks, all before anything is written: SIZE is a whole number of M or G, at least 64M and at
# most 1024G; the file does not exist yet; the target folder's filesystem has SIZE + 1 GiB free
# (the margin keeps the disk from filling to the last byte, which breaks checkpoint writes);
# root (unless --dry-run). fallocate first, dd as the fallback (filesystems without fallocate
# support for swap); chmod 600 (swap holds process memory); mkswap; swapon. A half-made file is
# removed if a step fails. --persist adds "FILE none swap sw 0 0" to /etc/fstab unless an entry
# for FILE is already there (FSTAB=path overrides the fstab location, e.g. for a chroot).
set -euo pipefail

MIN_MIB=64
MAX_MIB=$((1024 * 1024))   # 1024G: far above any sane swap file on a cloud GPU box
MARGIN_MIB=1024
FSTAB="${FSTAB:-/etc/fstab}"

usage() {
  echo "usage: bash scripts/add_swap.sh SIZE [--file /swapfile] [--persist] [--dry-run]   (SIZE like 512M or 32G)" >&2
  exit 2
}
die() { echo "add_swap.sh: $*" >&2; exit 1; }

size=""
file="/swapfile"
persist=0
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --file) [[ $# -ge 2 && -n "$2" ]] || { echo "add_swap.sh: --file needs a path" >&2; usage; }; file="$2"; shift ;;
    --file=*) file="${1#--file=}" ;;
    --persist) persist=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    --) shift
        [[ $# -eq 0 || ( $# -eq 1 && -z "$size" ) ]] || { echo "add_swap.sh: one SIZE only" >&2; usage; }
        size="${1:-$size}"; break ;;
    -*) echo "add_swap.sh: unknown option '$1'" >&2; usage ;;
    *) [[ -z "$size" ]] || { echo "add_swap.sh: one SIZE only (got '$size' and '$1')" >&2; usage; }; size="$1" ;;
  esac
  shift
done

# --- validate everything before touching anything -------------------------------------------
[[ -n "$size" ]] || { echo "add_swap.sh: SIZE is missing, e.g. 32G" >&2; usage; }
[[ "$size" =~ ^([0-9]+)([MG])$ ]] || { echo "add_swap.sh: SIZE '$size' is not a whole number of M or G, e.g. 512M or 32G" >&2; exit 2; }
number=$((10#${BASH_REMATCH[1]}))
[[ ${#BASH_REMATCH[1]} -le 7 ]] || { echo "add_swap.sh: SIZE '$size' is larger than the 1024G limit" >&2; exit 2; }
if [[ "${BASH_REMATCH[2]}" == G ]]; then size_mib=$((number * 1024)); else size_mib=$number; fi
(( size_mib >= MIN_MIB )) || { echo "add_swap.sh: SIZE '$size' is below the ${MIN_MIB}M minimum" >&2; exit 2; }
(( size_mib <= MAX_MIB )) || { echo "add_swap.sh: SIZE '$size' is larger than the 1024G limit" >&2; exit 2; }
[[ "$file" == /* ]] || file="$PWD/$file"

[[ ! -e "$file" ]] || die "$file already exists; choose another path with --file (an existing file is never reused or overwritten)"
folder=$(dirname -- "$file")
[[ -d "$folder" ]] || die "folder $folder does not exist"
free_kib=$(df -Pk -- "$folder" | awk 'NR == 2 {print $4}')
[[ "$free_kib" =~ ^[0-9]+$ ]] || die "could not read the free space of $folder from df"
free_mib=$((free_kib / 1024))
if (( free_mib < size_mib + MARGIN_MIB )); then
  die "not enough free disk in $folder: ${free_mib} MiB free < ${size_mib} MiB swap + ${MARGIN_MIB} MiB margin; choose a smaller SIZE or another --file location"
fi
if [[ $dry_run -eq 0 && "$(id -u)" -ne 0 ]]; then
  die "needs root to create and enable swap: run it with sudo (or --dry-run to see the commands)"
fi
if [[ $dry_run -eq 0 ]]; then
  for tool in mkswap swapon; do
    command -v "$tool" >/dev/null || die "$tool not found (it is in util-linux: apt-get install util-linux)"
  done
fi

# --- do it (or print it) --------------------------------------------------------------------
run() {
  echo "+ $*"
  if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

created=0
cleanup() {
  if [[ $created -eq 1 ]]; then
    echo "add_swap.sh: failed; removing the half-made $file" >&2
    swapoff -- "$file" 2>/dev/null || true
    rm -f -- "$file"
  fi
}
trap cleanup EXIT

[[ $dry_run -eq 1 ]] && echo "dry run: these commands would run (nothing is changed)"
created=$(( 1 - dry_run ))
if ! run fallocate -l "${size_mib}M" -- "$file"; then
  echo "fallocate failed; writing zeros with dd instead (slower)" >&2
  rm -f -- "$file"
  run dd if=/dev/zero of="$file" bs=1M count="$size_mib" status=progress
fi
run chmod 600 -- "$file"
run mkswap -- "$file"
run swapon -- "$file"
created=0

if [[ $persist -eq 1 ]]; then
  entry="$file none swap sw 0 0"
  if [[ -f "$FSTAB" ]] && awk -v f="$file" '$1 == f && $3 == "swap" {found = 1} END {exit !found}' "$FSTAB"; then
    echo "$FSTAB already has a swap entry for $file; not adding another"
  else
    echo "+ echo '$entry' >> $FSTAB"
    if [[ $dry_run -eq 0 ]]; then echo "$entry" >> "$FSTAB"; fi
  fi
fi

if [[ $dry_run -eq 0 ]]; then
  echo "swap enabled: $file (${size_mib} MiB)"
  swapon --show
fi
