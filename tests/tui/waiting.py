"""Waiting, in pilot tests, for what the app does in its own time: workers, timers, polls.

A test waits for the outcome it asserts, never for a fixed time: a fixed pause is too short on a
busy machine and needlessly long on an idle one. The timeout only bounds a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from vhtui.tui.widgets.metric_chart import MetricChart


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds; fail if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


async def settled(pilot: Pilot[Any]) -> None:
    """No worker running and no chart of the screen waiting to redraw: the app has caught up with
    what was asked of it (the state that a snapshot or an assertion on drawn text needs)."""

    def caught_up() -> bool:
        return all(worker.is_finished for worker in pilot.app.workers) and \
            not any(chart.redraw_pending for chart in pilot.app.screen.query(MetricChart))

    await pilot.pause()  # messages already posted start their workers first
    await until(pilot, caught_up)
    await pilot.pause()
