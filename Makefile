# Kirby: every command a newcomer needs. `make help` lists them; ARGS="…" passes options
# to `make demo` and `make run` (`kirby demo --help`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo run test lint format bench bench-ingest bench-stream soak-stream bench-api bench-edge bench-timescale bench-fanout bench-pipelines dagster db-start db-stop migrate sync sim clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install Kirby with its dev tools

$(STAMP): pyproject.toml setup.py kirby_core/books/_levels.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## the whole platform on simulated exchanges (.kirby-demo/); options: ARGS="--api-port 8001"
	$(BIN)/kirby demo $(ARGS)

run: $(STAMP)  ## the whole platform on the real exchanges (.kirby/); options: ARGS="--days 3"
	$(BIN)/kirby run $(ARGS)

test: $(STAMP)  ## run the test suite (starts a throwaway embedded PostgreSQL)
	$(BIN)/pytest

lint: $(STAMP)  ## ruff lint and format check, mypy type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: bench-ingest bench-stream bench-pipelines bench-api bench-edge bench-fanout  ## run every benchmark

bench-ingest: $(STAMP)  ## candle upsert throughput (1M rows; writes bench figures to stdout)
	$(BIN)/python -m bench.ingest.run

bench-stream: $(STAMP)  ## collector messages/s and message-to-row latency vs per-message upserts
	$(BIN)/python -m bench.stream.run

soak-stream: $(STAMP)  ## 10-minute collector soak against kirby sim with faults, then an audit and Kirby's live repair of its outages
	$(BIN)/python -m bench.stream.soak

bench-api: $(STAMP)  ## API requests/s and latency vs a FastAPI + ORM baseline, WS latency
	$(BIN)/python -m bench.api.run

bench-edge: $(STAMP)  ## three API replicas behind nginx (TLS) vs one direct: the proxy's cost
	$(BIN)/python -m bench.api.edge

bench-timescale: $(STAMP)  ## TimescaleDB hot reads, a year of history, 1/7/30-day chunks vs plain (needs KIRBY_DATABASE_URL on a TimescaleDB server)
	$(BIN)/python -m bench.api.timescale

bench-fanout: $(STAMP)  ## the live bus (NOTIFY vs Redis) and 1000 WebSocket clients over 3 replicas
	$(BIN)/python -m bench.api.fanout_bus

bench-pipelines: $(STAMP)  ## 30-day backfill, lake export and merged dataset vs baselines
	$(BIN)/python -m bench.pipelines.run

dagster: $(STAMP)  ## open the Dagster UI (dagster dev) on http://127.0.0.1:3000
	$(BIN)/dagster dev

db-start: $(STAMP)  ## start the embedded PostgreSQL and create both databases
	$(BIN)/kirby db start

db-stop: $(STAMP)  ## stop the embedded PostgreSQL
	$(BIN)/kirby db stop

migrate: $(STAMP)  ## migrate both databases
	$(BIN)/kirby db migrate

sync: migrate  ## load both catalogs into their databases
	$(BIN)/kirby catalog sync
	$(BIN)/kirby catalog sync --database training

sim: $(STAMP)  ## run the offline exchange simulator on port 8765
	$(BIN)/kirby sim --port 8765

clean:  ## stop the embedded PostgreSQL and remove local state (.kirby, .kirby-demo, lake)
	-$(BIN)/kirby db stop
	rm -rf .kirby .kirby-demo lake
