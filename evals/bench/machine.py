"""The machine a report was measured on: printed beside every table."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from affectlens.settings import Settings


def machine_info(device: str | None = None) -> dict[str, Any]:
    """CPU model, cores, RAM and (when CUDA is used) the GPU: printed beside every table."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device == "cuda":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - informational only
            info["gpu"] = "unknown"
    return info


def cuda_available() -> bool:
    return Settings(device="auto").resolved_device == "cuda"
