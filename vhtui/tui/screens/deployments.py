"""Every deployment of the project: versions, their endpoints' status and traffic, and aliases."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from vhtui.deploy.compare import version_view
from vhtui.store import deployments as deployment_rows
from vhtui.tui.messages import StoreChanged
from vhtui.tui.widgets.status_line import StatusLine
from vhtui.tui.workbench import workbench

STATUS_STYLE = {"running": "[green]▶ running[/]", "starting": "[yellow]… starting[/]", "stopping": "[yellow]■ stopping[/]",
                "stopped": "[dim]■ stopped[/]", "crashed": "[red]☠ crashed[/]"}


class DeploymentsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="deployments.back"),
        Binding("c", "compare", "Compare aliases", id="deployments.compare"),
    ]

    def __init__(self, project_id: int, now: float | None = None) -> None:
        super().__init__()
        self.project_id = project_id
        self.now = now  # None: the live window ends now
        self.rows: dict[str, tuple[dict[str, Any], str]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="deployments", cursor_type="row", zebra_stripes=True)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "deployments"
        table = self.query_one(DataTable)
        table.add_columns("deployment", "version", "aliases", "endpoint", "status", "port", "requests", "req/s",
                          "errors", "p50 ms", "files")
        self.refresh_rows()
        table.focus()

    def on_store_changed(self, message: StoreChanged) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        ctx = workbench(self.app).ctx
        db = ctx.db
        table = self.query_one(DataTable)
        table.clear()
        self.rows.clear()
        for deployment in deployment_rows.list_deployments(db, self.project_id):
            aliases = deployment_rows.aliases_of_deployment(db, deployment["id"])
            for version in deployment_rows.list_versions(db, deployment["id"]):
                view = version_view(ctx, version, now=self.now)
                names = ", ".join(a["name"] for a in aliases if a["version_id"] == version["id"])
                for endpoint in view["endpoints"]:
                    r = endpoint["requests"]
                    files = ", ".join(f"{f['name']}←#{f['execution']['counter']}" if f["execution"] else f["name"]
                                      for f in endpoint["files"])
                    key = f"{deployment['id']}:{version['id']}:{endpoint['name']}"
                    self.rows[key] = (deployment, version["name"])
                    table.add_row(deployment["name"], version["name"], names, endpoint["name"],
                                  STATUS_STYLE.get(endpoint["status"], endpoint["status"]), str(endpoint["port"] or ""),
                                  str(r["requests"]), f"{r['rate']:.1f}", f"{r['error_rate']:.1%}",
                                  f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "—", files, key=key)
        self.query_one(StatusLine).text = (
            f"{table.row_count} endpoint(s) · enter or c compares two aliases" if table.row_count else
            "no deployments yet: vhtui deploy version create DEPLOYMENT --endpoint NAME --file NAME=datum://…")

    def _selected(self) -> tuple[dict[str, Any], str] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(str(key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_compare()

    def action_compare(self) -> None:
        """Compare the two aliases of the selected deployment (production and staging when present)."""
        from vhtui.tui.screens.alias_compare import AliasCompareScreen

        selected = self._selected()
        if selected is None:
            return
        deployment, version = selected
        names = [a["name"] for a in deployment_rows.aliases_of_deployment(workbench(self.app).ctx.db, deployment["id"])]
        preferred = [n for n in ("production", "staging") if n in names] + [n for n in names if n not in ("production", "staging")]
        refs = list(dict.fromkeys([*preferred, version]))[:2]  # two aliases, else an alias and this version
        if len(refs) < 2:
            self.notify("this deployment needs two aliases to compare: vhtui deploy alias set …", severity="warning")
            return
        self.app.push_screen(AliasCompareScreen(self.project_id, deployment["name"], refs[0], refs[1], now=self.now))

    def action_back(self) -> None:
        self.app.pop_screen()
