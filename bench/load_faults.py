"""Load benchmark, part 3: faults on the production shape (``python bench/load.py --shapes production
--scenarios faults``). What a fault loses, doubles or leaves stuck, and what the person is shown.

Each fault is caused on purpose, on loopback, while work is under way:

- ``worker_kill``: the worker is SIGKILLed mid-job (a LoRA job started through the fine-tune form, after
  it reported a few steps); a new worker is started at once, as a supervisor would. Recovery re-queues
  the job once its heartbeat is older than ``TEACHLOOP_JOB_STALE_AFTER_S`` (the bench sets it short,
  :data:`FAULT_ENV`; the default is 90 s) and it resumes from its last checkpoint.
- ``redis_restart``: Redis (the channel layer) is shut down and started again while a job trains with
  sockets following it; then a learner asks for an explanation (generation goes through Redis).
- ``reply_redis``: Redis is restarted while a learner's explanation is being written; the page's
  socket reconnects as htmx's ws extension does (:func:`reply_redis`).
- ``postgres_restart``: PostgreSQL is restarted while a job trains and a staff client keeps loading a
  page; then a learner asks for an explanation.
- ``postgres_outage``: the same, but PostgreSQL stays down for :data:`OUTAGE_S`, longer than the stale
  time: recovery may re-queue a job whose worker is still alive (its lease check stops the old attempt).
- ``teacher_down`` / ``teacher_slow`` / ``teacher_garbage``: the course's teacher is an
  OpenAI-compatible server (tests/fake_openai_server.py) that refuses connections, answers after
  ``--teacher-slow-s``, or answers 200 with a body that is not JSON. A learner starts a session; what
  the page shows is recorded, then the learner answers the exercise (their input must be kept).

**This restarts the machine's own Redis and PostgreSQL** (127.0.0.1:6379 and :5432, as .ci/run starts
them), so it is never part of the default scenarios: it is asked for by name.

For every fault the result says: the job's final status, its attempts, optimizer steps recorded more
than once, adapters made, whether it finished before the deadline (not stuck), the time from the fault
to the work going on, and the line the person was shown.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load_live import _PROGRESS, TERMINAL_JOB, JobWatcher, Stream, open_socket

ROOT = Path(__file__).resolve().parent.parent

FAULTS = (
    "worker_kill",
    "reply_kill",
    "run_kill",
    "redis_restart",
    "reply_redis",
    "postgres_restart",
    "postgres_outage",
    "teacher_down",
    "teacher_slow",
    "teacher_garbage",
)

RECONNECTED_CODES = {1006, 1011, 1012, 1013}  # static/vendor/htmx-ext-ws-2.0.4.js, its onclose
RECONNECT_S = 1.0  # htmx's ws extension waits up to 1 s (random) before its first reconnect

FAULT_ENV = {
    # Recovery within seconds instead of the production 90 s + 30 s: the bench measures that it
    # happens and what it loses; docs/benchmarks/load.md says what the defaults mean for the wait.
    "TEACHLOOP_JOB_HEARTBEAT_S": "2",
    "TEACHLOOP_JOB_STALE_AFTER_S": "10",
    "TEACHLOOP_RECOVER_EVERY_S": "2",
}

OUTAGE_S = (
    25.0  # postgres_outage: longer than TEACHLOOP_JOB_STALE_AFTER_S above, with room for a recovery pass
)

REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
]

JOB_STATE = """
import json
from training.models import Adapter, TrainingJob
job = TrainingJob.objects.get(pk={job})
steps = list(job.metrics.values_list("step", flat=True))
print(json.dumps({{
    "status": job.status, "attempts": job.attempts, "last_error": job.last_error,
    "steps": steps, "total_steps": job.total_steps,
    "adapters": Adapter.objects.filter(created_at__gte=job.created_at).count(),
    "events": [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in job.events][-8:],
}}))
"""

RUN_IDS = """
import json
from training.models import LanguageModel
from tutor.models import Course
teacher = LanguageModel.objects.filter(is_default_teacher=True).first() or LanguageModel.objects.first()
student = LanguageModel.objects.filter(is_default_student=True).first() or LanguageModel.objects.first()
course = Course.objects.get(key="arithmetic")
print(json.dumps({"course": course.pk, "teacher": teacher.pk, "student": student.pk}))
"""

RUN_STATE = """
import json
from training.models import TrainingJob
from tutor.models import TeachingRun
from tutor.runs.selectors import teaching_run_state_load
run = TeachingRun.objects.get(pk={run})
state = teaching_run_state_load(run)
print(json.dumps({{
    "status": run.status, "attempts": run.attempts, "last_error": run.last_error,
    "step": run.current_step, "round": run.current_round,
    "done": [list(r.done_steps) for r in state.rounds] if state else [],
    "jobs": TrainingJob.objects.filter(created_at__gte=run.created_at).count(),
}}))
"""

SESSION_STATE = """
import json
from tutor.models import TutoringSession
session = TutoringSession.objects.get(pk={session})
print(json.dumps({{
    "attempts": [a.answer for a in session.attempts.all()],
    "messages": [(m.kind, m.status, m.error[:300]) for m in session.messages.all()],
}}))
"""

USE_TEACHER = """
from training.models import LanguageModel
from tutor.models import Course
teacher = None
if {url!r}:
    teacher, _ = LanguageModel.objects.update_or_create(
        name="fault-teacher",
        defaults=dict(
            backend="openai", source="fake-model", base_url={url!r}, is_teacher=True, max_new_tokens=32
        ),
    )
Course.objects.filter(key="arithmetic").update(teacher=teacher)
"""

_FINISHED = re.compile(  # a finished message: its id, status and content
    r'<article id="tmsg-(\d+)"[^>]*data-status="(failed|done|stopped)"[^>]*>(.*?)</article>', re.S
)
_TAGS = re.compile(r"<[^>]+>")


def shown_text(fragment: str) -> str:
    """The words a person reads in an HTML fragment: tags dropped, entities decoded, spaces squeezed."""
    return " ".join(html.unescape(_TAGS.sub(" ", fragment)).split())


@dataclass
class Follower(Stream):
    """A learner's socket (as :class:`Stream`), keeping the text of the finished message as shown."""

    shown: list[str] = field(default_factory=list)

    def receive(self, at: float, text: str) -> None:
        super().receive(at, text)
        self.shown += [shown_text(m.group(3)) for m in _FINISHED.finditer(text)]


def site_query(site, code: str) -> dict[str, Any]:
    """Run ``code`` in ``manage.py shell`` against the site's database; the JSON it printed last."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py shell failed: {done.stderr[-1500:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


def _postgres_cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _wait_ready(command: list[str], seconds: float = 60) -> float:
    """Seconds until ``command`` succeeds (a readiness probe); raises after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if subprocess.run(command, capture_output=True).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{' '.join(command)} still failing after {seconds:.0f} s")


def restart_redis() -> float:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], capture_output=True)
    time.sleep(1.0)
    subprocess.run(REDIS_START, check=True, capture_output=True)
    return _wait_ready(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"])


def restart_postgres() -> float:
    subprocess.run([*_postgres_cluster(), "restart"], check=True, capture_output=True, timeout=120)
    return _wait_ready(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"])


def postgres_down_for_a_while() -> float:
    """PostgreSQL stopped for :data:`OUTAGE_S`, then started; seconds from the start until it answers."""
    subprocess.run([*_postgres_cluster(), "stop"], check=True, capture_output=True, timeout=120)
    time.sleep(OUTAGE_S)
    subprocess.run([*_postgres_cluster(), "start"], check=True, capture_output=True, timeout=120)
    return _wait_ready(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"])


# --- the faults ----------------------------------------------------------------------------------


async def _job_under_way(site, args, client, min_step: int) -> tuple[int, JobWatcher, Any]:
    """A LoRA job started through the fine-tune form, followed by one socket until it reported
    ``min_step`` steps (it is training)."""
    from bench.load import _start_job, job_settings

    job_id = await _start_job(client, job_settings(site, steps=args.fault_job_steps, checkpoint_every=4))
    watcher = JobWatcher()
    sock = await open_socket(
        site.ports[0], f"/ws/training/jobs/{job_id}/", client.cookie_header, watcher.receive
    )
    deadline = time.monotonic() + args.job_timeout
    while time.monotonic() < deadline and _max_step(watcher) < min_step:
        await asyncio.sleep(0.3)
    return job_id, watcher, sock


def _max_step(watcher: JobWatcher) -> int:
    return max(
        (p.get("step", 0) for m in watcher.messages for p in m.points if isinstance(p.get("step"), int)),
        default=0,
    )


async def _until_job_ends(site, job_id: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state = await asyncio.to_thread(site_query, site, JOB_STATE.format(job=job_id))
        if state["status"] in TERMINAL_JOB or time.monotonic() > deadline:
            state["stuck"] = state["status"] not in TERMINAL_JOB
            return state
        await asyncio.sleep(2.0)


def _job_summary(state: dict[str, Any], watcher: JobWatcher, fault_at: float) -> dict[str, Any]:
    steps = state["steps"]
    after = [m.at for m in watcher.messages if m.at > fault_at and m.points]
    return {
        "final_status": state["status"],
        "page_status": watcher.status,
        "attempts": state["attempts"],
        "steps_recorded": len(steps),
        "steps_expected": state["total_steps"],
        "steps_doubled": len(steps) - len(set(steps)),
        "adapters": state["adapters"],
        "stuck": state["stuck"],
        "progress_again_after_s": (min(after) - fault_at) if after else None,
        "last_error": state["last_error"][:300],
        "events": state["events"],
    }


async def worker_kill(site, args) -> dict[str, Any]:
    client = await _staff(site)
    job_id, watcher, sock = await _job_under_way(site, args, client, min_step=6)
    seen = _max_step(watcher)
    fault_at = time.time()
    site.kill_worker()
    site.start_worker()
    state = await _until_job_ends(site, job_id, args.job_timeout)
    await asyncio.sleep(1.0)
    sock.close()
    await client.aclose()
    return {"killed_after_step": seen, **_job_summary(state, watcher, fault_at)}


@dataclass
class Timeline:
    """Everything one learner's socket showed, in order: progress counts and finished messages."""

    started: float
    counts: list[tuple[float, int]] = field(default_factory=list)
    ends: list[tuple[float, str, str, str]] = field(default_factory=list)  # (at, message id, status, text)

    def receive(self, at: float, text: str) -> None:
        self.counts += [(at, int(chars)) for _, chars in _PROGRESS.findall(text) if int(chars) > 0]
        for match in _FINISHED.finditer(text):
            self.ends.append((at, match.group(1), match.group(2), shown_text(match.group(3))))

    async def until(self, check, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check():
                return True
            await asyncio.sleep(0.05)
        return False


async def reply_kill(site, args) -> dict[str, Any]:
    """A learner's explanation is being written when the worker is SIGKILLed (a new worker is started at
    once, as a supervisor would): what the learner is shown and when (the web side asks a worker again
    by itself, ``training.generation.WORKER_LOST_RETRIES``); where that ends failed, the learner presses
    "Try again", as the page offers, and the new worker's reply arrives."""
    from bench.load import _new_sessions

    user = "learner35"
    cookies, sessions = await _new_sessions([user], lambda i, u: site.ports[0])
    line = Timeline(started=time.time())
    sock = await open_socket(
        site.ports[0], f"/ws/learn/sessions/{sessions[user]}/", cookies[user], line.receive
    )
    try:
        if not await line.until(lambda: line.counts or line.ends, args.stream_timeout):
            return {"error": "the reply never started"}
        fault_at, chars_at_kill = time.time(), max((c for _, c in line.counts), default=0)
        site.kill_worker()
        site.start_worker()
        if not await line.until(lambda: any(at > fault_at for at, *_ in line.ends), args.stream_timeout):
            return {"error": "the learner was shown nothing after the kill", "chars_at_kill": chars_at_kill}
        shown_at, message_id, status, text = next(e for e in line.ends if e[0] > fault_at)
        shown = {
            "chars_at_kill": chars_at_kill,
            "shown_status": status,
            "shown_after_s": shown_at - fault_at,
            "shown": text[:400],
        }
        if status == "done":  # asked again unseen: nothing for the learner to do
            session = await asyncio.to_thread(site_query, site, SESSION_STATE.format(session=sessions[user]))
            return {**shown, "retry_status": "not needed", "messages": session["messages"]}
        retry_at = time.time()
        sock.protocol.sendMessage(json.dumps({"retry": message_id, "HEADERS": {}}).encode())
        answered = await line.until(
            lambda: any(at > retry_at and st in ("done", "failed") for at, _, st, _ in line.ends),
            args.stream_timeout,
        )
        after = [e for e in line.ends if e[0] > retry_at and e[2] in ("done", "failed")]
        session = await asyncio.to_thread(site_query, site, SESSION_STATE.format(session=sessions[user]))
        return {
            **shown,
            "retry_status": after[0][2] if answered else "unfinished",
            "retry_after_s": (after[0][0] if answered else time.time()) - retry_at,
            "retry_shown": after[0][3][:400] if answered else "",
            "messages": session["messages"],
        }
    finally:
        sock.close()


async def reply_redis(site, args) -> dict[str, Any]:
    """A learner's explanation is being written when Redis (the channel layer between the web processes
    and the worker) is restarted. The page's socket closes with the layer; like htmx's ws extension, the
    bench opens it again (after ``RECONNECT_S``, and again while it is refused). What the learner is
    shown, and when; the session's messages afterwards."""
    from bench.load import _new_sessions

    user = "learner36"
    cookies, sessions = await _new_sessions([user], lambda i, u: site.ports[0])
    path = f"/ws/learn/sessions/{sessions[user]}/"
    line = Timeline(started=time.time())
    socks = [await open_socket(site.ports[0], path, cookies[user], line.receive)]
    try:
        if not await line.until(lambda: line.counts or line.ends, args.stream_timeout):
            return {"error": "the reply never started"}
        fault_at, chars_at_fault = time.time(), max((c for _, c in line.counts), default=0)
        redis_back_s = await asyncio.to_thread(restart_redis)
        closed_with, reconnects = None, 0
        deadline = time.monotonic() + args.stream_timeout
        while not any(at > fault_at for at, *_ in line.ends) and time.monotonic() < deadline:
            current = socks[-1]
            if current.closed is not None:
                closed_with = closed_with or current.closed[0]
                if current.closed[0] not in RECONNECTED_CODES:
                    break  # the page would not reconnect
                await asyncio.sleep(RECONNECT_S)
                try:
                    socks.append(await open_socket(site.ports[0], path, cookies[user], line.receive))
                    reconnects += 1
                except (TimeoutError, ConnectionError, OSError):
                    continue
            await asyncio.sleep(0.05)
        session = await asyncio.to_thread(site_query, site, SESSION_STATE.format(session=sessions[user]))
        ends = [e for e in line.ends if e[0] > fault_at]
        if not ends:
            return {
                "error": "the learner was shown nothing after the restart",
                "chars_at_fault": chars_at_fault,
                "messages": session["messages"],
            }
        shown_at, _, status, text = ends[0]
        return {
            "chars_at_fault": chars_at_fault,
            "redis_back_s": redis_back_s,
            "socket_closed_with": closed_with,
            "reconnects": reconnects,
            "shown_status": status,
            "shown_after_s": shown_at - fault_at,
            "shown": text[:400],
            "messages": session["messages"],
        }
    finally:
        for sock in socks:
            sock.close()


async def run_kill(site, args) -> dict[str, Any]:
    """A small teaching run started through the run form; the worker SIGKILLed once the run has
    finished its first steps; a new worker started. Where does the run go on from?"""
    from bench.load_busy_run import BUSY_RUN_FORM, start_run

    client = await _staff(site)
    ids = await asyncio.to_thread(site_query, site, RUN_IDS)
    form = {  # the busy_run scenario's run, smaller and always accepted: the fault, not the run, is measured
        **BUSY_RUN_FORM,
        "course": ids["course"],
        "student": ids["student"],
        "teacher": ids["teacher"],
        "plan_budget": 8,
        "explain_budget": 2,
        "generate_budget": 4,
        "generate_k": 2,
        "acceptance": "always",
        "max_steps": 4,
        "batch_size": 2,
    }
    run_id = await start_run(client, form)
    query = RUN_STATE.format(run=run_id)
    deadline = time.monotonic() + args.job_timeout
    state = await asyncio.to_thread(site_query, site, query)
    while time.monotonic() < deadline and len((state["done"] or [[]])[0]) < 2:  # diagnose and plan done
        await asyncio.sleep(1.0)
        state = await asyncio.to_thread(site_query, site, query)
    done_before = list((state["done"] or [[]])[0])
    fault_at = time.time()
    site.kill_worker()
    site.start_worker()
    seen: list[str] = []  # the steps the run page showed afterwards, in order
    deadline = time.monotonic() + args.job_timeout + 600
    while True:
        state = await asyncio.to_thread(site_query, site, query)
        if state["step"] and (not seen or seen[-1] != state["step"]):
            seen.append(state["step"])
        if state["status"] in TERMINAL_JOB or time.monotonic() > deadline:
            break
        await asyncio.sleep(3.0)  # each look starts a manage.py shell: ~1 s of a core
    await client.aclose()
    repeated = [step for step in done_before if step in seen]
    return {
        "done_before_kill": done_before,
        "steps_after": seen,
        "steps_repeated": repeated,
        "final_status": state["status"],
        "attempts": state["attempts"],
        "training_jobs": state["jobs"],
        "stuck": state["status"] not in TERMINAL_JOB,
        "last_error": state["last_error"][:300],
        "after_s": time.time() - fault_at,
    }


async def _learner_after(site, user: str, timeout: float) -> dict[str, Any]:
    """``user`` starts a new session; its explanation's end as the page showed it."""
    from bench.load import _new_sessions

    cookies, sessions = await _new_sessions([user], lambda i, u: site.ports[0])
    follower = Follower(started=time.time())
    sock = await open_socket(
        site.ports[0], f"/ws/learn/sessions/{sessions[user]}/", cookies[user], follower.receive
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and follower.done is None:
        await asyncio.sleep(0.2)
    sock.close()
    return {
        "session": sessions[user],
        "status": follower.status or "unfinished",
        "seconds": (follower.done or time.time()) - follower.started,
        "shown": follower.shown[-1][:400] if follower.shown else "",
    }


async def _restart_during_job(site, args, restart, users: tuple[str, str]) -> dict[str, Any]:
    """A job trains with sockets following it and a staff client polling a page; ``restart`` runs; then
    the job is followed to its end and a learner asks for an explanation."""
    client = await _staff(site)
    job_id, watcher, sock = await _job_under_way(site, args, client, min_step=4)
    more = [JobWatcher() for _ in range(args.fault_sockets)]
    sockets = [
        await open_socket(
            site.ports[i % len(site.ports)], f"/ws/training/jobs/{job_id}/", client.cookie_header, w.receive
        )
        for i, w in enumerate(more)
    ]
    codes: list[tuple[float, int | str]] = []
    polling = True

    async def poll() -> None:
        while polling:
            try:
                reply = await client.get("/training/jobs/")
                codes.append((time.time(), reply.status_code))
            except Exception as exc:  # a refused or dropped connection is an error the person sees too
                codes.append((time.time(), type(exc).__name__))
            await asyncio.sleep(0.5)

    poller = asyncio.create_task(poll())
    await asyncio.sleep(1.0)
    fault_at = time.time()
    down_s = await asyncio.to_thread(restart)
    await asyncio.sleep(5.0)
    worker_exited = site.processes[-1].poll() is not None
    if worker_exited:  # as compose's restart policy would; the report says it happened
        site.processes.pop()
        site.start_worker()
    state = await _until_job_ends(site, job_id, args.job_timeout)
    polling = False
    await poller
    await asyncio.sleep(1.0)
    after = [c for t, c in codes if t > fault_at]
    ok_again = next((t - fault_at for t, c in codes if t > fault_at and c == 200), None)
    closed = [s.closed for s in [sock, *sockets] if s.closed is not None]
    # htmx's ws extension reconnects a socket closed with 1006, 1011, 1012 or 1013 (after a backoff of
    # about a second) and the page then gets the job's snapshot: the bench reconnects the same way.
    again = [c for c in closed if c[0] in RECONNECTED_CODES]
    late = JobWatcher()
    last = await open_socket(
        site.ports[0], f"/ws/training/jobs/{job_id}/", client.cookie_header, late.receive
    )
    for _ in range(50):
        if late.messages:
            break
        await asyncio.sleep(0.1)
    last.close()
    for s in [sock, *sockets]:
        s.close()
    steps = set(state["steps"])
    snapshot = late.messages[0].points if late.messages else []
    complete = late.status == state["status"] and steps <= {p.get("step") for p in snapshot}
    learner = await _learner_after(site, users[0], args.stream_timeout)
    await client.aclose()
    watchers = [watcher, *more]
    return {
        "server_back_after_s": down_s,
        "worker_exited": worker_exited,
        **_job_summary(state, watcher, fault_at),
        "sockets": len(watchers),
        "sockets_closed_by_server": len(closed),
        "close_codes": sorted({str(c[0]) for c in closed}),
        "sockets_the_page_reconnects": len(again),
        "sockets_saw_final_status": sum(1 for w in watchers if w.status == state["status"]),
        "new_socket_status": late.status,
        "new_socket_has_every_step": complete,
        "page_requests_after": len(after),
        "page_errors_after": sum(1 for c in after if c != 200),
        "page_error_kinds": sorted({str(c) for c in after if c != 200}),
        "page_ok_again_after_s": ok_again,
        "learner_after": learner,
    }


async def redis_restart(site, args) -> dict[str, Any]:
    return await _restart_during_job(site, args, restart_redis, ("learner30",))


async def postgres_restart(site, args) -> dict[str, Any]:
    return await _restart_during_job(site, args, restart_postgres, ("learner31",))


async def postgres_outage(site, args) -> dict[str, Any]:
    return await _restart_during_job(site, args, postgres_down_for_a_while, ("learner32",))


async def teacher_fault(site, args, mode: str) -> dict[str, Any]:
    from tests.fake_openai_server import Canned, FakeOpenAIServer

    user = {"teacher_down": "learner32", "teacher_slow": "learner33", "teacher_garbage": "learner34"}[mode]
    server = FakeOpenAIServer(models={"fake-model"}).start()
    try:
        url = server.base_url
        if mode == "teacher_down":
            server.stop()  # the port refuses connections
        elif mode == "teacher_slow":
            server.sleep_next(args.teacher_slow_s, times=20)
        else:
            server.enqueue(*[Canned(status=200, body=b"<html>502 upstream garbage</html>")] * 20)
        await asyncio.to_thread(site_query, site, USE_TEACHER.format(url=url) + "\nprint('{}')")
        learner = await _learner_after(site, user, args.stream_timeout)
        # The learner answers the exercise all the same: the answer must be kept.
        from bench.load import _signed_in

        client, _ = await _signed_in(site.ports[0], user)
        reply = await client.post(
            f"/learn/sessions/{learner['session']}/answer/",
            data={"answer": "12345"},
            headers={"X-CSRFToken": client.cookies.get("csrftoken"), "HX-Request": "true"},
        )
        await client.aclose()
        session = await asyncio.to_thread(site_query, site, SESSION_STATE.format(session=learner["session"]))
        return {
            "learner": learner,
            "answer_http": reply.status_code,
            "answer_kept": "12345" in session["attempts"],
            "messages": session["messages"],
            "requests_to_teacher": len(server.chat_requests()),
        }
    finally:
        server.stop()
        await asyncio.to_thread(site_query, site, USE_TEACHER.format(url="") + "\nprint('{}')")


async def _staff(site):
    from bench.load import _signed_in

    client, cookie = await _signed_in(site.ports[0], "staff9")
    client.cookie_header = cookie
    return client


async def run_faults(site, args) -> dict[str, Any]:
    """Every fault in ``args.fault_list``, in order; one that fails is reported and the next one runs."""
    results: dict[str, Any] = {}
    for fault in args.fault_list:
        print(f"production: fault {fault}…", flush=True)
        started = time.monotonic()
        try:
            if fault == "worker_kill":
                results[fault] = await worker_kill(site, args)
            elif fault == "reply_kill":
                results[fault] = await reply_kill(site, args)
            elif fault == "run_kill":
                results[fault] = await run_kill(site, args)
            elif fault == "redis_restart":
                results[fault] = await redis_restart(site, args)
            elif fault == "reply_redis":
                results[fault] = await reply_redis(site, args)
            elif fault == "postgres_restart":
                results[fault] = await postgres_restart(site, args)
            elif fault == "postgres_outage":
                results[fault] = await postgres_outage(site, args)
            else:
                results[fault] = await teacher_fault(site, args, fault)
        except Exception as exc:
            results[fault] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        results[fault]["wall_s"] = time.monotonic() - started
        print(f"production: fault {fault}: {json.dumps(results[fault])}", flush=True)
    return results


def kill(process: subprocess.Popen) -> None:
    """SIGKILL: the process gets no chance to clean up, as when a machine or the OOM killer takes it."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --- the report ------------------------------------------------------------------------------------


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def job_verdict(r: dict[str, Any]) -> str:
    """Lost, doubled or stuck, in words (the issue's "no job lost, doubled or stuck")."""
    problems = []
    if r["stuck"]:
        problems.append(f"stuck ({r['final_status']} at the deadline)")
    elif r["final_status"] != "succeeded":
        problems.append(f"lost ({r['final_status']}: {r['last_error'] or 'no reason given'})")
    if r["steps_doubled"]:
        problems.append(f"{r['steps_doubled']} steps recorded twice")
    if r["adapters"] > 1:
        problems.append(f"{r['adapters']} adapters for one job")
    if not problems and r["steps_recorded"] < r["steps_expected"]:
        problems.append(f"{r['steps_expected'] - r['steps_recorded']} steps missing from its chart")
    return "; ".join(problems) or "not lost, doubled or stuck"


def faults_report(results: dict[str, dict], args) -> list[str]:
    r = results.get("production", {}).get("faults")
    if not r or "error" in r or "skipped" in r:
        return [
            "",
            "## Faults",
            "",
            f"Not run: {(r or {}).get('error') or (r or {}).get('skipped') or 'no production shape'}.",
        ]
    lines = [
        "",
        "## Faults (production shape)",
        "",
        f"Recovery settings for the run: {', '.join(f'{k}={v}' for k, v in FAULT_ENV.items())}.",
    ]
    if any(fault in r for fault in ("worker_kill", "redis_restart", "postgres_restart", "postgres_outage")):
        lines += [
            "",
            f"A LoRA job of {args.fault_job_steps} steps (checkpoint every 4) from the fine-tune form.",
            "",
            "| fault | job after it | attempts | steps recorded / doubled | adapters "
            "| progress again after s | verdict | wall s |",
            "|---|---|---:|---|---:|---:|---|---:|",
        ]
    for fault in ("worker_kill", "redis_restart", "postgres_restart", "postgres_outage"):
        f = r.get(fault)
        if not f:
            continue
        if "error" in f:
            lines.append(f"| {fault} | failed to run: {f['error'][:200]} | | | | | | {f['wall_s']:.0f} |")
            continue
        lines.append(
            f"| {fault} | {f['final_status']} (page: {f['page_status']}) | {f['attempts']} | "
            f"{f['steps_recorded']} of {f['steps_expected']} / {f['steps_doubled']} | {f['adapters']} | "
            f"{_secs(f['progress_again_after_s'])} | {job_verdict(f)} | {f['wall_s']:.0f} |"
        )
    for fault in ("redis_restart", "postgres_restart", "postgres_outage"):
        f = r.get(fault)
        if not f or "error" in f:
            continue
        learner = f["learner_after"]
        lines.append(
            f"- {fault}: server back after {f['server_back_after_s']:.1f} s; the worker "
            f"{'exited (the bench started another)' if f['worker_exited'] else 'kept running'}"
            "; sockets: "
            f"{f['sockets_closed_by_server']} of {f['sockets']} closed by the server (codes "
            f"{', '.join(f['close_codes']) or 'none'}; {f['sockets_the_page_reconnects']} of them a page "
            f"reconnects), {f['sockets_saw_final_status']} saw the job's final status live, a socket opened "
            f"afterwards saw {f['new_socket_status']} with "
            f"{'every step' if f['new_socket_has_every_step'] else 'steps missing'}; the jobs page: "
            f"{f['page_errors_after']} of "
            f"{f['page_requests_after']} "
            f"requests failed afterwards ({', '.join(f['page_error_kinds']) or 'none'}), 200 again after "
            f"{_secs(f['page_ok_again_after_s'])} s; a learner afterwards: {learner['status']} in "
            f'{learner["seconds"]:.1f} s ("{learner["shown"][:160]}").'
        )
    for fault in ("worker_kill", "redis_restart", "postgres_restart", "postgres_outage"):
        f = r.get(fault)
        if f and "events" in f:
            lines.append(f"- {fault}, the job's log (last lines): {' / '.join(f['events'])[:600]}")
    run = r.get("run_kill")
    if run and "error" in run:
        lines.append(f"- run_kill: failed to run: {run['error'][:300]}")
    elif run:
        verdict = (
            "stuck"
            if run["stuck"]
            else f"lost ({run['final_status']}: {run['last_error']})"
            if run["final_status"] != "succeeded"
            else f"steps done before the kill run again: {', '.join(run['steps_repeated'])}"
            if run["steps_repeated"]
            else "not lost, doubled or stuck"
        )
        lines.append(
            f"- run_kill (a 1-round teaching run from the run form, its worker SIGKILLed after "
            f"{', '.join(run['done_before_kill'])}): {run['final_status']} after {run['attempts']} attempts "
            f"and {run['after_s']:.0f} s more; the steps it showed afterwards: "
            f"{' → '.join(run['steps_after'])}; "
            f"training jobs made: {run['training_jobs']}; {verdict}."
        )
    reply = r.get("reply_kill")
    if reply and "error" in reply:
        lines.append(f"- reply_kill: failed to run: {reply['error'][:300]}")
    elif reply:
        then = (
            "nothing for the learner to do"
            if reply["retry_status"] == "not needed"
            else f"the learner pressed Try again: {reply['retry_status']} "
            f'{reply["retry_after_s"]:.1f} s later ("{reply["retry_shown"][:160]}")'
        )
        lines.append(
            f"- reply_kill (a learner's explanation {reply['chars_at_kill']} characters in when the worker "
            f"was SIGKILLed; a new worker started at once): shown {reply['shown_status']} "
            f'{reply["shown_after_s"]:.1f} s later ("{reply["shown"][:200]}"); {then}.'
        )
    cut = r.get("reply_redis")
    if cut and "error" in cut:
        lines.append(f"- reply_redis: failed to run: {cut['error'][:300]}")
    elif cut:
        lines.append(
            f"- reply_redis (Redis restarted {cut['chars_at_fault']} characters into a learner's "
            f"explanation; it answered again {cut['redis_back_s']:.1f} s later): the socket closed with "
            f"{cut['socket_closed_with']}, the page reconnected {cut['reconnects']} time(s); shown "
            f"{cut['shown_status']} {cut['shown_after_s']:.1f} s after the restart began "
            f'("{cut["shown"][:200]}"); the messages of the session afterwards: {cut["messages"]}.'
        )
    teacher = [fault for fault in ("teacher_down", "teacher_slow", "teacher_garbage") if fault in r]
    if teacher:
        lines += [
            "",
            f"The course's teacher an OpenAI-compatible server that is down, answers after "
            f"{args.teacher_slow_s:g} s, or answers 200 with HTML; a learner starts a session, then answers.",
            "",
            "| fault | the explanation | after s | what the learner was shown | requests to the teacher "
            "| the learner's answer kept |",
            "|---|---|---:|---|---:|---|",
        ]
        for fault in teacher:
            f = r[fault]
            if "error" in f:
                lines.append(f"| {fault} | failed to run: {f['error'][:200]} | | | | |")
                continue
            learner = f["learner"]
            lines.append(
                f"| {fault} | {learner['status']} | {learner['seconds']:.1f} | {learner['shown'][:200]} | "
                f"{f['requests_to_teacher']} | {'yes' if f['answer_kept'] else 'no'} "
                f"(HTTP {f['answer_http']}) |"
            )
    return lines
