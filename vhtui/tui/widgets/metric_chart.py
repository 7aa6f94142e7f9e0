"""A line chart of several metric series, drawn with plotext, fast at millions of points.

plotext takes seconds for a million points, so each series is smoothed, reduced to the extremes of
each screen column (`downsample_minmax`) and only then handed to plotext: a drawing costs a few
hundred points per series whatever the data's size. Updates are coalesced: however often series
are set or appended, the chart redraws at most `REDRAW_PER_S` times a second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual_plotext import PlotextPlot

from vhtui.tui.series import Series, downsample_minmax, smooth

REDRAW_PER_S = 4
# The 16 ANSI colours (plotext's names), bright first: they read on dark and light themes and
# survive a 16-colour terminal unchanged.
COLORS = ("cyan+", "magenta+", "orange+", "green+", "red+", "blue+",
          "cyan", "magenta", "orange", "green", "red", "blue")
# Without colour (NO_COLOR), series are told apart by their marker instead.
MARKERS = ("braille", "•", "x", "+", "o", "*", "#", "@")
_POINTS_PER_COLUMN = 2  # braille dots: two per character column


class MetricChart(Widget):
    """Several series on one chart, with a legend, one colour per label.

    Labels are whatever the host names its series: the Metadata tab uses metric keys ("loss"),
    a compare screen overlaying executions uses "#3 loss", "#5 loss", so each execution gets its
    own colour. Colours follow the order of the mapping given to `set_series`.
    """

    DEFAULT_CSS = """
    MetricChart {
        height: 1fr;
        width: 1fr;
    }
    """

    log_scale: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.0)  # 0 (raw) .. 0.99, as TensorBoard's slider
    x_label: reactive[str] = reactive("step")

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.series: dict[str, Series] = {}
        self._redraw: Timer | None = None
        self._last_draw = -math.inf

    def compose(self) -> ComposeResult:
        yield PlotextPlot()

    def on_mount(self) -> None:
        self.draw()

    def set_series(self, series: Mapping[str, Series]) -> None:
        """Replace what is drawn with these series, labelled by their keys."""
        self.series = dict(series)
        self._schedule()

    def append(self, series: Mapping[str, Series]) -> None:
        """Add newly arrived points to the series of the same labels (a live update)."""
        for label, newer in series.items():
            self.series[label] = self.series[label].extend(newer) if label in self.series else newer
        self._schedule()

    def validate_smoothing(self, smoothing: float) -> float:
        return min(max(smoothing, 0.0), 0.99)

    def watch_log_scale(self) -> None:
        self._schedule()

    def watch_smoothing(self) -> None:
        self._schedule()

    def watch_x_label(self) -> None:
        self._schedule()

    def on_resize(self) -> None:
        self._schedule()  # the number of columns to downsample to changed

    @property
    def redraw_pending(self) -> bool:
        """A coalesced redraw is due: what shows is not yet the latest series (tests wait on this)."""
        return self._redraw is not None

    def draw(self) -> None:
        """Draw now; updates call this through `_schedule`, at most REDRAW_PER_S times a second."""
        if self._redraw is not None:
            self._redraw.stop()
            self._redraw = None
        self._last_draw = time.monotonic()
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plt.xlabel(self.x_label)
        columns = max(1, self.size.width) * _POINTS_PER_COLUMN
        no_color = self.app.no_color
        drawn: list[np.ndarray] = []
        for index, (label, series) in enumerate(self.series.items()):
            x, y = self._prepare(series, columns)
            if not len(x):
                continue
            drawn.append(y)
            plt.plot(
                x.tolist(), y.tolist(), label=label,
                color="default" if no_color else COLORS[index % len(COLORS)],
                marker=MARKERS[index % len(MARKERS)] if no_color else "braille",
            )
        if self.log_scale and drawn:
            ticks = _decade_ticks(min(float(y.min()) for y in drawn), max(float(y.max()) for y in drawn))
            plt.yticks(ticks, [f"{10 ** tick:.3g}" for tick in ticks])
        plot.refresh()

    def _prepare(self, series: Series, columns: int) -> tuple[np.ndarray, np.ndarray]:
        """The points to hand plotext: smoothed, on the y scale, finite, a few per column."""
        y = smooth(series.y, self.smoothing) if self.smoothing > 0 else series.y
        keep = np.isfinite(y) & np.isfinite(series.x)
        if self.log_scale:
            keep &= y > 0
        x, y = series.x[keep], y[keep]
        if self.log_scale:
            y = np.log10(y)
        return downsample_minmax(x, y, columns)

    def _schedule(self) -> None:
        if not self.is_mounted or self._redraw is not None:
            return
        wait = self._last_draw + 1 / REDRAW_PER_S - time.monotonic()
        # Never 0: Textual's timer divides by its delay when it fires late.
        self._redraw = self.set_timer(max(0.01, wait), self.draw)


def _decade_ticks(low: float, high: float) -> list[float]:
    """Tick positions on a log10 axis at 1, 2 and 5 times powers of ten (decades only when many)."""
    decades = range(math.floor(low), math.ceil(high) + 1)
    ticks = [d + math.log10(m) for d in decades for m in (1, 2, 5) if low <= d + math.log10(m) <= high]
    if len(ticks) > 8:
        ticks = [float(d) for d in decades if low <= d <= high]
        ticks = ticks[:: math.ceil(len(ticks) / 8)]
    return ticks if len(ticks) >= 2 else [low, high] if high > low else [low]
