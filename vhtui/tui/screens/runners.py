"""The runners: local, Docker, and every registered remote agent with its health, GPUs and slots.

Agents are asked in a worker (a slow or unreachable one never blocks the screen), again every few
seconds while the screen is open.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from vhtui.engine import registry
from vhtui.tui.widgets.status_line import StatusLine
from vhtui.tui.workbench import workbench

REFRESH_S = 5.0


class RunnersScreen(Screen[None]):
    BINDINGS = [Binding("escape", "back", "Back", id="runners.back"),
                Binding("r", "refresh", "Refresh", id="runners.refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="runners", cursor_type="row", zebra_stripes=True)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*registry.HEALTH_HEADERS)
        self.show([])
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)
        table.focus()

    def action_refresh(self) -> None:
        self.ask_agents()

    @work(thread=True, exclusive=True)
    def ask_agents(self) -> None:
        rows = registry.health_of_all(workbench(self.app).ctx)
        self.app.call_from_thread(self.show, rows)

    def show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        table.add_row("local", "this machine", "ok", "", "", "", "", key="local")
        table.add_row("docker", "local Docker engine", "ok when dockerd runs", "", "", "", "", key="docker")
        for row in rows:
            table.add_row(*registry.health_columns(row), key=row["name"])
        self.query_one(StatusLine).text = (
            f"{len(rows)} remote runner(s) · vhtui runner add NAME URL --token-file F registers one · r refreshes")

    def action_back(self) -> None:
        self.app.pop_screen()
