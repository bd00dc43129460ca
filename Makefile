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

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e ".[all]"
	touch $@

demo: setup
	$(BIN)/curate build --spec demo --out $(DEMO_OUT)/pmc --fresh
	$(BIN)/curate inspect $(DEMO_OUT)/pmc --rows 2 --columns record_id pmcid figure_label caption license modality split image_width image_height
	@if [ -f pipelines/demo_radiology.yaml ]; then \
	  $(BIN)/curate build --spec demo_radiology --out $(DEMO_OUT)/radiology --fresh && \
	  $(BIN)/curate inspect $(DEMO_OUT)/radiology --rows 1 --columns record_id subject_id view_position findings impression split; fi
	@if [ -f pipelines/demo_volumes.yaml ]; then \
	  $(BIN)/curate build --spec demo_volumes --out $(DEMO_OUT)/volumes --fresh && \
	  $(BIN)/curate inspect $(DEMO_OUT)/volumes --rows 1 --columns record_id volume_name shape spacing orientation split; fi
	$(BIN)/curate build --spec demo_cohort --out $(DEMO_OUT)/cohort --fresh
	# A short CFM (CLIP-style) run on the learnable cohort shards, ending with retrieval metrics.
	$(BIN)/curate train cfm --config cfm_cohort --data $(DEMO_OUT)/cohort --out $(DEMO_OUT)/cfm --eval-split validation
	@echo "demo shards are in $(DEMO_OUT)/*/shards; manifests in $(DEMO_OUT)/*/manifest.json; CFM run in $(DEMO_OUT)/cfm"

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
