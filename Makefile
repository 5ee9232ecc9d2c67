# The two commands a new user needs:  make up   (run the platform)   and   make test
PY := .venv/bin/python

.PHONY: up test tools lint seed bench replay

up: .venv/.synced  ## start PostgreSQL, Temporal + Web UI, all workers, the API and the sandboxes
	$(PY) -m devstack up

test: .venv/.synced tools  ## run the whole test suite against its own throw-away servers
	$(PY) -m pytest

tools: .venv/.synced  ## find or build the Temporal CLI, find or install PostgreSQL
	$(PY) -m devstack tools

PRODUCTS ?= 300
SHOPPERS ?= 0
seed: .venv/.synced  ## load demo data into the running platform: make seed [PRODUCTS=300] [SHOPPERS=100]
	$(PY) -m devstack seed --products $(PRODUCTS) --shoppers $(SHOPPERS)

CONCURRENCY ?= 20
DURATION ?= 300
BENCH_ARGS ?=
bench: .venv/.synced tools  ## checkout benchmark on a throw-away platform: make bench [CONCURRENCY=20 DURATION=300 BENCH_ARGS="--saga-workers 2"]
	$(PY) -m bench --modes engine-floor,direct,saga --concurrency $(CONCURRENCY) --duration $(DURATION) $(BENCH_ARGS)

lint: .venv/.synced
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy .

.venv/.synced: requirements.lock scripts/bootstrap.sh
	bash scripts/bootstrap.sh
