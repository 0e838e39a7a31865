"""Load benchmark, part 2: learners while a *teaching run* works (``--scenarios busy_run``).

Issue 17 asks that "a learner's reply starts within 2 s (p95) while a teaching run trains in the
background". The ``busy`` scenario measures that beside a fine-tune job; a teaching run also
*generates* (the student answers its probe, practice and exam; the teacher writes explanations and
items) with the same model the learners' tutor uses, in the same process (the worker in production,
the web process on the embedded default). So here a staff client starts a one-round teaching run of
the arithmetic course through the run form (the course's teacher and student, the expert on, a short
training, the acceptance probe), follows the run page's socket for the step the run is in, and
learners open a new session's socket one after another, ``--busy-run-gap`` seconds apart, until the run
ends or ``--busy-run-learners`` have been served. Each learner's time to first token (as in the
``streams`` scenario: the first character count the page shows) is counted under the step the run was
in when the socket opened; the run's own status and time are reported beside it.

The step names are the run's (``tutor.core.runs.state.STEPS``); ``train`` holds the training job and
the acceptance probe after it.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from bench.load_live import TERMINAL_JOB, Stream, learner_streams, open_socket, percentile

_RUN_STATUS = re.compile(r'class="status status-(\w+)"')
_RUN_STEP = re.compile(r"· step <strong>([^<]+)</strong>")

# A one-round run that goes through every step in a few minutes on 2 cores: 24 items practised, 4
# explanations, 8 sources of 4 new items each, 40 training steps of batch 4, the acceptance probe.
BUSY_RUN_FORM: dict[str, Any] = {
    "rounds": 1,
    "plan": "adaptive",
    "plan_budget": 24,
    "explain_budget": 4,
    "generate_budget": 8,
    "generate_k": 4,
    "seed": 0,
    "choice_scoring": "generate",
    "expert": "on",
    "explain_samples": 1,
    "teacher_min_pass": 0.05,
    "keep_share": 0.25,
    "schedule": "continue",
    "acceptance": "probe",
    "round_tries": 1,
    "train": "on",
    "max_steps": 40,
    "learning_rate": 0.002,
    "lora_r": 8,
    "batch_size": 4,
    "precision": "auto",
}


@dataclass
class RunWatcher:
    """A teaching run's page socket: its status and step as each update arrives, in order."""

    seen: list[tuple[float, str, str]] = field(default_factory=list)  # (at, status, step)

    def receive(self, at: float, text: str) -> None:
        status = _RUN_STATUS.search(text)
        if status is None:  # a fragment of another part of the page
            return
        step = _RUN_STEP.search(text)
        now = (status.group(1), step.group(1) if step else "")
        if not self.seen or self.seen[-1][1:] != now:
            self.seen.append((at, *now))

    @property
    def status(self) -> str:
        return self.seen[-1][1] if self.seen else ""

    @property
    def step(self) -> str:
        """The step the run is in now ("" before it starts and after it ends)."""
        return self.seen[-1][2] if self.seen and self.seen[-1][1] == "running" else ""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_JOB


def by_step(rows: list[tuple[str, Stream]]) -> list[dict[str, Any]]:
    """Time to first token per step the run was in (in the order steps first came), then all of them."""
    order: list[str] = []
    for step, _ in rows:
        if step not in order:
            order.append(step)
    groups = [(step, [s for st, s in rows if st == step]) for step in order]
    groups.append(("all", [s for _, s in rows]))
    summary = []
    for step, streams in groups:
        ttfts = [s.ttft_s for s in streams if s.ttft_s is not None]
        summary.append(
            {
                "step": step or "(not running)",
                "learners": len(streams),
                "no_token": sum(1 for s in streams if s.ttft_s is None),
                "ttft_p50_s": percentile(ttfts, 50),
                "ttft_p95_s": percentile(ttfts, 95),
                "ttft_max_s": max(ttfts, default=float("nan")),
            }
        )
    return summary


def busy_run_verdict(summary: list[dict[str, Any]]) -> str:
    """The issue's target, read on the learners who came while the run trained and on all of them."""
    parts = []
    for row in summary:
        if row["step"] not in ("train", "all"):
            continue
        met = row["learners"] > 0 and not row["no_token"] and row["ttft_p95_s"] <= 2
        where = "while it trained" if row["step"] == "train" else "over the whole run"
        parts.append(f"p95 first token <= 2 s {where}: {'met' if met else 'not met'}")
    if not any(row["step"] == "train" for row in summary):
        parts.insert(0, "no learner came while it trained")
    return "; ".join(parts)


async def start_run(client, form: dict[str, Any]) -> int:
    """Start a teaching run through the run form, as a person does; its id."""
    from bench.load import _post

    where = await _post(client, "/runs/new/", {k: str(v) for k, v in form.items()})
    found = re.search(r"/runs/(\d+)/", where)
    if found is None:
        raise RuntimeError(f"the run form sent us to {where}, not to a run")
    return int(found.group(1))


async def busy_run_scenario(site, args) -> dict[str, Any]:
    """See the module docstring."""
    from bench.load import _new_sessions
    from bench.load_faults import RUN_IDS, _staff, site_query

    ports = site.ports
    learners = await asyncio.to_thread(site.take_learners, len(ports) + args.busy_run_learners)
    warmups, users = learners[: len(ports)], learners[len(ports) :]
    cookies, sessions = await _new_sessions(warmups + users, lambda i, user: ports[i % len(ports)])
    timeout = args.stream_timeout
    await learner_streams(ports, [(u, sessions[u]) for u in warmups], cookies, timeout)  # models loaded

    client = await _staff(site)
    ids = await asyncio.to_thread(site_query, site, RUN_IDS)
    form = {**BUSY_RUN_FORM, "course": ids["course"], "student": ids["student"], "teacher": ids["teacher"]}
    started = time.time()
    run_id = await start_run(client, form)
    watcher = RunWatcher()
    path = f"/ws/tutor/runs/{run_id}/"
    run_socket = await open_socket(ports[0], path, client.cookie_header, watcher.receive)
    deadline = time.monotonic() + args.run_timeout
    while not watcher.step and not watcher.finished and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # until the worker has taken the run
    rows: list[tuple[str, Stream]] = []
    for i, user in enumerate(users):
        if watcher.finished or time.monotonic() > deadline:
            break
        step = watcher.step
        port = [ports[i % len(ports)]]
        rows += [(step, s) for s in await learner_streams(port, [(user, sessions[user])], cookies, timeout)]
        await asyncio.sleep(args.busy_run_gap)
    while not watcher.finished and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
    ended = watcher.seen[-1][0] if watcher.finished else time.time()
    run_socket.close()
    await client.aclose()
    return {
        "run_status": watcher.status or "unknown",
        "run_s": ended - started,
        "run_steps": [step for _, status, step in watcher.seen if status == "running" and step],
        "learners": len(rows),
        "by_step": by_step(rows),
        "per_stream": [{"step": step, "ttft_s": s.ttft_s, "status": s.status or s.error} for step, s in rows],
    }


def busy_run_report(results: dict[str, dict], args) -> list[str]:
    """The report's section for ``busy_run``."""
    from bench.load import _s

    lines = [
        "",
        "## Learners while a teaching run works",
        "",
        f"A one-round teaching run started through the run form (bench/load_busy_run.py: "
        f"{BUSY_RUN_FORM['plan_budget']} items practised, {BUSY_RUN_FORM['generate_budget']} × "
        f"{BUSY_RUN_FORM['generate_k']} new items, {BUSY_RUN_FORM['max_steps']} training steps of batch "
        f"{BUSY_RUN_FORM['batch_size']}, the acceptance probe); learners open a new session's socket one "
        f"after another, {args.busy_run_gap:g} s apart, up to {args.busy_run_learners}, while it runs. Time "
        "to first token per step the run was in when the socket opened (`train`: the training job and the "
        "probe after it).",
        "",
        "| shape | run | step | learners | no token | TTFT p50 / p95 / max s | load average |",
        "|---|---|---|---:|---:|---|---|",
    ]
    verdicts = []
    for shape, rs in results.items():
        r = rs.get("busy_run", {})
        if "by_step" not in r:
            continue
        run = f"{r['run_status']} in {r['run_s'] / 60:.1f} min"
        for row in r["by_step"]:
            lines.append(
                f"| {shape} | {run} | {row['step']} | {row['learners']} | {row['no_token']} | "
                f"{_s(row['ttft_p50_s'])} / {_s(row['ttft_p95_s'])} / {_s(row['ttft_max_s'])} | "
                f"{r['load_average'] if run else ''} |"
            )
            run = ""
        verdicts.append(f"- {shape}: {busy_run_verdict(r['by_step'])}.")
    return [*lines, "", *verdicts]
