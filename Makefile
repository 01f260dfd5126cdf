# Two commands: `make run` (the dashboard, embedded defaults) and `make test` (the suite);
# `make test-fast` runs the fast layer alone, in half a minute to a minute, without any server; `make demo`
# is the dashboard on a simulated fleet, for a machine without Docker.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# POSTURE_TEST_SLOT (0-9) keeps suites of several checkouts apart on one machine:
# their own test database, Redis database, bridges and subnets.
POSTURE_TEST_SLOT ?= 0
export POSTURE_TEST_SLOT
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/posture$(if $(filter-out 0,$(POSTURE_TEST_SLOT)),_$(POSTURE_TEST_SLOT))
TEST_REDIS_URL ?= redis://127.0.0.1:6379/$(shell echo $$((15 - $(POSTURE_TEST_SLOT))))

.PHONY: run demo run-deps test test-fast chaos install install-dev system-deps services lint format bench docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt

install-dev: $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt

# Debian packages the suite drives for real: engines, busybox for the test image,
# Chromium for the browser tests, sshd for ssh:// hosts, fonts and poppler for PDFs,
# Graphviz for the topology.
system-deps:
	@missing=""; \
	for pair in dockerd:docker.io busybox:busybox-static chromium:chromium sshd:openssh-server pdftoppm:poppler-utils dot:graphviz; do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages (run as root to install):$$missing"; fi; \
	fi

# PostgreSQL and Redis as this machine starts them, if they are down.
services:
	@pg_isready -h 127.0.0.1 -q 2>/dev/null || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
	@for i in $$(seq 1 30); do pg_isready -h 127.0.0.1 -q && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 1; done; echo "PostgreSQL or Redis did not come up"; exit 1

# WeasyPrint needs Pango and a font for the PDF reports; the topology needs Graphviz's dot.
run-deps:
	@if ! ldconfig -p | grep -q libpangoft2 || ! fc-list 2>/dev/null | grep -qi dejavu || ! command -v dot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpangoft2-1.0-0 fonts-dejavu-core graphviz >/dev/null; \
	  else echo "PDF reports and topologies need Debian's libpangoft2-1.0-0, fonts-dejavu-core and graphviz (run as root to install)"; fi; \
	fi

run: install run-deps
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py bootstrap
	PORT=$(PORT) $(BIN)/python manage.py serve

# `make run` on a simulated fleet of 50 hosts with a week of history, its own data in
# var/demo/ (database, broker, keys, sockets), never a real installation's.
DEMO := env -u DATABASE_URL -u REDIS_URL -u SECRET_KEY -u SECRET_KEY_FILE -u POSTURE_CREDENTIALS_KEY -u POSTURE_CREDENTIALS_KEY_FILE -u POSTURE_REPORTS_DIR POSTURE_VAR_DIR=$(CURDIR)/var/demo
demo: install run-deps
	$(DEMO) $(BIN)/python manage.py migrate --noinput -v0
	$(DEMO) $(BIN)/python manage.py collectstatic --noinput -v0
	$(DEMO) $(BIN)/python manage.py demo --hosts 50
	$(DEMO) $(BIN)/python manage.py bootstrap
	$(DEMO) PORT=$(PORT) $(BIN)/python manage.py serve --simulate 50

test: install-dev system-deps run-deps services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) POSTURE_VAR_DIR=$(CURDIR)/var/test \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

# The chaos suite in full (make test runs its short form): a real worker and beat under
# `manage.py serve`, on a PostgreSQL and a Redis it starts on free ports and kills;
# 20 worker kills, Redis and PostgreSQL down 20 s, bad engines, churn (tests/test_chaos.py).
chaos: install-dev system-deps run-deps services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) POSTURE_VAR_DIR=$(CURDIR)/var/test POSTURE_CHAOS=full \
	  $(BIN)/python -m pytest tests/test_chaos.py $(PYTEST_ARGS)

# The fast layer: every test that needs no Docker engine, PostgreSQL, Redis, Celery
# worker, sshd or Chromium, on SQLite. tests/conftest.py marks the others `real` from
# the fixtures they use; this is `pytest -m "not real"` with the servers' URLs unset, on
# one pytest-xdist process per core (FAST_WORKERS=0 runs it in this process, for pdb).
# Bytecode is cached between runs even where the environment turns that off: the run
# would otherwise compile every module again, in each worker and test subprocess.
FAST_WORKERS ?= auto
test-fast: install-dev run-deps
	env -u DATABASE_URL -u REDIS_URL -u PYTHONDONTWRITEBYTECODE POSTURE_VAR_DIR=$(CURDIR)/var/test-fast-$(POSTURE_TEST_SLOT) \
	  $(BIN)/python -m pytest -m "not real" -n $(FAST_WORKERS) $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: install
	$(BIN)/python manage.py rulesdoc --write

bench: install-dev system-deps run-deps services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) POSTURE_VAR_DIR=$(CURDIR)/var/bench $(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf var/test var/test-fast-* var/bench test-artifacts .pytest_cache
