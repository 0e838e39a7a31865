"""What a benchmark ran on, for its report: one line naming the machine, one measuring its speed.

- :func:`describe`: CPU model, logical CPUs, Python, OS (and the GPUs torch sees).
- :func:`speed`: two fixed workloads timed on this machine now, so that wall times of runs on
  different days can be compared: the same 2-core machine kind has measured 2x apart between days.
  Take it before the benchmark loads the machine.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

PYTHON_STEPS = 5_000_000
"""Loop steps of the pure-Python workload (an add and a compare each)."""
MATMUL_N = 1024
"""Side of the square float32 matrices of the torch workload."""


def describe() -> str:
    """CPU model, logical CPUs, Python version and OS: "AMD EPYC, 2 logical CPUs, Python 3.11.7, Linux",
    then the GPUs torch sees, if any: "; GPU: 1 x NVIDIA H200 (CUDA 12.8)"."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    line = f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, {platform.system()}"
    return line + _gpus()


def _gpus() -> str:
    try:
        import torch
    except ImportError:
        return ""
    if not torch.cuda.is_available():
        return ""
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    shown = ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))
    return f"; GPU: {shown} (CUDA {torch.version.cuda})"


def speed(*, repeats: int = 3) -> dict[str, float]:
    """The best of ``repeats`` timings of a pure-Python loop (million steps/s: what Django pages and the
    benchmarks' clients run on) and of a float32 matrix product on torch's current threads (GFLOP/s:
    what training and generation run on). ~2 s in all; ``matmul_gflops`` is absent without torch."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(PYTHON_STEPS):
            total += i
        best = min(best, time.perf_counter() - started)
    result = {"python_msteps_s": PYTHON_STEPS / best / 1e6}
    try:
        import torch
    except ImportError:
        return result
    a, b = torch.rand(MATMUL_N, MATMUL_N), torch.rand(MATMUL_N, MATMUL_N)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats * 2):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    result["matmul_gflops"] = 2 * MATMUL_N**3 / best / 1e9
    result["torch_threads"] = float(torch.get_num_threads())
    return result


def speed_line(measured: dict[str, float]) -> str:
    """``speed()`` for a report: "Speed (before the run): Python 7.5 M loop steps/s; float32 matmul
    95 GFLOP/s on 2 torch threads"."""
    line = (
        f"Speed (bench/machine.py, before the run): Python {measured['python_msteps_s']:.1f} M loop steps/s"
    )
    if "matmul_gflops" in measured:
        line += (
            f"; float32 matmul {measured['matmul_gflops']:.0f} GFLOP/s on "
            f"{int(measured['torch_threads'])} torch threads"
        )
    return line
