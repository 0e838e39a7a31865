"""Load benchmark, part 2: sockets following a training job, and learners' explanations streaming at once.

Used by bench/load.py (``--scenarios sockets,streams``); the functions that only count and summarise
are kept apart from the ones that talk to the site, so tests/bench checks them without a server.

WebSocket clients are autobahn's asyncio client: daphne's own dependency, already installed (the
``websockets`` package is not). Each socket is signed in with a session cookie from the login form.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TERMINAL_JOB = {"succeeded", "failed", "cancelled"}
TERMINAL_MESSAGE = {"done", "failed", "stopped"}

_POINTS = re.compile(r'id="job-points" data-points="([^"]*)"')
_STATUS = re.compile(r'class="status status-(\w+)"')
_PROGRESS = re.compile(r'id="tmsg-(\d+)-progress"[^>]*data-chars="(\d+)"')
_ARTICLE = re.compile(r'<article id="tmsg-(\d+)"[^>]*data-status="(\w+)"')


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, by linear interpolation (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- a WebSocket client -----------------------------------------------------------------------


class Socket:
    """One WebSocket on loopback: each text message goes to ``on_message(time.time(), text)``."""

    def __init__(self, on_message: Callable[[float, str], None]) -> None:
        self.on_message = on_message
        self.closed: tuple[int | None, str] | None = None  # (code, reason) once the server closed it
        self.protocol: Any = None

    def close(self) -> None:
        if self.protocol is not None and self.closed is None:
            self.protocol.sendClose()


async def open_socket(
    port: int, path: str, cookie: str, on_message: Callable[[float, str], None], timeout: float = 60.0
) -> Socket:
    """Connect as a browser on the site's page would (same origin, the session cookie); raises when the
    server refuses or closes the socket before it opened."""
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()
    sock = Socket(on_message)

    class Protocol(WebSocketClientProtocol):
        def onOpen(self) -> None:
            sock.protocol = self
            if not opened.done():
                opened.set_result(None)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            sock.on_message(time.time(), payload.decode("utf-8", "replace"))

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            sock.closed = (code, reason or "")
            if not opened.done():
                opened.set_exception(ConnectionError(f"closed before it opened: {code} {reason or ''}"))

    factory = WebSocketClientFactory(
        f"ws://127.0.0.1:{port}{path}", origin=f"http://127.0.0.1:{port}", headers={"Cookie": cookie}
    )
    factory.protocol = Protocol
    await asyncio.wait_for(loop.create_connection(factory, "127.0.0.1", port), timeout)
    await asyncio.wait_for(opened, timeout)
    return sock


# --- sockets following a training job: accounting ----------------------------------------------


@dataclass
class JobMessage:
    at: float  # when this socket received it (time.time())
    status: str | None  # the job's status in the state fragment
    points: list[dict[str, Any]]  # chart points: one per progress event; every past one in the snapshot


def parse_job_message(text: str, at: float) -> JobMessage:
    """A job socket's message: the state fragment with its chart points (escaped JSON in an attribute)."""
    status = _STATUS.search(text)
    found = _POINTS.search(text)
    points = json.loads(html.unescape(found.group(1))) if found else []
    return JobMessage(at=at, status=status.group(1) if status else None, points=points)


@dataclass
class JobWatcher:
    """What one socket saw: its first message is the snapshot sent on connect, the rest are live."""

    messages: list[JobMessage] = field(default_factory=list)
    error: str = ""  # why it could not connect
    died: str = ""  # set when the server closed it before the bench did

    def receive(self, at: float, text: str) -> None:
        self.messages.append(parse_job_message(text, at))

    @property
    def status(self) -> str | None:
        statuses = [m.status for m in self.messages if m.status]
        return statuses[-1] if statuses else None


def job_delivery(emitted: list[int], watchers: list[JobWatcher], final_status: str | None) -> dict[str, Any]:
    """Did every progress event (a step in ``emitted``, the job's metrics once it ended) reach every socket,
    in its snapshot or live, and how late? Latency is measured from the point's ``sent_at`` (stamped by
    bench/stamped.py) when there is one; the spread is each arrival after the event's first arrival on any
    socket (what a bench without timestamps could measure)."""
    steps = sorted(set(emitted))
    latencies, spreads, missing, duplicates = [], [], {}, 0
    first_arrival: dict[int, float] = {}
    for watcher in watchers:
        for message in watcher.messages[1:]:
            for point in message.points:
                step = point.get("step")
                if isinstance(step, int):
                    first_arrival[step] = min(first_arrival.get(step, message.at), message.at)
    live = missed = 0
    for index, watcher in enumerate(watchers):
        seen: set[int] = set()
        if watcher.messages:
            seen.update(p.get("step") for p in watcher.messages[0].points)
        for message in watcher.messages[1:]:
            for point in message.points:
                step = point.get("step")
                if step in seen:
                    duplicates += 1
                    continue
                seen.add(step)
                live += 1
                if isinstance(point.get("sent_at"), int | float):
                    latencies.append(1000 * (message.at - point["sent_at"]))
                if step in first_arrival:
                    spreads.append(1000 * (message.at - first_arrival[step]))
        lost = [s for s in steps if s not in seen]
        missed += len(lost)
        if lost or watcher.error or watcher.died:
            missing[index] = {"missed_steps": len(lost), "error": watcher.error, "died": watcher.died}
    connected = [w for w in watchers if not w.error]
    return {
        "sockets": len(watchers),
        "connected": len(connected),
        "died": sum(1 for w in watchers if w.died),
        "events_emitted": len(steps),
        "deliveries_expected": len(steps) * len(watchers),
        "deliveries_live": live,
        "deliveries_missed": missed,
        "duplicates": duplicates,
        "complete_sockets": len(watchers) - len(missing),
        "incomplete": {str(k): v for k, v in list(missing.items())[:20]},
        "final_status": final_status,
        "final_status_everywhere": sum(1 for w in connected if w.status == final_status),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": max(latencies, default=float("nan")),
        "latency_samples": len(latencies),
        "spread_p50_ms": percentile(spreads, 50),
        "spread_p99_ms": percentile(spreads, 99),
    }


# --- learners streaming: accounting --------------------------------------------------------------


@dataclass
class Stream:
    """One learner's socket while the tutor writes their explanation. The page never sees unchecked text,
    only a character count ("writing… N characters", at most every 0.25 s, the first at once), then the
    checked message: the first count is the first token a learner can see."""

    started: float  # when the socket was opened (generation starts on connect)
    first: float | None = None  # first count above zero
    last: float | None = None  # last count
    chars: int = 0
    done: float | None = None  # the finished message arrived
    status: str | None = None  # done, failed or stopped
    error: str = ""
    gave_up: float | None = None  # when the bench stopped waiting for it, unfinished

    def receive(self, at: float, text: str) -> None:
        for _, chars in _PROGRESS.findall(text):
            if int(chars) > 0:
                self.first = self.first if self.first is not None else at
                self.last, self.chars = at, max(self.chars, int(chars))
        for _, status in _ARTICLE.findall(text):
            if status in TERMINAL_MESSAGE and self.done is None:
                self.done, self.status = at, status

    @property
    def ttft_s(self) -> float | None:
        return None if self.first is None else self.first - self.started

    @property
    def chars_per_s(self) -> float | None:
        """Characters written per second once writing started (first count to last count)."""
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return self.chars / (self.last - self.first)


def streams_summary(streams: list[Stream]) -> dict[str, Any]:
    """Time to first token (s) and characters per second, per stream and for the group as a whole:
    all characters over the time from the first socket opened to the last message finished (or to when
    the bench gave up waiting). A stream given up before its first token counts with the time it waited,
    a lower bound: ``ttft_censored`` says how many, and the TTFT figures are then "at least"."""
    ttft = [s.ttft_s for s in streams if s.ttft_s is not None]
    censored = [s.gave_up - s.started for s in streams if s.ttft_s is None and s.gave_up is not None]
    ttft += censored
    rates = [r for s in streams if (r := s.chars_per_s) is not None]
    ended = [s.done if s.done is not None else s.gave_up for s in streams]
    ended = [t for t in ended if t is not None]
    span = (max(ended) - min(s.started for s in streams)) if ended else float("nan")
    chars = sum(s.chars for s in streams)
    statuses: dict[str, int] = {}
    for s in streams:
        key = s.status or ("error: " + s.error if s.error else "unfinished")
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "streams": len(streams),
        "finished": sum(1 for s in streams if s.done is not None),
        "ttft_censored": len(censored),
        "statuses": statuses,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "ttft_max_s": max(ttft, default=float("nan")),
        "chars_per_s_p50": percentile(rates, 50),
        "chars": chars,
        "wall_s": span,
        "aggregate_chars_per_s": chars / span if span and span == span else float("nan"),
    }


def streams_against_single(single: dict[str, Any], many: dict[str, Any]) -> dict[str, float]:
    """The issue's two ratios: p99 TTFT of the group over the single stream's (target <= 2), and the
    group's aggregate characters per second over the single stream's (target >= 3)."""
    return {
        "ttft_p99_ratio": many["ttft_p99_s"] / single["ttft_p50_s"],
        "throughput_ratio": many["aggregate_chars_per_s"] / single["aggregate_chars_per_s"],
    }


# --- talking to the site -------------------------------------------------------------------------


async def job_sockets(
    ports: list[int], cookies: list[str], job_id: int, sockets: int, timeout: float
) -> dict[str, Any]:
    """``sockets`` sockets on the job's page socket, spread over the web processes and the signed-in
    staff cookies, open before the job trains (the worker needs seconds to load the model), held until
    every one saw the job end (or ``timeout``); then one more socket reads every step the job emitted
    from its snapshot."""
    path = f"/ws/training/jobs/{job_id}/"
    watchers = [JobWatcher() for _ in range(sockets)]
    opened: list[Socket | None] = [None] * sockets
    gate = asyncio.Semaphore(50)  # a burst of 200 connects overflows daphne's listen backlog

    async def connect(i: int) -> None:
        watcher = watchers[i]
        async with gate:
            try:
                opened[i] = await open_socket(
                    ports[i % len(ports)], path, cookies[i % len(cookies)], watcher.receive
                )
            except Exception as exc:
                watcher.error = f"{type(exc).__name__}: {exc}"[:200]

    started = time.monotonic()
    await asyncio.gather(*(connect(i) for i in range(sockets)))
    connect_s = time.monotonic() - started
    deadline = started + timeout
    while time.monotonic() < deadline:
        live = [w for w, s in zip(watchers, opened, strict=True) if s is not None and s.closed is None]
        if all(w.status in TERMINAL_JOB for w in live):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # let the last fan-out land everywhere
    for watcher, sock in zip(watchers, opened, strict=True):
        if sock is not None and sock.closed is not None:
            watcher.died = f"closed by the server: {sock.closed[0]} {sock.closed[1]}".strip()
    late = JobWatcher()
    last = await open_socket(ports[0], path, cookies[0], late.receive)
    for _ in range(100):
        if late.messages:
            break
        await asyncio.sleep(0.1)
    last.close()
    for sock in opened:
        if sock is not None:
            sock.close()
    await asyncio.sleep(0.5)
    emitted = [p["step"] for p in late.messages[0].points] if late.messages else []
    summary = job_delivery(emitted, watchers, late.status)
    summary["connect_s"] = connect_s
    summary["job_s"] = time.monotonic() - started
    summary["timed_out"] = late.status not in TERMINAL_JOB
    return summary


async def learner_streams(
    ports: list[int], learners: list[tuple[str, int]], cookies: dict[str, str], timeout: float
) -> list[Stream]:
    """Open the session socket of every ``(username, session id)`` at once (its explanation is pending:
    the consumer starts writing it on connect) and follow each until its message is finished."""
    streams: list[Stream] = []
    sockets: list[Socket] = []

    async def follow(i: int, user: str, session_id: int) -> None:
        stream = Stream(started=time.time())
        streams.append(stream)
        try:
            sockets.append(
                await open_socket(
                    ports[i % len(ports)], f"/ws/learn/sessions/{session_id}/", cookies[user], stream.receive
                )
            )
        except Exception as exc:
            stream.error = f"{type(exc).__name__}: {exc}"[:200]

    await asyncio.gather(*(follow(i, user, sid) for i, (user, sid) in enumerate(learners)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(s.done is None and not s.error for s in streams):
        await asyncio.sleep(0.2)
    for stream in streams:
        if stream.done is None and not stream.error:
            stream.gave_up = time.time()
    for sock in sockets:
        sock.close()
    await asyncio.sleep(0.5)
    return streams
