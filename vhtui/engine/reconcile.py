"""Reconcile: no execution stays `started` forever after its supervisor died.

Anything that reads the store calls `reconcile` first. An active execution whose supervisor is dead
(by the supervision layer's one rule) is taken over by a new supervisor when its runner's runs
outlive their owner and the run is still there; otherwise it becomes `crashed` with the reason
(the supervisor's own last word, when it left one in its log), whatever its run left behind is
ended, and a detached collector stores what is left in its outputs folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runners import RunnerError
from vhtui.context import Context
from vhtui.engine import registry, secrets
from vhtui.errors import VhtuiError
from vhtui.store import executions as execution_rows
from vhtui.supervision import owner


def reconcile(ctx: Context) -> list[int]:
    """Mark executions with dead owners as crashed; return their ids."""
    crashed = []
    now = time.time()
    for execution in execution_rows.list_active(ctx.db):
        reason = owner.dead_owner_reason(execution["supervisor_pid"], execution["supervisor_started"],
                                         execution["created_at"], execution.get("heartbeat_at"), now)
        if reason is None:
            continue
        runner = _runner(ctx, execution)
        if execution["supervisor_pid"] is not None and _resume(ctx, execution, runner):
            continue
        if runner is not None and execution.get("runner_state"):
            try:
                runner.abandon(execution["runner_state"])
            except RunnerError:
                pass
        reason += last_word(ctx.home.supervisor_log(execution["id"]))
        secrets.take(ctx.home.execution_dir(execution["id"]))  # a supervisor that never read them
        if execution_rows.update(ctx.db, execution["id"], status="crashed", reason=reason, ended_at=now):
            crashed.append(execution["id"])
            from vhtui.engine.launch import start_collector

            start_collector(ctx, execution["id"])
    return crashed


def last_word(log: Path) -> str:
    """': <why>' from the last line a dying supervisor wrote (`vhtui: ...`), or nothing."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    said = [line for line in lines if line.startswith("vhtui: ")]
    return f": {said[-1][len('vhtui: '):]}" if said else ""


def _runner(ctx: Context, execution: dict[str, Any]) -> Any:
    try:
        return registry.open_runner(ctx, execution["runner"])
    except VhtuiError:
        return None  # a runner since removed: nothing to resume or end


def _resume(ctx: Context, execution: dict[str, Any], runner: Any) -> bool:
    """A resumable runner's run outlives its supervisor: start a new one that takes it over. Only
    the reader that clears the dead pid (one conditional UPDATE) starts it."""
    if runner is None or not runner.resumable or not execution.get("runner_state") \
            or execution["status"] not in ("started", "stopping"):
        return False
    if execution_rows.claim_dead_owner(ctx.db, execution["id"], execution["supervisor_pid"], time.time()):
        from vhtui.engine.launch import start_supervisor

        start_supervisor(ctx, execution["id"], resume=True)
    return True
