# Two commands on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 (CPU build, on this machine's disk) is installed before the package
# so that pip never resolves a plain `torch` (a multi-GB CUDA build).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: venv demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# The main job on the embedded default: phantom, a 7-method x 2-seed grid, report.html.
DEMO_DIR ?= demo_output
demo: $(STAMP)
	$(BIN)/segbalance demo --output $(DEMO_DIR)/demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/losses.py
	$(BIN)/python benchmarks/sam.py
	$(BIN)/python benchmarks/metrics.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/train_quality.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache demo_output
