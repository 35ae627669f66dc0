# Every target sets itself up: a fresh clone needs only python3, Java 17 and Maven.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit lint lock bench chaos chaos-long sim sim-long broker-up broker-down broker-status clean

# Dependencies come from the hashed lock files (requirements/*.txt, written by `make lock`);
# the project itself is installed without dependencies, so nothing unlocked slips in.
$(STAMP): pyproject.toml requirements/dev.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the lock files after changing dependencies in pyproject.toml: uv resolves once
# for every platform and Python >= 3.11 (--universal) and records every file's hash.
# Versions already locked are kept unless pyproject.toml rules them out; LOCK_ARGS=--upgrade
# moves everything to the newest allowed.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)

# Not after $(STAMP): that installs from the locks this target is about to replace.
lock:
	test -d $(VENV) || $(PY) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install -q "uv>=0.9"
	$(UV_COMPILE) pyproject.toml --extra librdkafka -o requirements/runtime.txt
	$(UV_COMPILE) pyproject.toml --extra dev -c requirements/runtime.txt -o requirements/dev.txt
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(UV_COMPILE) - -o requirements/build.txt

demo: $(STAMP)
	$(BIN)/python deploy/local/demo.py

test: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py fetch
	$(BIN)/python deploy/local/registry_local.py fetch
	$(BIN)/python deploy/local/tools.py helm
	$(BIN)/python deploy/local/tools.py promtool
	$(BIN)/python -m pytest
	TEST_KAFKA_CLIENT=confluent-kafka $(BIN)/python -m pytest -q $(CONFLUENT_TESTS)

# The sidecar's own integration tests and the short chaos run again on the librdkafka backend
# (CONNECTOR_KAFKA_CLIENT=confluent-kafka); the adapter, contract and re-read tests run on both
# clients in the main run already.
CONFLUENT_TESTS = tests/integration/test_sidecar_flow.py tests/integration/test_sidecar_crashes.py \
	tests/integration/test_cursor_endings.py tests/chaos

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

# The deterministic simulator (tests/sim, docs/simulator.md): SEEDS seeds from START; a
# failing seed replays with `python -m tests.sim --seed N`. sim-long: 100,000 seeds, about
# 1 h 45 min of one core (or two shells: make sim SEEDS=50000 [START=50000]).
SEEDS ?= 2000
START ?= 0
sim: $(STAMP)
	$(BIN)/python -m tests.sim --seeds $(SEEDS) --start $(START) $(ARGS)

sim-long: $(STAMP)
	$(BIN)/python -m tests.sim --seeds 100000 --start $(START) $(ARGS)

broker-up: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py start

broker-down: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py stop

broker-status: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py status

clean:
	rm -rf $(VENV) .run deploy/local/.cache
