# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv when it is missing; torch==2.13.0 (a CPU wheel on these machines) goes in first so
# that nothing later pulls a CUDA build.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_DIR ?= demo-out

.PHONY: venv demo test test-fast lint typecheck unit clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,text]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python -m rsir.demo --out $(DEMO_DIR)

lint: venv
	$(BIN)/ruff check src tests $(wildcard bench)

typecheck: venv
	$(BIN)/mypy src/rsir

unit: venv
	sh scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test: lint typecheck unit

# the fast subset (no training, demo, README session or browser): under two minutes on 2 cores
test-fast: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
