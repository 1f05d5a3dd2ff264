# `make test` and `make demo` each build .venv from the pinned requirements when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo venv clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3 setuptools==84.2.1
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/coderl demo --workdir demo_workdir

clean:
	rm -rf $(VENV) demo_workdir
