# One command to serve, one to test. Both make the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# /metrics: the workers of one server add up their figures in files in this directory,
# emptied at every start (PROMETHEUS_MULTIPROC_DIR to choose another, e.g. on a tmpfs).
METRICS_DIR = $${PROMETHEUS_MULTIPROC_DIR:-$(CURDIR)/.metrics/$(PORT)}
FRESH_METRICS = dir=$(METRICS_DIR) && mkdir -p "$$dir" && rm -f "$$dir"/*.db && \
	PROMETHEUS_MULTIPROC_DIR="$$dir"
# The tests' own secret key and the simulated SMS backend, unless the caller sets them.
TEST_ENV = SECRET_KEY=$${SECRET_KEY-test-only-secret-key-0123456789abcdef0123456789} \
	SMS_BACKEND=$${SMS_BACKEND-simulated}

# Without DATABASE_URL, the suite runs on the embedded PostgreSQL (backend/embedded),
# which this starts for the run's length and names in DATABASE_URL.
ON_A_DATABASE = $(if $(DATABASE_URL),,$(BIN)/python -m backend.embedded run --)

.PHONY: run serve test cluster-test lint format bench schema purge clean-db screenshots

# What production runs (requirements.txt), then what development adds: the tests,
# linters and type checker (requirements-dev.txt). `make serve` installs only the first.
$(BIN)/.runtime: requirements.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12) and "Python 3.12 is needed (see .python-version)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(BIN)/.installed: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Development server on the embedded PostgreSQL (or DATABASE_URL), with GraphiQL, on
# http://127.0.0.1:8000/graphql/
run: $(BIN)/.installed
	DEBUG=$${DEBUG-1} DATABASE_TIMEOUT=0 $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py collectstatic --noinput -v0
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py compile_catalogues
	$(FRESH_METRICS) DEBUG=$${DEBUG-1} PHONE_DEFAULT_REGION=$${PHONE_DEFAULT_REGION-BY} \
		exec $(BIN)/python -m uvicorn backend.asgi:application \
		--host $(HOST) --port $(PORT) --loop uvloop --http backend.server:HttpProtocol --no-proxy-headers

# Production-style serving: DEBUG off, several workers; needs SECRET_KEY and DATABASE_URL.
# Logs are JSON lines, the supervisor's too (backend/uvicorn-logging.json), and so is what
# the steps before it print (backend.logs runs them); make itself echoes nothing.
serve: $(BIN)/.runtime
	@DATABASE_TIMEOUT=0 $(BIN)/python -m backend.logs migrate --noinput
	@$(BIN)/python -m backend.logs collectstatic --noinput -v0
	@$(BIN)/python -m backend.logs compile_catalogues
	@$(FRESH_METRICS) exec $(BIN)/python -m uvicorn backend.asgi:application \
		--host $(HOST) --port $(PORT) --workers $(WORKERS) --loop uvloop --http backend.server:HttpProtocol --no-proxy-headers --no-access-log \
		--log-config backend/uvicorn-logging.json

# The whole suite: lint, format check, types, then the tests, on the embedded PostgreSQL
# or DATABASE_URL's (PYTEST_ARGS to pick tests, e.g. PYTEST_ARGS="tests/test_invites.py -x").
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(TEST_ENV) $(BIN)/mypy
	$(TEST_ENV) $(BIN)/python manage.py collectstatic --noinput -v0
	$(TEST_ENV) $(BIN)/python manage.py compile_catalogues
	$(TEST_ENV) $(ON_A_DATABASE) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Many hosts, one database (tests/test_cluster.py): PostgreSQL, PgBouncer, two app hosts
# and nginx in network namespaces of their own, and the drills; needs root, iproute2,
# pgbouncer and nginx (.ci/run installs them). A few minutes; prints each drill's figures.
cluster-test: $(BIN)/.installed
	$(TEST_ENV) $(BIN)/python -m pytest -m cluster tests/test_cluster.py $(PYTEST_ARGS)

# The reference client's pictures in docs/ (README shows them), taken by the browser test
# (tests/test_browser.py; it needs /usr/bin/chromium).
# Other runs of the suite leave docs/ alone. Fails if a picture was not taken.
screenshots: $(BIN)/.installed
	$(TEST_ENV) $(BIN)/python manage.py collectstatic --noinput -v0
	$(TEST_ENV) $(BIN)/python manage.py compile_catalogues
	stamp=$$(mktemp) && $(TEST_ENV) SCREENSHOTS_DIR=$(CURDIR)/docs \
		$(ON_A_DATABASE) $(BIN)/python -m pytest tests/test_browser.py -k two_people && \
		stale=$$(find docs -name 'client-*.png' ! -newer "$$stamp") && rm -f "$$stamp" && \
		if [ -n "$$stale" ]; then echo "not taken (was the browser test skipped?):" $$stale; exit 1; fi

lint: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(BIN)/.installed
	DEBUG=1 $(BIN)/python manage.py export_schema

purge: $(BIN)/.runtime
	$(BIN)/python manage.py purge_expired

# Stop the embedded PostgreSQL and delete its data (.postgres/): the next `make run`
# starts on an empty database.
clean-db: $(BIN)/.runtime
	$(BIN)/python -m backend.embedded delete

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py
