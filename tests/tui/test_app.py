"""The workbench driven as a user drives it: keys through `app.run_test()`, on a seeded store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tui import seed
from tests.tui.waiting import settled, until
from vhtui.context import Context
from vhtui.engine.metadata import MetadataSink
from vhtui.store import datums as datum_rows
from vhtui.store import executions as execution_rows
from vhtui.tui.app import VhtuiApp
from vhtui.tui.screens.confirm import ConfirmScreen
from vhtui.tui.screens.execution import ExecutionScreen
from vhtui.tui.screens.executions import ExecutionsScreen
from vhtui.tui.widgets.execution_table import ExecutionTable
from vhtui.tui.workbench import Workbench


def table(app: VhtuiApp) -> ExecutionTable:
    return app.screen.query_one(ExecutionTable)


async def sort_by(pilot: Any, t: ExecutionTable, sort: str) -> None:
    """Press `o` (sort by the next column) until the table sorts by `sort`."""
    for _ in range(len(t.columns()) + 1):
        if t.query.sort == sort:
            return
        await pilot.press("o")
    raise AssertionError(f"no column sorts by {sort}")


def shown_text(widget: Any) -> str:
    """What a Static shows, as plain text (rich renderables included)."""
    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def test_home_lists_executions_newest_first(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        t = table(app)
        assert t.total == 7
        assert [t.row(i)["counter"] for i in range(7)] == [7, 6, 5, 4, 3, 2, 1]
        lines = [t.render_line(y).text for y in range(3)]
        assert lines[0].startswith("#▼") and "loss" in lines[0]
        assert "☠ crashed" in lines[1] and "✔ complete" in lines[2]


async def test_filter_by_text_status_and_step(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"status:complete")
        await pilot.pause()
        assert table(app).total == 4
        from vhtui.tui.widgets.status_line import StatusLine

        assert app.screen.query_one(StatusLine).text == "4 execution(s) matching 'status:complete'"
        from textual.widgets import Footer

        status_region = app.screen.query_one(StatusLine).region
        assert status_region.height == 1 and status_region.bottom <= app.screen.query_one(Footer).region.y
        await pilot.press("enter")
        await pilot.press("escape")  # clears the filter
        await pilot.pause()
        assert table(app).total == 7
        await pilot.press("slash", *"step:train slower")
        await pilot.pause()
        assert table(app).total == 1 and table(app).row(0)["counter"] == 4


async def test_sort_by_a_metric_column_and_reverse(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    perfect = execution_rows.create(ctx.db, app.project_id, {  # a loss of 0.0 is a value, not a missing one
        "step": "train", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [])
    execution_rows.update(ctx.db, perfect["id"], status="complete", metadata_summary={"loss": 0.0})

    def losses(t: ExecutionTable) -> list[float | None]:
        return [t.row(i)["metadata_summary"].get("loss") for i in range(t.total)]

    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        t = table(app)
        await sort_by(pilot, t, "metric:loss")
        await pilot.pause()
        ascending = not t.query.descending
        first = losses(t)
        numbers = [v for v in first if v is not None]
        assert len(numbers) == 5 and 0.0 in numbers  # the seeded train runs and the perfect one
        assert numbers == sorted(numbers, reverse=not ascending)
        assert first[len(numbers):] == [None] * (t.total - len(numbers))  # without the metric: last
        await pilot.press("O")
        await pilot.pause()
        second = losses(t)
        assert [v for v in second if v is not None] == list(reversed(numbers))
        assert second[len(numbers):] == [None] * (t.total - len(numbers))  # last whichever the direction


async def test_a_nan_metric_sorts_and_shows_as_nan(seeded: tuple[Context, Path]) -> None:
    """Python's json.dumps prints NaN and Infinity, which are not JSON: sorting by such a metric
    crashed the app (SQLite's json_extract: "malformed JSON"), and the views show them as nan, inf."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    diverged = execution_rows.create(ctx.db, app.project_id, {
        "step": "train", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}, "title": "diverged"}, [])
    execution_rows.update(ctx.db, diverged["id"], status="error")
    sink = MetadataSink(ctx.home.database, diverged["id"])
    lines = (json.dumps({"epoch": 1, "loss": 0.5}) + "\n" +
             json.dumps({"epoch": 2, "loss": float("nan"), "grad": float("inf")}) + "\n").encode()
    sink.feed([(lines, 0, len(lines))], 1000.0)
    sink.close()

    async with app.run_test(size=(160, 30)) as pilot:
        await settled(pilot)
        t = table(app)
        await sort_by(pilot, t, "metric:loss")
        await settled(pilot)
        losses = [t.row(i)["metadata_summary"].get("loss") for i in range(t.total)]
        numbers = losses[:4]
        assert numbers == sorted(numbers, reverse=t.query.descending)
        assert losses[4:] == ["nan", None, None, None]  # no number: after those that have one, newest first
        await pilot.press("O")
        await settled(pilot)
        losses = [t.row(i)["metadata_summary"].get("loss") for i in range(t.total)]
        assert losses[:4] == list(reversed(numbers)) and losses[4:] == ["nan", None, None, None]
        header, row = t.render_line(0).text, t.render_line(5).text
        assert row.split()[:3] == ["#8", "✖", "error"] and row[header.index("loss"):].split()[0] == "nan"
        while t.row(t.cursor)["title"] != "diverged":
            await pilot.press("j")
        await pilot.press("enter")
        await settled(pilot)
        from textual.widgets import DataTable, Static

        overview = shown_text(app.screen.query_one("#overview-body", Static)).splitlines()
        assert any(line.split() == ["metric", "loss", "nan"] for line in overview)
        assert any(line.split() == ["metric", "grad", "inf"] for line in overview)
        await pilot.press("3")
        app.screen.query_one("#metadata-keys").focus()  # as tab would
        await pilot.press("t")
        await settled(pilot)
        events = app.screen.query_one("#metadata-table", DataTable)
        assert events.get_row_at(1)[2:] == ["2", "nan", "inf"]


async def test_overview_names_the_environment_mode_only_for_local_runs(seeded: tuple[Context, Path]) -> None:
    """A Docker image brings its own Python: "docker (venv environment)" said what was not so."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    local = execution_rows.get_by_counter(ctx.db, app.project_id, 1)
    assert local is not None and local["runner"] == "local"
    docker = execution_rows.create(ctx.db, app.project_id, {
        "step": "train", "runner": "docker", "image": "python:3.11", "command": "set -e\npython train.py\n",
        "commands": ["python train.py"], "parameters": {}, "code_version": {}, "environment": {},
        "spec": {"env_mode": "venv"}}, [])
    async with app.run_test(size=(120, 40)) as pilot:
        from textual.widgets import Static

        for execution_id, runner in ((docker["id"], ["docker"]), (local["id"], ["local", "(venv", "environment)"])):
            app.open_execution(execution_id)
            await settled(pilot)
            overview = shown_text(app.screen.query_one("#overview-body", Static)).splitlines()
            assert [line.split()[1:] for line in overview if line.startswith("runner")] == [runner]
            await pilot.press("escape")


async def test_cursor_stays_on_its_execution_when_new_ones_arrive(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root, watch_interval=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.press("j", "j")
        assert table(app).current_id() is not None
        chosen = table(app).current_id()
        other = ctx.with_new_connection()  # another process's launch, as far as the app can tell
        project_id = app.project_id
        execution_rows.create(other.db, project_id, {
            "step": "train", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
            "environment": {}, "spec": {}}, [])
        await until(pilot, lambda: table(app).total == 8)
        assert table(app).current_id() == chosen


async def test_open_detail_and_switch_tabs(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        while table(app).row(table(app).cursor)["counter"] != 2:
            await pilot.press("j")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ExecutionScreen)
        from textual.widgets import Static, TabbedContent

        overview = shown_text(app.screen.query_one("#overview-body", Static))
        assert "first model" in overview and "learning_rate" in overview and "dataset.csv" in overview
        assert "output of #1" in overview
        await pilot.press("4")
        assert app.screen.query_one(TabbedContent).active == "outputs"
        await pilot.press("5")
        await pilot.pause()
        from textual.widgets import DataTable

        assert app.screen.query_one("#upstream", DataTable).row_count == 1  # preprocess #1
        assert app.screen.query_one("#downstream", DataTable).row_count == 1  # evaluate #6
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ExecutionsScreen)
        t = table(app)
        shown = [t.render_line(y).text.split()[0] for y in range(1, 1 + t.total)]  # under the header
        assert shown == ["#7", "#6", "#5", "#4", "#3", "#2", "#1"]
        assert t.row(t.cursor)["counter"] == 2  # back where the user left


async def test_compare_two_executions(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        t = table(app)
        while t.row(t.cursor)["counter"] != 4:
            await pilot.press("j")
        await pilot.press("space")  # selects #4 and moves down to #3
        await pilot.press("j", "space")  # #2
        await pilot.press("c")
        await pilot.pause(0.5)
        from textual.widgets import Static

        text = shown_text(app.screen.query_one("#parameters", Static))
        assert "#4 train" in text and "#2 train" in text and "learning_rate" in text


async def test_data_browser_refuses_to_delete_a_datum_in_use(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    model = datum_rows.get(ctx.db, "a11ce000-0000-4000-8000-000000000002")
    assert model is not None
    # a running execution takes the model as input
    execution = execution_rows.create(ctx.db, app.project_id, {
        "step": "evaluate", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [{"name": "model", "position": 0, "uri": f"datum://{model['id']}",
                                          "datum_id": model["id"]}])
    execution_rows.update(ctx.db, execution["id"], status="started")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("D")
        await pilot.pause()
        from textual.widgets import DataTable

        datums = app.screen.query_one(DataTable)
        keys = [datums.coordinate_to_cell_key((row, 0)).row_key.value for row in range(datums.row_count)]
        datums.move_cursor(row=keys.index(model["id"]))
        await pilot.press("x")
        await pilot.press("y")
        await pilot.pause()
        assert datum_rows.get(ctx.db, model["id"]) is not None  # refused: #8 uses it
        # the metrics file is used by nobody: deleted
        datums.move_cursor(row=[datums.coordinate_to_cell_key((r, 0)).row_key.value
                                for r in range(datums.row_count)].index("a11ce000-0000-4000-8000-000000000003"))
        await pilot.press("x")
        await pilot.press("y")
        await pilot.pause()
        assert datum_rows.get(ctx.db, "a11ce000-0000-4000-8000-000000000003") is None


async def test_launch_from_the_form_and_watch_it_complete(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root, watch_interval=0.1)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.pause()
        app.open_launch("preprocess")
        await pilot.pause(0.3)
        from textual.widgets import Input, Select, Static

        samples = app.screen.query_one("#param-samples", Input)
        samples.value = "5"  # below min 10: refused as you type
        await pilot.pause()
        assert "less than the minimum" in shown_text(app.screen.query_one("#error-samples", Static))
        samples.value = "30"
        app.screen.query_one("#env_mode", Select).value = "current"
        await pilot.pause()
        assert shown_text(app.screen.query_one("#error-samples", Static)).strip() == ""
        await pilot.press("ctrl+s")

        def launched() -> dict[str, Any]:
            return execution_rows.get_by_counter(ctx.db, app.project_id, 8) or {}

        await until(pilot, lambda: launched().get("status") in ("complete", "error", "crashed"), timeout=30)
        execution = launched()
        assert execution.get("status") == "complete", execution
        assert execution["parameters"]["samples"] == 30
        assert isinstance(app.screen, ExecutionScreen)  # the new execution opened at once


async def test_stop_asks_first_then_stops(seeded: tuple[Context, Path], tmp_path: Path) -> None:
    ctx, root = seeded
    (root / "valohai.yaml").write_text((root / "valohai.yaml").read_text() + """
- step:
    name: sleepy
    image: python:3.11
    command: sleep 60
""")
    app = VhtuiApp(ctx, root, watch_interval=0.1)
    from vhtui.engine.launch import LaunchRequest, launch

    execution = launch(ctx.with_new_connection(), LaunchRequest(project_root=root, step="sleepy", env_mode="current"))

    def status() -> str:
        return execution_rows.get(ctx.db, execution["id"])["status"]

    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: status() == "started")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # declined: nothing happens
        await pilot.pause()
        await app.workers.wait_for_complete()  # a stop would have been requested by a worker
        assert not isinstance(app.screen, ConfirmScreen)
        assert execution_rows.get(ctx.db, execution["id"])["stop_requested_at"] is None
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        await until(pilot, lambda: status() == "stopped")


async def test_help_lists_the_keys_of_the_screen(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        rows = app.screen.rows()
        ids = {binding_id for _, _, binding_id in rows}
        assert {"executions.filter", "executions.stop", "executions.compare", "app.help", "app.data"} <= ids
        assert ("/", "Filter", "executions.filter") in rows


async def test_export_outputs_and_set_an_alias(seeded: tuple[Context, Path], tmp_path: Path) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        execution = execution_rows.get_by_counter(ctx.db, app.project_id, 2)
        app.open_execution(execution["id"])
        await pilot.pause(0.3)
        from textual.widgets import Input

        await pilot.press("e")
        box = app.screen.query_one("#outputs-input", Input)
        box.value = str(tmp_path / "exported")
        await pilot.press("enter")
        await pilot.pause()
        assert (tmp_path / "exported" / "model.json").read_bytes() == b'{"w": 2.98, "b": 2.01}'
        assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["metrics.json", "model.json"]
        await pilot.press("a")
        box.value = "champion"
        await pilot.press("enter")
        await pilot.pause()
        assert datum_rows.resolve_alias(ctx.db, app.project_id, "champion") is not None


async def test_keys_are_remapped_by_binding_id(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    from vhtui.tui.app import load_keymap

    keymap_file = ctx.home.root / "keymap.toml"
    keymap_file.write_text('"executions.filter" = "ctrl+f"\n')
    app = VhtuiApp(ctx, root, keymap=load_keymap(keymap_file))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        from textual.widgets import Input

        await pilot.press("ctrl+f")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#filter", Input)


def test_the_app_is_the_workbench_its_screens_expect(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    assert isinstance(VhtuiApp(ctx, root), Workbench)


def test_a_broken_keymap_is_one_clear_error(tmp_path: Path) -> None:
    from vhtui.errors import VhtuiError
    from vhtui.tui.app import load_keymap

    broken = tmp_path / "keymap.toml"
    broken.write_text("executions.filter = \n")
    with pytest.raises(VhtuiError, match="not valid TOML"):
        load_keymap(broken)


async def test_alias_compare_mirrors_through_the_same_rules_as_the_cli(seeded: tuple[Context, Path]) -> None:
    """`m` toggles mirroring left -> right through vhtui.deploy.aliases, which also refuses what the
    CLI refuses (here, an alias mirroring to itself), leaving the store as it was."""
    from vhtui.store import deployments as deployment_rows
    from vhtui.tui.screens.alias_compare import AliasCompareScreen

    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    assert app.project_id is not None
    deployment = deployment_rows.get_deployment(ctx.db, app.project_id, "predict-api")
    assert deployment is not None

    def mirror_of(alias: str) -> str | None:
        rows = {a["name"]: a for a in deployment_rows.aliases_of_deployment(ctx.db, deployment["id"])}
        return rows[alias]["mirror_to"]

    async with app.run_test(size=(140, 44)) as pilot:
        app.push_screen(AliasCompareScreen(app.project_id, "predict-api", "production", "staging", now=seed.T0 + 600))
        await pilot.pause()
        assert mirror_of("production") == "staging"  # seeded
        await pilot.press("m")
        await until(pilot, lambda: mirror_of("production") is None)
        await pilot.press("m")
        await until(pilot, lambda: mirror_of("production") == "staging")
        await pilot.press("escape")
        app.push_screen(AliasCompareScreen(app.project_id, "predict-api", "staging", "staging", now=seed.T0 + 600))
        await pilot.pause()
        await pilot.press("m")
        await until(pilot, lambda: any("cannot mirror to itself" in str(n.message) for n in app._notifications))
        assert mirror_of("staging") is None and mirror_of("production") == "staging"
