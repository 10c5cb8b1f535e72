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

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -r requirements-dev.txt
	touch $@

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
.PHONY: data data-nq data-squad
## data: download and convert DATASET (nq|squad); NQ_TRAIN_SHARDS=0-4 (default, the guide's 1/10) or all
data: data-$(DATASET)

data-nq: $(STAMP)
	$(PY) scripts/download_nq.py --split train --shards $(NQ_TRAIN_SHARDS) --out $(DATA_DIR)/nq/raw --base-url $(NQ_BASE_URL) --workers $(WORKERS)
	$(PY) scripts/download_nq.py --split dev --shards $(NQ_DEV_SHARDS) --out $(DATA_DIR)/nq/raw --base-url $(NQ_BASE_URL) --workers $(WORKERS)
	$(MAKE) --no-print-directory $(DATA_DIR)/nq/nq_train.json $(DATA_DIR)/nq/nq_dev.json

# Second-level make: the shard list is read after the downloads, so conversion reruns only when a shard is newer.
$(DATA_DIR)/nq/nq_train.json: $(wildcard $(DATA_DIR)/nq/raw/train/nq-train-*.jsonl.gz)
	$(PY) scripts/nq_to_squad.py $^ --output $@ --workers $(WORKERS) --stats-json $@.stats.json

$(DATA_DIR)/nq/nq_dev.json: $(wildcard $(DATA_DIR)/nq/raw/dev/nq-dev-*.jsonl.gz)
	$(PY) scripts/nq_to_squad.py $^ --output $@ --workers $(WORKERS) --stats-json $@.stats.json

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

.PHONY: demo
## demo: the whole pipeline offline on CPU (for now: the demo data; training is added next)
demo: demo-data

# ---------------------------------------------------------------------------------------------
# Tests and benchmarks
# ---------------------------------------------------------------------------------------------
.PHONY: test bench
## test: the test suite (what CI runs); installs what it needs first
test: $(STAMP)
	$(PY) -m pytest -q

## bench: throughput and memory benchmarks; tables printed, JSON in benchmarks/results/
bench: $(STAMP)
	mkdir -p benchmarks/results
	for bench in benchmarks/bench_*.py; do echo "== $$bench"; $(PY) $$bench --out benchmarks/results; done

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
## logs: follow OUTPUT_DIR/train.log (tail -F: waits for the file, survives its rotation; Ctrl-C stops)
logs:
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

.PHONY: report
## report: report.png + report.html in RUN (default OUTPUT_DIR): loss, LR, eval scores, F1 against the null threshold
report: $(STAMP)
	$(PY) scripts/report.py "$(RUN)"

.PHONY: ask
## ask: make ask MODEL_DIR=... QUESTION="..." CONTEXT_FILE=doc.txt (or QUESTIONS_FILE=q.json): answers with the tuned null threshold
ask: $(STAMP)
	$(if $(QUESTIONS_FILE),$(PY) scripts/ask.py "$(MODEL_DIR)" --questions-file "$(QUESTIONS_FILE)",\
	  $(PY) scripts/ask.py "$(MODEL_DIR)" --question "$(QUESTION)" --context-file "$(CONTEXT_FILE)")
