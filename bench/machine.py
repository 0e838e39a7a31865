"""One line describing the machine a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform
from pathlib import Path


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
