"""Chart benchmarks: drawing a million-point metric, and loading ten million points from the store.

Run from the repository root:

    .venv/bin/python -m benchmarks.tui_charts            # 10,000,000 stored points (about a minute)
    .venv/bin/python -m benchmarks.tui_charts --quick    # 1,000,000 stored points, a smoke run

draw: MetricChart (smoothing, min/max downsampling to the width, plotext) on 1,000,000 points, in a
headless Textual app, against plotext through PlotextPlot on raw points in the same run. Raw
plotext is linear in the points and takes seconds per million, so it is measured on 100,000 and
scaled to 1,000,000 for the ratio. Target: a draw in 200 ms or less.

load: `load_series` (one parse per stored block, columns with numpy) against collecting the same
key from `iter_events`, on a store holding the points in blocks of 20,000 events, as the engine
writes them when a run floods; and the tail read of a live poll. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from textual.app import App, ComposeResult
from textual_plotext import PlotextPlot

from vhtui.tui.series import Series, load_series
from vhtui.store import Database, open_database
from vhtui.store import executions as execution_rows
from vhtui.store import projects as project_rows
from vhtui.store.metadata import append_blocks, iter_events
from vhtui.tui.widgets.metric_chart import MetricChart

DRAW_POINTS = 1_000_000
RAW_POINTS = 100_000
DRAW_TARGET_MS = 200.0
BLOCK = 20_000
TERMINAL = (160, 45)


class _Bench(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricChart()
        yield PlotextPlot(id="raw")


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _draw_figures(repeat: int) -> None:
    rng = np.random.default_rng(0)
    x = np.arange(DRAW_POINTS, dtype=np.float64)
    y = 2 * np.exp(-x / 2e5) + rng.random(DRAW_POINTS) * 0.1
    app = _Bench()
    async with app.run_test(size=TERMINAL):
        chart = app.query_one(MetricChart)
        chart_plot = chart.query_one(PlotextPlot)
        raw = app.query_one("#raw", PlotextPlot)

        def draw() -> None:
            chart.set_series({"loss": Series(x, y)})
            chart.draw()
            chart_plot.render()

        rows = []
        for smoothing, log_scale in ((0.0, False), (0.6, False), (0.6, True)):
            chart.smoothing, chart.log_scale = smoothing, log_scale
            label = f"smoothing {smoothing:g}" + (", log scale" if log_scale else "")
            rows.append((label, _median_ms(draw, repeat)))

        def draw_raw() -> None:
            raw.plt.clear_figure()
            raw.plt.plot(x[:RAW_POINTS].tolist(), y[:RAW_POINTS].tolist(), label="loss")
            raw.render()

        raw_ms = _median_ms(draw_raw, 1)
        raw_scaled = raw_ms * DRAW_POINTS / RAW_POINTS
        print(f"draw {DRAW_POINTS:,} points, chart {chart.size.width}x{chart.size.height} (median of {repeat})")
        print(f"  baseline plotext/PlotextPlot raw: {raw_ms:9.1f} ms for {RAW_POINTS:,} points"
              f" = {raw_scaled:,.0f} ms scaled to {DRAW_POINTS:,}")
        for label, ms in rows:
            verdict = "meets" if ms <= DRAW_TARGET_MS else "MISSES"
            print(f"  MetricChart, {label:<26} {ms:9.1f} ms  ({raw_scaled / ms:,.0f}x faster than raw;"
                  f" {verdict} the {DRAW_TARGET_MS:.0f} ms target)")


def _write_store(directory: Path, points: int) -> tuple[Path, int]:
    """An execution with `points` events of step, epoch, loss and accuracy, in blocks of BLOCK."""
    database = directory / "store.sqlite3"
    db = open_database(database)
    execution = execution_rows.create(db, project_rows.ensure(db, directory), {
        "step": "train", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [])
    rng = np.random.default_rng(1)
    losses = [b"%.6f" % v for v in rng.random(BLOCK)]
    accuracies = [b"%.6f" % v for v in rng.random(BLOCK)]
    batch = []
    for first in range(0, points, BLOCK):
        count = min(BLOCK, points - first)
        lines = [b'{"step": %d, "epoch": %d, "loss": %s, "accuracy": %s}' % (first + i, (first + i) // 10_000,
                                                                           losses[i], accuracies[i])
                 for i in range(count)]
        batch.append((first, count, 1_700_000_000.0 + first / 1000, b"\n".join(lines)))
        if len(batch) == 25 or first + count >= points:
            append_blocks(db, execution["id"], batch, {"step": 0, "epoch": 0, "loss": 0.0, "accuracy": 0.0},
                          first + count)
            batch = []
    db.close()
    return database, execution["id"]


def _collect_with_iter_events(db: Database, execution_id: int, key: str) -> Series:
    xs, ys = [], []
    for _, _, event in iter_events(db, execution_id):
        value, step = event.get(key), event.get("step")
        if type(value) in (int, float) and type(step) in (int, float):
            xs.append(step)
            ys.append(value)
    return Series(np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64))


def _load_figures(points: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vhtui-bench-charts-") as tmp:
        started = time.perf_counter()
        database, execution_id = _write_store(Path(tmp), points)
        size_mb = database.stat().st_size / 1e6
        print(f"\nload {points:,} points of one key (store written in {time.perf_counter() - started:.1f} s,"
              f" {size_mb:,.0f} MB, blocks of {BLOCK:,} events)")
        db = open_database(database)
        started = time.perf_counter()
        baseline = _collect_with_iter_events(db, execution_id, "loss")
        baseline_s = time.perf_counter() - started
        started = time.perf_counter()
        series = load_series(db, execution_id, ["loss"], x="step")["loss"]
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        two = load_series(db, execution_id, ["loss", "accuracy"], x="step")
        two_s = time.perf_counter() - started
        started = time.perf_counter()
        live = load_series(db, execution_id, ["loss"], x="step", after_seq=points - BLOCK - 1)["loss"]
        live_s = time.perf_counter() - started
        started = time.perf_counter()
        tail = sum(1 for _ in iter_events(db, execution_id, after_seq=points - BLOCK - 1))
        tail_s = time.perf_counter() - started
        db.close()
        same = np.array_equal(series.x, baseline.x) and np.array_equal(series.y, baseline.y)
        print(f"  baseline iter_events loop:        {baseline_s:7.2f} s  ({baseline_s / points * 1e9:,.0f} ns/event)")
        print(f"  load_series, 1 key:               {load_s:7.2f} s  ({load_s / points * 1e9:,.0f} ns/event;"
              f" {baseline_s / load_s:.2f}x faster; same points: {same})")
        points_read = len(two["accuracy"]) + len(two["loss"])
        print(f"  load_series, 2 keys:              {two_s:7.2f} s  ({points_read:,} points)")
        print(f"  live poll, the last {tail:,} events: iter_events {tail_s * 1000:.1f} ms,"
              f" load_series {live_s * 1000:.1f} ms ({len(live):,} points)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tui_charts", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000,000 stored points instead of 10,000,000")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"vhtui chart benchmarks{' (--quick)' if args.quick else ''}: {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}, load average {load:.2f}")
    if load > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy; timings will be slower and noisier than on an idle machine")
    asyncio.run(_draw_figures(repeat=3 if args.quick else 7))
    _load_figures(1_000_000 if args.quick else 10_000_000)
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
