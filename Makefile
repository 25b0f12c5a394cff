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
	$(BIN)/hbfp-dse sweep sweeps/quick.yaml
	$(BIN)/hbfp-dse report --sweep quick --plot quick.png
	$(BIN)/hbfp-dse best --sweep quick --target-acc 0.95

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile; fi

# As root (CI), a local PostgreSQL server is started for the store's multi-worker tests.
test: lint
	if [ -z "$$HBFP_DSE_TEST_PG_URL" ] && [ "$$(id -u)" = 0 ]; then \
		eval "$$(bash .ci/postgres.sh)"; fi; \
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/quantize.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
