"""Metric series (loading, downsampling, smoothing, CSV), the chart widget and the Metadata panel."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable, SelectionList, Static
from textual_plotext import PlotextPlot

from tests.tui.metadata_panel_app import MetadataPanelApp, build_store, write_events
from tests.tui.waiting import settled, until
from vhtui.engine.metadata import MetadataSink
from vhtui.tui.series import Series, downsample_minmax, load_series, numeric_keys, smooth, to_csv
from vhtui.store import executions as execution_rows
from vhtui.store import open_database
from vhtui.store import projects as project_rows
from vhtui.store.metadata import iter_events
from vhtui.tui.widgets.metric_chart import REDRAW_PER_S, MetricChart

APP = Path(__file__).parent / "metadata_panel_app.py"


def _store_with_lines(tmp_path: Path, *blocks: bytes) -> tuple[Path, int]:
    database = tmp_path / "s.sqlite3"
    db = open_database(database)
    execution = execution_rows.create(db, project_rows.ensure(db, tmp_path), {
        "step": "s", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [])
    db.close()
    sink = MetadataSink(database, execution["id"])
    for when, block in enumerate(blocks):
        sink.feed([(block, 0, len(block))], 1000.0 + when)
    sink.close()
    return database, execution["id"]


# -- loading ----------------------------------------------------------------------------------------
def test_load_series_skips_missing_and_non_numeric_values_and_keeps_nan(tmp_path: Path) -> None:
    database, execution_id = _store_with_lines(
        tmp_path,
        b'{"step": 0, "loss": 1.5}\n{"step": 1, "acc": 0.5}\n{"step": 2, "loss": "n/a"}\n',
        b'{"step": 3, "loss": NaN}\n{"loss": 0.25}\n{"step": 5, "loss": true}\n{"step": 6, "loss": 2}\n'
        b'{"step": 7, "loss": 1' + b"0" * 400 + b'}\n',  # beyond float range
    )
    db = open_database(database)
    series = load_series(db, execution_id, ["loss", "acc", "absent"])
    assert series["loss"].x.tolist() == [0.0, 3.0, 6.0]
    assert series["loss"].y[0] == 1.5 and math.isnan(series["loss"].y[1]) and series["loss"].y[2] == 2.0
    assert series["acc"].x.tolist() == [1.0] and series["acc"].y.tolist() == [0.5]
    assert len(series["absent"]) == 0 and series["absent"].y.dtype == np.float64
    assert {s.last_seq for s in series.values()} == {7}
    by_seq = load_series(db, execution_id, ["loss"], x="seq")["loss"]
    assert by_seq.x.tolist() == [0.0, 3.0, 4.0, 6.0]
    by_time = load_series(db, execution_id, ["loss"], x="time")["loss"]
    assert by_time.x.tolist() == [0.0, 1.0, 1.0, 1.0]  # seconds since the first event's block


def test_load_series_is_incremental(tmp_path: Path) -> None:
    database, execution_id = build_store(tmp_path, events=95)
    db = open_database(database)
    first = load_series(db, execution_id, ["loss"])["loss"]
    assert len(first) == 95 and first.last_seq == 94
    write_events(database, execution_id, range(95, 130))
    newer = load_series(db, execution_id, ["loss"], after_seq=first.last_seq)["loss"]
    assert newer.x.tolist() == list(range(95, 130)) and newer.last_seq == 129
    whole = load_series(db, execution_id, ["loss"])["loss"]
    joined = first.extend(newer)
    assert np.array_equal(joined.x, whole.x) and np.array_equal(joined.y, whole.y)
    # from the middle of a block, and with nothing new
    middle = load_series(db, execution_id, ["loss"], after_seq=104)["loss"]
    assert middle.x[0] == 105 and len(middle) == 25
    nothing = load_series(db, execution_id, ["loss"], after_seq=129)["loss"]
    assert len(nothing) == 0 and nothing.last_seq == 129
    for after in (-1, 0, 94, 104, 109, 129):
        assert list(iter_events(db, execution_id, after)) == list(iter_events(db, execution_id, after))


def test_load_series_matches_iter_events(tmp_path: Path) -> None:
    database, execution_id = build_store(tmp_path, events=300)
    db = open_database(database)
    series = load_series(db, execution_id, ["accuracy"], x="epoch")["accuracy"]
    events = [event for _, _, event in iter_events(db, execution_id)]
    assert series.x.tolist() == [float(e["epoch"]) for e in events]
    assert series.y.tolist() == [e["accuracy"] for e in events]


def test_numeric_keys_of_a_summary_or_of_events() -> None:
    assert numeric_keys({"loss": 0.1, "phase": "train", "done": True, "epoch": 3, "nested": {}}) == ["loss", "epoch"]
    assert numeric_keys([{"a": "x"}, {"a": 1, "b": None}, {"c": 2.5}]) == ["a", "c"]


# -- downsampling and smoothing ---------------------------------------------------------------------
def test_downsample_minmax_keeps_the_extremes_of_each_column() -> None:
    rng = np.random.default_rng(3)
    n, width = 1_000_000, 120
    x = np.arange(n, dtype=np.float64)
    y = rng.normal(size=n)
    y[123_457] = 50.0  # a one-point spike must survive
    y[765_432] = -40.0
    dx, dy = downsample_minmax(x, y, width)
    assert len(dx) <= 2 * width + 2 and len(dx) >= width
    assert dy.max() == 50.0 and dy.min() == -40.0 and 123_457 in dx and 765_432 in dx
    assert dx[0] == 0 and dx[-1] == n - 1 and np.all(np.diff(dx) > 0)
    for column in range(width):  # every column's own extremes are kept
        inside = (x >= column * n / width) & (x < (column + 1) * n / width)
        kept = (dx >= column * n / width) & (dx < (column + 1) * n / width)
        assert dy[kept].max() == y[inside].max() and dy[kept].min() == y[inside].min()


def test_downsample_minmax_leaves_small_series_and_sorts_unsorted_x() -> None:
    x, y = np.array([2.0, 0.0, 1.0]), np.array([5.0, 3.0, 4.0])
    assert downsample_minmax(x, y, 10) == (x, y)
    x = np.concatenate((np.arange(500.0, 1000.0), np.arange(0.0, 500.0)))
    dx, dy = downsample_minmax(x, x * 2, 10)
    assert np.all(np.diff(dx) > 0) and np.array_equal(dy, dx * 2) and dx[0] == 0 and dx[-1] == 999
    same = downsample_minmax(np.zeros(100), np.arange(100.0), 5)
    assert same[1].tolist() == [0.0, 99.0]


def _tensorboard_smoothing(values: list[float], weight: float) -> list[float]:
    """TensorBoard's own loop (debiased EMA; non-finite values pass through)."""
    out, last, seen = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        seen += 1
        out.append(last / (1 - weight ** seen))
    return out


@pytest.mark.parametrize("weight", [0.0, 0.05, 0.6, 0.9, 0.99])
def test_smooth_matches_tensorboard(weight: float) -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=30_000).cumsum()
    y[[3, 10_000]] = np.nan
    y[20_000] = np.inf
    got = smooth(y, weight)
    expected = np.array(_tensorboard_smoothing(y.tolist(), weight))
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and got[20_000] == np.inf
    finite = np.isfinite(expected)
    assert np.allclose(got[finite], expected[finite], rtol=1e-9, atol=1e-9)
    assert got is not y and not np.shares_memory(got, y)


# -- CSV --------------------------------------------------------------------------------------------
def test_to_csv_of_events_and_of_series(tmp_path: Path) -> None:
    events = [(0, 10.5, {"loss": 0.5, "phase": "a,b"}), (1, 11.0, {"loss": float("nan"), "tags": [1, 2], "ok": True})]
    path = tmp_path / "events.csv"
    assert to_csv(events, path) == 2
    rows = list(csv.reader(path.open()))
    assert rows == [["seq", "time", "loss", "phase", "tags", "ok"], ["0", "10.5", "0.5", "a,b", "", ""],
                    ["1", "11.0", "nan", "", "[1,2]", "true"]]
    buffer = io.StringIO()
    series = {"#3 loss": Series(np.array([0.0, 1.0]), np.array([2.0, 1.5])),
              "#5 loss": Series(np.array([0.0]), np.array([3.0]))}
    assert to_csv(series, buffer) == 3
    assert buffer.getvalue().splitlines() == ["series,x,y", "#3 loss,0.0,2.0", "#3 loss,1.0,1.5", "#5 loss,0.0,3.0"]


# -- the chart --------------------------------------------------------------------------------------
class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricChart()


def _drawn_text(chart: MetricChart) -> str:
    return chart.query_one(PlotextPlot).render().plain  # type: ignore[union-attr]


async def test_chart_hands_plotext_a_few_points_per_column_and_keeps_the_peaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """plotext takes seconds per million points: a million-point series must reach it downsampled
    to a few points per screen column (benchmarks/tui_charts.py measures the time this saves)."""
    app = ChartApp()
    async with app.run_test(size=(100, 30)):
        chart = app.query_one(MetricChart)
        plt = chart.query_one(PlotextPlot).plt
        handed: dict[str, tuple[list[float], list[float]]] = {}
        plot = plt.plot

        def recording_plot(x: list[float], y: list[float], label: str, **style: Any) -> Any:
            handed[label] = (x, y)
            return plot(x, y, label=label, **style)

        monkeypatch.setattr(plt, "plot", recording_plot)
        n = 1_000_000
        x = np.arange(n, dtype=np.float64)
        spiky = np.exp(-x / 3e5)
        spiky[654_321], spiky[123_457] = 4.0, -1.0  # one peak, one dip, each a single point
        chart.set_series({"#3 loss": Series(x, np.exp(-x / 1e5)), "#5 loss": Series(x, spiky)})
        chart.draw()
        text = _drawn_text(chart)
        assert "#3 loss" in text and "#5 loss" in text
        width = chart.size.width
        for xs, ys in handed.values():
            # two braille points per character column, each column's lowest and highest, and the ends
            assert width <= len(xs) <= 4 * width + 2
            assert xs[0] == 0 and xs[-1] == n - 1
        _, ys = handed["#5 loss"]
        assert max(ys) == 4.0 and min(ys) == -1.0
        chart.log_scale = True
        chart.draw()
        assert "0.01" in _drawn_text(chart)  # decade ticks of the log axis, labelled in the data's units


async def test_chart_coalesces_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ChartApp()
    async with app.run_test(size=(80, 20)) as pilot:
        chart = app.query_one(MetricChart)
        await settled(pilot)  # the first drawing, after the mount's resize, is done
        draws: list[float] = []
        original = chart.draw
        monkeypatch.setattr(chart, "draw", lambda: (draws.append(time.monotonic()), original())[1])
        for step in range(40):  # 40 updates, each a little while after the other
            last_update = time.monotonic()
            chart.append({"loss": Series(np.array([float(step)]), np.array([1.0 / (step + 1)]))})
            await pilot.pause(0.025)
        await until(pilot, lambda: bool(draws) and draws[-1] >= last_update)  # the last update is drawn too
        assert len(draws) >= 2  # redrawn while updates stream in, not only once they stop
        gaps = [later - earlier for earlier, later in zip(draws, draws[1:])]
        assert min(gaps) >= 1 / REDRAW_PER_S - 0.001  # never more often than REDRAW_PER_S a second
        assert len(chart.series["loss"]) == 40


async def test_chart_tells_series_apart_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = ChartApp()
    async with app.run_test(size=(80, 20)):
        chart = app.query_one(MetricChart)
        x = np.arange(50.0)
        chart.set_series({"a": Series(x, x), "b": Series(x, 50 - x)})
        chart.draw()
        assert app.no_color and "•" in _drawn_text(chart)  # the second series' marker


# -- the Metadata panel -----------------------------------------------------------------------------
async def test_panel_charts_the_picked_keys(tmp_path: Path) -> None:
    database, execution_id = build_store(tmp_path)
    app = MetadataPanelApp(database, execution_id)
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(pilot)
        chart = app.query_one(MetricChart)
        assert list(chart.series) == ["loss"] and chart.x_label == "step" and len(chart.series["loss"]) == 400
        picker = app.query_one(SelectionList)
        assert [str(option.prompt) for option in picker.options] == ["epoch", "step", "loss", "accuracy"]
        picker.select("accuracy")
        await settled(pilot)
        assert list(chart.series) == ["loss", "accuracy"]
        text = _drawn_text(chart)
        assert "loss" in text and "accuracy" in text
        await pilot.press("x")  # step -> epoch
        await settled(pilot)
        assert chart.x_label == "epoch" and chart.series["loss"].x.max() == 7
        await pilot.press("l", "m")
        assert chart.log_scale and chart.smoothing == pytest.approx(0.6)
        assert "log scale · smoothing 0.6" in str(app.query_one("#metadata-status", Static).render())
        await pilot.press("l", "m")
        assert not chart.log_scale and chart.smoothing == 0


async def test_live_panel_appends_new_events(tmp_path: Path) -> None:
    database, execution_id = build_store(tmp_path, events=100)
    app = MetadataPanelApp(database, execution_id, live=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(pilot)
        chart = app.query_one(MetricChart)
        assert len(chart.series["loss"]) == 100
        before = chart.series["loss"]
        write_events(database, execution_id, range(100, 250))
        await until(pilot, lambda: len(chart.series["loss"]) == 250)
        assert np.array_equal(chart.series["loss"].x[:100], before.x)  # appended, not reloaded out of order
        assert chart.series["loss"].x.tolist() == list(range(250))
        status = app.query_one("#metadata-status", Static)
        assert "live" in str(status.render())
        db = open_database(database)
        execution_rows.update(db, execution_id, status="complete")
        await until(pilot, lambda: "live" not in str(status.render()))  # stops polling once ended


async def test_panel_table_view_and_csv_export(tmp_path: Path) -> None:
    database, execution_id = build_store(tmp_path, events=120)
    export = tmp_path / "out" / "metadata.csv"
    export.parent.mkdir()
    app = MetadataPanelApp(database, execution_id, export_path=export)
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(pilot)
        await pilot.press("t")
        await settled(pilot)
        table = app.query_one(DataTable)
        assert table.row_count == 120
        assert [str(column.label) for column in table.columns.values()] == [
            "seq", "time", "epoch", "step", "loss", "accuracy", "phase"]
        assert table.get_row_at(11)[:4] == ["11", "+2.500", "0", "11"]
        await pilot.press("e")
        await until(pilot, lambda: bool(app.exported))
        assert app.exported[0].path == export and app.exported[0].rows == 120
        rows = list(csv.reader(export.open()))
        assert rows[0] == ["seq", "time", "epoch", "step", "loss", "accuracy", "phase"] and len(rows) == 121


def test_metadata_panel_snapshot(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(APP, terminal_size=(100, 30), run_before=settled)
