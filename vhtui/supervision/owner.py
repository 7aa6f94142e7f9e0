"""Who owns a detached job, and when its owner counts as dead.

An owner is a process named by its pid and its start time (so a reused pid is never mistaken for
it), with a heartbeat it writes every HEARTBEAT_S while it works. Executions, endpoints and the
router are all judged by the same rule: an owner that is gone is dead at once; a job whose owner
never recorded itself is given NEVER_STARTED_S to do so (a fresh interpreter on a loaded machine
can take seconds).
"""

from __future__ import annotations

import os
import signal

from runners.processes import is_running, start_time

NEVER_STARTED_S = 60.0
HEARTBEAT_S = 2.0


def me() -> tuple[int, float | None]:
    """This process as an owner: (pid, start time)."""
    pid = os.getpid()
    return pid, start_time(pid)


def alive(pid: int | None, started: float | None) -> bool:
    return is_running(pid, started)


def dead_owner_reason(pid: int | None, started: float | None, since: float, heartbeat: float | None,
                      now: float, what: str = "supervisor") -> str | None:
    """Why a job's owner counts as dead, or None while it lives (or may still be starting).

    `since` is when the job was handed to its owner; `heartbeat` its owner's last sign of life.
    """
    if pid is None:
        if now - (heartbeat or since) < NEVER_STARTED_S:
            return None
        return f"its {what} never started"
    if alive(pid, started):
        return None
    ago = f", last heartbeat {now - heartbeat:.0f}s ago" if heartbeat else ""
    return f"its {what} (pid {pid}) died{ago}"


def signal_owner(pid: int | None, started: float | None, sig: int = signal.SIGTERM) -> bool:
    """Signal the owner if it is still the process recorded; False when it is gone."""
    if not alive(pid, started):
        return False
    try:
        os.kill(pid, sig)  # type: ignore[arg-type]
        return True
    except ProcessLookupError:
        return False
