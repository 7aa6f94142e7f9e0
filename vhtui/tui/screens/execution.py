"""One execution: Overview, Logs, Metadata, Outputs and Lineage tabs."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static, TabbedContent, TabPane

from vhtui.data.datums import DatumStore
from vhtui.engine import registry
from vhtui.engine.documents import commands
from vhtui.store import Database
from vhtui.store import datums as datum_rows
from vhtui.store import executions as execution_rows
from vhtui.store import projects as project_rows
from vhtui.store.executions import FINAL_STATUSES
from vhtui.tui.actions import confirm_and_stop, rerun
from vhtui.tui.messages import StoreChanged
from vhtui.tui.series import metric_text
from vhtui.tui.widgets.execution_table import STATUS_STYLE, format_duration
from vhtui.tui.widgets.log_view import LogView
from vhtui.tui.widgets.metadata_panel import MetadataPanel
from vhtui.tui.focus import focus_now, typing
from vhtui.tui.workbench import workbench


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


def overview_table(execution: dict[str, Any], inputs: list[dict[str, Any]], producers: dict[str, int]) -> Table:
    """Everything recorded for lineage and reproduction, in one table (`producers`: datum -> #N)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    symbol, style = STATUS_STYLE.get(execution["status"], ("?", ""))
    table.add_row("status", Text(f"{symbol} {execution['status']}", style=style))
    if execution["reason"]:
        table.add_row("reason", Text(execution["reason"], style="yellow"))
    table.add_row("step", execution["step"])
    if execution["title"]:
        table.add_row("title", execution["title"])
    runner = execution["runner"]
    if registry.has_env_mode(runner):
        runner += f" ({execution['spec'].get('env_mode', 'venv')} environment)"
    table.add_row("runner", runner)
    table.add_row("image", execution["image"] or "—")
    table.add_row("created", _when(execution["created_at"]))
    table.add_row("started", _when(execution["started_at"]))
    table.add_row("ended", _when(execution["ended_at"]))
    table.add_row("duration", format_duration(execution) or "—")
    table.add_row("exit code", "—" if execution["exit_code"] is None else str(execution["exit_code"]))
    code = execution["code_version"]
    if code.get("type") == "git":
        table.add_row("code", f"git {code['commit'][:12]} ({code.get('branch')})" + ("  + uncommitted changes"
                                                                                     if code.get("dirty") else ""))
    else:
        table.add_row("code", f"adhoc sha256:{code.get('sha256', '')[:16]} ({code.get('files', '?')} files)")
    for name, value in execution["parameters"].items():
        table.add_row(f"param {name}", json.dumps(value))
    for item in inputs:
        source = item["uri"]
        producer = producers.get(item["datum_id"])
        line = f"{item['filename']}  sha256:{(item['sha256'] or '')[:16]}  {item['size']} B  from {source}"
        if producer:
            line += f"  (output of #{producer})"
        table.add_row(f"input {item['name']}", line)
    for name, value in execution["environment"].items():
        table.add_row(f"env {name}", value)
    gpus = execution["spec"].get("gpus")
    if gpus:
        table.add_row("gpus", str(gpus))
    for key, value in execution["metadata_summary"].items():
        table.add_row(f"metric {key}", metric_text(value))
    table.add_row("command", Text("\n".join(commands(execution)), style="cyan"))
    return table


class OverviewScroll(VerticalScroll):
    """The overview, scrolled from the keyboard as every list here is (j/k as well as the arrows)."""

    BINDINGS = [
        Binding("j", "scroll_down", "Down", show=False, id="overview.down"),
        Binding("k", "scroll_up", "Up", show=False, id="overview.up"),
    ]


# the widget of each tab that takes the keys the moment the tab shows (its keys act, the footer lists them)
TAB_FOCUS = {"overview": "#overview-scroll", "logs": "#log", "metadata": "#metadata-keys",
             "outputs": "#outputs-table", "lineage": "#upstream"}


class ExecutionScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="execution.back"),
        Binding("s", "stop", "Stop", id="execution.stop"),
        Binding("r", "rerun", "Re-run", id="execution.rerun"),
        Binding("1", "tab('overview')", "Overview", show=False, id="execution.tab_overview", priority=True),
        Binding("2", "tab('logs')", "Logs", show=False, id="execution.tab_logs", priority=True),
        Binding("3", "tab('metadata')", "Metadata", show=False, id="execution.tab_metadata", priority=True),
        Binding("4", "tab('outputs')", "Outputs", show=False, id="execution.tab_outputs", priority=True),
        Binding("5", "tab('lineage')", "Lineage", show=False, id="execution.tab_lineage", priority=True),
        Binding("e", "export", "Export outputs", id="execution.export"),
        Binding("a", "alias", "Set alias", id="execution.alias"),
    ]

    def __init__(self, execution_id: int) -> None:
        super().__init__()
        self.execution_id = execution_id
        self._run_version: tuple[Any, ...] | None = None  # what the tabs show, to skip needless rebuilds
        self._outputs_version: tuple[Any, ...] | None = None
        self.purpose = ""  # what the outputs tab's input box is asking for: "export" or "alias"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`1-5` is a priority binding (vhtui.tui.focus): in a text field it is typed."""
        return not (action == "tab" and typing(self))

    @property
    def db(self) -> Database:
        return workbench(self.app).ctx.db

    def load(self) -> dict[str, Any]:
        execution = execution_rows.get(self.db, self.execution_id)
        assert execution is not None
        return execution

    def compose(self) -> ComposeResult:
        execution = self.load()
        home = workbench(self.app).ctx.home
        yield Header()
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"):
                yield OverviewScroll(Static(id="overview-body", classes="overview"), id="overview-scroll")
            with TabPane("Logs", id="logs"):
                yield LogView(home.log_path(self.execution_id), id="log")
            with TabPane("Metadata", id="metadata"):
                yield MetadataPanel(home.database, self.execution_id, export_dir=home.exports,
                                    live=execution["status"] not in FINAL_STATUSES)
            with TabPane("Outputs", id="outputs"):
                yield Input(placeholder="", id="outputs-input", classes="hidden-input")
                yield DataTable(id="outputs-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Lineage", id="lineage"):
                with Horizontal():
                    with Vertical():
                        yield Label("Produced its inputs", classes="section-title")
                        yield DataTable(id="upstream", cursor_type="row", classes="lineage-list")
                    with Vertical():
                        yield Label("Consumed its outputs", classes="section-title")
                        yield DataTable(id="downstream", cursor_type="row", classes="lineage-list")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#outputs-input", Input).display = False
        outputs = self.query_one("#outputs-table", DataTable)
        outputs.add_columns("name", "size", "sha256", "aliases", "tags", "datum")
        for table_id in ("#upstream", "#downstream"):
            self.query_one(table_id, DataTable).add_columns("#", "step", "status", "through")
        self.refresh_data()
        self._focus_tab("overview")

    def on_store_changed(self, message: StoreChanged) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        """Rebuild what changed, and only that: other runs commit often (a busy run's metadata
        arrives several times a second), and most commits do not concern this execution."""
        execution = self.load()
        run_version = (execution["status"], execution["ended_at"], execution["reason"], execution["metadata_count"])
        outputs_version = datum_rows.outputs_version(self.db, self.execution_id)
        if run_version != self._run_version:
            self._run_version = run_version
            project = project_rows.get(self.db, execution["project_id"])
            self.sub_title = f"#{execution['counter']} {execution['step']} · {execution['status']} · " \
                                 f"{project['name'] if project else ''}"
            inputs = execution_rows.inputs_of(self.db, self.execution_id)
            input_datums = {i["datum_id"]: datum_rows.get(self.db, i["datum_id"]) for i in inputs if i["datum_id"]}
            producers = {datum_id: d["producer_counter"] for datum_id, d in input_datums.items()
                         if d and d.get("producer_counter")}
            self.query_one("#overview-body", Static).update(overview_table(execution, inputs, producers))
            self._fill_upstream(inputs, input_datums)
        if outputs_version != self._outputs_version:
            self._outputs_version = outputs_version
            self._fill_outputs()
            self._fill_downstream()

    def _fill_outputs(self) -> None:
        table = self.query_one("#outputs-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for datum in datum_rows.produced_by(self.db, self.execution_id):
            table.add_row(datum["name"], f"{datum['size']:,}", datum["sha256"][:16],
                          ", ".join(datum_rows.aliases_of(self.db, datum["id"])), ", ".join(datum["tags"]),
                          datum["id"][:8], key=datum["id"])
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def _fill_upstream(self, inputs: list[dict[str, Any]], input_datums: dict[str, Any]) -> None:
        upstream = self.query_one("#upstream", DataTable)
        upstream.clear()
        seen: set[int] = set()
        for item in inputs:
            datum = input_datums.get(item["datum_id"])
            if datum and datum["producer_execution_id"] and datum["producer_execution_id"] not in seen:
                seen.add(datum["producer_execution_id"])
                producer = execution_rows.get(self.db, datum["producer_execution_id"])
                if producer:
                    upstream.add_row(f"#{producer['counter']}", producer["step"], producer["status"],
                                     f"{item['name']} ← {datum['name']}", key=str(producer["id"]))

    def _fill_downstream(self) -> None:
        downstream = self.query_one("#downstream", DataTable)
        downstream.clear()
        seen: set[int] = set()
        for datum in datum_rows.produced_by(self.db, self.execution_id):
            for consumer in execution_rows.consumers_of_datum(self.db, datum["id"]):
                if consumer["id"] not in seen:
                    seen.add(consumer["id"])
                    downstream.add_row(f"#{consumer['counter']}", consumer["step"], consumer["status"],
                                       datum["name"], key=str(consumer["id"]))

    def on_metadata_panel_exported(self, message: MetadataPanel.Exported) -> None:
        self.notify(f"wrote {message.rows:,} events to {message.path}")

    def on_metadata_panel_export_failed(self, message: MetadataPanel.ExportFailed) -> None:
        self.notify(f"cannot export metadata: {message.error}", severity="error", timeout=8)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id in ("upstream", "downstream") and event.row_key.value:
            workbench(self.app).open_execution(int(event.row_key.value))

    # -- actions --------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self._focus_tab(tab)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """A tab chosen on the tab bar (a click, or the arrows there) takes the keys as `1`-`5` do."""
        focused = self.focused
        if event.pane.id in TAB_FOCUS and (focused is None or event.pane not in focused.ancestors_with_self):
            self._focus_tab(event.pane.id)

    def _focus_tab(self, tab: str) -> None:
        focus_now(self.query_one(TAB_FOCUS[tab]))

    def action_stop(self) -> None:
        confirm_and_stop(self.app, self.load())

    def action_rerun(self) -> None:
        rerun(self.app, self.load())

    def _ask(self, purpose: str, placeholder: str, value: str = "") -> None:
        self.purpose = purpose
        self.query_one(TabbedContent).active = "outputs"
        box = self.query_one("#outputs-input", Input)
        box.placeholder = placeholder
        box.value = value
        box.display = True
        focus_now(box)

    def action_export(self) -> None:
        execution = self.load()
        default = str(Path.cwd() / f"outputs-{execution['counter']}")
        self._ask("export", "export all outputs to this directory (enter)", default)

    def action_alias(self) -> None:
        table = self.query_one("#outputs-table", DataTable)
        if not table.row_count:
            self.notify("this execution has no outputs", severity="warning")
            return
        self._ask("alias", "alias for the selected output, e.g. production-model (enter)")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "outputs-input":
            return
        box = event.input
        box.display = False
        value = event.value.strip()
        if not value:
            return
        store = DatumStore(workbench(self.app).ctx.home, self.db)
        try:
            if self.purpose == "export":
                started = time.monotonic()
                written = [store.export(d, Path(value)) for d in datum_rows.produced_by(self.db, self.execution_id)]
                self.notify(f"exported {len(written)} file(s) to {value} in {time.monotonic() - started:.1f}s")
            elif self.purpose == "alias":
                table = self.query_one("#outputs-table", DataTable)
                datum_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
                store.set_alias(self.load()["project_id"], value, f"datum://{datum_id}")
                self.notify(f"datum://{value} now points to this output")
                workbench(self.app).store_changed_here()
        except Exception as exc:  # noqa: BLE001 (shown to the user, never a traceback)
            self.notify(str(exc), severity="error", timeout=8)
        self.query_one("#outputs-table", DataTable).focus()
