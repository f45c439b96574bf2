# Two entry points a newcomer needs: `make run` (the paper-trading loop against the embedded
# exchange) and `make test` (the whole suite). Both build the project's own virtual environment,
# because the system python3 carries an old trio in its site-packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-full sim docs clean redis-server

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/tradeloop run $(ARGS)

sim: $(VENV)/.installed-run
	$(BIN)/tradeloop sim $(ARGS)

# The Redis tests start their own redis-server (Debian's); install it when it is not on PATH.
redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# Two workers (pytest-xdist): the suite's tests mostly wait on loopback peers, so one worker per core
# keeps it within its 4-minute budget. `TEST_WORKERS=0` runs it in one process (easier to debug).
TEST_WORKERS ?= 2
test: $(VENV)/.installed-test redis-server
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/mypy src

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks --quick $(BENCH_ARGS)

bench-full: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The documentation site into site/; --strict turns every warning (a broken reference) into an error.
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV)
