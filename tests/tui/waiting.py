"""Waiting, in pilot tests, for what the app does in its own time: workers, timers, polls.

A test waits for the outcome it asserts, never for a fixed time: a fixed pause is too short on a
busy machine and needlessly long on an idle one. The timeout only bounds a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from vhtui.tui.widgets.metric_chart import MetricChart


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds; fail if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


def _sizing(table: DataTable[Any]) -> bool:
    """Rows added but the columns not yet widened to them: DataTable does that when it is next idle
    (Textual keeps no public flag for it)."""
    return bool(table._require_update_dimensions or table._updated_cells or table._new_rows)


async def settled(pilot: Pilot[Any]) -> None:
    """No worker running, no chart of the screen waiting to redraw and no table waiting to size its
    columns: the app has caught up with what was asked of it (the state that a snapshot or an
    assertion on drawn text needs)."""

    def caught_up() -> bool:
        screen = pilot.app.screen
        return all(worker.is_finished for worker in pilot.app.workers) and \
            not any(chart.redraw_pending for chart in screen.query(MetricChart)) and \
            not any(_sizing(table) for table in screen.query(DataTable))

    await pilot.pause()  # messages already posted start their workers first
    await until(pilot, caught_up)
    await pilot.pause()
