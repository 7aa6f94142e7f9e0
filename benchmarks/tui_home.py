"""Home screen at scale: 100,000 executions and 10,000,000 metadata points.

Measures, headless, the time from the app starting (imports done) to the first paint of the
executions table, and from a filter keystroke to the repaint; the baseline is Textual's own
DataTable holding the same rows, in the same run. Figures are printed, never asserted.

    .venv/bin/python -m benchmarks.tui_home [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from vhtui.context import Context
from vhtui.home import Home
from vhtui.settings import Settings
from vhtui.store import metadata as metadata_rows
from vhtui.store import open_database
from vhtui.store import projects as project_rows


def seed(root: Path, executions: int, points: int) -> tuple[Context, Path]:
    """Bulk-load a store (raw inserts: seeding speed is not what is measured)."""
    project = root / "project"
    project.mkdir(parents=True)
    (project / "valohai.yaml").write_text("- step:\n    name: train\n    image: x\n    command: 'true'\n")
    home = Home(root / "home")
    home.root.mkdir()
    db = open_database(home.database)
    project_id = project_rows.ensure(db, project)
    steps = ["train", "evaluate", "preprocess", "train-large"]
    statuses = ["complete"] * 6 + ["error", "stopped", "crashed"]
    rows = []
    for n in range(1, executions + 1):
        summary = {"epoch": n % 100, "loss": round(1 / (1 + n % 997), 5), "accuracy": round((n % 89) / 89, 4)}
        parameters = {"learning_rate": round(0.001 * (1 + n % 17), 4), "epochs": 10 + n % 50}
        start = 1_790_000_000 + n * 60
        rows.append((f"uid-{n}", project_id, n, steps[n % 4], f"run {n} lr sweep" if n % 3 else None,
                     statuses[n % 9], "local", "python:3.11", "python train.py", json.dumps(parameters), "{}", "{}",
                     "{}", start - 1, start, start + 30 + n % 600, json.dumps(summary), 100))
    with db.write() as conn:
        conn.executemany(
            "INSERT INTO executions (uid, project_id, counter, step, title, status, runner, image, command,"
            " parameters, code_version, environment, spec, created_at, started_at, ended_at, metadata_summary,"
            " metadata_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("UPDATE projects SET next_counter = ? WHERE id = ?", (executions + 1, project_id))
    block = 20_000
    per_execution = max(1, points // block)
    for b in range(per_execution):  # the points go to the newest execution, in blocks as stored live
        lines = b"\n".join(json.dumps({"step": b * block + i, "loss": 1.0 / (1 + b * block + i)}).encode()
                           for i in range(block))
        metadata_rows.append_blocks(db, executions, [(b * block, block, 1_790_000_000.0 + b, lines)], {}, 0)
    return Context(home=home, db=db, settings=Settings(gpus="none")), project


async def measure_vhtui(ctx: Context, project: Path) -> dict[str, float]:
    from vhtui.tui.app import VhtuiApp
    from vhtui.tui.widgets.execution_table import ExecutionTable

    app = VhtuiApp(ctx, project, watch_interval=3600)
    started = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        while not app.screen.query(ExecutionTable) or not app.screen.query_one(ExecutionTable).total:
            await pilot.pause(0)
        await pilot.pause(0)  # the frame after the rows arrived
        first_paint = time.perf_counter() - started
        table = app.screen.query_one(ExecutionTable)
        await pilot.press("slash")
        idle = []  # the harness's own cost of a key that changes nothing (cursor to the end of the input)
        for _ in range(5):
            t0 = time.perf_counter()
            await pilot.press("end")
            await pilot.pause(0)
            idle.append(time.perf_counter() - t0)
        keystrokes, repaints = [], []
        painted: list[tuple[float, str]] = []  # when the table drew a line, and for which filter
        draw = table.render_line

        def recording_render_line(y: int):  # type: ignore[no-untyped-def]
            painted.append((time.perf_counter(), table.query.text))
            return draw(y)

        table.render_line = recording_render_line  # type: ignore[method-assign]
        typed = ""
        for char in "run 4":
            typed += char
            t0 = time.perf_counter()
            await pilot.press(char)
            await pilot.pause(0)
            keystrokes.append(time.perf_counter() - t0)
            first = next((t for t, text in painted if t >= t0 and text == typed), None)
            if first is not None:
                repaints.append(first - t0)
            painted.clear()
        scrolls = []
        for _ in range(10):
            t0 = time.perf_counter()
            await pilot.press("pagedown")
            await pilot.pause(0)
            scrolls.append(time.perf_counter() - t0)
        total = table.total
    return {"first_paint": first_paint, "keystroke_median": statistics.median(keystrokes),
            "idle_key_median": statistics.median(idle),
            "repaint_median": statistics.median(repaints) if repaints else float("nan"),
            "repaint_max": max(repaints) if repaints else float("nan"),
            "keystroke_max": max(keystrokes), "page_down_median": statistics.median(scrolls), "matching": total}


async def measure_datatable(ctx: Context, limit: int) -> dict[str, float]:
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    rows = ctx.db.query(f"SELECT counter, status, step, title, metadata_summary FROM executions"
                        f" ORDER BY counter DESC LIMIT {limit}")

    class Baseline(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("#", "status", "step", "title", "metrics")
            table.add_rows([(f"#{r[0]}", r[1], r[2], r[3] or "", r[4]) for r in rows])

    app = Baseline()
    started = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0)
        first_paint = time.perf_counter() - started
    return {"first_paint": first_paint, "rows": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10x smaller")
    args = parser.parse_args()
    executions, points = (10_000, 1_000_000) if args.quick else (100_000, 10_000_000)
    with tempfile.TemporaryDirectory(prefix="vhtui-bench-home-") as tmp:
        t0 = time.perf_counter()
        ctx, project = seed(Path(tmp), executions, points)
        os.environ["VHTUI_HOME"] = str(ctx.home.root)
        print(f"seeded {executions:,} executions and {points:,} metadata points in {time.perf_counter() - t0:.1f}s")
        ours = asyncio.run(measure_vhtui(ctx, project))
        base = asyncio.run(measure_datatable(ctx, executions))
    print(f"{'metric':<44} {'vhtui':>12} {'DataTable':>12} {'target':>10}")
    print(f"{'first paint of the home screen (ms)':<44} {ours['first_paint'] * 1000:>12.0f} "
          f"{base['first_paint'] * 1000:>12.0f} {'<= 300':>10}")
    print(f"{'  ratio (DataTable / vhtui)':<44} {base['first_paint'] / ours['first_paint']:>12.1f}x")
    print(f"{'filter keystroke to first repainted row (ms)':<44} {ours['repaint_median'] * 1000:>12.1f} "
          f"{'-':>12} {'<= 100':>10}   (median; worst {ours['repaint_max'] * 1000:.1f})")
    print(f"{'filter keystroke to harness idle, median (ms)':<44} {ours['keystroke_median'] * 1000:>12.1f}"
          f"   (worst {ours['keystroke_max'] * 1000:.1f}; a key that changes nothing: "
          f"{ours['idle_key_median'] * 1000:.1f})")
    print(f"{'page down to repaint, median (ms)':<44} {ours['page_down_median'] * 1000:>12.1f}")
    print(f"(matching the filter 'run 4': {ours['matching']:,} executions)")


if __name__ == "__main__":
    main()
