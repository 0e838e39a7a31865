"""bench/machine.py: the speed line that makes wall times of different days comparable."""

from __future__ import annotations

from unittest import mock

from bench import machine


def test_speed_times_both_workloads_and_reports_them():
    with mock.patch.object(machine, "PYTHON_STEPS", 200_000), mock.patch.object(machine, "MATMUL_N", 128):
        measured = machine.speed(repeats=1)
    assert measured["python_msteps_s"] > 0 and measured["matmul_gflops"] > 0
    line = machine.speed_line(measured)
    assert f"Python {measured['python_msteps_s']:.1f} M loop steps/s" in line
    assert (
        f"float32 matmul {measured['matmul_gflops']:.0f} GFLOP/s on {int(measured['torch_threads'])}" in line
    )


def test_speed_line_without_torch_names_python_alone():
    assert machine.speed_line({"python_msteps_s": 7.52}).endswith("Python 7.5 M loop steps/s")
