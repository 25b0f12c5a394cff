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

# The store's PostgreSQL tests run on the server that HBFP_DSE_TEST_PG_URL names; without one,
# as root under CI (CI set), on the server that .ci/postgres.sh starts on 127.0.0.1:5432, and
# elsewhere on a throwaway cluster that the tests start in a temporary directory and remove
# (tests/pg_cluster.py), from the server programs that root gets installed here: no cluster
# created, no server left running.
test: lint
	if [ -z "$$HBFP_DSE_TEST_PG_URL" ] && [ "$$(id -u)" = 0 ]; then \
		if [ -n "$$CI" ]; then eval "$$(bash .ci/postgres.sh)"; \
		else bash .ci/postgres.sh --binaries || true; fi; fi; \
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/quantize.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
