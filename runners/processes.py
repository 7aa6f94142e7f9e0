"""Process identity from /proc: a pid plus its start time names one process, even after reuse."""

from __future__ import annotations


def start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return float(fields[19])


def is_running(pid: int | None, started: float | None) -> bool:
    """True if `pid` is alive and (when `started` is known) is the same process as recorded."""
    if not pid:
        return False
    now = start_time(pid)
    return now is not None and (started is None or now == started)
