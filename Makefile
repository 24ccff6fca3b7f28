# Two entry points: `make train` (set up + main job) and `make test` (set up + tests).
# Both create .venv in the repo root on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= auto
DATA ?=
OUT ?=
ARGS ?=
# Test processes (pytest-xdist): most tests wait on subprocesses, imports and fsync, so two
# share two cores well; each gets its share of the cores as torch threads (tests/conftest.py).
TEST_JOBS ?= 2

.PHONY: setup train test test-fast lint bench-data clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

train: setup
	$(BIN)/maxvit train --preset $(PRESET) $(if $(DATA),--data $(DATA),--download) $(if $(OUT),--out $(OUT)) $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) tests

# The edit loop: everything but the tests marked slow (end-to-end runs of a minute or less).
test-fast: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) -m "not slow" tests

# Full-size input pipeline against timm's, on the 200 real ImageNet JPEGs (docs/data.md).
SAMPLE ?= ../shared/data/imagenet-sample-200.zip
bench-data: setup
	rm -rf runs/imagenet-sample && mkdir -p runs/imagenet-sample
	unzip -q $(SAMPLE) -d runs/imagenet-sample
	mv runs/imagenet-sample/imagenet-sample-200 runs/imagenet-sample/train
	ln -s train runs/imagenet-sample/val
	$(BIN)/maxvit bench data --source runs/imagenet-sample --img-size 224 --pipeline timm --images 200 $(ARGS)

lint: setup
	$(BIN)/ruff check src tests

clean-venv:
	rm -rf $(VENV)
