# VaultCraft. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run test lint migrate services stop-services clean bench bench-scaling console-bench recon-bench chaos vendor

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install everything (pinned in pyproject.toml)

run: $(STAMP) ## Start Postgres+Redis (embedded unless DATABASE_URL/REDIS_URL), migrate, run web, worker, beat, flower
	$(BIN)/python -m ops.run

test: $(STAMP) ## Run the whole suite against real Postgres, Redis and Celery workers
	$(BIN)/python -m pytest

bench: $(STAMP) ## Benchmark engine vs per-transfer SQL (pgbench), end to end and bulk; writes bench/results.json and .png (BENCH_* to resize; BENCH_SCALING=0 skips the scaling table)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run

bench-scaling: $(STAMP) ## Settled/s by 1/2/4 worker and 1/2 web processes, engine rate and worker RSS by backlog (10k-1M); writes bench/scaling.json (also run by make bench, after its other phases; BENCH_SCALING_*)
	$(BIN)/python -m bench.scaling

console-bench: $(STAMP) ## Time every console page over 100 organisations and 1,000,000 transactions (make bench's last phase, alone; BENCH_CONSOLE_*)
	$(BIN)/python -m bench.console

recon-bench: $(STAMP) ## Time FULL vs INCREMENTAL reconciliation on a generated 1,000,000-entry ledger (own database)
	$(BIN)/python -m bench.recon_bench

chaos: $(STAMP) ## Fault-inject a private stack (kill workers, Redis/Postgres down, duplicates, retries); writes chaos/results.json and README's Chaos table
	$(BIN)/python -m chaos.run

CONSOLE := web/console
vendor: ## Reinstall the console's chart library (uPlot, pinned in web/console/package-lock.json) into its static/vendor/ (needs npm; the copies are committed)
	cd $(CONSOLE) && npm ci --no-audit --no-fund
	cp $(CONSOLE)/node_modules/uplot/dist/uPlot.iife.min.js $(CONSOLE)/node_modules/uplot/dist/uPlot.min.css $(CONSOLE)/static/vendor/
	cp $(CONSOLE)/node_modules/uplot/LICENSE $(CONSOLE)/static/vendor/uPlot.LICENSE
	rm -rf $(CONSOLE)/node_modules

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

migrate: $(STAMP) ## Apply migrations to DATABASE_URL (or the embedded database)
	$(BIN)/python -c "import os; from ops import devservers; os.environ.update(devservers.ensure_services()); from ops.migrate import upgrade_to_head; upgrade_to_head()"

services: $(STAMP) ## Start the embedded servers and print their URLs as shell exports
	@$(BIN)/python -m ops.devservers env

stop-services: $(STAMP) ## Stop the embedded servers
	$(BIN)/python -m ops.devservers stop

clean: ## Stop embedded servers and delete var/ and .venv
	-$(BIN)/python -m ops.devservers clean
	rm -rf var $(VENV)
