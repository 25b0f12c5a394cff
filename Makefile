# Set-up and the two main jobs; everything lives in a local virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip's own chatter stays out of CI logs; errors still show.
PIP := $(BIN)/python -m pip --quiet --quiet --disable-pip-version-check

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[test]'
	touch $@

demo: install
	$(BIN)/hbfp-dse formats

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile; fi

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/quantize.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
