# Sluice — `make install`, `make run`, `make test`.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
BIN := .venv/bin

.PHONY: install run test test-fast lint format bench clean

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

bench:  ## every benchmark scenario (Sluice beside Mosquitto); rewrites docs/benchmarks.md and .png
	$(BIN)/python bench/all.py

.PHONY: chaos
chaos:  ## reliability and security suite at full size (crashes, outages, hostile input); docs/reliability.md
	SLUICE_CHAOS=full $(BIN)/pytest -q tests/chaos

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .sluice .pytest_cache .mypy_cache .ruff_cache

# --- Deploy: docker compose (production shape on one host), Kubernetes manifests --------
.PHONY: up down logs k8s-render validate-deploy
COMPOSE ?= docker compose

up:  ## Apache Kafka, PostgreSQL, Redis and every service from the image (needs a Docker engine)
	@test -f .env || { sed -e "s/^SLUICE_ADMIN_TOKEN=.*/SLUICE_ADMIN_TOKEN=$$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')/" \
		-e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')/" \
		.env.example > .env && echo "created .env with a random admin token and database password"; }
	$(COMPOSE) up --build --detach --wait
	@grep '^SLUICE_ADMIN_TOKEN=' .env

down:  ## stop the compose stack (data stays in its volumes; add -v by hand to drop them)
	$(COMPOSE) down

logs:  ## follow the compose stack's logs
	$(COMPOSE) logs --follow --tail=100

k8s-render:  ## render each Kustomize overlay to build/k8s/<overlay>.yaml (no kustomize needed)
	@for overlay in deploy/k8s/overlays/*/; do \
		name=$$(basename $$overlay); \
		$(BIN)/python deploy/render_k8s.py $$overlay -o build/k8s/$$name.yaml && echo "build/k8s/$$name.yaml"; \
	done

validate-deploy:  ## offline checks: compose config, hadolint, kubernetes-validate --strict per overlay
	$(BIN)/python deploy/validate.py
