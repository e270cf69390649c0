# Sluice — `make install`, `make run`, `make test`.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
BIN := .venv/bin

.PHONY: install run test test-fast lint format bench chaos clean

install: $(UV)  ## create .venv with every package (editable) and the dev tools, from uv.lock
	$(UV) sync --all-packages --frozen

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

run:  ## the whole stack on the embedded default (Tansu + SQLite)
	@test -x $(BIN)/sluice || $(MAKE) --no-print-directory install
	$(BIN)/sluice run

test:  ## every test: unit, integration (real Tansu, SQLite + PostgreSQL), end-to-end
	$(BIN)/pytest -q

test-fast:  ## unit tests only
	$(BIN)/pytest -q libs/sluice/tests/unit services/*/tests/unit

lint:  ## ruff + mypy (strict on the shared library and the pure cores)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/sluice/src services/*/src

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .sluice .pytest_cache .mypy_cache .ruff_cache
