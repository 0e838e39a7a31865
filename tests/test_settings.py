"""Settings come from the environment; production settings are safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-0123456789",
    "ALLOWED_HOSTS": "teachloop.example.com",
}


def run_django(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")
    }
    full_env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "teachloop.settings",
        "TEACHLOOP_DATA_DIR": str(tmp_path),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'db': str(s.DATABASES['default']['NAME']), "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS, "
    "'worker': s.TEACHLOOP_INPROCESS_WORKER, 'generation': s.TEACHLOOP_GENERATION}))"
)


def test_it_defaults_to_sqlite_and_in_memory_layer(tmp_path):
    result = run_django(SHOW, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["db"].startswith(str(tmp_path))
    assert shown["layer"] == "teachloop.channel_layers.ThreadSafeInMemoryChannelLayer"
    assert shown["worker"] is True
    assert shown["generation"] == "inline"  # the model runs in the one process there is


def test_it_uses_postgres_and_redis_from_urls(tmp_path):
    env = {"DATABASE_URL": "postgres://u:p@db.internal:5432/teach", "REDIS_URL": "redis://cache:6379/1"}
    result = run_django(SHOW, env, tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["engine"] == "django.db.backends.postgresql"
    assert shown["db"] == "teach"
    assert shown["layer"] == "channels_redis.core.RedisChannelLayer"
    assert shown["worker"] is False  # workers are separate processes once Redis carries messages
    assert shown["generation"] == "workers"  # and web processes never load a model


def test_generation_in_workers_needs_redis(tmp_path):
    result = run_django(SHOW, {"TEACHLOOP_GENERATION": "workers"}, tmp_path)
    assert result.returncode != 0 and "TEACHLOOP_GENERATION=workers needs REDIS_URL" in result.stderr
    result = run_django(SHOW, {"TEACHLOOP_GENERATION": "elsewhere"}, tmp_path)
    assert result.returncode != 0 and "must be inline or workers" in result.stderr


POOL = (
    "import django; django.setup(); from channels.layers import get_channel_layer; "
    "print(get_channel_layer().create_pool(0).max_connections)"
)


def test_the_redis_layer_pool_holds_a_class_of_sockets_and_its_size_is_a_setting(tmp_path):
    """200 sockets leaving a group at once need 200 connections; redis-py's default pool holds 100."""
    env = {"REDIS_URL": "redis://cache:6379/1"}
    result = run_django(POOL, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 200
    result = run_django(POOL, {**env, "TEACHLOOP_REDIS_MAX_CONNECTIONS": "300"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 300
    result = run_django(POOL, {**env, "TEACHLOOP_REDIS_MAX_CONNECTIONS": "0"}, tmp_path)
    assert result.returncode != 0 and "TEACHLOOP_REDIS_MAX_CONNECTIONS must be at least 1" in result.stderr


def test_torch_computes_with_the_threads_the_setting_gives(tmp_path):
    threads = "import django; django.setup(); import torch; print(torch.get_num_threads())"
    env = {"OMP_NUM_THREADS": "2"}  # what the process would compute with without the setting
    result = run_django(threads, {**env, "TEACHLOOP_TORCH_THREADS": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 1
    # torch imported before Django starts (a test runner, a notebook) is set too.
    early = "import torch; import django; django.setup(); print(torch.get_num_threads())"
    result = run_django(early, {**env, "TEACHLOOP_TORCH_THREADS": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 1
    result = run_django(threads, {**env, "TEACHLOOP_TORCH_THREADS": "-1"}, tmp_path)
    assert result.returncode != 0 and "TEACHLOOP_TORCH_THREADS must be 0 or more" in result.stderr


def test_it_refuses_to_start_without_secret_key_in_production(tmp_path):
    result = run_django(SHOW, {"DEBUG": "0", "ALLOWED_HOSTS": "example.com"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_passes_deploy_checks_with_production_settings(tmp_path):
    code = (
        "import sys; from django.core.management import execute_from_command_line as e; "
        "e(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])"
    )
    result = run_django(code, PRODUCTION_ENV, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


SAFETY = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'signup': s.TEACHLOOP_OPEN_SIGNUP, 'preload': s.SECURE_HSTS_PRELOAD}))"
)


def test_a_public_server_keeps_sign_up_closed_and_hsts_preload_off_unless_asked(tmp_path):
    # Preload lists take months to leave; open sign-up lets anyone drive the teacher model.
    for env, expected in (
        ({}, {"signup": True, "preload": False}),  # DEBUG: a developer's machine
        (PRODUCTION_ENV, {"signup": False, "preload": False}),
        (
            {**PRODUCTION_ENV, "TEACHLOOP_OPEN_SIGNUP": "1", "SECURE_HSTS_PRELOAD": "1"},
            {"signup": True, "preload": True},
        ),
    ):
        result = run_django(SAFETY, env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == expected, env


def test_it_rejects_a_malformed_boolean(tmp_path):
    result = run_django(SHOW, {"DEBUG": "maybe"}, tmp_path)
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_it_keeps_the_generated_dev_secret_key_across_restarts(tmp_path):
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_django(code, {}, tmp_path)
    second = run_django(code, {}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 50
