"""Every project the store knows, to switch between them."""

from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from vhtui.store import projects as project_rows
from vhtui.tui.messages import StoreChanged
from vhtui.tui.widgets.status_line import StatusLine
from vhtui.tui.workbench import workbench


class ProjectsScreen(Screen[None]):
    SUB_TITLE = "projects"
    BINDINGS = [Binding("escape", "back", "Back", id="projects.back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="projects", cursor_type="row", zebra_stripes=True)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("project", "executions", "last run", "path")
        self.refresh_rows()
        table.focus()

    def on_store_changed(self, message: StoreChanged) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        table = self.query_one(DataTable)
        db = workbench(self.app).ctx.db
        table.clear()
        for project, runs, last in project_rows.list_with_activity(db):
            when = datetime.fromtimestamp(last).strftime("%Y-%m-%d %H:%M") if last else "never"
            table.add_row(project["name"], str(runs), when, project["path"], key=str(project["id"]))
        self.query_one(StatusLine).text = (f"{table.row_count} project(s) · enter opens one" if table.row_count else
                                           "no projects yet: run vhtui in a directory that holds a valohai.yaml")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        workbench(self.app).open_project(int(event.row_key.value))  # type: ignore[arg-type]

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
