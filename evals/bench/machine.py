"""The machine a report was measured on: printed beside every table (CPU, cores, RAM, GPU, and
the llama.cpp build: the CMake arguments set-up recorded and what the library says it uses)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from affectlens.build import installed_build
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
    build = installed_build()
    if build:
        info["llama_build"] = build
    features = llama_features()
    if features is not None:
        info["llama_features"] = features
    if device == "cuda":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - informational only
            info["gpu"] = "unknown"
    return info


def llama_features(system_info: str | None = None) -> list[str] | None:
    """The features llama.cpp reports as on (``llama_print_system_info``: "AVX2 = 1 | ...");
    ``None`` without llama-cpp-python."""
    if system_info is None:
        try:
            import llama_cpp

            raw = llama_cpp.llama_print_system_info()
        except Exception:  # noqa: BLE001 - not installed, or an older API: informational only
            return None
        system_info = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    on = []
    for part in system_info.replace(":", "|").split("|"):
        name, _, value = part.partition("=")
        if value.strip() == "1":
            on.append(name.strip())
    return on


def cuda_available() -> bool:
    return Settings(device="auto").resolved_device == "cuda"
