"""Reconcile: no execution stays `started` forever after its supervisor died.

Anything that reads the store calls `reconcile` first. An active execution whose supervisor process
is gone (or is another process that reused its pid) becomes `crashed` with a reason, and whatever
its run left behind is killed (or, for runners that can, would be adopted again).
"""

from __future__ import annotations

import time
from typing import Any

from runners import RunnerError, get_runner
from vhtui.context import Context
from runners.processes import is_running
from vhtui.store import executions as execution_rows

NEVER_STARTED_S = 60.0


def supervisor_alive(execution: dict[str, Any]) -> bool:
    return is_running(execution.get("supervisor_pid"), execution.get("supervisor_started"))


def reconcile(ctx: Context) -> list[int]:
    """Mark executions with dead owners as crashed; return their ids."""
    crashed = []
    now = time.time()
    for execution in execution_rows.list_active(ctx.db):
        if execution["supervisor_pid"] is None:
            if now - execution["created_at"] < NEVER_STARTED_S:
                continue  # its supervisor is still starting
            reason = "its supervisor never started"
        elif supervisor_alive(execution):
            continue
        else:
            beat = execution.get("heartbeat_at")
            ago = f", last heartbeat {now - beat:.0f}s ago" if beat else ""
            reason = f"its supervisor (pid {execution['supervisor_pid']}) died{ago}"
        _abandon_run(execution)
        if execution_rows.update(ctx.db, execution["id"], status="crashed", reason=reason, ended_at=now):
            crashed.append(execution["id"])
    return crashed


def _abandon_run(execution: dict[str, Any]) -> None:
    state = execution.get("runner_state")
    if not state:
        return
    try:
        get_runner(execution["runner"]).abandon(state)
    except RunnerError:
        pass
