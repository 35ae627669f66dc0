# Every target sets itself up: a fresh clone needs only python3, Java 17 and Maven.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit lint bench chaos chaos-long broker-up broker-down broker-status clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python deploy/local/demo.py

test: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py fetch
	$(BIN)/python deploy/local/registry_local.py fetch
	$(BIN)/python deploy/local/tools.py helm
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy connector

bench: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py fetch
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The chaos suite (tests/chaos/run.py): figures printed and in .run/chaos/<time>/report.json;
# exits 1 on any violation. ARGS adds flags, e.g. make chaos-long ARGS="--requests 50000".
chaos: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py fetch
	$(BIN)/python -m tests.chaos.run --short $(ARGS)

chaos-long: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py fetch
	$(BIN)/python -m tests.chaos.run --long $(ARGS)

broker-up: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py start

broker-down: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py stop

broker-status: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py status

clean:
	rm -rf $(VENV) .run deploy/local/.cache
