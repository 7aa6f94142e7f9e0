"""What a host offers: its name, CPUs, memory, and each GPU's utilisation and memory through NVML.

A runner agent reports this so the control side can show which box has room before launching.
"""

from __future__ import annotations

import os
from typing import Any

from runners import RunnerError


def memory_bytes() -> tuple[int, int]:
    """(total, available) bytes of RAM, from /proc/meminfo."""
    fields: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0]) * 1024
    return fields.get("MemTotal", 0), fields.get("MemAvailable", 0)


def nvml_gpus() -> list[dict[str, Any]]:
    """Each GPU NVML sees, with its utilisation and memory; no driver or library means none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 (no driver, no library: no GPUs)
        return []
    try:
        readings = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            device = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(device)
            memory = pynvml.nvmlDeviceGetMemoryInfo(device)
            utilization = pynvml.nvmlDeviceGetUtilizationRates(device)
            readings.append({"index": index, "name": name.decode() if isinstance(name, bytes) else name,
                             "utilization": utilization.gpu, "memory_used": memory.used,
                             "memory_total": memory.total})
        return readings
    except Exception:  # noqa: BLE001 (a GPU that stopped answering: report none rather than fail)
        return []
    finally:
        pynvml.nvmlShutdown()


def visible_gpus(setting: Any = "auto") -> list[int]:
    """GPU indices this machine offers: the setting (a count or list; tests use it), else NVML."""
    if isinstance(setting, list):
        return [int(i) for i in setting]
    text = str(setting).strip().lower()
    if text in ("none", "0", ""):
        return []
    if text != "auto":
        try:
            return [int(i) for i in text.split(",")] if "," in text else list(range(int(text)))
        except ValueError:
            raise ValueError(f"bad GPU setting {setting!r}: use 'auto', a count or a list like 0,1") from None
    return [gpu["index"] for gpu in nvml_gpus()]


def gpu_readings(setting: Any = "auto") -> list[dict[str, Any]]:
    """One reading per GPU. With a GPU count or list set by hand (tests: no GPU exists here), the
    GPUs are listed by index with no readings; otherwise NVML is asked."""
    if str(setting).strip().lower() != "auto":
        return [{"index": i, "name": None, "utilization": None, "memory_used": None, "memory_total": None}
                for i in visible_gpus(setting)]
    return nvml_gpus()


def host_info(gpu_setting: Any = "auto") -> dict[str, Any]:
    import socket

    total, available = memory_bytes()
    return {"hostname": socket.gethostname(), "cpus": os.cpu_count() or 1, "memory_total": total,
            "memory_available": available, "load": os.getloadavg()[0], "gpus": gpu_readings(gpu_setting)}


def check_host_gpus(setting: Any, wanted: int) -> None:
    """Refuse a run that asks for more GPUs than this host has."""
    if not wanted:
        return
    try:
        available = visible_gpus(setting)
    except ValueError as exc:
        raise RunnerError(str(exc)) from None
    if wanted > len(available):
        raise RunnerError(f"this step asks for {wanted} GPU(s); this machine has {len(available)}")
