"""The runners: local, Docker, and every registered remote agent with its health, GPUs and slots.

They are asked in a worker (a slow or unreachable agent never blocks the screen), again every few
seconds while the screen is open, through the same registry call as `vhtui runner ls`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from vhtui.context import Context
from vhtui.engine import registry
from vhtui.tui.widgets.status_line import StatusLine
from vhtui.tui.workbench import workbench

REFRESH_S = 5.0


class RunnersScreen(Screen[None]):
    SUB_TITLE = "runners"
    BINDINGS = [Binding("escape", "back", "Back", id="runners.back"),
                Binding("r", "refresh", "Refresh", id="runners.refresh")]

    def __init__(self, ask: Callable[[Context], list[dict[str, Any]]] = registry.health_of_all) -> None:
        super().__init__()
        self.ask = ask

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
        rows = self.ask(workbench(self.app).ctx)
        self.app.call_from_thread(self.show, rows)

    def show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(*registry.health_columns(row), key=row["name"])
        agents = sum(row["name"] not in registry.BUILT_IN for row in rows)
        self.query_one(StatusLine).text = (
            f"{agents} remote runner(s) · vhtui runner add NAME URL --token-file F registers one · r refreshes"
            if rows else "asking the runners…")

    def action_back(self) -> None:
        self.app.pop_screen()
