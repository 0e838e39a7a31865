"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest

# No test may reach the Hugging Face hub (CI has no internet): fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

IMMEDIATE_TASKS = {
    "default": {
        "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
        "QUEUES": ["default", "training"],
    }
}


@pytest.fixture(autouse=True)
def _isolated_settings(request, tmp_path_factory):
    """Tasks and generation run inline and model caches go to a temporary folder unless a test says
    otherwise.

    Plain-Python core tests also run without pytest-django (``-p no:django``).
    """
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    settings = request.getfixturevalue("settings")
    settings.TASKS = IMMEDIATE_TASKS
    data_dir = tmp_path_factory.mktemp("data")
    settings.TEACHLOOP_DATA_DIR = data_dir
    settings.TEACHLOOP_MODEL_CACHE_DIR = data_dir / "models"
    settings.TEACHLOOP_TRY_WAIT_S = 10
    # Replies are generated in this process unless a test starts a GenerationServer (the PostgreSQL +
    # Redis run would otherwise send them to worker processes that tests don't start).
    settings.TEACHLOOP_GENERATION = "inline"
    yield


@pytest.fixture(autouse=True)
def _forget_loaded_models():
    """Each test starts without models loaded by earlier tests (their folders may be gone)."""
    yield
    from training.core.llm.registry import forget

    forget()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama model and tokenizer, built locally once per session."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory):
    """Where the real bundled model's safetensors copy goes; CI can keep it across runs."""
    import os
    from pathlib import Path

    configured = os.environ.get("TEACHLOOP_TEST_MODEL_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, dropped cleanly on PostgreSQL too.

    Async consumers and in-process workers run their database work in threads (asgiref's
    ``sync_to_async`` pool), whose connections stay open after their test; PostgreSQL refuses to drop
    a database with open sessions ("being accessed by other users"), so they are ended first.
    """
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
