"""Two or more executions side by side: parameters with differences marked, metrics overlaid."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, SelectionList, Static

from vhtui.tui.series import load_series, metric_text, numeric_keys
from vhtui.store import executions as execution_rows
from vhtui.tui.widgets.metric_chart import MetricChart
from vhtui.tui.workbench import workbench


def parameter_table(executions: list[dict[str, Any]]) -> Table:
    """One row per parameter (then per metric), one column per execution; differing rows marked."""
    table = Table(expand=True, box=None, header_style="bold")
    table.add_column("")
    for execution in executions:
        table.add_column(f"#{execution['counter']} {execution['step']}")
    sections = [("param", lambda e: e["parameters"]), ("metric", lambda e: e["metadata_summary"])]
    for prefix, values_of in sections:
        keys: list[str] = []
        for execution in executions:
            keys += [k for k in values_of(execution) if k not in keys]
        for key in keys:
            cells = [metric_text(values_of(e).get(key)) if key in values_of(e) else "—" for e in executions]
            differs = len(set(cells)) > 1
            style = "bold yellow" if differs else "dim"
            table.add_row(Text(f"{prefix} {key}", style="bold" if differs else ""),
                          *[Text(c, style=style) for c in cells])
    return table


class CompareScreen(Screen[None]):
    BINDINGS = [Binding("escape", "back", "Back", id="compare.back")]

    def __init__(self, execution_ids: list[int]) -> None:
        super().__init__()
        self.execution_ids = execution_ids

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield VerticalScroll(Static(id="parameters"), id="parameters-box")
            with Horizontal(id="compare-charts"):
                yield SelectionList[str](id="keys")
                yield MetricChart(id="chart")
        yield Footer()

    def on_mount(self) -> None:
        db = workbench(self.app).ctx.db
        executions = [e for e in (execution_rows.get(db, i) for i in self.execution_ids) if e]
        self.executions = executions
        self.sub_title = "compare " + " ".join(f"#{e['counter']}" for e in executions)
        self.query_one("#parameters", Static).update(parameter_table(executions))
        keys: list[str] = []
        for execution in executions:
            keys += [k for k in numeric_keys(execution["metadata_summary"]) if k not in keys]
        present = set(keys)
        self.x_axis = next((x for x in ("step", "epoch") if x in present), "seq")
        keys = [k for k in keys if k != self.x_axis]
        first = next((k for k in keys if "loss" in k), keys[0] if keys else None)
        picker = self.query_one("#keys", SelectionList)
        for key in keys:
            picker.add_option((key, key, key == first))
        self.query_one("#chart", MetricChart).x_label = self.x_axis
        self._load([first] if first else [])

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self._load(list(event.selection_list.selected))

    @work(thread=True, exclusive=True, group="compare-load")
    def _load(self, keys: list[str]) -> None:
        from vhtui.store import open_database

        db = open_database(workbench(self.app).ctx.home.database)
        try:
            series = {}
            for execution in self.executions:
                for key, values in load_series(db, execution["id"], keys, x=self.x_axis).items():
                    series[f"#{execution['counter']} {key}"] = values
        finally:
            db.close()
        self.app.call_from_thread(self.query_one("#chart", MetricChart).set_series, series)

    def action_back(self) -> None:
        self.app.pop_screen()
