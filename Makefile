# The two commands a new user needs: `make run` and `make test` (which runs `make lint` first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
PYTEST_ARGS ?=
# The suite runs on every core (pytest-xdist); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto
SIZE ?= small
# axe-core, which the browser journeys put into every page they visit (tests/e2e/package.json; Node and npm):
# only `make e2e` needs it, so `make run` and `make test` need no Node.
AXE := tests/e2e/node_modules/axe-core/axe.min.js
export FLASK_APP := backoffice

.PHONY: run test lint e2e install migrate seed clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund
	touch $@

migrate: install
	$(BIN)/flask db upgrade

seed: migrate
	$(BIN)/flask seed-demo --if-empty

## Web, Celery worker and beat on the embedded defaults (SQLite, no-server broker),
## or on PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set.
run: seed
	@echo ""
	@echo "  Back-office: http://127.0.0.1:$(PORT)/   (web, worker and beat start below; Ctrl-C stops all three)"
	@echo "  Demo accounts, password 'demo-password-2026':"
	@echo "    researcher@demo.example  lead@demo.example  auditor@demo.example  admin@demo.example  admin2@demo.example  provider@demo.example"
	@echo "  Staff also need a second-factor code: $(BIN)/flask --app backoffice demo-code researcher@demo.example"
	@echo ""
	PORT=$(PORT) PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)/} $(BIN)/honcho start -f Procfile

## ruff and mypy, as configured in pyproject.toml: the whole tree for ruff, the services and models for mypy.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## The whole suite, after lint: SQLite by default; PostgreSQL with DATABASE_URL; Celery over Redis with REDIS_URL.
test: install lint
	$(BIN)/python -m pytest --ignore=tests/e2e -n $(TEST_WORKERS) $(PYTEST_ARGS)

## The browser journeys (tests/e2e): Playwright drives Debian's Chromium (/usr/bin/chromium, `apt-get install
## chromium`) against gunicorn, a Celery worker and beat, and axe-core (npm) checks every page at WCAG 2.1 AA
## (tests/e2e/test_accessibility.py). Screenshots and logs land in artifacts/e2e/.
e2e: install $(AXE)
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

## Benchmarks (docs/DESIGN.md section 7): builds the scale dataset, runs every benchmark, writes benchmarks/RESULTS.md.
## SQLite by default, PostgreSQL when DATABASE_URL is set (in a database of its own); SIZE=full for 100k providers.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run --size $(SIZE)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

clean:
	rm -rf $(VENV) tests/e2e/node_modules instance .pytest_cache .mypy_cache .ruff_cache
