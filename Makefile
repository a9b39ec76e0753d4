# PineOps: `make demo` runs the appliance locally, `make test` runs every test.
# Both start from nothing but Python 3.11: they create .venv and install what they need.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/pineops_ci
DEMO_ENV := deploy/demo.env
DEMO_PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install chromium redis-server services test test-sqlite test-postgres check-logs demo soak clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

services:
	@bash deploy/services.sh

# make's own start: `make test` prints its whole wall time (install included) at the end, pass or fail.
STARTED := $(shell date +%s)

test: install chromium services
	@rm -f test-artifacts/secrets.txt test-artifacts/*.log test-artifacts/faults-rows.jsonl
	@PINEOPS_FAULT_ROWS=keep $(MAKE) --no-print-directory test-sqlite test-postgres check-logs; rc=$$?; took=$$(( $$(date +%s) - $(STARTED) )); \
		echo "make test: $$((took / 60)) min $$((took % 60)) s wall time, install included (exit $$rc)"; exit $$rc

# Three test processes (pytest-xdist, work stealing) on this 2-CPU machine: the multi-process tests mostly
# wait on paced replays and process starts, so a third keeps the CPUs busy (a fourth slows the suite down: the
# in-process tests are CPU-bound). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal)

# Each pass runs the in-process tests of what it covers; each multi-process run (marked e2e) runs once, on
# the engine its subject needs: a replay is paced, so running it twice costs its whole length again.
# SQLite (the appliance's default engine) takes every framework-free package (strategies, sim), the bench
# smoke runs, the browser, and the multi-process runs of the appliance, the hub, Redis, Celery, the trading path
# and the worker and hub killed at random moments.
SQLITE_SKIP := --ignore=tests/faults/test_db_outage.py --ignore=tests/e2e/test_drift_path.py \
	--ignore=tests/faults/test_frozen_sender.py --ignore=tests/faults/test_celery_kills.py \
	--ignore=tests/e2e/test_hub_contracts.py --ignore=tests/faults/test_feed_gap.py \
	--ignore=tests/faults/test_flatten_kills.py --ignore=tests/deploy/test_host_partition.py \
	--ignore=tests/deploy/test_lost_host.py --ignore=tests/deploy/test_single_beat.py \
	--ignore=tests/deploy/test_scaled_week.py \
	--deselect tests/faults/test_worker_kills.py::test_worker_killed_while_its_order_is_in_flight_sends_it_once
test-sqlite:
	@echo "== tests on SQLite"
	env -u DATABASE_URL $(PY) -m pytest tests $(XDIST) -o log_file=test-artifacts/pytest-sqlite.log $(SQLITE_SKIP)

# PostgreSQL takes what depends on the database engine: the models, admin, risk, execution, drift, health
# and delivery tests, the bar store (left out: what reads no database, or reads it as any engine would: the
# hub's bar and roll logic, permission walks, security headers, HTTP payloads, the Redis rate limit, the
# import structure), and the multi-process runs whose subject is the database (its outage,
# orders claimed under a frozen sender, a kill mid-POST or kills during a flatten, Celery kills, the drift of
# an interrupted session, contracts and feed health recorded by a real hub).
PG_SKIP := --ignore=tests/strategies --ignore=tests/sim --ignore=tests/bench --ignore=tests/browser \
	--ignore=tests/e2e/test_appliance_demo.py \
	--ignore=tests/e2e/test_celery.py --ignore=tests/e2e/test_hub.py --ignore=tests/e2e/test_trading_path.py \
	--ignore=tests/deploy/test_roles.py --ignore=tests/deploy/test_compose.py --ignore=tests/trading/test_process_startup.py \
	--ignore=tests/faults/test_outages.py --ignore=tests/faults/test_hostile_headers.py \
	--ignore=tests/faults/test_environment.py --ignore=tests/marketdata/test_dbn_inputs.py \
	--ignore=tests/marketdata/test_hub_inputs.py --ignore=tests/marketdata/test_rolls.py \
	--ignore=tests/marketdata/test_hub_batch.py --ignore=tests/marketdata/test_record_feed.py \
	--ignore=tests/marketdata/test_hub_lease.py --ignore=tests/e2e/test_hub_standby.py \
	--ignore=tests/risk/test_killswitch_permissions.py --ignore=tests/faults/test_security.py \
	--ignore=tests/faults/test_stored_xss.py --ignore=tests/test_structure.py --ignore=tests/notify/test_discord.py \
	--ignore=tests/execution/test_traderspost.py --ignore=tests/execution/test_ratelimit.py \
	--ignore=tests/deploy/test_beat_fencing.py \
	--deselect "tests/faults/test_worker_kills.py::test_killed_at_random_moments[hub]" \
	--deselect "tests/faults/test_worker_kills.py::test_killed_at_random_moments[worker]"
test-postgres:
	@echo "== tests on PostgreSQL ($(PG_TEST_URL), throw-away test database)"
	DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest tests $(XDIST) --create-db -o log_file=test-artifacts/pytest-postgres.log $(PG_SKIP)

# Every secret a test configured is listed in test-artifacts/secrets.txt; none may be in any log.
check-logs:
	@if [ -s test-artifacts/secrets.txt ] && grep -F -l -f test-artifacts/secrets.txt test-artifacts/*.log; then \
		echo "FAIL: a configured secret appears in the test logs above"; exit 1; fi
	@echo "logs checked: $$(sort -u test-artifacts/secrets.txt 2>/dev/null | wc -l) configured secrets, none in $$(ls test-artifacts/*.log | wc -l) log files"

# The long fault runs: 200 worker kills (PINEOPS_KILLS) and the rest of tests/faults; prints the fault table.
soak: install services
	@rm -f test-artifacts/faults-summary.txt
	PINEOPS_KILLS=$${PINEOPS_KILLS:-200} PINEOPS_FLATTEN_KILLS=$${PINEOPS_FLATTEN_KILLS:-200} PINEOPS_CELERY_KILLS=$${PINEOPS_CELERY_KILLS:-200} env -u DATABASE_URL $(PY) -m pytest tests/faults -o log_file=test-artifacts/pytest-soak.log

# The whole appliance (deploy/demo.sh → deploy/entrypoint.sh → supervisord.conf), as the container runs it.
demo: install redis-server
	@PINEOPS_PYTHON=$(abspath $(PY)) PINEOPS_ENV_FILE=$(DEMO_ENV) PINEOPS_WEB_BIND=127.0.0.1:$(DEMO_PORT) \
		bash deploy/demo.sh

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

clean:
	rm -rf $(VENV) var test-artifacts
