#!/usr/bin/env bash
# Upload a run's final model (or one checkpoint) to S3 with awscli; private unless asked.
#
#   bash scripts/upload.sh outputs/nq-albert-xlarge-v2 s3://my-bucket/models/albert-nq
#   bash scripts/upload.sh outputs/nq-albert-xlarge-v2 s3://my-bucket/models/albert-nq --checkpoint checkpoint-1500
#   bash scripts/upload.sh outputs/run s3://bucket/prefix --public                 # --acl public-read
#   bash scripts/upload.sh outputs/run s3://bucket/prefix --endpoint-url http://127.0.0.1:9000   # MinIO etc.
#   bash scripts/upload.sh outputs/run s3://bucket/prefix --dry-run                # print, upload nothing
#   make upload BUCKET=s3://bucket/prefix [CKPT=checkpoint-1500] [PUBLIC=1] [S3_ENDPOINT=http://...]
#
# Without --checkpoint: the run's model, the one make eval, make ask and make eval-nq take (qa.run_dir.run_model,
# said in one line), goes to s3://bucket/prefix/ as a final model folder. When it is the final model (the best,
# or no best recorded): the files at the top of OUTPUT_DIR: config.json, the weights (model*.safetensors,
# model.safetensors.index.json, pytorch_model*.bin, the answer-type head), the tokenizer files, README.md (model
# card), qa_config.json (the tuned null threshold and window sizes that scripts/ask.py reads), eval_results*.json,
# best_checkpoint.json, training_summary.json, MODEL_COMPLETE; not the checkpoints, logs, predictions, caches or
# .run.lock. When it is checkpoint-N (the best; or the newest, before training has finished): that checkpoint's
# config, weights and tokenizer (not its optimizer, scheduler or RNG state), a qa_config.json of its window sizes
# and the threshold tuned at its step, and a MODEL_COMPLETE hash record (qa/model_pick.py), so that it loads and
# answers as a final model does. With --checkpoint NAME_OR_PATH: that whole
# checkpoint folder (weights, optimizer, scheduler, so training can resume elsewhere) goes to
# s3://bucket/prefix/NAME/; it must hold its COMPLETE marker. Objects are private unless --public.
# Credentials and region come from the usual AWS settings (aws configure, AWS_* variables, instance
# role); AWS_ENDPOINT_URL is honoured too. awscli: $AWS, else .venv/bin/aws, else aws on PATH.
# Prints each uploaded URI.
set -euo pipefail

usage() {
  echo "usage: bash scripts/upload.sh OUTPUT_DIR s3://bucket/prefix [--checkpoint NAME_OR_PATH] [--public] [--endpoint-url URL] [--dry-run]" >&2
  exit 2
}
die() { echo "upload.sh: $1" >&2; exit "${2:-1}"; }  # die MESSAGE [EXIT_STATUS]

output_dir=""
bucket=""
checkpoint=""
public=0
endpoint=""
dry_run=0
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkpoint) [[ $# -ge 2 ]] || usage; checkpoint="$2"; shift ;;
    --public) public=1 ;;
    --endpoint-url) [[ $# -ge 2 ]] || usage; endpoint="$2"; shift ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    --) shift; positional+=("$@"); break ;;  # every argument after -- is OUTPUT_DIR or the bucket, even -x
    -*) echo "upload.sh: unknown option '$1'" >&2; usage ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[[ ${#positional[@]} -le 2 ]] || { echo "upload.sh: unexpected argument '${positional[2]}'" >&2; usage; }
output_dir="${positional[0]:-}"
bucket="${positional[1]:-}"

# --- validate --------------------------------------------------------------------------------
[[ -n "$output_dir" && -n "$bucket" ]] || usage
[[ -d "$output_dir" ]] || die "OUTPUT_DIR '$output_dir' is not a folder; give the run's folder (make upload OUTPUT_DIR=...)" 2
[[ "$bucket" =~ ^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$ ]] || \
  die "BUCKET '$bucket' is not an s3://bucket[/prefix] URI, e.g. s3://my-bucket/models/albert-nq" 2
bucket="${bucket%/}"
if [[ -n "$endpoint" && ! "$endpoint" =~ ^https?:// ]]; then
  die "--endpoint-url '$endpoint' must start with http:// or https://" 2
fi
aws="${AWS:-}"
if [[ -z "$aws" ]]; then
  repo_venv_aws="$(cd -- "$(dirname -- "$0")/.." && pwd)/.venv/bin/aws"
  if [[ -x "$repo_venv_aws" ]]; then aws="$repo_venv_aws"; else aws=aws; fi
fi
[[ $dry_run -eq 1 ]] || command -v "$aws" >/dev/null || die "awscli not found ('$aws'): run make setup (it installs awscli into .venv) or pip install awscli"

# The command that uploads checkpoint-N instead, as the user ran this one (make sets QA_VIA_MAKE=1), runnable as printed.
name_a_checkpoint() {
  if [[ "${QA_VIA_MAKE:-}" == 1 ]]; then
    printf 'make upload OUTPUT_DIR=%q BUCKET=%q CKPT=checkpoint-N' "$output_dir" "$bucket"
  else
    printf 'bash scripts/upload.sh --checkpoint checkpoint-N -- %q %q' "$output_dir" "$bucket"
  fi
}

# --- what goes where -------------------------------------------------------------------------
repo="$(cd -- "$(dirname -- "$0")/.." && pwd)"
python="${PYTHON:-}"; [[ -n "$python" ]] || { [[ -x "$repo/.venv/bin/python" ]] && python="$repo/.venv/bin/python" || python=python3; }
files=()   # paths relative to the source folder
if [[ -n "$checkpoint" ]]; then
  if [[ -d "$checkpoint" ]]; then source_dir="$checkpoint"
  elif [[ -d "$output_dir/$checkpoint" ]]; then source_dir="$output_dir/$checkpoint"
  else die "checkpoint '$checkpoint' not found (neither a folder nor $output_dir/$checkpoint); list them with: ls $(printf '%q' "$output_dir")" 2
  fi
  source_dir="${source_dir%/}"
  [[ -f "$source_dir/COMPLETE" ]] || die "$source_dir has no COMPLETE marker: it was not fully written; choose another checkpoint"
  destination="$bucket/$(basename -- "$source_dir")"
  while IFS= read -r -d '' path; do
    files+=("${path#"$source_dir"/}")
  done < <(find "$source_dir" -type f -print0 | sort -z)
  filters=()
else
  # The run's model (qa.run_dir.run_model); a checkpoint's model laid out as a final model folder in a staging folder.
  stage="$(mktemp -d "${output_dir%/}/.tmp-upload-XXXXXX" 2>/dev/null || mktemp -d)" || die "cannot create a staging folder"
  trap 'rm -rf -- "$stage"' EXIT
  # Decided by the repo's own Python (qa.run_dir), whatever PYTHON names (tests stub the model check with it).
  pick_python="$repo/.venv/bin/python"; [[ -x "$pick_python" ]] || pick_python=python3
  picked="$(PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$pick_python" -m qa.model_pick "${output_dir%/}" --stage "$stage")" \
    || die "nothing uploaded; name a checkpoint: $(name_a_checkpoint)"
  [[ -n "$picked" ]] || die "qa.model_pick named no model for $output_dir; name a checkpoint: $(name_a_checkpoint)"
  model_dir="${picked%%$'\n'*}"  # line 1: the run's model; line 2 (a checkpoint's): its model files, staged
  source_dir="${picked##*$'\n'}"
  [[ "$source_dir" == "$model_dir" ]] || shown="$model_dir (its model files, staged in $source_dir)"
  destination="$bucket"
  # The final model's files, as glob patterns relative to the model folder: qa.run_dir owns the list.
  final_files="$(PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$pick_python" -m qa.run_dir final-model-files)" \
    || die "qa.run_dir did not list the final model's files (above)"
  shopt -s nullglob
  while IFS= read -r pattern; do
    for path in "$source_dir"/$pattern; do
      [[ -f "$path" ]] && files+=("${path#"$source_dir"/}")
    done
  done <<< "$final_files"
  shopt -u nullglob
  weights=0
  for f in "${files[@]}"; do [[ "$f" == *.safetensors || "$f" == *.bin ]] && weights=1; done
  if [[ ! -f "$source_dir/config.json" || $weights -eq 0 ]]; then
    die "no final model in $source_dir (config.json and model.safetensors are written when training ends); upload a checkpoint instead: --checkpoint checkpoint-N (make upload CKPT=checkpoint-N)"
  fi
  filters=(--exclude "*")
  for f in "${files[@]}"; do filters+=(--include "$f"); done
fi
[[ ${#files[@]} -gt 0 ]] || die "nothing to upload in $source_dir"
# A folder that is not what it says is refused before anything is sent: a file linked out of the folder, a file
# changed since its hash record (COMPLETE, MODEL_COMPLETE), weights or a tokenizer of another model (qa/model_check.py).
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -m qa.model_check "$source_dir" || die "$source_dir not uploaded (above)" 2

command=("$aws" s3 cp --recursive --only-show-errors "$source_dir" "$destination/" "${filters[@]}")
if [[ $public -eq 1 ]]; then command+=(--acl public-read); fi
if [[ -n "$endpoint" ]]; then command+=(--endpoint-url "$endpoint"); fi

acl=$([[ $public -eq 1 ]] && echo public-read || echo private)
if [[ $dry_run -eq 1 ]]; then
  echo "dry run: would upload ${#files[@]} file(s) from ${shown:-$source_dir} to $destination/ ($acl); nothing is sent"
else
  echo "uploading ${#files[@]} file(s) from ${shown:-$source_dir} to $destination/ ($acl)"
fi
echo "+ $(printf '%q ' "${command[@]}")"
if [[ $dry_run -eq 1 ]]; then
  echo "these objects would be written:"
  printf '  %s\n' "${files[@]/#/$destination/}"
  exit 0
fi
"${command[@]}" || die "aws s3 cp failed (above); check credentials (aws configure), the bucket name and, with --public, that the bucket allows ACLs"
echo "uploaded:"
printf '%s\n' "${files[@]/#/$destination/}"
