# One command to run the product, one to test it. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# LocalStack, the tests' second S3, in a virtual environment of its own (its pins differ).
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed
# Ports of the web server and of the local S3 (moto) that `run`, `demo` and `s3` start.
PORT ?= 8000
S3_PORT ?= 5055

.PHONY: run demo screenshots s3 test localstack lint format worker beat clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(LOCALSTACK_STAMP): requirements-localstack.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(LOCALSTACK_VENV)/bin/python || $(PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet -r requirements-localstack.txt
	touch $(LOCALSTACK_STAMP)

## demo: seeded demo on http://127.0.0.1:$(PORT) (SQLite unless DATABASE_URL; local S3 on $(S3_PORT))
## SEED_ONLY=1 stops once seeded (CI's smoke test)
demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	EMBEDDED_S3_PORT=$(S3_PORT) $(BIN)/python manage.py demo --port $(PORT) $(if $(SEED_ONLY),--seed-only)

## screenshots: seed the demo on a throw-away SQLite file, then save the README's pictures of
## it in docs/screenshots/ (Debian's Chromium through Playwright). Tests never write there.
screenshots: $(STAMP)
	mkdir -p var
	rm -f var/screenshots.sqlite3
	DATABASE_URL=sqlite:///$(CURDIR)/var/screenshots.sqlite3 $(BIN)/python manage.py migrate --noinput
	DATABASE_URL=sqlite:///$(CURDIR)/var/screenshots.sqlite3 EMBEDDED_S3_PORT=$(S3_PORT) \
		$(BIN)/python manage.py demo --port $(PORT) --screenshots docs/screenshots

## run: migrate the database (SQLite unless DATABASE_URL), start the local S3, serve on :$(PORT)
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_superuser
	EMBEDDED_S3_PORT=$(S3_PORT) $(BIN)/python manage.py runlocal --port $(PORT)

## s3: only the local S3, for the Procfile stack (honcho start) on a laptop
s3: $(STAMP)
	EMBEDDED_S3_PORT=$(S3_PORT) $(BIN)/python manage.py local_s3

## test: the whole suite, then lint; uses PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set,
## and LocalStack (installed on first use) as the second S3 of the Lambda's and reconcile's tests
test: $(STAMP) $(LOCALSTACK_STAMP)
	$(BIN)/python -m pytest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## localstack: only install the tests' second S3 into .venv-localstack
localstack: $(LOCALSTACK_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## worker / beat: needs REDIS_URL
worker: $(STAMP)
	$(BIN)/celery -A backupsite worker --loglevel INFO

# beat keeps its own bookkeeping (when each entry last ran) in var/, which git ignores.
beat: $(STAMP)
	mkdir -p var
	$(BIN)/celery -A backupsite beat --loglevel INFO --schedule var/celerybeat-schedule

clean:
	rm -rf $(VENV) $(LOCALSTACK_VENV) .pytest_cache .ruff_cache
