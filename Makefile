# One command to serve, one to test. Both make the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: run serve test lint format bench schema purge

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12) and "Python 3.12 is needed (see .python-version)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Development server on SQLite (or DATABASE_URL), with GraphiQL, on http://127.0.0.1:8000/graphql/
run: $(BIN)/.installed
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG-1} $(BIN)/python -m uvicorn backend.asgi:application \
		--host $(HOST) --port $(PORT) --loop uvloop --http httptools --no-proxy-headers

# Production-style serving: DEBUG off, several workers; needs SECRET_KEY and DATABASE_URL.
serve: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python -m uvicorn backend.asgi:application --host $(HOST) --port $(PORT) \
		--workers $(WORKERS) --loop uvloop --http httptools --no-proxy-headers --no-access-log

# The whole suite: lint, format check, then the tests (PostgreSQL when DATABASE_URL says so).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=$${SECRET_KEY-test-only-secret-key-0123456789abcdef0123456789} SMS_BACKEND=$${SMS_BACKEND-simulated} \
		$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(BIN)/.installed
	DEBUG=1 $(BIN)/python manage.py export_schema

purge: $(BIN)/.installed
	$(BIN)/python manage.py purge_expired

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py
