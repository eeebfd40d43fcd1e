# `make demo` and `make test` work on a fresh machine with Python 3.11 and make:
# they create .venv with python3 -m venv and install with pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the releases this project is developed and tested with;
# pyproject.toml declares torch>=2.4 for users.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
DATA ?= ../shared/data
RUN ?= runs/imagenette

.PHONY: demo test lint venv clean bench

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/alexnet demo --data $(DATA)/imagenette --out $(RUN)

test: venv
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	@sh scripts/ensure-chromium.sh
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports


clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
