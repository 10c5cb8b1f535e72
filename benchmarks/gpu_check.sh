#!/usr/bin/env bash
# One call on a GPU machine (an H200, or any CUDA GPU): training tokens/s, features/s, peak memory and MFU
# of BERT-base and ALBERT-base in fp32 (TF32), bf16 and fp16, torch.compile off and on, as one table;
# then bf16 and fp16 runs of run_squad.py stopped by SIGTERM, resumed and evaluated, as PASS/FAIL lines.
# Sized for under 8 minutes on an H200 (part 1 starts no row after 270 s, --budget-s). benchmarks/gpu_check.py does the work
# and documents every option (bash benchmarks/gpu_check.sh --help).
#
#   bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh --out benchmarks/results/gpu_check.json
#   bash benchmarks/gpu_check.sh --peak-tflops 700 --peak-tflops-fp32 350   # MFU on a GPU the table does not know
#   bash benchmarks/gpu_check.sh --cpu                                       # tiny sizes on the CPU, < 1 minute
#   PYTHON=/opt/venv/bin/python bash benchmarks/gpu_check.sh                 # another interpreter than .venv's
#
# Exit status: 0 all rows ran and all checks passed, 1 something failed (the table or a FAIL line says
# what), 2 bad arguments or no GPU without --cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "gpu_check.sh: no Python at '$PYTHON': run \`make setup\` first, or set PYTHON=/path/to/python" >&2
  exit 2
fi
# The driver's view of the GPU (name, memory, driver, clocks), before torch starts; not there on a CPU box.
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader >&2 || true
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
