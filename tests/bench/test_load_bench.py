"""bench/load.py's own arithmetic and its refusals (the load itself is a benchmark, not a test)."""

from __future__ import annotations

import html
import json
import math

import pytest

from bench.load import Tally, main, percentile, sockets_verdict, streams_verdict
from bench.load_busy_run import RunWatcher, busy_run_verdict, by_step
from bench.load_faults import Follower, Timeline, job_verdict, shown_text
from bench.load_live import (
    JobMessage,
    JobWatcher,
    Stream,
    job_delivery,
    parse_job_message,
    streams_against_single,
    streams_summary,
)
from bench.stamped import stamp_points


def test_percentiles_interpolate_between_the_sorted_values():
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 99) == pytest.approx(39.7)
    assert math.isnan(percentile([], 50))


def test_a_tally_counts_every_error_apart_from_the_latencies():
    tally = Tally(latencies=[0.010, 0.020, 0.030])
    tally.error("HTTP 500 /")
    tally.error("HTTP 500 /")
    tally.error("ConnectError")
    summary = tally.summary(seconds=1.5)
    assert summary["requests"] == 3 and summary["per_s"] == pytest.approx(2.0)
    assert summary["p50_ms"] == pytest.approx(20.0)
    assert summary["errors"] == 3 and summary["error_kinds"] == {"HTTP 500 /": 2, "ConnectError": 1}


@pytest.mark.parametrize(
    "args", [["--shapes", "cloud"], ["--shapes", ""], ["--clients", "0"], ["--web", "9"]]
)
def test_it_refuses_bad_settings_before_starting_anything(args, capsys):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err  # argparse's one line, nothing seeded or started


# --- part 2: sockets following a job, learners streaming (the accounting, not the load) ---------


def _job_message(status: str, points: list[dict]) -> str:
    """A job socket's message as training/partials/job_state.html and job_points.html render it."""
    escaped = html.escape(json.dumps(points))
    return (
        f'<div id="job-state-7" class="job-state"><p><strong class="status status-{status}">{status.title()}'
        f'</strong> · step 1</p></div><div id="job-points" data-points="{escaped}"></div>'
    )


def _watcher(*messages: tuple[float, str]) -> JobWatcher:
    watcher = JobWatcher()
    for at, text in messages:
        watcher.receive(at, text)
    return watcher


def test_a_job_message_gives_its_status_and_its_escaped_chart_points():
    message = parse_job_message(_job_message("running", [{"step": 3, "loss": 1.5, "sent_at": 10.0}]), at=10.2)
    assert message.status == "running" and message.at == 10.2
    assert message.points == [{"step": 3, "loss": 1.5, "sent_at": 10.0}]
    assert parse_job_message("<p>no state here</p>", at=1.0) == JobMessage(at=1.0, status=None, points=[])


def test_job_delivery_counts_each_step_on_each_socket_from_its_snapshot_or_live():
    step = lambda n, sent: _job_message("running", [{"step": n, "loss": 1.0, "sent_at": sent}])  # noqa: E731
    every = _watcher(
        (0.0, _job_message("queued", [])),
        (1.1, step(1, 1.0)),
        (2.2, step(2, 2.0)),
        (3.0, _job_message("succeeded", [])),
    )
    late = _watcher(
        (1.5, _job_message("running", [{"step": 1}])),
        (2.1, step(2, 2.0)),
        (3.0, _job_message("succeeded", [])),
    )
    repeated = _watcher(
        (0.0, _job_message("queued", [])), (1.3, step(1, 1.0)), (1.4, step(1, 1.0)), (2.5, step(2, 2.0))
    )
    lost = _watcher((0.0, _job_message("queued", [])), (1.2, step(1, 1.0)))
    lost.died = "closed by the server: 1011"
    refused = JobWatcher(error="ConnectionError: closed before it opened: 4003")
    summary = job_delivery([1, 2], [every, late, repeated, lost, refused], final_status="succeeded")
    assert summary["events_emitted"] == 2 and summary["deliveries_expected"] == 10
    assert summary["connected"] == 4 and summary["died"] == 1
    assert summary["deliveries_live"] == 6  # the late socket had step 1 in its snapshot
    assert summary["deliveries_missed"] == 3  # step 2 on the dead socket, both on the refused one
    assert summary["duplicates"] == 1
    assert summary["complete_sockets"] == 3
    assert summary["incomplete"] == {
        "3": {"missed_steps": 1, "error": "", "died": "closed by the server: 1011"},
        "4": {"missed_steps": 2, "error": "ConnectionError: closed before it opened: 4003", "died": ""},
    }
    assert summary["final_status_everywhere"] == 2  # the last status two sockets saw
    assert summary["latency_samples"] == 6
    assert summary["latency_p50_ms"] == pytest.approx(200.0)
    assert summary["latency_max_ms"] == pytest.approx(500.0)
    assert summary["spread_p50_ms"] == pytest.approx(100.0)  # after the first arrival of the same step


def test_job_delivery_without_timestamps_still_measures_the_spread():
    watchers = [
        _watcher((0.0, _job_message("queued", [])), (at, _job_message("running", [{"step": 1}])))
        for at in (5.0, 5.1, 5.3)
    ]
    summary = job_delivery([1], watchers, final_status=None)
    assert summary["deliveries_missed"] == 0 and summary["latency_samples"] == 0
    assert math.isnan(summary["latency_p99_ms"])
    assert summary["spread_p99_ms"] == pytest.approx(296.0)


def _progress(message_id: int, chars: int) -> str:
    """tutor/learn/partials/message.html#progress."""
    return (
        f'<p id="tmsg-{message_id}-progress" class="hint tmsg-status" hx-swap-oob="true" '
        f'data-chars="{chars}">'
        f"The tutor is writing… {chars} characters so far (checked before you see it)</p>"
    )


def _article(message_id: int, status: str) -> str:
    return (
        f'<article id="tmsg-{message_id}" class="tmsg tmsg-explanation" data-status="{status}" data-kind="x">'
    )


def test_a_stream_times_its_first_count_and_its_rate_from_what_the_page_sees():
    stream = Stream(started=100.0)
    for at, text in [
        (100.1, '<div id="tutor-messages">' + _article(4, "pending") + "</div>"),
        (100.2, _article(4, "streaming")),
        (100.3, _progress(4, 0)),
        (101.5, _progress(4, 12)),
        (102.5, _progress(4, 40)),
        (103.5, _progress(4, 92)),
        (103.7, _article(4, "done")),
        (104.0, _article(4, "failed")),  # a later message cannot end it twice
    ]:
        stream.receive(at, text)
    assert stream.ttft_s == pytest.approx(1.5)
    assert stream.chars == 92 and stream.chars_per_s == pytest.approx(46.0)
    assert stream.done == 103.7 and stream.status == "done"
    silent = Stream(started=1.0)
    silent.receive(2.0, _article(5, "failed"))
    assert silent.ttft_s is None and silent.chars_per_s is None and silent.status == "failed"


def test_streams_are_summed_over_the_whole_wall_time_and_compared_with_one_alone():
    def stream(first: float, last: float, chars: int) -> Stream:
        return Stream(started=0.0, first=first, last=last, chars=chars, done=last + 0.1, status="done")

    single = streams_summary([stream(1.0, 5.0, 100)])
    assert single["ttft_p50_s"] == 1.0 and single["aggregate_chars_per_s"] == pytest.approx(100 / 5.1)
    together = streams_summary(
        [stream(1.0, 5.0, 100), stream(5.0, 9.0, 100), Stream(started=0.0, error="refused")]
    )
    assert together["streams"] == 3 and together["finished"] == 2
    assert together["statuses"] == {"done": 2, "error: refused": 1}
    assert together["ttft_max_s"] == 5.0 and together["chars_per_s_p50"] == pytest.approx(25.0)
    assert together["aggregate_chars_per_s"] == pytest.approx(200 / 9.1)
    ratios = streams_against_single(single, together)
    assert ratios["ttft_p99_ratio"] == pytest.approx(together["ttft_p99_s"] / 1.0)
    assert ratios["throughput_ratio"] == pytest.approx((200 / 9.1) / (100 / 5.1))
    assert "not met" in streams_verdict({"ratios": ratios})
    assert streams_verdict({"ratios": {"ttft_p99_ratio": 2.0, "throughput_ratio": 3.0}}).count("not met") == 0
    assert math.isnan(streams_summary([Stream(started=0.0)])["aggregate_chars_per_s"])


def test_a_stream_given_up_before_its_first_token_counts_with_the_time_it_waited():
    shown = Stream(started=0.0, first=2.0, last=4.0, chars=60, done=4.1, status="done")
    halfway = Stream(started=0.0, first=8.0, last=9.0, chars=30, gave_up=10.0)
    silent = Stream(started=0.0, gave_up=10.0)
    summary = streams_summary([shown, halfway, silent])
    assert summary["finished"] == 1 and summary["ttft_censored"] == 1
    assert summary["statuses"] == {"done": 1, "unfinished": 2}
    assert summary["ttft_max_s"] == 10.0  # at least: it never showed a token
    assert summary["wall_s"] == 10.0 and summary["aggregate_chars_per_s"] == pytest.approx(9.0)


def test_the_socket_verdict_needs_every_event_on_every_socket_and_a_fast_p99():
    good = {
        "sockets": 2,
        "connected": 2,
        "died": 0,
        "deliveries_missed": 0,
        "events_emitted": 4,
        "timed_out": False,
        "latency_p99_ms": 120.0,
    }
    assert sockets_verdict(good).count("not met") == 0
    assert sockets_verdict({**good, "deliveries_missed": 1}).startswith("every event everywhere: not met")
    assert sockets_verdict({**good, "events_emitted": 0}).startswith("every event everywhere: not met")
    assert sockets_verdict({**good, "latency_p99_ms": 250.0}).endswith("p99 < 250 ms: not met")


def test_stamping_adds_a_send_time_to_each_chart_point_only():
    stamped = stamp_points(
        {"type": "job.update", "html": "<p>", "points": [{"step": 1}, {"step": 2, "sent_at": 5.0}]}
    )
    assert stamped["html"] == "<p>" and isinstance(stamped["points"][0]["sent_at"], float)
    assert stamped["points"][1]["sent_at"] == 5.0
    state = {"type": "job.update", "html": "<p>", "points": []}
    assert stamp_points(state) is state


@pytest.mark.parametrize(
    "args",
    [
        ["--scenarios", "chaos"],
        ["--scenarios", ","],
        ["--scenarios", "faults", "--faults", "meteor"],
        ["--scenarios", "faults", "--fault-job-steps", "2"],
        ["--streamers", "31"],
        ["--sockets", "0"],
        ["--job-steps", "0"],
        ["--busy-learners", "51"],
        ["--scenarios", "busy_run", "--busy-run-learners", "0"],
        ["--scenarios", "busy_run", "--run-timeout", "5"],
    ],
)
def test_it_refuses_bad_scenario_settings_before_starting_anything(args, capsys):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


# --- part 3: faults (the accounting, not the faults) -----------------------------------------------


def _job_after(**changes) -> dict:
    job = {
        "final_status": "succeeded",
        "last_error": "",
        "stuck": False,
        "steps_recorded": 40,
        "steps_expected": 40,
        "steps_doubled": 0,
        "adapters": 1,
    }
    return {**job, **changes}


def test_a_fault_verdict_names_what_was_lost_doubled_or_stuck():
    assert job_verdict(_job_after()) == "not lost, doubled or stuck"
    assert job_verdict(_job_after(stuck=True, final_status="running")) == "stuck (running at the deadline)"
    lost = job_verdict(_job_after(final_status="failed", last_error="OperationalError: gone"))
    assert lost == "lost (failed: OperationalError: gone)"
    doubled = job_verdict(_job_after(steps_doubled=3, adapters=2))
    assert doubled == "3 steps recorded twice; 2 adapters for one job"
    assert job_verdict(_job_after(steps_recorded=38)) == "2 steps missing from its chart"


def test_the_learner_sees_the_finished_message_as_words_not_markup():
    follower = Follower(started=0.0)
    follower.receive(1.0, '<article id="tmsg-3" data-status="running"><p>writing</p></article>')
    assert follower.shown == []  # not finished yet
    follower.receive(
        2.0,
        '<article id="tmsg-3" class="x" data-status="failed"><header>Explanation</header>'
        "<p>The tutor could not answer: no reply from http://127.0.0.1:9/v1 &amp; gave up.</p></article>",
    )
    said = "Explanation The tutor could not answer: no reply from http://127.0.0.1:9/v1 & gave up."
    assert follower.shown == [said]
    assert follower.status == "failed"
    assert shown_text("<b>a</b>\n  <i>b</i>") == "a b"


def test_a_timeline_keeps_every_count_and_every_finished_message_in_order():
    line = Timeline(started=0.0)
    line.receive(1.0, '<span id="tmsg-7-progress" data-chars="0"></span>')
    line.receive(1.5, '<span id="tmsg-7-progress" class="p" data-chars="42"></span>')
    failed = '<article id="tmsg-7" data-status="failed"><p>The tutor could not answer.</p></article>'
    line.receive(9.0, failed)
    line.receive(12.0, '<article id="tmsg-7" data-status="running"><p>writing</p></article>')
    line.receive(15.0, '<article id="tmsg-7" data-status="done"><p>7 + 5 = 12</p></article>')
    assert line.counts == [(1.5, 42)]  # a zero count is not a token shown
    assert line.ends == [
        (9.0, "7", "failed", "The tutor could not answer."),
        (15.0, "7", "done", "7 + 5 = 12"),
    ]


# --- part 2: learners beside a teaching run ------------------------------------------------------------


def _run_fragment(status: str, step: str = "") -> str:
    """The run page's live part as the run's socket sends it (the template the site renders)."""
    from django.template.loader import render_to_string

    from tutor.models import TeachingRun

    run = TeachingRun(pk=7, status=status, current_step=step, current_round=0, config={"rounds": 1})
    return render_to_string("tutor/runs/partials/run_state.html", {"run": run, "timeline": []})


def test_a_run_watcher_reads_the_step_and_the_end_from_the_run_page_socket():
    watcher = RunWatcher()
    assert watcher.step == "" and not watcher.finished
    watcher.receive(1.0, _run_fragment("queued"))
    assert watcher.step == "" and watcher.status == "queued"
    watcher.receive(2.0, _run_fragment("running", "diagnose"))
    watcher.receive(2.5, _run_fragment("running", "diagnose"))  # the same state again: not a change
    watcher.receive(3.0, '<tr id="run-row-7">another part of the page</tr>')
    watcher.receive(4.0, _run_fragment("running", "train"))
    assert watcher.step == "train" and not watcher.finished
    watcher.receive(9.0, _run_fragment("succeeded"))
    assert watcher.finished and watcher.step == ""
    assert [(at, step) for at, _, step in watcher.seen] == [
        (1.0, ""),
        (2.0, "diagnose"),
        (4.0, "train"),
        (9.0, ""),
    ]


def _streams(*ttfts: float | None) -> list[Stream]:
    streams = []
    for ttft in ttfts:
        stream = Stream(started=10.0)
        if ttft is not None:
            stream.first = 10.0 + ttft
        streams.append(stream)
    return streams


def test_learners_beside_a_run_are_summed_per_step_and_over_the_whole_run():
    a, b, c, d = _streams(0.5, 1.5, 3.0, None)
    rows = by_step([("explain", a), ("train", b), ("train", c), ("train", d)])
    assert [r["step"] for r in rows] == ["explain", "train", "all"]
    train, everyone = rows[1], rows[2]
    assert train["learners"] == 3 and train["no_token"] == 1 and train["ttft_max_s"] == 3.0
    assert everyone["learners"] == 4 and everyone["ttft_p50_s"] == pytest.approx(1.5)
    # A learner with no first token fails the target whatever the others' times.
    assert busy_run_verdict(rows) == (
        "p95 first token <= 2 s while it trained: not met; p95 first token <= 2 s over the whole run: not met"
    )
    quick = by_step([("train", s) for s in _streams(0.4, 0.6)] + [("reexamine", s) for s in _streams(0.9)])
    assert busy_run_verdict(quick) == (
        "p95 first token <= 2 s while it trained: met; p95 first token <= 2 s over the whole run: met"
    )
    untrained = by_step([("diagnose", s) for s in _streams(0.4)])
    assert busy_run_verdict(untrained).startswith("no learner came while it trained; ")


def test_the_busy_run_report_shows_each_step_and_the_verdict_per_shape():
    from types import SimpleNamespace

    from bench.load_busy_run import busy_run_report

    rows = by_step([("explain", s) for s in _streams(0.5)] + [("train", s) for s in _streams(0.7, 1.1)])
    results = {
        "embedded": {
            "busy_run": {
                "run_status": "succeeded",
                "run_s": 300.0,
                "by_step": rows,
                "load_average": "2 before",
            }
        },
        "production": {"busy_run": {"error": "RuntimeError: no run"}},
    }
    text = "\n".join(busy_run_report(results, SimpleNamespace(busy_run_gap=4.0, busy_run_learners=30)))
    assert "| embedded | succeeded in 5.0 min | explain | 1 | 0 | 0.5 / 0.5 / 0.5 | 2 before |" in text
    assert "| embedded |  | train | 2 | 0 |" in text and "| embedded |  | all | 3 | 0 |" in text
    assert "- embedded: p95 first token <= 2 s while it trained: met;" in text
    assert "production" not in text  # a failed scenario is listed with the failures, not here
