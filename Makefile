# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := data
SERVER_NAME ?= localhost:8008
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The suite is mostly waiting on loopback servers, so it runs in more processes than cores.
PYTEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist worksteal

.PHONY: run test lint pytest synctest synctest-synapse bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[speed]'
	touch $@

$(TEST_STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[speed,test]'
	touch $@ $(STAMP)

# homeserver.yaml, and beside it privacy.yaml (fresh tokens) with the registration homeserver.yaml names.
$(DATA)/homeserver.yaml: | $(STAMP)
	$(BIN)/homeserver generate-config --server-name "$(SERVER_NAME)" --data-dir $(DATA) \
		--set registration.enabled=true --generate-keys

# A data directory from before the privacy service: its config alone, homeserver.yaml kept.
$(DATA)/privacy.yaml: | $(DATA)/homeserver.yaml
	$(BIN)/homeserver generate-config --privacy-only --data-dir $(DATA)

## Serve on 127.0.0.1:8008 with SQLite under ./data (config and signing key made on first run),
## with the privacy service (docs/privacy-service.md) beside it on 127.0.0.1:8010.
run: $(STAMP) $(DATA)/homeserver.yaml $(DATA)/privacy.yaml
	$(BIN)/python -m appservices.privacy --config $(DATA)/privacy.yaml & privacy=$$!; \
		trap 'kill $$privacy' EXIT INT TERM; \
		$(BIN)/homeserver run --config $(DATA)/homeserver.yaml

## Lint, the whole pytest suite on SQLite and PostgreSQL, then synctest against a fresh server.
test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(PYTEST)
	$(BIN)/python scripts/synctest_local.py

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

pytest: $(TEST_STAMP)
	$(PYTEST)

synctest: $(TEST_STAMP)
	$(BIN)/python scripts/synctest_local.py

## Run synctest against a real Synapse from PyPI (installed into .venv-synapse).
synctest-synapse: $(TEST_STAMP)
	bash scripts/synapse/run_synapse.sh

## Every benchmark under bench/ against Synapse (installs it into .venv-synapse on first use),
## then a summary naming what ran and what was skipped; BENCH_ARGS=--quick for smoke runs.
bench: $(TEST_STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-synapse build *.egg-info
