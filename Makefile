# One command to run the product, one to test it. Both set up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format worker beat clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## run: migrate the database (SQLite unless DATABASE_URL) and serve on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_superuser
	$(BIN)/python manage.py runserver 127.0.0.1:8000

## test: the whole suite, then lint; uses PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set
test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## worker / beat: needs REDIS_URL
worker: $(STAMP)
	$(BIN)/celery -A backupsite worker --loglevel INFO

beat: $(STAMP)
	$(BIN)/celery -A backupsite beat --loglevel INFO

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
