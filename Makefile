# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create the virtual environment .venv and install the project into it on first use.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-all install lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/tem-acq demo --out demo-run

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(PY) -m pytest -q --runslow $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tem_acq acquisition_hooks tests benchmarks examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-run
