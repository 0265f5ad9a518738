# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch 2.13.0 is pinned first so pip takes the CPU build on CPU-only machines; the project
# itself only asks for torch>=2.3, so a machine with a CUDA torch keeps it.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/depthkit demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/synth.py
	$(BIN)/python benchmarks/shard.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) demo-out
