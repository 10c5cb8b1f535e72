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
# `make help` lists the targets and every variable with what it does and its current value.

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
THIS_MAKEFILE := $(lastword $(MAKEFILE_LIST))

# ---------------------------------------------------------------------------------------------
# Values are data, never shell code
# ---------------------------------------------------------------------------------------------
# Whatever a variable holds (spaces, quotes, backticks, $(...), a leading dash) reaches its program
# as ONE argument, unchanged: make ask QUESTION='what does `ls` print?', OUTPUT_DIR='runs/a b'.
#  1. A value typed on the command line (or, for the variables below, set in the environment) is
#     taken literally: make does not expand `$(shell ...)`, `$(...)` or `$$` inside it.
#  2. Recipes write every value into a shell command through $(call q,VALUE): as it is when it holds
#     only characters the shell leaves alone, else in single quotes (a ' inside written '\'', blanks
#     escaped outside the quotes).
#     The lists EXTRA (flags), DIRS and REPORT_TO go through $(call qwords,LIST): split on spaces,
#     each word one argument, none of them run.
#  3. A value goes to a python flag as --flag=VALUE (a value starting with '-' stays the flag's
#     value) and to a positional argument after `--`.
#  4. What make itself decides on (DETACH, YES, NGPUS, paths that name make targets) is validated.
# New targets: use $(call q,$(VAR)) for every value in a recipe, never "$(VAR)" or '$(VAR)'.
empty :=
space := $(empty) $(empty)
comma := ,
tab := $(shell printf '\t')
define newline


endef
DIGITS := 0 1 2 3 4 5 6 7 8 9
LETTERS := a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U V W X Y Z
# Characters a shell word may hold unquoted: nothing in them is expanded, globbed or split.
SHELL_SAFE := $(DIGITS) $(LETTERS) _ - . / : = @ % + $(comma)
# Characters of a path that names a make target or prerequisite (no spaces, %, :, =, $).
PATH_SAFE := $(DIGITS) $(LETTERS) _ - . / + @
# $(call _drop,TEXT,CHARS): TEXT without the characters CHARS (a list of single characters).
_drop = $(if $(2),$(call _drop,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,$(words $(2)),$(2))),$(1))
_visible = $(subst $(space),x,$(subst $(tab),x,$(subst $(newline),x,$(1))))
# $(call made_of,TEXT,CHARS): non-empty when TEXT is not empty and holds only CHARS (a blank never counts).
made_of = $(if $(call _visible,$(1)),$(if $(call _visible,$(call _drop,$(1),$(2))),,yes))
# Blanks are written outside the quotes ('a'\ 'b', $$'\t', $$'\n'): a quoted value holds no blank, so $(strip)
# and $(foreach) around a command never change it.
q = $(if $(call made_of,$(1),$(SHELL_SAFE)),$(1),'$(call _quote_blanks,$(subst ','\'',$(1)))')
_quote_blanks = $(subst $(newline),'$$'\n'',$(subst $(tab),'$$'\t'',$(subst $(space),'\ ',$(1))))
qwords = $(foreach w,$(1),$(call q,$(w)))

# The variables a user sets: every `NAME ?= default` below (help lists them with their #: line).
USER_VARS := $(shell awk '/^[A-Z][A-Z_0-9]* [?]=/ {print $$1}' $(call q,$(THIS_MAKEFILE)))
# Given on the command line or in the environment (before (1) changes their origin): `make resume
# EPOCHS=9` passes only these as flags; the rest comes from the run's record.
GIVEN_VARS := $(foreach v,$(.VARIABLES),$(if $(filter command line environment,$(origin $(v))),$(v)))
LITERAL_VARS := $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v),$(if \
  $(filter environment,$(origin $(v))),$(filter $(v),$(USER_VARS)))))
$(foreach v,$(LITERAL_VARS),$(eval override $(v) := $$(value $(v))))

TRUE_WORDS := 1 y yes Yes YES true True TRUE on On ON
FALSE_WORDS := 0 n no No NO false False FALSE off Off OFF
# $(call is_true,NAME): non-empty when the switch NAME (checked by check_bool) is on.
is_true = $(filter $(TRUE_WORDS),$($(1)))
check_bool = $(if $(or $(word 2,$($(1))),$(filter-out $(TRUE_WORDS) $(FALSE_WORDS),$($(1)))),$(error \
  $(1) must be 1/yes/true/on or 0/no/false/off, got '$($(1))'))
check_number = $(if $(call made_of,$($(1)),$(DIGITS)),,$(error $(1) must be a whole number, got '$($(1))'))
check_choice = $(if $(filter-out 1,$(words $($(1))))$(filter-out $(2),$($(1))),$(error \
  $(1) must be one of: $(2); got '$($(1))'))
check_path = $(if $(call made_of,$($(1)),$(PATH_SAFE)),,$(error \
  $(1) must be a path of letters$(comma) digits and _-./+@ (make uses it as a file name)$(comma) got '$($(1))'))
# A folder whose files a recipe deletes (rm -rf): not one made only of / and . (/, ., .., /..), which names the
# root, the repository or a folder above it rather than one of its own.
check_own_dir = $(if $(call _visible,$(call _drop,$($(1)),/ .)),,$(error \
  $(1) must name a folder of its own (make deletes files in it)$(comma) e.g. outputs/demo$(comma) got '$($(1))'))

# ---------------------------------------------------------------------------------------------
# Variables: each maps to exactly one flag. Defaults follow the guide.
# ---------------------------------------------------------------------------------------------
#: the python that creates .venv (make setup)
PYTHON ?= python3
#: the virtual environment every target runs in
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

#: nq or squad: which data `make data` fetches and train uses by default
DATASET ?= nq
#: where the data goes (DATA_DIR/nq, DATA_DIR/squad, DATA_DIR/demo)
DATA_DIR ?= data
#: NQ train shards to download: 0-4 (the guide's 1/10), 0,3,7-9 or all
NQ_TRAIN_SHARDS ?= 0-4
#: NQ dev shards to download (all = 0-4)
NQ_DEV_SHARDS ?= all
#: where NQ shards are downloaded from (a mirror, or a test server)
NQ_BASE_URL ?= https://storage.googleapis.com/natural_questions/v1.0
#: the hub's NQ parquet instead of the download: a folder or s3:// prefix of google-research-datasets/natural_questions (its default/train-*.parquet, dev/validation-*.parquet; needs pyarrow)
NQ_PARQUET ?=
#: where SQuAD 2.0 is downloaded from
SQUAD_BASE_URL ?= https://rajpurkar.github.io/SQuAD-explorer/dataset
#: parallel downloads / converter and predict_nq processes
WORKERS ?= 4
#: NQ training questions: guide (the gold long answer as the context) or candidates (one per top-level candidate)
NQ_CONTEXT ?= guide
$(if $(filter-out 1,$(words $(filter guide candidates,$(NQ_CONTEXT)))),$(error NQ_CONTEXT must be guide or candidates, got '$(NQ_CONTEXT)'))
# The NQ training file of NQ_CONTEXT (candidate mode has its own, so switching converts again).
NQ_TRAIN_JSON := $(DATA_DIR)/nq/nq_train$(if $(filter candidates,$(NQ_CONTEXT)),.candidates).json

ifeq ($(DATASET),nq)
#: the training data (default: DATASET's train file)
TRAIN_FILE ?= $(NQ_TRAIN_JSON)
#: the evaluation data (default: DATASET's dev file)
PREDICT_FILE ?= $(DATA_DIR)/nq/nq_dev.json
else ifeq ($(DATASET),squad)
TRAIN_FILE ?= $(DATA_DIR)/squad/train-v2.0.json
PREDICT_FILE ?= $(DATA_DIR)/squad/dev-v2.0.json
else
$(error DATASET must be nq or squad, got '$(DATASET)')
endif
$(call check_path,VENV)
$(call check_path,PY)
$(call check_path,PYTHON)
$(call check_path,DATA_DIR)
$(call check_number,WORKERS)

# ---------------------------------------------------------------------------------------------
.PHONY: help
## help: list the targets and the variables that change them (the default goal)
help:
	@echo "Targets:"
	@awk '/^## /{sub(/^## /,""); split($$0,a,": "); printf "  %-14s %s\n", a[1], substr($$0, length(a[1])+3)}' $(call q,$(THIS_MAKEFILE))
	@echo
	@echo "Variables (current value, what it does); override as VAR=value, e.g. make train EPOCHS=2 DETACH=1."
	@echo "A value is passed to its program as one argument, whatever it holds; switches take 1/yes/true/on or 0/no/false/off."
	@env $(foreach v,$(USER_VARS),$(call q,HELP_VALUE_$(v)=$($(v)))) awk '/^#: / {what = substr($$0, 4); next} \
	  /^[A-Z][A-Z_0-9]* [?]=/ && !seen[$$1]++ {printf "  %-34s %s\n", $$1 "=" ENVIRON["HELP_VALUE_" $$1], what; what = ""; next} \
	  {what = ""}' $(call q,$(THIS_MAKEFILE))

.PHONY: print-%
print-%:
	@printf '%s\n' $(call q,$($*))

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
ifneq ($(strip $(NQ_PARQUET)),)
	$(PY) -m qa.nq.parquet --source=$(call q,$(NQ_PARQUET)) --split train --list-file $(DATA_DIR)/nq/nq_train.inputs
	$(PY) -m qa.nq.parquet --source=$(call q,$(NQ_PARQUET)) --split dev --list-file $(DATA_DIR)/nq/nq_dev.inputs
else
	$(PY) scripts/download_nq.py --split train --shards=$(call q,$(NQ_TRAIN_SHARDS)) --out $(DATA_DIR)/nq/raw --base-url=$(call q,$(NQ_BASE_URL)) --workers $(WORKERS) --list-file $(DATA_DIR)/nq/nq_train.inputs
	$(PY) scripts/download_nq.py --split dev --shards=$(call q,$(NQ_DEV_SHARDS)) --out $(DATA_DIR)/nq/raw --base-url=$(call q,$(NQ_BASE_URL)) --workers $(WORKERS) --list-file $(DATA_DIR)/nq/nq_dev.inputs
endif
	$(MAKE) --no-print-directory $(NQ_TRAIN_JSON) $(DATA_DIR)/nq/nq_dev.json

# Second-level make: it reads the shard lists the downloads just wrote (nq_{train,dev}.inputs, rewritten only
# when NQ_*_SHARDS selects other shards), so a split is converted again only when its selection, one of its
# shards or the converter changed, and only the selected shards are converted (not every shard on disk).
nq_inputs = $(if $(wildcard $(DATA_DIR)/nq/nq_$(1).inputs),$(strip $(file < $(DATA_DIR)/nq/nq_$(1).inputs)))

# The converter: its command line and the qa/nq modules it runs (a change to either converts again).
NQ_CONVERTER := scripts/nq_to_squad.py qa/nq/convert.py qa/nq/document.py qa/nq/reader.py qa/nq/annotation.py qa/nq/parquet.py

$(DATA_DIR)/nq/nq_train.json: $(DATA_DIR)/nq/nq_train.inputs $(call nq_inputs,train) $(NQ_CONVERTER)
	$(PY) scripts/nq_to_squad.py $(call qwords,$(filter %.jsonl.gz %.parquet,$^)) --output $@ --workers $(WORKERS) --stats-json $@.stats.json --fail-on-empty

# NQ_CONTEXT=candidates: one question per top-level candidate, 30 % of the negatives (nq_to_squad.py --help).
$(DATA_DIR)/nq/nq_train.candidates.json: $(DATA_DIR)/nq/nq_train.inputs $(call nq_inputs,train) $(NQ_CONVERTER)
	$(PY) scripts/nq_to_squad.py $(call qwords,$(filter %.jsonl.gz %.parquet,$^)) --output $@ --workers $(WORKERS) --stats-json $@.stats.json --fail-on-empty --context candidates

# Dev keeps every annotator's distinct short answer (--all-answers): the SQuAD metric takes the best match over them.
$(DATA_DIR)/nq/nq_dev.json: $(DATA_DIR)/nq/nq_dev.inputs $(call nq_inputs,dev) $(NQ_CONVERTER)
	$(PY) scripts/nq_to_squad.py $(call qwords,$(filter %.jsonl.gz %.parquet,$^)) --output $@ --workers $(WORKERS) --stats-json $@.stats.json --fail-on-empty --all-answers

$(DATA_DIR)/nq/nq_%.inputs:
	$(error $@ is missing: run `make data` (it downloads the selected shards and writes this list))

data-squad: $(STAMP)
	$(PY) scripts/download_nq.py --squad --out $(DATA_DIR)/squad --squad-base-url=$(call q,$(SQUAD_BASE_URL))

# Demo data: a generated NQ-format sample (full format), converted like the real shards.
#: where the demo's generated data goes
DEMO_DIR ?= $(DATA_DIR)/demo
#: the demo's generated training pages
DEMO_TRAIN_EXAMPLES ?= 2000
#: the demo's generated dev pages
DEMO_DEV_EXAMPLES ?= 300
$(call check_path,DEMO_DIR)
$(call check_number,DEMO_TRAIN_EXAMPLES)
$(call check_number,DEMO_DEV_EXAMPLES)

.PHONY: demo-data
## demo-data: generate the NQ-format demo sample and convert it to DEMO_DIR/train.json, dev.json and train.candidates.json (offline, seconds)
demo-data: $(DEMO_DIR)/train.json $(DEMO_DIR)/dev.json $(DEMO_DIR)/train.candidates.json

# Kept after conversion (make would delete them as intermediates): raw data is treated as immutable.
.PRECIOUS: $(DEMO_DIR)/raw/nq-%-sample.jsonl.gz
$(DEMO_DIR)/raw/nq-%-sample.jsonl.gz: scripts/make_nq_sample.py qa/nq/sample.py | $(STAMP)
	$(PY) scripts/make_nq_sample.py --out $@ --split $* --num-examples $(if $(filter train,$*),$(DEMO_TRAIN_EXAMPLES),$(DEMO_DEV_EXAMPLES))

$(DEMO_DIR)/%.json: $(DEMO_DIR)/raw/nq-%-sample.jsonl.gz $(NQ_CONVERTER)
	$(PY) scripts/nq_to_squad.py $< --output $@ --workers 1 --stats-json $@.stats.json

# The same training pages in candidate mode (one question per candidate, 30 % of the negatives; a long answer
# without a short one is impossible, as in the guide): make demo's second model trains on it.
$(DEMO_DIR)/train.candidates.json: $(DEMO_DIR)/raw/nq-train-sample.jsonl.gz $(NQ_CONVERTER)
	$(PY) scripts/nq_to_squad.py $< --output $@ --workers 1 --stats-json $@.stats.json --context candidates --keep-negatives 0.3 --long-answers impossible

# ---------------------------------------------------------------------------------------------
# Training (make train / resume / eval / demo)
# ---------------------------------------------------------------------------------------------
# The guide's hyperparameters; e.g. make train MODEL=albert-base-v2 EPOCHS=2 BATCH=4 GRAD_ACCUM=2 DETACH=1
#: the model to fine-tune: a hub id or a local folder
MODEL ?= albert-xlarge-v2
#: informative only (the architecture comes from MODEL's config)
MODEL_TYPE ?= albert
#: passes over TRAIN_FILE
EPOCHS ?= 7
#: peak learning rate (linear warmup and decay)
LR ?= 3e-5
#: tokens per window (question + context)
MAX_SEQ_LENGTH ?= 384
#: step between the starts of consecutive windows of a long context
DOC_STRIDE ?= 128
#: training examples per GPU (or CPU) per step
BATCH ?= 1
#: evaluation windows per GPU per forward pass
EVAL_BATCH ?= 8
#: steps whose gradients are summed before one optimizer step
GRAD_ACCUM ?= 1
# Checkpoint (and evaluate) every SAVE_STEPS optimizer steps; keep SAVE_TOTAL_LIMIT (about 0.7 GB each for albert-xlarge), the best never deleted.
#: checkpoint and evaluate every N optimizer steps
SAVE_STEPS ?= 500
#: log loss and learning rate every N optimizer steps
LOGGING_STEPS ?= 500
#: checkpoints kept (about 0.7 GB each for albert-xlarge; the best is never deleted)
SAVE_TOTAL_LIMIT ?= 3
#: CPU threads for feature building (and torch on the CPU)
THREADS ?= $(shell nproc)
# GPUs per node (all visible ones by default; 0 = CPU with plain python). Several nodes: NNODES, NODE_RANK, MASTER_ADDR on each.
#: GPUs per node (default: all visible; 0 = CPU with plain python)
NGPUS ?= $(shell if command -v nvidia-smi >/dev/null; then nvidia-smi -L | grep -c '^GPU' || true; else echo 0; fi)
#: nodes taking part (set NODE_RANK and MASTER_ADDR on each)
NNODES ?= 1
#: this node's rank, 0 .. NNODES-1
NODE_RANK ?= 0
#: address of the rank-0 node
MASTER_ADDR ?= 127.0.0.1
#: port of the rank-0 node
MASTER_PORT ?= 29500
#: fp16, bf16 or fp32 (default: fp16 with a GPU, fp32 on the CPU)
PRECISION ?= $(if $(filter 0,$(NGPUS)),fp32,fp16)
#: the run's folder: checkpoints, logs, evaluations, final model
OUTPUT_DIR ?= outputs/$(DATASET)-$(notdir $(MODEL))
#: a wandb project: metrics also go to wandb
WANDB_PROJECT ?=
#: where metrics go: tensorboard and/or wandb (a list)
REPORT_TO ?= tensorboard$(if $(WANDB_PROJECT), wandb)
# Mirror every complete checkpoint and the final model to S3 as they are written (spot instances), e.g.
# SYNC=s3://my-bucket/runs/nq-albert; `make resume` on a fresh machine then pulls the newest complete one.
#: s3://bucket/prefix to mirror every checkpoint and the final model to as they are written
SYNC ?=
# Extra run_squad.py flags, e.g. EXTRA="--max_train_samples 1000 --early_stopping_patience 3"
#: more run_squad.py flags, split on spaces: EXTRA="--max_train_samples 1000 --overwrite_output_dir"
EXTRA ?=
# DETACH=1: run in a detached screen (or tmux) session named NAME; output also in OUTPUT_DIR/console.log
#: yes: train/resume in a detached screen (or tmux) session NAME; output also in OUTPUT_DIR/console.log
DETACH ?= 0
#: which checkpoint: checkpoint-N, a path, best or final (resume: default the newest complete one)
CKPT ?=
#: yes: activation checkpointing (--gradient_checkpointing): less activation memory, a larger BATCH, slower steps (1.24x on CPU)
GRAD_CKPT ?= 0

$(call check_choice,PRECISION,fp16 bf16 fp32)
$(call check_number,NGPUS)
$(call check_number,NNODES)
$(call check_number,NODE_RANK)
$(call check_number,MASTER_PORT)
$(call check_bool,DETACH)
$(call check_bool,GRAD_CKPT)
PRECISION_FLAG := $(if $(filter fp16,$(PRECISION)),--fp16)$(if $(filter bf16,$(PRECISION)),--bf16)
# torchrun on GPUs (one process each, every node); plain python on the CPU.
LAUNCH = $(if $(filter 0,$(NGPUS)),$(PY),$(VENV)/bin/torchrun --nnodes $(NNODES) --node_rank $(NODE_RANK) \
  --nproc_per_node $(NGPUS) --master_addr=$(call q,$(MASTER_ADDR)) --master_port $(MASTER_PORT))
DETACHED = $(if $(call is_true,DETACH),bash scripts/detach.sh $(call q,$(NAME)) $(call q,$(OUTPUT_DIR)/console.log) --)
# --flag=VALUE, quoted, when VALUE is not empty.
flag = $(if $(2),$(1)=$(call q,$(2)))
TRAIN_ARGS = --model_type=$(call q,$(MODEL_TYPE)) --model_name_or_path=$(call q,$(MODEL)) --do_train --do_eval \
  --evaluate_during_training --train_file=$(call q,$(TRAIN_FILE)) --predict_file=$(call q,$(PREDICT_FILE)) \
  --learning_rate=$(call q,$(LR)) --num_train_epochs=$(call q,$(EPOCHS)) --max_seq_length=$(call q,$(MAX_SEQ_LENGTH)) \
  --doc_stride=$(call q,$(DOC_STRIDE)) --output_dir=$(call q,$(OUTPUT_DIR)) --per_gpu_eval_batch_size=$(call q,$(EVAL_BATCH)) \
  --per_gpu_train_batch_size=$(call q,$(BATCH)) --gradient_accumulation_steps=$(call q,$(GRAD_ACCUM)) \
  --threads=$(call q,$(THREADS)) --version_2_with_negative --save_steps=$(call q,$(SAVE_STEPS)) \
  --logging_steps=$(call q,$(LOGGING_STEPS)) --save_total_limit=$(call q,$(SAVE_TOTAL_LIMIT)) \
  --report_to $(call qwords,$(REPORT_TO)) $(call flag,--wandb_project,$(WANDB_PROJECT)) \
  $(call flag,--sync_checkpoints,$(SYNC)) $(PRECISION_FLAG) $(if $(call is_true,GRAD_CKPT),--gradient_checkpointing) \
  $(call qwords,$(EXTRA))

# `make resume EPOCHS=9` / `make eval MAX_SEQ_LENGTH=256`: only variables typed on the command line (or set in
# the environment) become flags; every other setting comes from the run's own args.json, not these defaults.
given = $(if $(filter $(1),$(GIVEN_VARS)),$(2)=$(call q,$($(1))))
RECORD_OVERRIDES = $(call given,MODEL,--model_name_or_path) $(call given,TRAIN_FILE,--train_file) \
  $(call given,PREDICT_FILE,--predict_file) $(call given,LR,--learning_rate) $(call given,EPOCHS,--num_train_epochs) \
  $(call given,MAX_SEQ_LENGTH,--max_seq_length) $(call given,DOC_STRIDE,--doc_stride) $(call given,BATCH,--per_gpu_train_batch_size) \
  $(call given,EVAL_BATCH,--per_gpu_eval_batch_size) $(call given,GRAD_ACCUM,--gradient_accumulation_steps) \
  $(call given,THREADS,--threads) $(call given,SAVE_STEPS,--save_steps) $(call given,LOGGING_STEPS,--logging_steps) \
  $(call given,SAVE_TOTAL_LIMIT,--save_total_limit) $(if $(filter REPORT_TO,$(GIVEN_VARS)),--report_to $(call qwords,$(REPORT_TO))) \
  $(call given,WANDB_PROJECT,--wandb_project) $(call given,SYNC,--sync_checkpoints) \
  $(call given,PRECISION,--precision) $(if $(filter GRAD_CKPT,$(GIVEN_VARS)),$(if $(call is_true,GRAD_CKPT),\
  --gradient_checkpointing,--no_gradient_checkpointing)) $(call qwords,$(EXTRA))

# run_squad.py's error messages then name these variables (TRAIN_FILE, EPOCHS, CKPT) instead of its flags.
train resume eval eval-nq demo upload: export QA_VIA_MAKE = 1

.PHONY: train
## train: fine-tune MODEL on TRAIN_FILE with the guide's hyperparameters (EPOCHS, LR, BATCH, GRAD_ACCUM, NGPUS, PRECISION, DETACH=1, EXTRA=...)
train: $(STAMP)
	@printf '%s\n' $(call q,train: $(MODEL) on $(NGPUS) GPU(s) x $(NNODES) node(s)$(comma) $(PRECISION)$(comma) output in $(OUTPUT_DIR))
	$(strip $(DETACHED) $(LAUNCH) run_squad.py $(TRAIN_ARGS))

.PHONY: resume
## resume: continue exactly from CKPT=checkpoint-1500 (or a path; default: the newest complete checkpoint of OUTPUT_DIR)
resume: $(STAMP)
	$(strip $(DETACHED) $(LAUNCH) run_squad.py --output_dir=$(call q,$(OUTPUT_DIR)) --do_train \
	  --resume_from_checkpoint=$(call q,$(or $(CKPT),auto)) $(RECORD_OVERRIDES))

.PHONY: eval
## eval: evaluate CKPT (checkpoint-N, a path, best, final; default: the best, else the final model) of OUTPUT_DIR on PREDICT_FILE (default: the run's) into OUTPUT_DIR/eval/<data>-<step>/
eval: $(STAMP)
	$(strip $(LAUNCH) run_squad.py --model_name_or_path=$(call q,$(OUTPUT_DIR)) --output_dir=$(call q,$(OUTPUT_DIR)) --do_eval \
	  $(call flag,--eval_checkpoint,$(CKPT)) --version_2_with_negative $(call given,PREDICT_FILE,--predict_file) \
	  --per_gpu_eval_batch_size=$(call q,$(EVAL_BATCH)) $(call given,MAX_SEQ_LENGTH,--max_seq_length) \
	  $(call given,DOC_STRIDE,--doc_stride) --threads=$(call q,$(THREADS)) --report_to $(call qwords,$(REPORT_TO)) \
	  $(call flag,--wandb_project,$(WANDB_PROJECT)) $(PRECISION_FLAG) $(call qwords,$(EXTRA)))

# Whole-document NQ (make eval-nq): the model must find the long answer among a page's candidates, scored by
# the official NQ metrics. The dev shards are where `make data` puts them (download_nq.py --out $(DATA_DIR)/nq/raw).
#: the NQ dev shards make eval-nq reads (a glob, expanded by predict_nq.py)
NQ_DEV_GLOB ?= $(DATA_DIR)/nq/raw/dev/nq-dev-*.jsonl.gz
# top: the top-level long-answer candidates (20 a page on real dev records); all: also the table rows and list items in them (86)
#: top: a page's top-level long-answer candidates; all: also table rows and list items
NQ_CANDIDATES ?= top
#: windows (384 tokens each) per forward pass in make eval-nq
NQ_BATCH ?= 64
#: make eval-nq on only the first N dev records (0 = all 7,830)
NQ_MAX_EXAMPLES ?= 0
$(call check_choice,NQ_CANDIDATES,top all)

.PHONY: eval-nq
## eval-nq: whole-document NQ predictions + official NQ metrics of CKPT (checkpoint-N, best, final, a path; default: the run's model, as make eval) of OUTPUT_DIR on NQ_DEV_GLOB, into OUTPUT_DIR/eval/nq-<step>/
eval-nq: $(STAMP)
	$(strip $(LAUNCH) scripts/predict_nq.py --model_dir=$(call q,$(OUTPUT_DIR)) $(call flag,--checkpoint,$(CKPT)) \
	  --input=$(call q,$(NQ_DEV_GLOB)) --candidates $(NQ_CANDIDATES) --batch_size=$(call q,$(NQ_BATCH)) \
	  --max_examples=$(call q,$(NQ_MAX_EXAMPLES)) --threads=$(call q,$(THREADS)) --workers $(WORKERS) --eval $(PRECISION_FLAG))

# The demo: a tiny ALBERT (2 layers, hidden 64, ~120k parameters) with a WordPiece tokenizer trained on
# the sample, learning rate high enough for a model from scratch; about 20 s of training on one core
# (one torch thread: on 2 shared cores, two threads are ~10x slower for a model this small).
# Windows of 128 tokens (64 of them the question at most) every 48: consecutive windows overlap, so no
# context token is left out (a stride of 64 or more would skip some, and run_squad.py warns about it).
#: where the demo's model and run go
DEMO_OUT ?= outputs/demo
#: the demo's training epochs
DEMO_EPOCHS ?= 10
#: the demo's learning rate (high: its tiny model starts from scratch)
DEMO_LR ?= 2e-3
#: the demo's training epochs of the candidate-mode model (its data has ~2.4x the guide's questions; 4 left its oracle F1 at 77-90 over 3 seeds, 6 at 88-90)
DEMO_CANDIDATES_EPOCHS ?= 6
$(call check_path,DEMO_OUT)
$(call check_own_dir,DEMO_OUT)

# Both demo models: the same tiny model, flags and dev.json; only the training data and epochs differ.
DEMO_TRAIN = OMP_NUM_THREADS=1 $(PY) run_squad.py --model_type albert --model_name_or_path=$(call q,$(DEMO_OUT)/tiny-albert) \
	  --do_train --do_eval --evaluate_during_training --version_2_with_negative --predict_file $(DEMO_DIR)/dev.json \
	  --learning_rate=$(call q,$(DEMO_LR)) --warmup_steps 50 --max_seq_length 128 --doc_stride 48 \
	  --per_gpu_train_batch_size 16 --per_gpu_eval_batch_size 64 --save_steps 200 --logging_steps 100 --save_total_limit 2 --threads 1
# The seconds of training: the time before and after the training command, into a file demo_summary.py reads.
DEMO_CLOCK = $(PY) -c 'import time; print(time.time())'
DEMO_NQ_RESULTS = $(call q,$(DEMO_OUT)/$(1)/eval)/nq-*/nq_eval_results_*.json

.PHONY: demo
## demo: the whole pipeline offline on CPU: generated NQ sample -> SQuAD JSON -> tiny models (guide's data, candidate mode) -> train -> eval -> one table + DEMO_OUT/summary.json
demo: demo-data
	$(PY) scripts/make_tiny_model.py --train-file $(DEMO_DIR)/train.json --out=$(call q,$(DEMO_OUT)/tiny-albert)
	rm -rf -- $(call q,$(DEMO_OUT)/run) $(call q,$(DEMO_OUT)/run-candidates) $(call q,$(DEMO_OUT)/summary.json)
	$(DEMO_CLOCK) > $(call q,$(DEMO_OUT)/run.train-time)
	$(DEMO_TRAIN) --train_file $(DEMO_DIR)/train.json --output_dir=$(call q,$(DEMO_OUT)/run) --num_train_epochs=$(call q,$(DEMO_EPOCHS)) --report_to tensorboard
	$(DEMO_CLOCK) >> $(call q,$(DEMO_OUT)/run.train-time)
	$(PY) scripts/report.py -- $(call q,$(DEMO_OUT)/run)
	# Whole documents (300 pages x 4-8 candidates, about 2 s): the model must find the paragraph it was given above.
	OMP_NUM_THREADS=1 $(PY) scripts/predict_nq.py --model_dir=$(call q,$(DEMO_OUT)/run) --input $(DEMO_DIR)/raw/nq-dev-sample.jsonl.gz --eval
	# The candidate-mode model: it has seen every kind of paragraph of a page, not only the gold one. Without the
	# answer-type head: its data types are only short/none, and the head's share of the loss cost ~9 oracle F1 points.
	$(DEMO_CLOCK) > $(call q,$(DEMO_OUT)/run-candidates.train-time)
	$(DEMO_TRAIN) --train_file $(DEMO_DIR)/train.candidates.json --output_dir=$(call q,$(DEMO_OUT)/run-candidates) --num_train_epochs=$(call q,$(DEMO_CANDIDATES_EPOCHS)) --no_answer_type_head
	$(DEMO_CLOCK) >> $(call q,$(DEMO_OUT)/run-candidates.train-time)
	OMP_NUM_THREADS=1 $(PY) scripts/predict_nq.py --model_dir=$(call q,$(DEMO_OUT)/run-candidates) --input $(DEMO_DIR)/raw/nq-dev-sample.jsonl.gz --eval
	$(PY) scripts/demo_summary.py --nq-results $(call DEMO_NQ_RESULTS,run) --train-time=$(call q,$(DEMO_OUT)/run.train-time) \
	  --candidates=$(call q,$(DEMO_OUT)/run-candidates) --candidates-nq-results $(call DEMO_NQ_RESULTS,run-candidates) \
	  --candidates-train-time=$(call q,$(DEMO_OUT)/run-candidates.train-time) --json=$(call q,$(DEMO_OUT)/summary.json) \
	  -- $(call q,$(DEMO_OUT)/run) $(DEMO_DIR)/dev.json

# ---------------------------------------------------------------------------------------------
# Tests and benchmarks
# ---------------------------------------------------------------------------------------------
.PHONY: test bench bench-quality
#: processes the test suite runs in (pytest-xdist; 0: in make's own pytest process)
TEST_WORKERS ?= 2
$(call check_number,TEST_WORKERS)
## test: the test suite (what CI runs) in TEST_WORKERS processes; installs what it needs first
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS)

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

#: bench-quality's flags, split on spaces, e.g. QUALITY_ARGS="--settings demo --demo-seeds 1,2,3" (see its --help)
QUALITY_ARGS ?=
## bench-quality: does a batching cost answers? F1, HasAns_f1, NoAns_f1, best_f1 of each batching vs random order, over seeds, real encoder + demo (hours on CPU; QUALITY_ARGS to choose)
bench-quality: $(STAMP) $(BENCH_STAMP) demo-data
	mkdir -p benchmarks/results
	$(PY) benchmarks/bench_grouping_quality.py --out benchmarks/results --demo-dir=$(call q,$(DEMO_DIR)) $(call qwords,$(QUALITY_ARGS))

# ---------------------------------------------------------------------------------------------
# Operations (a run on a cloud GPU box): attach, logs, status, clean-cache, swap, upload
# ---------------------------------------------------------------------------------------------
#: the detached session's name (make train DETACH=1, make attach)
NAME ?= qa-train
#: folders make clean-cache searches (a list)
DIRS ?= $(DATA_DIR) outputs
#: yes: make clean-cache deletes without asking
YES ?= 0
#: yes: clean-cache, swap and upload only say what they would do
DRY_RUN ?= 0
#: make swap: the swap file's size, e.g. 32G or 512M
SIZE ?=
#: make swap: the swap file's path
SWAPFILE ?= /swapfile
#: yes: make swap also adds the swap file to /etc/fstab
PERSIST ?= 0
#: make upload: s3://bucket/prefix to copy the run's model (or CKPT) to
BUCKET ?=
#: yes: make upload makes the objects public-read (default: private)
PUBLIC ?= 0
#: make upload: http(s)://host:port of an S3-compatible store (MinIO etc.)
S3_ENDPOINT ?=
$(foreach v,YES DRY_RUN PERSIST PUBLIC,$(call check_bool,$(v)))
# Only make swap asks for root: sudo unless already root or a dry run.
SUDO = $(if $(or $(call is_true,DRY_RUN),$(filter 0,$(shell id -u))),,sudo )

.PHONY: attach
## attach: reattach to the detached training session NAME (screen -r / tmux attach -t; default qa-train)
attach:
	$(strip bash scripts/attach.sh $(call q,$(NAME)) $(if $(filter OUTPUT_DIR,$(GIVEN_VARS)),$(call q,$(OUTPUT_DIR))))

.PHONY: logs
## logs: follow OUTPUT_DIR/train.log (tail -F: survives its rotation; Ctrl-C stops); before it exists, a detached run's console.log
logs:
	bash scripts/logs.sh $(call q,$(OUTPUT_DIR))

.PHONY: status
## status: step, ETA, loss, last eval, newest complete checkpoint, GPU memory, free disk of OUTPUT_DIR
status: $(STAMP)
	$(PY) scripts/status.py -- $(call q,$(OUTPUT_DIR))

.PHONY: clean-cache
## clean-cache: list cached features under DIRS (ours and legacy cached_*) and delete them; YES=1 skips the question, DRY_RUN=1 lists only
clean-cache:
	$(strip bash scripts/clean_cache.sh $(if $(call is_true,YES),--yes) $(if $(call is_true,DRY_RUN),--dry-run) -- $(call qwords,$(DIRS)))

.PHONY: swap
## swap: add a swap file, e.g. make swap SIZE=32G [SWAPFILE=/swapfile] [PERSIST=1] [DRY_RUN=1] (uses sudo when not root)
swap:
	$(if $(strip $(SIZE)),,$(error SIZE is required, e.g. make swap SIZE=32G))
	$(strip $(SUDO)bash scripts/add_swap.sh --file $(call q,$(SWAPFILE)) $(if $(call is_true,PERSIST),--persist) \
	  $(if $(call is_true,DRY_RUN),--dry-run) -- $(call q,$(SIZE)))

.PHONY: upload
## upload: copy the run's model of OUTPUT_DIR (as make eval takes it; or CKPT=checkpoint-N, the whole checkpoint) to BUCKET=s3://bucket/prefix; private unless PUBLIC=1; S3_ENDPOINT=http://... for S3-compatible stores
upload: $(STAMP)
	$(if $(strip $(BUCKET)),,$(error BUCKET is required, e.g. make upload BUCKET=s3://my-bucket/models/albert-nq))
	$(strip bash scripts/upload.sh $(if $(CKPT),--checkpoint $(call q,$(CKPT))) $(if $(call is_true,PUBLIC),--public) \
	  $(if $(S3_ENDPOINT),--endpoint-url $(call q,$(S3_ENDPOINT))) $(if $(call is_true,DRY_RUN),--dry-run) \
	  -- $(call q,$(OUTPUT_DIR)) $(call q,$(BUCKET)))

.PHONY: sync
## sync: upload what a run trained with SYNC=s3://... left out of S3 (an outage at its end): make sync OUTPUT_DIR=outputs/nq-albert SYNC=s3://b/runs/nq-albert; exit 4 while something is still missing
sync: $(STAMP)
	$(if $(strip $(SYNC)),,$(error SYNC is required: the run's S3 prefix, e.g. make sync SYNC=s3://my-bucket/runs/nq-albert))
	$(PY) -m qa.sync -- $(call q,$(OUTPUT_DIR)) $(call q,$(SYNC))

# ---------------------------------------------------------------------------------------------
# Using what a run produced: report, ask
# ---------------------------------------------------------------------------------------------
#: make report: the run's folder (default OUTPUT_DIR)
RUN ?= $(OUTPUT_DIR)
#: make ask: a run folder (its model, as make eval takes it) or a checkpoint-N folder (default OUTPUT_DIR)
MODEL_DIR ?= $(OUTPUT_DIR)
#: make ask: one question about CONTEXT_FILE
QUESTION ?=
#: make ask: the document QUESTION is about (plain UTF-8 text)
CONTEXT_FILE ?=
#: make ask: many questions, JSON Lines {id, question, context} or SQuAD JSON
QUESTIONS_FILE ?=
# make ask QUESTIONS_FILE=q.jsonl OUT=answers.json: where the {id: answer} predictions go (default: printed)
#: make ask with QUESTIONS_FILE: where the {id: answer} JSON goes (default: printed)
OUT ?=
#: make ask: N answers a question, shaped as transformers' question-answering pipeline gave them ({answer, score, start, end})
TOP_K ?=

.PHONY: report
## report: report.png + report.html in RUN (default OUTPUT_DIR): loss, LR, eval scores, F1 against the null threshold
report: $(STAMP)
	$(PY) scripts/report.py -- $(call q,$(RUN))

.PHONY: ask
## ask: make ask MODEL_DIR=... QUESTION="..." CONTEXT_FILE=doc.txt (or QUESTIONS_FILE=q.jsonl [OUT=a.json]) [TOP_K=3]: answers with the tuned null threshold
ask: $(STAMP)
	$(strip $(PY) scripts/ask.py $(if $(QUESTIONS_FILE),--questions-file=$(call q,$(QUESTIONS_FILE)) $(call flag,--output,$(OUT)),\
	  --question=$(call q,$(QUESTION)) --context-file=$(call q,$(CONTEXT_FILE))) $(call flag,--top_k,$(TOP_K)) -- $(call q,$(MODEL_DIR)))

#: make export: where the ONNX export goes (default OUTPUT_DIR/onnx, or OUTPUT_DIR/onnx-checkpoint-N)
ONNX_DIR ?=

.PHONY: export
## export: make export [CKPT=checkpoint-N|best|final] [ONNX_DIR=dir]: ONNX model + tokenizer + qa_config.json of OUTPUT_DIR's model, refused unless it scores like it on PREDICT_FILE (the run's)
export: $(STAMP)
	$(strip $(PY) scripts/export_onnx.py $(call flag,--checkpoint,$(CKPT)) $(call flag,--out,$(ONNX_DIR)) \
	  $(if $(filter PREDICT_FILE,$(GIVEN_VARS)),$(call flag,--predict_file,$(PREDICT_FILE))) -- $(call q,$(OUTPUT_DIR)))
