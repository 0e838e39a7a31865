"""bench/load.py's own arithmetic and its refusals (the load itself is a benchmark, not a test)."""

from __future__ import annotations

import math

import pytest

from bench.load import Tally, main, percentile


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
