# curate — every habit has a target. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The CPU wheel of torch 2.13.0 is installed first, so nothing later pulls a multi-GB CUDA
# build; on another machine set e.g. TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu'.
TORCH ?= torch==2.13.0
DEMO_OUT ?= demo_out

.PHONY: setup demo test test-fast bench lint format typecheck clean

setup: $(VENV)/.installed

# pip's own output goes to $(VENV)/setup.log (a machine's pip config can print a warning per
# package); a failed step prints the log's tail and stops.
SETUP_LOG := $(VENV)/setup.log
PIP := $(PY) -m pip install
QUIET := >> $(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG); exit 1; }

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "setting up $(VENV): torch (CPU), then curate with all extras (log: $(SETUP_LOG))"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip $(QUIET)
	@$(PIP) $(TORCH) $(QUIET)
	@$(PIP) -c constraints.txt -e ".[all]" $(QUIET)
	@touch $@
	@echo "setup done"

# Quiet: each build prints its slow phases, phase-1 progress and a short summary (-v for more).
demo: setup
	@$(BIN)/curate build --spec demo --out $(DEMO_OUT)/pmc --fresh
	@$(BIN)/curate inspect $(DEMO_OUT)/pmc --split train --rows 2 --columns record_id caption license modality
	@if [ -f pipelines/demo_radiology.yaml ]; then \
	  $(BIN)/curate build --spec demo_radiology --out $(DEMO_OUT)/radiology --fresh; fi
	@if [ -f pipelines/demo_volumes.yaml ]; then \
	  $(BIN)/curate build --spec demo_volumes --out $(DEMO_OUT)/volumes --fresh; fi
	@$(BIN)/curate build --spec demo_cohort --out $(DEMO_OUT)/cohort --fresh
	@# A short CFM (CLIP-style) run on the learnable cohort shards, ending with retrieval metrics.
	@$(BIN)/curate train cfm --config cfm_cohort --data $(DEMO_OUT)/cohort --out $(DEMO_OUT)/cfm --eval-split validation
	@# A short MLLM (LLaVA-style) run with that CFM as its frozen vision tower, on the cohort's
	@# caption attribute questions; then model vs zeroed-image vs majority on held-out questions.
	@echo "MLLM: training on the cohort's questions (a few minutes; log: $(DEMO_OUT)/mllm/train_log.jsonl)"
	@$(BIN)/curate train mllm --config mllm_cohort --data $(DEMO_OUT)/cohort --out $(DEMO_OUT)/mllm \
	  --vision-checkpoint $(DEMO_OUT)/cfm > $(DEMO_OUT)/mllm_train.out || { cat $(DEMO_OUT)/mllm_train.out; exit 1; }
	@$(BIN)/curate eval mllm --checkpoint $(DEMO_OUT)/mllm --data $(DEMO_OUT)/cohort --split validation
	@echo "demo builds in $(DEMO_OUT)/{pmc,radiology,volumes,cohort} (shards/, rejects/, errors/, manifest.json); CFM run in $(DEMO_OUT)/cfm, MLLM run in $(DEMO_OUT)/mllm"
	@echo "data card: $(DEMO_OUT)/pmc/DATA_CARD.html (each build has DATA_CARD.html and DATA_CARD.md)"

test: setup
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

bench: setup
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(DEMO_OUT) build dist .pytest_cache .mypy_cache .ruff_cache
