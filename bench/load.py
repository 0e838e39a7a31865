"""Load benchmark, part 1: signed-in HTTP clients over staff and learner pages, on loopback.

One command (``python bench/load.py``, ``--help``), bounded in time. For each shape it seeds a fresh
database (50 accounts: 10 staff, 40 learners, the arithmetic course), starts the site, signs every
client in, lets ``--clients`` clients request their pages back to back for ``--seconds``, and reports
requests per second, latency percentiles and errors (any status but 200, any failed request):

- ``embedded``: what ``make run`` serves: SQLite, the in-memory channel layer, one ``manage.py serve``
  process with the worker in it;
- ``production``: PostgreSQL and Redis on loopback, ``--web`` daphne processes (the clients spread
  over them, standing in for a proxy) and one ``manage.py worker``.

Staff clients cycle over the dashboard, teaching runs, training jobs, models and evaluations; learner
clients over the course list and the course page. The clients run in this process (asyncio, one
connection each) and share the machine's cores with the server: on 2 cores the figures are a floor.
Both shapes run with ``DEBUG=1`` (plain HTTP on loopback; the secure-cookie settings of ``DEBUG=0``
need HTTPS). Not measured yet (issue 17): WebSockets following a job, learner streams, faults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402

PASSWORD = "load-bench-password-1"
STAFF_PAGES = ["/", "/runs/", "/training/jobs/", "/training/models/", "/evaluations/"]
LEARNER_PAGES = ["/learn/", "/learn/courses/arithmetic/"]
POSTGRES = "postgres://postgres@127.0.0.1:5432/"
LOAD_DB = "teachloop_load"

SEED = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
call_command("bootstrap", verbosity=0)
call_command("import_course", "--pack", "arithmetic", verbosity=0)
User = get_user_model()
for i in range(10):
    User.objects.create_user(f"staff{{i}}", password={PASSWORD!r}, is_staff=True)
from tutor.learn.services import learner_enrol
from tutor.models import Course
course = Course.objects.get(key="arithmetic")
for i in range(40):
    learner_enrol(user=User.objects.create_user(f"learner{{i}}", password={PASSWORD!r}), course=course)
"""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, by linear interpolation (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def summary(self, seconds: float) -> dict[str, float | int | dict[str, int]]:
        ms = [1000 * x for x in self.latencies]
        return {
            "requests": len(ms),
            "per_s": len(ms) / seconds,
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """A seeded database and the processes serving it (see the module docstring)."""

    def __init__(self, shape: str, work: Path, web: int) -> None:
        self.shape, self.work = shape, work
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.env.update(
            DJANGO_SETTINGS_MODULE="teachloop.settings",
            TEACHLOOP_DATA_DIR=str(work),
            DEBUG="1",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        if shape == "production":
            self.env.update(
                DATABASE_URL=POSTGRES + LOAD_DB,
                REDIS_URL="redis://127.0.0.1:6379/5",
                TEACHLOOP_INPROCESS_WORKER="0",
            )
        self.ports = [free_port() for _ in range(web if shape == "production" else 1)]
        self.processes: list[subprocess.Popen] = []

    def seed(self) -> None:
        if self.shape == "production":
            _fresh_postgres_database()
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=600,
        )

    def start(self) -> None:
        log = (self.work / "server.log").open("a")
        if self.shape == "embedded":
            commands = [["manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.ports[0])]]
        else:
            commands = [
                ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "teachloop.asgi:application"]
                for port in self.ports
            ] + [["manage.py", "worker"]]
        for command in commands:
            self.processes.append(
                subprocess.Popen([sys.executable, *command], cwd=ROOT, env=self.env, stdout=log, stderr=log)
            )
        for port in self.ports:
            _wait_for(port, self.processes, self.work / "server.log")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _fresh_postgres_database() -> None:
    import psycopg

    with psycopg.connect(POSTGRES + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {LOAD_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {LOAD_DB}")


def _wait_for(port: int, processes: list[subprocess.Popen], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"a server process exited:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after 120 s")


async def _sign_in(client, username: str) -> None:
    page = await client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if token is None:
        raise RuntimeError("no CSRF token on the sign-in page")
    reply = await client.post(
        "/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": str(client.base_url) + "/accounts/login/"},
    )
    if reply.status_code != 302:
        raise RuntimeError(f"{username} could not sign in: HTTP {reply.status_code}")


async def http_load(ports: list[int], clients: int, seconds: float) -> dict:
    """``clients`` signed-in clients (a fifth staff) requesting their pages back to back."""
    import httpx2

    tally = Tally()
    users = [
        (f"staff{i % 10}", STAFF_PAGES) if i % 5 == 0 else (f"learner{i % 40}", LEARNER_PAGES)
        for i in range(clients)
    ]
    sessions = []
    for i, (user, _) in enumerate(users):
        client = httpx2.AsyncClient(
            base_url=f"http://127.0.0.1:{ports[i % len(ports)]}", timeout=30.0, follow_redirects=False
        )
        await _sign_in(client, user)
        sessions.append(client)
    deadline = time.monotonic() + seconds

    async def run(client, pages: list[str], offset: int) -> None:
        n = offset
        while time.monotonic() < deadline:
            path = pages[n % len(pages)]
            n += 1
            started = time.perf_counter()
            try:
                reply = await client.get(path)
            except Exception as exc:  # a refused or dropped connection is an error, not a crash
                tally.error(type(exc).__name__)
                continue
            tally.latencies.append(time.perf_counter() - started)
            if reply.status_code != 200:
                tally.error(f"HTTP {reply.status_code} {path}")

    started = time.monotonic()
    await asyncio.gather(
        *(run(c, pages, i) for i, (c, (_, pages)) in enumerate(zip(sessions, users, strict=True)))
    )
    elapsed = time.monotonic() - started
    for client in sessions:
        await client.aclose()
    return tally.summary(elapsed)


def measure(shape: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"load-{shape}-") as folder:
        work = Path(args.work) / shape if args.work else Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        site = Site(shape, work, args.web)
        site.seed()
        site.start()
        try:
            asyncio.run(http_load(site.ports, 5, 3))  # warm-up: first requests compile templates
            return asyncio.run(http_load(site.ports, args.clients, args.seconds))
        finally:
            site.stop()


def report(results: dict[str, dict], args) -> str:
    lines = [
        "# Load benchmark report: HTTP clients",
        "",
        f"Command: `python bench/load.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"Date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"Machine: {describe()}",
        f"Clients: {args.clients} signed in (a fifth staff), back to back for {args.seconds:g} s, after a "
        f"3 s warm-up; production shape: {args.web} daphne processes and one worker on PostgreSQL and Redis.",
        "",
        "| shape | requests/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for shape, r in results.items():
        kinds = ", ".join(f"{k} ×{v}" for k, v in r["error_kinds"].items())
        lines.append(
            f"| {shape} | {r['per_s']:.0f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['errors']}{f' ({kinds})' if kinds else ''} |"
        )
    lines += [
        "",
        "Targets (issue 17): production p99 < 250 ms and >= 300 requests/s with 0 errors; embedded at least "
        "2x the 94 requests/s measured at df6a1b3 with 0 errors.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="embedded,production", help="embedded, production or both")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per shape")
    parser.add_argument("--web", type=int, default=2, help="daphne processes in the production shape")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "load-report.md"))
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--work", help="keep each shape's data folder and server.log here (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = set(shapes) - {"embedded", "production"}
    if unknown or not shapes:
        parser.error(
            f"--shapes takes embedded and/or production, not {', '.join(sorted(unknown)) or 'nothing'}"
        )
    if not 1 <= args.clients <= 1000 or not 1 <= args.seconds <= 600 or not 1 <= args.web <= 8:
        parser.error("--clients 1-1000, --seconds 1-600, --web 1-8")
    results = {}
    for shape in shapes:
        print(f"{shape}: seeding, starting, {args.clients} clients for {args.seconds:g} s…", flush=True)
        results[shape] = measure(shape, args)
        print(f"{shape}: {json.dumps(results[shape])}", flush=True)
    text = report(results, args)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
