# Two entry points: `make train` (set up + main job) and `make test` (set up + tests).
# Both create .venv in the repo root on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= seed
DATA ?=
OUT ?=
ARGS ?=

.PHONY: setup train test lint clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

train: setup
	$(BIN)/maxvit train --preset $(PRESET) $(if $(DATA),--data $(DATA)) $(if $(OUT),--out $(OUT)) $(ARGS)

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check src tests

clean-venv:
	rm -rf $(VENV)
