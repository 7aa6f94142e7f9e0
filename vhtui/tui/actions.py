"""Actions on an execution offered wherever one shows: stop (after a confirm) and re-run."""

from __future__ import annotations

from typing import Any

from textual.app import App

from vhtui.store.executions import FINAL_STATUSES
from vhtui.tui.workbench import workbench


def confirm_and_stop(app: App[Any], execution: dict[str, Any]) -> None:
    from vhtui.tui.screens.confirm import ConfirmScreen

    if execution["status"] in FINAL_STATUSES:
        app.notify(f"#{execution['counter']} has already ended ({execution['status']})")
        return

    def decided(yes: bool | None) -> None:
        if yes:
            _stop_in_worker(app, execution["id"])

    app.push_screen(ConfirmScreen(f"Stop #{execution['counter']} ({execution['step']})?",
                                  "SIGTERM now, SIGKILL after the grace period. Outputs are kept."), decided)


def _stop_in_worker(app: App[Any], execution_id: int) -> None:
    def stop() -> None:
        from vhtui.engine.control import request_stop
        from vhtui.store import executions as execution_rows

        bench = workbench(app)
        ctx = bench.ctx.with_new_connection()
        try:
            execution = execution_rows.get(ctx.db, execution_id)
            if execution and request_stop(ctx, execution):
                app.call_from_thread(app.notify, f"stopping #{execution['counter']}")
        finally:
            ctx.db.close()
        app.call_from_thread(bench.store_changed_here)

    app.run_worker(stop, thread=True, group="stop")


def rerun(app: App[Any], execution: dict[str, Any]) -> None:
    """Open the launch form with this execution's step, parameters and inputs."""
    from vhtui.store import executions as execution_rows

    bench = workbench(app)
    inputs: dict[str, list[str]] = {}
    for item in execution_rows.inputs_of(bench.ctx.db, execution["id"]):
        inputs.setdefault(item["name"], []).append(item["uri"])
    bench.open_launch(execution["step"], {
        "parameters": execution["parameters"], "inputs": inputs, "title": execution["title"],
        "runner": execution["runner"], "env_mode": execution["spec"].get("env_mode", "venv"),
    })
