"""Asking a running execution to stop: the request is recorded, then its supervisor is signalled."""

from __future__ import annotations

import signal
import time
from typing import Any

from vhtui.context import Context
from vhtui.store import executions as execution_rows
from vhtui.store.executions import FINAL_STATUSES
from vhtui.supervision import owner


def request_stop(ctx: Context, execution: dict[str, Any]) -> bool:
    """False if the execution had already ended."""
    if execution["status"] in FINAL_STATUSES:
        return False
    execution_rows.update(ctx.db, execution["id"], stop_requested_at=time.time())
    signalled = owner.signal_owner(execution["supervisor_pid"], execution["supervisor_started"], signal.SIGTERM)
    if not signalled and execution["status"] == "created":
        execution_rows.update(ctx.db, execution["id"], status="stopped", reason="stopped before it was queued",
                              ended_at=time.time())
    return True


def wait_until_final(ctx: Context, execution_id: int, timeout: float | None = None, poll: float = 0.1) -> dict[str, Any]:
    from vhtui.engine.reconcile import reconcile

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        execution = execution_rows.get(ctx.db, execution_id)
        assert execution is not None
        if execution["status"] in FINAL_STATUSES:
            return execution
        if deadline is not None and time.monotonic() > deadline:
            return execution
        reconcile(ctx)
        time.sleep(poll)
