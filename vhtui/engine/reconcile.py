"""Reconcile: no execution stays `started` forever after its supervisor died.

Anything that reads the store calls `reconcile` first. An active execution whose supervisor process
is gone (or is another process that reused its pid) becomes `crashed` with a reason, and whatever
its run left behind is killed (or, for runners that can, would be adopted again).
"""

from __future__ import annotations

import time
from typing import Any

from runners import RunnerError
from vhtui.context import Context
from vhtui.engine import remotes
from vhtui.errors import VhtuiError
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
            if now - (execution.get("heartbeat_at") or execution["created_at"]) < NEVER_STARTED_S:
                continue  # its supervisor is still starting
            reason = "its supervisor never started"
        elif supervisor_alive(execution):
            continue
        else:
            if _resume(ctx, execution):
                continue
            beat = execution.get("heartbeat_at")
            ago = f", last heartbeat {now - beat:.0f}s ago" if beat else ""
            reason = f"its supervisor (pid {execution['supervisor_pid']}) died{ago}"
        _abandon_run(ctx, execution)
        if execution_rows.update(ctx.db, execution["id"], status="crashed", reason=reason, ended_at=now):
            crashed.append(execution["id"])
    return crashed


def _resume(ctx: Context, execution: dict[str, Any]) -> bool:
    """A run on a remote agent outlives its supervisor: start a new one that takes it over. Only
    the reader that clears the dead pid (one conditional UPDATE) starts it."""
    if execution["runner"] in remotes.BUILT_IN or not execution.get("runner_state") \
            or execution["status"] not in ("started", "stopping"):
        return False
    with ctx.db.write() as conn:
        claimed = conn.execute("UPDATE executions SET supervisor_pid = NULL, heartbeat_at = ? "
                               "WHERE id = ? AND supervisor_pid = ?",
                               (time.time(), execution["id"], execution["supervisor_pid"])).rowcount
    if claimed:
        from vhtui.engine.launch import start_supervisor

        start_supervisor(ctx, execution["id"], resume=True)
    return True


def _abandon_run(ctx: Context, execution: dict[str, Any]) -> None:
    state = execution.get("runner_state")
    if not state:
        return
    try:
        remotes.open_runner(ctx, execution["runner"]).abandon(state)
    except (RunnerError, VhtuiError):
        pass
