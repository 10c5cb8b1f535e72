# Fine-tune extractive question-answering models on Google Natural Questions and SQuAD 2.0.
#
#   make demo                      # the whole pipeline offline on CPU, in a few minutes
#   make data                      # NQ: 1/10 of train + all of dev, converted to SQuAD 2.0 JSON
#   make train                     # the guide's hyperparameters, every visible GPU
#   make train EPOCHS=2 LR=5e-5 DETACH=1
#   make resume CKPT=checkpoint-1500
#   make eval
#
# Every variable below can be overridden on the command line: `make train MODEL=albert-base-v2`.

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# ---------------------------------------------------------------------------------------------
# Variables: each maps to exactly one flag. Defaults follow the guide.
# ---------------------------------------------------------------------------------------------
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATASET ?= nq
DATA_DIR ?= data
NQ_TRAIN_SHARDS ?= 0-4
NQ_DEV_SHARDS ?= all
NQ_BASE_URL ?= https://storage.googleapis.com/natural_questions/v1.0
SQUAD_BASE_URL ?= https://rajpurkar.github.io/SQuAD-explorer/dataset
WORKERS ?= 4

ifeq ($(DATASET),nq)
TRAIN_FILE ?= $(DATA_DIR)/nq/nq_train.json
PREDICT_FILE ?= $(DATA_DIR)/nq/nq_dev.json
else ifeq ($(DATASET),squad)
TRAIN_FILE ?= $(DATA_DIR)/squad/train-v2.0.json
PREDICT_FILE ?= $(DATA_DIR)/squad/dev-v2.0.json
else
$(error DATASET must be nq or squad, got '$(DATASET)')
endif

# ---------------------------------------------------------------------------------------------
.PHONY: help
## help: list the targets and the variables that change them (the default goal)
help:
	@echo "Targets:"
	@awk '/^## /{sub(/^## /,""); split($$0,a,": "); printf "  %-14s %s\n", a[1], substr($$0, length(a[1])+3)}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables (current value; override as VAR=value, e.g. make train EPOCHS=2 DETACH=1):"
	@awk '/^[A-Z_0-9]+ [?]=/{print $$1}' $(MAKEFILE_LIST) | sort -u | \
	  while read -r v; do printf "  %-18s %s\n" "$$v" "$$($(MAKE) -s --no-print-directory print-$$v)"; done

.PHONY: print-%
print-%:
	@echo '$($*)'

# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------
.PHONY: setup
## setup: create .venv from the pinned requirements (once; redone when they change)
setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -r requirements-dev.txt
	$(VENV)/bin/pip install --no-deps --no-build-isolation -e .
	touch $@

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
.PHONY: data data-nq data-squad
## data: download and convert DATASET (nq|squad); NQ_TRAIN_SHARDS=0-4 (default, the guide's 1/10) or all
data: data-$(DATASET)

data-nq: $(STAMP)
	$(PY) scripts/download_nq.py --split train --shards $(NQ_TRAIN_SHARDS) --out $(DATA_DIR)/nq/raw --base-url $(NQ_BASE_URL) --workers $(WORKERS) --list-file $(DATA_DIR)/nq/nq_train.inputs
	$(PY) scripts/download_nq.py --split dev --shards $(NQ_DEV_SHARDS) --out $(DATA_DIR)/nq/raw --base-url $(NQ_BASE_URL) --workers $(WORKERS) --list-file $(DATA_DIR)/nq/nq_dev.inputs
	$(MAKE) --no-print-directory $(DATA_DIR)/nq/nq_train.json $(DATA_DIR)/nq/nq_dev.json

# Second-level make: it reads the shard lists the downloads just wrote (nq_{train,dev}.inputs, rewritten only
# when NQ_*_SHARDS selects other shards), so a split is converted again only when its selection, one of its
# shards or the converter changed, and only the selected shards are converted (not every shard on disk).
nq_inputs = $(if $(wildcard $(DATA_DIR)/nq/nq_$(1).inputs),$(strip $(file < $(DATA_DIR)/nq/nq_$(1).inputs)))

$(DATA_DIR)/nq/nq_train.json: $(DATA_DIR)/nq/nq_train.inputs $(call nq_inputs,train) scripts/nq_to_squad.py
	$(PY) scripts/nq_to_squad.py $(filter %.jsonl.gz,$^) --output $@ --workers $(WORKERS) --stats-json $@.stats.json --fail-on-empty

# Dev keeps every annotator's distinct short answer (--all-answers): the SQuAD metric takes the best match over them.
$(DATA_DIR)/nq/nq_dev.json: $(DATA_DIR)/nq/nq_dev.inputs $(call nq_inputs,dev) scripts/nq_to_squad.py
	$(PY) scripts/nq_to_squad.py $(filter %.jsonl.gz,$^) --output $@ --workers $(WORKERS) --stats-json $@.stats.json --fail-on-empty --all-answers

$(DATA_DIR)/nq/nq_%.inputs:
	$(error $@ is missing: run `make data` (it downloads the selected shards and writes this list))

data-squad: $(STAMP)
	$(PY) scripts/download_nq.py --squad --out $(DATA_DIR)/squad --squad-base-url $(SQUAD_BASE_URL)

# Demo data: a generated NQ-format sample (full format), converted like the real shards.
DEMO_DIR ?= $(DATA_DIR)/demo
DEMO_TRAIN_EXAMPLES ?= 2000
DEMO_DEV_EXAMPLES ?= 300

.PHONY: demo-data
## demo-data: generate the NQ-format demo sample and convert it to $(DEMO_DIR)/{train,dev}.json (offline, seconds)
demo-data: $(DEMO_DIR)/train.json $(DEMO_DIR)/dev.json

# Kept after conversion (make would delete them as intermediates): raw data is treated as immutable.
.PRECIOUS: $(DEMO_DIR)/raw/nq-%-sample.jsonl.gz
$(DEMO_DIR)/raw/nq-%-sample.jsonl.gz: scripts/make_nq_sample.py | $(STAMP)
	$(PY) scripts/make_nq_sample.py --out $@ --split $* --num-examples $(if $(filter train,$*),$(DEMO_TRAIN_EXAMPLES),$(DEMO_DEV_EXAMPLES))

$(DEMO_DIR)/%.json: $(DEMO_DIR)/raw/nq-%-sample.jsonl.gz scripts/nq_to_squad.py
	$(PY) scripts/nq_to_squad.py $< --output $@ --workers 1 --stats-json $@.stats.json

# ---------------------------------------------------------------------------------------------
# Training (make train / resume / eval / demo)
# ---------------------------------------------------------------------------------------------
# The guide's hyperparameters; e.g. make train MODEL=albert-base-v2 EPOCHS=2 BATCH=4 GRAD_ACCUM=2 DETACH=1
MODEL ?= albert-xlarge-v2
MODEL_TYPE ?= albert
EPOCHS ?= 7
LR ?= 3e-5
MAX_SEQ_LENGTH ?= 384
DOC_STRIDE ?= 128
BATCH ?= 1
EVAL_BATCH ?= 8
GRAD_ACCUM ?= 1
# Checkpoint (and evaluate) every SAVE_STEPS optimizer steps; keep SAVE_TOTAL_LIMIT (about 0.7 GB each for albert-xlarge), the best never deleted.
SAVE_STEPS ?= 500
LOGGING_STEPS ?= 500
SAVE_TOTAL_LIMIT ?= 3
THREADS ?= $(shell nproc)
# GPUs per node (all visible ones by default; 0 = CPU with plain python). Several nodes: NNODES, NODE_RANK, MASTER_ADDR on each.
NGPUS ?= $(shell if command -v nvidia-smi >/dev/null; then nvidia-smi -L | grep -c '^GPU' || true; else echo 0; fi)
NNODES ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?= 127.0.0.1
MASTER_PORT ?= 29500
# fp16 | bf16 | fp32 (fp16 with a GPU, fp32 on the CPU)
PRECISION ?= $(if $(filter 0,$(NGPUS)),fp32,fp16)
OUTPUT_DIR ?= outputs/$(DATASET)-$(notdir $(MODEL))
WANDB_PROJECT ?=
REPORT_TO ?= tensorboard$(if $(WANDB_PROJECT), wandb)
# Mirror every complete checkpoint and the final model to S3 as they are written (spot instances), e.g.
# SYNC=s3://my-bucket/runs/nq-albert; `make resume` on a fresh machine then pulls the newest complete one.
SYNC ?=
# Extra run_squad.py flags, e.g. EXTRA="--max_train_samples 1000 --early_stopping_patience 3"
EXTRA ?=
# DETACH=1: run in a detached screen (or tmux) session named NAME; output also in OUTPUT_DIR/console.log
DETACH ?= 0
CKPT ?=

ifeq ($(filter $(PRECISION),fp16 bf16 fp32),)
$(error PRECISION must be fp16, bf16 or fp32, got '$(PRECISION)')
endif
ifneq ($(shell echo '$(NGPUS)' | grep -Ex '[0-9]+'),$(NGPUS))
$(error NGPUS must be a number of GPUs per node (0 = CPU), got '$(NGPUS)')
endif
PRECISION_FLAG := $(if $(filter fp16,$(PRECISION)),--fp16)$(if $(filter bf16,$(PRECISION)),--bf16)
# torchrun on GPUs (one process each, every node); plain python on the CPU.
LAUNCH = $(if $(filter 0,$(NGPUS)),$(PY),$(VENV)/bin/torchrun --nnodes $(NNODES) --node_rank $(NODE_RANK) \
  --nproc_per_node $(NGPUS) --master_addr $(MASTER_ADDR) --master_port $(MASTER_PORT))
DETACHED = $(if $(filter 1,$(DETACH)),bash scripts/detach.sh $(NAME) $(OUTPUT_DIR)/console.log --)
TRAIN_ARGS = --model_type $(MODEL_TYPE) --model_name_or_path $(MODEL) --do_train --do_eval --evaluate_during_training \
  --train_file $(TRAIN_FILE) --predict_file $(PREDICT_FILE) --learning_rate $(LR) --num_train_epochs $(EPOCHS) \
  --max_seq_length $(MAX_SEQ_LENGTH) --doc_stride $(DOC_STRIDE) --output_dir $(OUTPUT_DIR) \
  --per_gpu_eval_batch_size $(EVAL_BATCH) --per_gpu_train_batch_size $(BATCH) --gradient_accumulation_steps $(GRAD_ACCUM) \
  --threads $(THREADS) --version_2_with_negative --save_steps $(SAVE_STEPS) --logging_steps $(LOGGING_STEPS) \
  --save_total_limit $(SAVE_TOTAL_LIMIT) --report_to $(REPORT_TO) $(if $(WANDB_PROJECT),--wandb_project $(WANDB_PROJECT)) \
  $(if $(SYNC),--sync_checkpoints $(SYNC)) $(PRECISION_FLAG) $(EXTRA)

# `make resume EPOCHS=9` / `make eval MAX_SEQ_LENGTH=256`: only variables typed on the command line (or set in
# the environment) become flags; every other setting comes from the run's own args.json, not these defaults.
given = $(if $(filter command line environment,$(origin $(1))),$(2) $($(1)))
RECORD_OVERRIDES = $(call given,MODEL,--model_name_or_path) $(call given,TRAIN_FILE,--train_file) \
  $(call given,PREDICT_FILE,--predict_file) $(call given,LR,--learning_rate) $(call given,EPOCHS,--num_train_epochs) \
  $(call given,MAX_SEQ_LENGTH,--max_seq_length) $(call given,DOC_STRIDE,--doc_stride) $(call given,BATCH,--per_gpu_train_batch_size) \
  $(call given,EVAL_BATCH,--per_gpu_eval_batch_size) $(call given,GRAD_ACCUM,--gradient_accumulation_steps) \
  $(call given,THREADS,--threads) $(call given,SAVE_STEPS,--save_steps) $(call given,LOGGING_STEPS,--logging_steps) \
  $(call given,SAVE_TOTAL_LIMIT,--save_total_limit) $(call given,REPORT_TO,--report_to) \
  $(call given,WANDB_PROJECT,--wandb_project) $(call given,SYNC,--sync_checkpoints) \
  $(call given,PRECISION,--precision) $(EXTRA)

# run_squad.py's error messages then name these variables (TRAIN_FILE, EPOCHS, CKPT) instead of its flags.
train resume eval demo: export QA_VIA_MAKE = 1

.PHONY: train
## train: fine-tune MODEL on TRAIN_FILE with the guide's hyperparameters (EPOCHS, LR, BATCH, GRAD_ACCUM, NGPUS, PRECISION, DETACH=1, EXTRA=...)
train: $(STAMP)
	@echo "train: $(MODEL) on $(NGPUS) GPU(s) x $(NNODES) node(s), $(PRECISION), output in $(OUTPUT_DIR)"
	$(DETACHED) $(LAUNCH) run_squad.py $(TRAIN_ARGS)

.PHONY: resume
## resume: continue exactly from CKPT=checkpoint-1500 (or a path; default: the newest complete checkpoint of OUTPUT_DIR)
resume: $(STAMP)
	$(DETACHED) $(LAUNCH) run_squad.py --output_dir $(OUTPUT_DIR) --do_train --resume_from_checkpoint $(or $(CKPT),auto) \
	  $(RECORD_OVERRIDES)

.PHONY: eval
## eval: evaluate CKPT (checkpoint-N, a path, best, final; default: the best, else the final model) of OUTPUT_DIR on PREDICT_FILE (default: the run's) into OUTPUT_DIR/eval/<data>-<step>/
eval: $(STAMP)
	$(LAUNCH) run_squad.py --model_name_or_path $(OUTPUT_DIR) --output_dir $(OUTPUT_DIR) --do_eval \
	  $(if $(CKPT),--eval_checkpoint $(CKPT)) --version_2_with_negative \
	  $(call given,PREDICT_FILE,--predict_file) --per_gpu_eval_batch_size $(EVAL_BATCH) \
	  $(call given,MAX_SEQ_LENGTH,--max_seq_length) $(call given,DOC_STRIDE,--doc_stride) --threads $(THREADS) \
	  --report_to $(REPORT_TO) $(if $(WANDB_PROJECT),--wandb_project $(WANDB_PROJECT)) $(PRECISION_FLAG) $(EXTRA)

# Whole-document NQ (make eval-nq): the model must find the long answer among a page's candidates, scored by
# the official NQ metrics. The dev shards are where `make data` puts them (download_nq.py --out $(DATA_DIR)/nq/raw).
NQ_DEV_GLOB ?= $(DATA_DIR)/nq/raw/dev/nq-dev-*.jsonl.gz
# top: the top-level long-answer candidates (20 a page on real dev records); all: also the table rows and list items in them (86)
NQ_CANDIDATES ?= top
# Windows per forward pass (384 tokens each)
NQ_BATCH ?= 64
# Only the first N dev records (0 = all 7,830)
NQ_MAX_EXAMPLES ?= 0
ifeq ($(filter $(NQ_CANDIDATES),top all),)
$(error NQ_CANDIDATES must be top or all, got '$(NQ_CANDIDATES)')
endif

.PHONY: eval-nq
## eval-nq: whole-document NQ predictions + official NQ metrics of CKPT (checkpoint-N, best, a path; default the final model) of OUTPUT_DIR on NQ_DEV_GLOB, into OUTPUT_DIR/eval/nq-<step>/
eval-nq: $(STAMP)
	$(LAUNCH) scripts/predict_nq.py --model_dir $(OUTPUT_DIR) $(if $(CKPT),--checkpoint $(CKPT)) --input '$(NQ_DEV_GLOB)' \
	  --candidates $(NQ_CANDIDATES) --batch_size $(NQ_BATCH) --max_examples $(NQ_MAX_EXAMPLES) --threads $(THREADS) \
	  --workers $(WORKERS) --eval $(PRECISION_FLAG)

# The demo: a tiny ALBERT (2 layers, hidden 64, ~120k parameters) with a WordPiece tokenizer trained on
# the sample, learning rate high enough for a model from scratch; about 20 s of training on one core
# (one torch thread: on 2 shared cores, two threads are ~10x slower for a model this small).
DEMO_OUT ?= outputs/demo
DEMO_EPOCHS ?= 10
DEMO_LR ?= 2e-3

.PHONY: demo
## demo: the whole pipeline offline on CPU: generated NQ sample -> SQuAD JSON -> tiny model -> train -> eval -> scores vs baseline
demo: demo-data
	$(PY) scripts/make_tiny_model.py --train-file $(DEMO_DIR)/train.json --out $(DEMO_OUT)/tiny-albert
	rm -rf $(DEMO_OUT)/run
	OMP_NUM_THREADS=1 $(PY) run_squad.py --model_type albert --model_name_or_path $(DEMO_OUT)/tiny-albert \
	  --do_train --do_eval --evaluate_during_training --version_2_with_negative \
	  --train_file $(DEMO_DIR)/train.json --predict_file $(DEMO_DIR)/dev.json --output_dir $(DEMO_OUT)/run \
	  --learning_rate $(DEMO_LR) --warmup_steps 50 --num_train_epochs $(DEMO_EPOCHS) --max_seq_length 128 --doc_stride 64 \
	  --per_gpu_train_batch_size 16 --per_gpu_eval_batch_size 64 --save_steps 200 --logging_steps 100 \
	  --save_total_limit 2 --threads 1 --report_to tensorboard
	$(PY) scripts/report.py $(DEMO_OUT)/run
	# Whole documents (300 pages x 4-8 candidates, about 2 s): the model must find the paragraph it was given above.
	OMP_NUM_THREADS=1 $(PY) scripts/predict_nq.py --model_dir $(DEMO_OUT)/run --input $(DEMO_DIR)/raw/nq-dev-sample.jsonl.gz --eval
	$(PY) scripts/demo_summary.py $(DEMO_OUT)/run $(DEMO_DIR)/dev.json --nq-results $(DEMO_OUT)/run/eval/nq-*/nq_eval_results_*.json

# ---------------------------------------------------------------------------------------------
# Tests and benchmarks
# ---------------------------------------------------------------------------------------------
.PHONY: test bench bench-quality
## test: the test suite (what CI runs); installs what it needs first
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The benchmark-only packages (a real pretrained encoder for bench_train.py), installed once on first `make bench`.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(VENV)/bin/pip install -r requirements-bench.txt
	touch $@

# The speed benchmarks: every benchmarks/bench_*.py but the quality comparison (about 30 minutes on 2 free CPU cores).
SPEED_BENCHES := $(filter-out benchmarks/bench_grouping_quality.py,$(sort $(wildcard benchmarks/bench_*.py)))

## bench: throughput and memory benchmarks; tables printed, JSON in benchmarks/results/ (GPU: bash benchmarks/gpu_check.sh)
bench: $(STAMP) $(BENCH_STAMP)
	mkdir -p benchmarks/results
	for bench in $(SPEED_BENCHES); do echo "== $$bench"; $(PY) $$bench --out benchmarks/results; done

## bench-quality: does --group_by_length cost quality? grouped vs random order, 3 seeds, real encoder (~30 min on CPU)
bench-quality: $(STAMP) $(BENCH_STAMP)
	mkdir -p benchmarks/results
	$(PY) benchmarks/bench_grouping_quality.py --out benchmarks/results

# ---------------------------------------------------------------------------------------------
# Operations (a run on a cloud GPU box): attach, logs, status, clean-cache, swap, upload
# ---------------------------------------------------------------------------------------------
NAME ?= qa-train
DIRS ?= $(DATA_DIR) outputs
YES ?= 0
DRY_RUN ?= 0
SIZE ?=
SWAPFILE ?= /swapfile
PERSIST ?= 0
BUCKET ?=
PUBLIC ?= 0
S3_ENDPOINT ?=

.PHONY: attach
## attach: reattach to the detached training session NAME (screen -r / tmux attach -t; default qa-train)
attach:
	if command -v screen >/dev/null && screen -ls | grep -q "[0-9]\.$(NAME)[[:space:]]"; then exec screen -r "$(NAME)"; \
	elif command -v tmux >/dev/null && tmux has-session -t "=$(NAME)"; then exec tmux attach -t "=$(NAME)"; \
	else echo "no screen or tmux session named '$(NAME)' runs; the log is in $(OUTPUT_DIR)/train.log (make logs)"; exit 1; fi

.PHONY: logs
## logs: follow OUTPUT_DIR/train.log (tail -F: waits for the file, survives its rotation; Ctrl-C stops); before it exists, a detached run's console.log
logs:
	if [ ! -e "$(OUTPUT_DIR)/train.log" ] && [ -e "$(OUTPUT_DIR)/console.log" ]; then \
	  echo "no train.log in $(OUTPUT_DIR) yet: following console.log, the detached session's whole output"; \
	  exec tail -n 50 -F "$(OUTPUT_DIR)/console.log"; fi
	tail -n 50 -F "$(OUTPUT_DIR)/train.log"

.PHONY: status
## status: step, ETA, loss, last eval, newest complete checkpoint, GPU memory, free disk of OUTPUT_DIR
status: $(STAMP)
	$(PY) scripts/status.py "$(OUTPUT_DIR)"

.PHONY: clean-cache
## clean-cache: list cached features under DIRS (ours and legacy cached_*) and delete them; YES=1 skips the question, DRY_RUN=1 lists only
clean-cache:
	bash scripts/clean_cache.sh $(if $(filter 1,$(YES)),--yes) $(if $(filter 1,$(DRY_RUN)),--dry-run) $(DIRS)

.PHONY: swap
## swap: add a swap file, e.g. make swap SIZE=32G [SWAPFILE=/swapfile] [PERSIST=1] [DRY_RUN=1] (uses sudo when not root)
swap:
	test -n "$(SIZE)" || { echo "SIZE is required, e.g. make swap SIZE=32G"; exit 2; }
	$$( [ "$$(id -u)" -eq 0 ] || [ "$(DRY_RUN)" = 1 ] || echo sudo ) bash scripts/add_swap.sh "$(SIZE)" --file "$(SWAPFILE)" \
	  $(if $(filter 1,$(PERSIST)),--persist) $(if $(filter 1,$(DRY_RUN)),--dry-run)

.PHONY: upload
## upload: copy the final model (or CKPT=checkpoint-N) of OUTPUT_DIR to BUCKET=s3://bucket/prefix; private unless PUBLIC=1; S3_ENDPOINT=http://... for S3-compatible stores
upload: $(STAMP)
	test -n "$(BUCKET)" || { echo "BUCKET is required, e.g. make upload BUCKET=s3://my-bucket/models/albert-nq"; exit 2; }
	AWS="$(VENV)/bin/aws" bash scripts/upload.sh "$(OUTPUT_DIR)" "$(BUCKET)" $(if $(CKPT),--checkpoint "$(CKPT)") \
	  $(if $(filter 1,$(PUBLIC)),--public) $(if $(S3_ENDPOINT),--endpoint-url "$(S3_ENDPOINT)") $(if $(filter 1,$(DRY_RUN)),--dry-run)

# ---------------------------------------------------------------------------------------------
# Using what a run produced: report, ask
# ---------------------------------------------------------------------------------------------
RUN ?= $(OUTPUT_DIR)
MODEL_DIR ?= $(OUTPUT_DIR)
QUESTION ?=
CONTEXT_FILE ?=
QUESTIONS_FILE ?=
# make ask QUESTIONS_FILE=q.jsonl OUT=answers.json: where the {id: answer} predictions go (default: printed)
OUT ?=

.PHONY: report
## report: report.png + report.html in RUN (default OUTPUT_DIR): loss, LR, eval scores, F1 against the null threshold
report: $(STAMP)
	$(PY) scripts/report.py "$(RUN)"

.PHONY: ask
## ask: make ask MODEL_DIR=... QUESTION="..." CONTEXT_FILE=doc.txt (or QUESTIONS_FILE=q.jsonl [OUT=a.json]): answers with the tuned null threshold
ask: $(STAMP)
	$(if $(QUESTIONS_FILE),$(PY) scripts/ask.py "$(MODEL_DIR)" --questions-file "$(QUESTIONS_FILE)" $(if $(OUT),--output "$(OUT)"),\
	  $(PY) scripts/ask.py "$(MODEL_DIR)" --question "$(QUESTION)" --context-file "$(CONTEXT_FILE)")
