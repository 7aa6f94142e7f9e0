"""An execution's Metadata tab: charts of its metrics and a table of its events, live while it runs.

Everything that reads the store runs in thread workers, each with its own connection, and comes
back as a message, so the event loop never waits on SQLite or on parsing. A live panel polls every
POLL_INTERVAL_S and reads only the events after the last one it holds; once it sees the execution
has ended it reads once more and stops polling.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, Select, SelectionList, Static

from vhtui.errors import VhtuiError
from vhtui.store import executions as execution_rows
from vhtui.store import open_database
from vhtui.store.metadata import first_event_time, iter_events, next_seq
from vhtui.tui.series import Series, load_series, numeric_keys, to_csv
from vhtui.tui.widgets.metric_chart import MetricChart

POLL_INTERVAL_S = 0.5
TABLE_ROWS = 2000  # the table shows the latest events; a DataTable stays quick at this size
SMOOTHING = 0.6  # TensorBoard's default weight, used when smoothing is toggled on
FIELD_AXES = ("step", "epoch")  # x axes taken from the events' own keys, offered when present
ARRIVAL_AXES = ("time", "seq")  # x axes every event has


class MetadataPanel(Widget):
    """Charts of the keys picked in the sidebar against the chosen x axis, or the events as a table.

    The host shows `Exported` / `ExportFailed` (e.g. as a notification). `export_path` is where `e`
    writes the CSV; by default `<export_dir>/<counter>-metadata.csv` (the host gives the store's
    exports folder: the working directory is often the project, whose code snapshot would take it).
    """

    DEFAULT_CSS = """
    MetadataPanel {
        height: 1fr;
    }
    MetadataPanel #metadata-sidebar {
        width: 28;
    }
    MetadataPanel #metadata-keys {
        height: 1fr;
    }
    MetadataPanel #metadata-views, MetadataPanel #metadata-table-view {
        height: 1fr;
    }
    MetadataPanel #metadata-status, MetadataPanel #metadata-table-note {
        height: 1;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "toggle_log", "Log scale", id="metadata.log_scale"),
        Binding("m", "toggle_smoothing", "Smoothing", id="metadata.smoothing"),
        Binding("x", "next_x_axis", "X axis", id="metadata.x_axis"),
        Binding("t", "toggle_table", "Table", id="metadata.table"),
        Binding("e", "export", "Export CSV", id="metadata.export"),
    ]

    class Exported(Message):
        """The events were written as CSV to `path`."""

        def __init__(self, path: Path, rows: int) -> None:
            super().__init__()
            self.path = path
            self.rows = rows

    class ExportFailed(Message):
        def __init__(self, path: Path | None, error: str) -> None:
            super().__init__()
            self.path = path
            self.error = error

    class _ChartLoaded(Message, bubble=False):
        def __init__(self, generation: int, after_seq: int, execution: dict[str, Any], keys: list[str], x: str,
                     series: dict[str, Series]) -> None:
            super().__init__()
            self.generation, self.after_seq, self.execution = generation, after_seq, execution
            self.keys, self.x, self.series = keys, x, series

    class _TableLoaded(Message, bubble=False):
        def __init__(self, columns: list[str], rows: list[tuple[int, list[str]]], total: int, reset: bool) -> None:
            super().__init__()
            self.columns, self.rows, self.total, self.reset = columns, rows, total, reset

    class _LoadFailed(Message, bubble=False):
        def __init__(self, view: str, error: str) -> None:
            super().__init__()
            self.view = view  # "chart" or "table"
            self.error = error

    def __init__(self, database_path: Path, execution_id: int, live: bool, *, export_path: Path | None = None,
                 export_dir: Path | None = None,
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.database_path = database_path
        self.execution_id = execution_id
        self.live = live
        self.export_path = export_path
        self.export_dir = export_dir or Path.cwd()
        self._keys: list[str] | None = None  # None until there are numeric keys to pick defaults from
        self._x = "seq"
        self._numeric: list[str] = []
        self._last_seq = -1
        self._generation = 0  # bumped by a full reload; results of older loads are dropped
        self._chart_loads = 0  # in flight
        self._table_loads = 0
        self._table_columns: list[str] = []
        self._table_keys: deque[int] = deque()  # seq of the rows shown, oldest first
        self._table_last_seq = -1
        self._count = 0
        self._error = ""
        self._poll: Timer | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="metadata-sidebar"):
                yield Select([(axis, axis) for axis in ARRIVAL_AXES], value=self._x, allow_blank=False,
                             id="metadata-x")
                yield SelectionList[str](id="metadata-keys")
            with ContentSwitcher(initial="metadata-chart", id="metadata-views"):
                yield MetricChart(id="metadata-chart")
                with Vertical(id="metadata-table-view"):
                    yield Static(id="metadata-table-note")
                    yield DataTable(id="metadata-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="metadata-status")

    def on_mount(self) -> None:
        self._reload()
        if self.live:
            self._poll = self.set_interval(POLL_INTERVAL_S, self._poll_store)

    # -- user actions -------------------------------------------------------------------------------
    def action_toggle_log(self) -> None:
        chart = self.query_one(MetricChart)
        chart.log_scale = not chart.log_scale
        self._show_status()

    def action_toggle_smoothing(self) -> None:
        chart = self.query_one(MetricChart)
        chart.smoothing = 0.0 if chart.smoothing else SMOOTHING
        self._show_status()

    def action_next_x_axis(self) -> None:
        axes = self._x_axes()
        self.query_one(Select).value = axes[(axes.index(self._x) + 1) % len(axes)] if self._x in axes else axes[0]

    def action_toggle_table(self) -> None:
        views = self.query_one(ContentSwitcher)
        if views.current == "metadata-table-view":
            views.current = "metadata-chart"
            return
        views.current = "metadata-table-view"
        self._table_last_seq = -1
        self._start_table_load()

    def action_export(self) -> None:
        self._export()

    @on(Select.Changed, "#metadata-x")
    def _x_changed(self, event: Select.Changed) -> None:
        if event.value != self._x and isinstance(event.value, str):
            self._x = event.value
            self._reload()

    @on(SelectionList.SelectedChanged, "#metadata-keys")
    def _keys_changed(self, event: SelectionList.SelectedChanged[str]) -> None:
        selected = set(event.selection_list.selected)
        keys = [key for key in self._numeric if key in selected]
        if keys != self._keys:
            self._keys = keys
            self._reload()

    # -- loading ------------------------------------------------------------------------------------
    def _reload(self) -> None:
        """Load the picked keys from the first event, replacing what the chart shows."""
        self._generation += 1
        self._start_chart_load(-1)

    def _poll_store(self) -> None:
        if not self._chart_loads:
            self._start_chart_load(self._last_seq if self._keys is not None else -1)
        table_shown = self.query_one(ContentSwitcher).current == "metadata-table-view"
        if table_shown and not self._table_loads:
            self._start_table_load()

    def _start_chart_load(self, after_seq: int) -> None:
        self._chart_loads += 1
        keys = list(self._keys) if self._keys is not None else None
        self._load_chart(self._generation, keys, self._x, after_seq)

    @work(thread=True, group="metadata-chart")
    def _load_chart(self, generation: int, keys: list[str] | None, x: str, after_seq: int) -> None:
        try:
            db = open_database(self.database_path)
            try:
                execution = execution_rows.get(db, self.execution_id) or {}
                if keys is None:
                    keys, x = _default_keys_and_x(numeric_keys(execution.get("metadata_summary", {})))
                series = load_series(db, self.execution_id, keys, x, after_seq) if keys else {}
            finally:
                db.close()
        except (sqlite3.Error, VhtuiError) as exc:
            self.post_message(self._LoadFailed("chart", str(exc)))
            return
        self.post_message(self._ChartLoaded(generation, after_seq, execution, keys, x, series))

    @on(_ChartLoaded)
    def _chart_loaded(self, message: _ChartLoaded) -> None:
        self._chart_loads -= 1
        if message.generation != self._generation or (message.after_seq >= 0 and message.after_seq != self._last_seq):
            return  # a reload started since, or these events are already in
        execution = message.execution
        self._count = execution.get("metadata_count", 0)
        self._error = ""
        self._sync_pickers(numeric_keys(execution.get("metadata_summary", {})), message.keys, message.x)
        chart = self.query_one(MetricChart)
        chart.x_label = "time (s)" if message.x == "time" else message.x
        if message.after_seq < 0:
            chart.set_series(message.series)
        elif any(len(series) for series in message.series.values()):
            chart.append(message.series)
        self._last_seq = max((s.last_seq for s in message.series.values()), default=message.after_seq)
        if self._poll is not None and execution.get("status") in execution_rows.FINAL_STATUSES:
            self._poll.stop()  # everything it wrote was in this load: it was read after the status
            self._poll = None
        self._show_status()

    @on(_LoadFailed)
    def _load_failed(self, message: _LoadFailed) -> None:
        if message.view == "chart":
            self._chart_loads -= 1
        else:
            self._table_loads -= 1
        self._error = message.error
        self._show_status()

    def _start_table_load(self) -> None:
        self._table_loads += 1
        self._load_table(self._table_last_seq)

    @work(thread=True, group="metadata-table")
    def _load_table(self, after_seq: int) -> None:
        try:
            db = open_database(self.database_path)
            try:
                execution = execution_rows.get(db, self.execution_id) or {}
                columns = list(execution.get("metadata_summary", {}))
                total = next_seq(db, self.execution_id)
                origin = first_event_time(db, self.execution_id)
                rows = [
                    (seq, [str(seq), f"+{when - origin:.3f}", *(_cell(event.get(key)) for key in columns)])
                    for seq, when, event in iter_events(db, self.execution_id, max(after_seq, total - TABLE_ROWS - 1))
                ]
            finally:
                db.close()
        except (sqlite3.Error, VhtuiError) as exc:
            self.post_message(self._LoadFailed("table", str(exc)))
            return
        self.post_message(self._TableLoaded(columns, rows, total, reset=after_seq < 0))

    @on(_TableLoaded)
    def _table_loaded(self, message: _TableLoaded) -> None:
        self._table_loads -= 1
        if not message.reset and message.columns != self._table_columns:
            self._table_last_seq = -1  # a new key: load the latest rows again, with its column
            self._start_table_load()
            return
        table = self.query_one(DataTable)
        if message.reset:
            table.clear(columns=True)
            table.add_columns("seq", "time", *message.columns)
            self._table_columns = message.columns
            self._table_keys.clear()
        newest = self._table_keys[-1] if self._table_keys else -1
        for seq, cells in message.rows:
            if seq > newest:  # a reload may overlap rows already shown
                table.add_row(*cells, key=str(seq))
                self._table_keys.append(seq)
        while len(self._table_keys) > TABLE_ROWS:
            table.remove_row(str(self._table_keys.popleft()))
        if self._table_keys:
            self._table_last_seq = self._table_keys[-1]
        shown = len(self._table_keys)
        note = f"the last {shown:,} of {message.total:,} events" if shown < message.total else f"{shown:,} events"
        self.query_one("#metadata-table-note", Static).update(note)

    @work(thread=True, group="metadata-export")
    def _export(self) -> None:
        path = self.export_path
        try:
            db = open_database(self.database_path)
            try:
                execution = execution_rows.get(db, self.execution_id)
                if execution is None:
                    raise VhtuiError(f"execution {self.execution_id} is not in the store")
                if path is None:
                    self.export_dir.mkdir(parents=True, exist_ok=True)
                    path = self.export_dir / f"{execution['counter']}-metadata.csv"
                rows = to_csv(iter_events(db, self.execution_id), path, columns=list(execution["metadata_summary"]))
            finally:
                db.close()
        except (OSError, sqlite3.Error, VhtuiError) as exc:
            self.post_message(self.ExportFailed(path, str(exc)))
            return
        self.post_message(self.Exported(path, rows))

    # -- display ------------------------------------------------------------------------------------
    def _sync_pickers(self, numeric: list[str], keys: list[str], x: str) -> None:
        """Offer the keys and x axes the events have so far; show what was loaded as picked."""
        picker = self.query_one(SelectionList)
        select = self.query_one(Select)
        with self.prevent(SelectionList.SelectedChanged, Select.Changed):
            for key in numeric:
                if key not in self._numeric:
                    picker.add_option((key, key, key in keys))
            self._numeric = [*self._numeric, *(key for key in numeric if key not in self._numeric)]
            axes_before = self._x_axes()
            self._keys = keys if self._numeric else None
            self._x = x
            if self._x_axes() != axes_before or select.value != x:
                select.set_options([(axis, axis) for axis in self._x_axes()])
                select.value = x

    def _x_axes(self) -> list[str]:
        return [axis for axis in FIELD_AXES if axis in self._numeric] + list(ARRIVAL_AXES)

    def _show_status(self) -> None:
        chart = self.query_one(MetricChart)
        parts = [f"{self._count:,} events", f"x: {self._x}"]
        if chart.log_scale:
            parts.append("log scale")
        if chart.smoothing:
            parts.append(f"smoothing {chart.smoothing:g}")
        if self._poll is not None:
            parts.append("live")
        if self._error:
            parts.append(f"error: {self._error}")
        self.query_one("#metadata-status", Static).update(" · ".join(parts))


def _default_keys_and_x(numeric: list[str]) -> tuple[list[str], str]:
    """The first metric that is not a counter, against step (or epoch, or the event number)."""
    metrics = [key for key in numeric if key not in FIELD_AXES] or numeric
    x = next((axis for axis in FIELD_AXES if axis in numeric), "seq")
    return metrics[:1], x


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
