"""What an execution asks of this host's slots: how many GPUs, and which GPUs exist here.

The slots themselves (flock-based, so a crash never leaks one) live in `runners.slots`, shared
with the runner agent.
"""

from __future__ import annotations

from typing import Any

from runners import hostinfo
from runners.slots import SlotLease, try_acquire
from vhtui.errors import VhtuiError

GPU_RESOURCE = "nvidia.com/gpu"
__all__ = ["GPU_RESOURCE", "SlotLease", "gpus_requested", "try_acquire", "visible_gpus"]


def visible_gpus(setting: Any = "auto") -> list[int]:
    """GPU indices this machine offers: the setting (a count or list; tests use it), else NVML."""
    try:
        return hostinfo.visible_gpus(setting)
    except ValueError as exc:
        raise VhtuiError(str(exc)) from None


def gpus_requested(resources: Any) -> int:
    devices = getattr(getattr(resources, "devices", None), "devices", None) or {}
    try:
        return int(devices.get(GPU_RESOURCE, 0) or 0)
    except (TypeError, ValueError):
        raise VhtuiError(f"resources.devices.{GPU_RESOURCE} must be a whole number") from None
