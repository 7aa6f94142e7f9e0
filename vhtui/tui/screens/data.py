"""Every datum of the project: filter, details, export, alias, delete (never one in use)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from vhtui.data.datums import DatumStore
from vhtui.errors import VhtuiError
from vhtui.store import Database
from vhtui.store import datums as datum_rows
from vhtui.store import projects as project_rows
from vhtui.tui.messages import StoreChanged
from vhtui.tui.widgets.status_line import StatusLine
from vhtui.tui.focus import focus_now, typing
from vhtui.tui.workbench import workbench


class DataScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="data.back"),
        Binding("slash", "filter", "Filter", id="data.filter", priority=True),
        Binding("e", "export", "Export", id="data.export"),
        Binding("a", "alias", "Alias", id="data.alias"),
        Binding("x", "delete", "Delete", id="data.delete"),
        Binding("enter", "producer", "Producer", id="data.producer"),
    ]

    def __init__(self, project_id: int) -> None:
        super().__init__()
        self.project_id = project_id
        self.filter_text = ""
        self.purpose = ""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`/` is a priority binding (vhtui.tui.focus): in a text field it is typed."""
        return not (action == "filter" and typing(self))

    @property
    def db(self) -> Database:
        return workbench(self.app).ctx.db

    @property
    def datums(self) -> DatumStore:
        return DatumStore(workbench(self.app).ctx.home, self.db)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(id="data-input")
        yield DataTable(id="datums", cursor_type="row", zebra_stripes=True)
        yield StatusLine(id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        project = project_rows.get(self.db, self.project_id)
        self.sub_title = f"data · {project['name']}" if project else "data"
        self.query_one("#data-input", Input).display = False
        self.query_one(DataTable).add_columns("name", "size", "producer", "aliases", "tags", "created", "datum")
        self.refresh_rows()
        self.query_one(DataTable).focus()

    def on_store_changed(self, message: StoreChanged) -> None:
        self.refresh_rows()

    def _matches(self, datum: dict[str, Any], aliases: list[str]) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        hay = " ".join([datum["name"], datum["id"], " ".join(aliases), " ".join(datum["tags"]),
                        f"#{datum.get('producer_counter') or ''}"]).lower()
        return all(word in hay for word in needle.split())

    def refresh_rows(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        shown = 0
        for datum in datum_rows.list_for_project(self.db, self.project_id):
            if datum["kind"] == "code":
                continue
            aliases = datum_rows.aliases_of(self.db, datum["id"])
            if not self._matches(datum, aliases):
                continue
            shown += 1
            producer = f"#{datum['producer_counter']}" if datum.get("producer_counter") else datum["kind"]
            table.add_row(datum["name"], f"{datum['size']:,}", producer, ", ".join(aliases), ", ".join(datum["tags"]),
                          datetime.fromtimestamp(datum["created_at"]).strftime("%Y-%m-%d %H:%M"), datum["id"][:8],
                          key=datum["id"])
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        note = f" matching {self.filter_text!r}" if self.filter_text else ""
        self.query_one(StatusLine).text = f"{shown} datum(s){note}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Details of the datum under the cursor: its full identity and properties."""
        datum = datum_rows.get(self.db, event.row_key.value) if event.row_key.value else None
        if datum:
            properties = ", ".join(f"{k}={v}" for k, v in datum["properties"].items()) or "no properties"
            self.query_one(StatusLine).text = f"datum://{datum['id']}  sha256:{datum['sha256'][:16]}  {properties}"

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return datum_rows.get(self.db, key) if key else None

    def _ask(self, purpose: str, placeholder: str, value: str = "") -> None:
        self.purpose = purpose
        box = self.query_one("#data-input", Input)
        box.placeholder = placeholder
        box.value = value
        box.display = True
        focus_now(box)

    def action_filter(self) -> None:
        self._ask("filter", "filter by name, tag, alias, #producer (enter)", self.filter_text)

    def action_export(self) -> None:
        if self._selected():
            self._ask("export", "export to this directory (enter)", str(Path.cwd()))

    def action_alias(self) -> None:
        if self._selected():
            self._ask("alias", "alias name, e.g. production-model (enter)")

    def action_producer(self) -> None:
        datum = self._selected()
        if datum and datum["producer_execution_id"]:
            workbench(self.app).open_execution(datum["producer_execution_id"])

    def action_delete(self) -> None:
        from vhtui.tui.screens.confirm import ConfirmScreen

        datum = self._selected()
        if datum is None:
            return

        def decided(yes: bool | None) -> None:
            if yes:
                try:
                    self.datums.delete(datum["id"])
                    self.notify(f"deleted {datum['name']}")
                except VhtuiError as exc:
                    self.notify(str(exc), severity="error", timeout=8)
                self.refresh_rows()

        self.app.push_screen(ConfirmScreen(f"Delete {datum['name']} ({datum['id'][:8]})?",
                                           "Its aliases go too; its content stays while another datum shares it."),
                             decided)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = event.input
        box.display = False
        value = event.value.strip()
        self.query_one(DataTable).focus()
        datum = self._selected()
        try:
            if self.purpose == "filter":
                self.filter_text = value
            elif self.purpose == "export" and datum and value:
                path = self.datums.export(datum, Path(value))
                self.notify(f"wrote {path}")
            elif self.purpose == "alias" and datum and value:
                self.datums.set_alias(
                    self.project_id, value, f"datum://{datum['id']}")
                self.notify(f"datum://{value} → {datum['name']}")
        except VhtuiError as exc:
            self.notify(str(exc), severity="error", timeout=8)
        self.refresh_rows()

    def action_back(self) -> None:
        self.app.pop_screen()
