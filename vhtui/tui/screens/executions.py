"""The home screen: a project's executions, live, filterable and sortable."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from vhtui.errors import did_you_mean
from vhtui.store import projects as project_rows
from vhtui.store.executions import STATUSES
from vhtui.tui.messages import StoreChanged
from vhtui.tui.widgets.status_line import StatusLine
from vhtui.tui.actions import confirm_and_stop, rerun
from vhtui.tui.widgets.execution_table import ExecutionTable
from vhtui.tui.focus import focus_now, typing
from vhtui.tui.workbench import workbench


class ExecutionsScreen(Screen[None]):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="executions.filter", priority=True),
        Binding("escape", "clear", "Clear", show=False, id="executions.clear"),
        Binding("c", "compare", "Compare", id="executions.compare"),
        Binding("n", "new", "New", id="executions.new"),
        Binding("r", "rerun", "Re-run", id="executions.rerun"),
        Binding("s", "stop", "Stop", id="executions.stop"),
    ]

    def __init__(self, project_id: int) -> None:
        super().__init__()
        self.project_id = project_id

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`/` is a priority binding (vhtui.tui.focus): in a text field it is typed."""
        return not (action == "filter" and typing(self))

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: text, status:error, step:train (enter to apply, esc to clear)", id="filter")
        yield ExecutionTable(workbench(self.app).ctx.db, self.project_id, id="executions")
        yield StatusLine(id="status-line")
        yield Footer()

    @property
    def table(self) -> ExecutionTable:
        return self.query_one(ExecutionTable)

    def on_mount(self) -> None:
        project = project_rows.get(workbench(self.app).ctx.db, self.project_id)
        self.sub_title = project["name"] if project else ""
        self.table.focus()
        self.call_after_refresh(self._reload)

    def _reload(self) -> None:
        self.table.reload()
        self._describe()

    def on_execution_table_counted(self, message: ExecutionTable.Counted) -> None:
        self._describe()

    def _describe(self) -> None:
        query = self.table.query
        shown = f"{self.table.total} execution(s)"
        if query.text:
            shown += f" matching {query.text!r}"
        if self.table.selected:
            shown += f" · {len(self.table.selected)} selected (c to compare)"
        if not self.table.total and not query.text:
            shown = "no executions yet: n opens the launch form, ctrl+p runs a step"
        status = query.parts()["status"]
        if status and status not in STATUSES:  # a silent 0 would read as "none has that status"
            hint = did_you_mean(status, list(STATUSES)) or f" (one of: {', '.join(STATUSES)})"
            shown = f"unknown status {status!r}{hint}"
        self.query_one(StatusLine).text = shown

    def on_store_changed(self, message: StoreChanged) -> None:
        self._reload()

    def on_resize(self) -> None:
        self.call_after_refresh(self._reload)

    def on_execution_table_opened(self, message: ExecutionTable.Opened) -> None:
        workbench(self.app).open_execution(message.execution_id)

    def on_execution_table_sort_changed(self, message: ExecutionTable.SortChanged) -> None:
        self._reload()

    # -- filter ---------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        focus_now(box)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.table.set_filter(event.value)
            self._reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.table.focus()

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value or box.has_class("visible"):
            box.value = ""
            box.remove_class("visible")
            self.table.set_filter("")
        else:
            self.table.selected.clear()
        self.table.focus()
        self._reload()

    # -- actions --------------------------------------------------------------------------
    def _current(self) -> dict[str, Any] | None:
        return self.table.row(self.table.cursor) if self.table.total else None

    def action_compare(self) -> None:
        from vhtui.tui.screens.compare import CompareScreen

        ids = sorted(self.table.selected)
        if len(ids) < 2:
            self.notify("select two or more executions with space first", severity="warning")
            return
        self.app.push_screen(CompareScreen(ids))

    def action_new(self) -> None:
        workbench(self.app).open_launch()

    def action_rerun(self) -> None:
        execution = self._current()
        if execution:
            rerun(self.app, execution)

    def action_stop(self) -> None:
        execution = self._current()
        if execution:
            confirm_and_stop(self.app, execution)
