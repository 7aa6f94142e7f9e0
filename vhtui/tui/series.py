"""Metric series for charts: columnar loading from metadata blocks, downsampling, smoothing, CSV.

Charts need a few keys of possibly millions of events as arrays, not events one by one: each stored
block is parsed with one orjson call and its columns are pulled out with list comprehensions and
numpy, so loading costs little more than parsing. Loading is incremental (`after_seq`, found with a
seek on the primary key), so a live chart reads only the events that arrived since its last load. Drawing goes through
`downsample_minmax`, which keeps every peak and dip while reducing a series to a few points per
screen column.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from vhtui.store.db import Database
from vhtui.store.metadata import NON_FINITE, first_event_time, is_number, iter_blocks

_NUMBER_TYPES = frozenset((int, float))  # exact types: a JSON true/false is not a metric
_EMPTY = np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class Series:
    """One key's points, ordered as they arrived; `last_seq` is the last event the load read."""

    x: np.ndarray
    y: np.ndarray
    last_seq: int = -1

    def __len__(self) -> int:
        return len(self.x)

    def extend(self, newer: Series) -> Series:
        return Series(np.concatenate((self.x, newer.x)), np.concatenate((self.y, newer.y)), newer.last_seq)


def load_series(
    db: Database, execution_id: int, keys: Sequence[str], x: str = "step", after_seq: int = -1
) -> dict[str, Series]:
    """{key: Series} of the events after `after_seq`, skipping events without a number for x or key.

    x is "seq" (the event number), "time" (seconds since the execution's first event), or a key of
    the events themselves ("step", "epoch", ...). Pass the returned `last_seq` back as `after_seq`
    to read only what arrived since.
    """
    origin = first_event_time(db, execution_id) if x == "time" else 0.0
    xs: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    ys: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    last_seq = after_seq
    for start, when, events, block_last_seq in iter_blocks(db, execution_id, after_seq):
        if x == "seq":
            x_values, x_valid = np.arange(start, start + len(events), dtype=np.float64), None
        elif x == "time":
            x_values, x_valid = np.full(len(events), when - origin), None
        else:
            x_values, x_valid = _column(events, x)
        for key in keys:
            y_values, y_valid = _column(events, key)
            valid = _both(x_valid, y_valid)
            if valid is None:
                xs[key].append(x_values)
                ys[key].append(y_values)
            else:
                xs[key].append(x_values[valid])
                ys[key].append(y_values[valid])
        last_seq = max(last_seq, block_last_seq)
    return {key: Series(_concatenate(xs[key]), _concatenate(ys[key]), last_seq) for key in keys}


def numeric_keys(summary_or_events: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[str]:
    """Keys with a numeric value, in first-seen order: of a summary, or of any of the events."""
    found: dict[str, None] = {}
    events = [summary_or_events] if isinstance(summary_or_events, Mapping) else summary_or_events
    for event in events:
        for key, value in event.items():
            if is_number(value):
                found.setdefault(key)
    return list(found)


def metric_text(value: Any) -> str:
    """A metric as the overview and compare show it: as JSON, but NaN and the infinities by their
    names (nan, inf), not as the quoted strings they are stored as."""
    return value if type(value) is str and is_number(value) else json.dumps(value)


def downsample_minmax(x: np.ndarray, y: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """At most two points per column of x (each column's lowest and highest) and the two ends.

    A terminal chart has a few hundred columns; drawing more points than that only costs time, and
    keeping each column's extremes (rather than every n-th point) keeps spikes visible. Values must
    be finite; points are sorted by x first when they are not already. Columns are found by binary
    search and each is reduced with argmin/argmax on a view: a loop over columns, not points, and
    several times faster than building a column index for every point.
    """
    n = len(x)
    if columns <= 0 or n <= 2 * columns:
        return x, y
    if np.any(x[1:] < x[:-1]):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    edges = np.searchsorted(x, np.linspace(x[0], x[-1], columns + 1)[1:-1])
    keep = {0, n - 1}  # the ends too, so the axis spans all of x
    for start, end in zip([0, *edges.tolist()], [*edges.tolist(), n]):
        if end > start:
            column = y[start:end]
            keep.update((start + int(column.argmin()), start + int(column.argmax())))
    index = sorted(keep)
    return x[index], y[index]


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average; NaN and Infinity pass through.

    Vectorised: the recurrence s[i] = w*s[i-1] + (1-w)*y[i] is solved in blocks short enough that
    w**-len does not overflow and long enough that w**len is below float precision, so each block
    needs only its predecessor's last value.
    """
    values = np.array(y, dtype=np.float64)
    if weight <= 0 or len(values) == 0:
        return values
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if not all_finite:
        values = values[finite]
    n = len(values)
    length = max(1, min(n, int(40 / -math.log(weight))))
    level = np.zeros(-(-n // length) * length)
    np.multiply(values, 1 - weight, out=level[:n])
    level = level.reshape(-1, length)
    powers = weight ** np.arange(length + 1, dtype=np.float64)
    level /= powers[:-1]
    np.cumsum(level, axis=1, out=level)
    level *= powers[:-1]
    level[1:] += level[:-1, -1:] * powers[1:]
    level = level.ravel()[:n]
    head = min(n, length)  # beyond it, 1 - weight**k rounds to 1
    level[:head] /= -np.expm1(np.arange(1, head + 1) * math.log(weight))
    if all_finite:
        return level
    out = np.array(y, dtype=np.float64)
    out[finite] = level
    return out


def to_csv(
    events_or_series: Iterable[tuple[int, float, Mapping[str, Any]]] | Mapping[str, Series],
    file: Path | str | TextIO,
    columns: Sequence[str] | None = None,
) -> int:
    """Write CSV and return the number of rows.

    Events, as `iter_events` yields them, become `seq,time,<key>...` rows (the keys are `columns`,
    or every key seen); series become long-format `series,x,y` rows.
    """
    if isinstance(file, (str, Path)):
        with open(file, "w", newline="", encoding="utf-8") as handle:
            return to_csv(events_or_series, handle, columns)
    writer = csv.writer(file)
    if isinstance(events_or_series, Mapping):
        writer.writerow(("series", "x", "y"))
        rows = 0
        for label, series in events_or_series.items():
            writer.writerows((label, _cell(a), _cell(b)) for a, b in zip(series.x.tolist(), series.y.tolist()))
            rows += len(series)
        return rows
    events = events_or_series
    if columns is None:
        events = list(events)
        columns = list(dict.fromkeys(key for _, _, event in events for key in event))
    writer.writerow(("seq", "time", *columns))
    rows = 0
    for seq, when, event in events:
        writer.writerow((seq, repr(when), *(_cell(event.get(key)) for key in columns)))
        rows += 1
    return rows


def _column(events: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A key's values as float64 and which events hold a number for it (None: all of them); a NaN or
    an infinity, stored by its name, is that number."""
    values = [event.get(key) for event in events]
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            return np.fromiter(values, dtype=np.float64, count=len(values)), None
        except OverflowError:  # an integer beyond float range: JSON allows any size
            pass
    values = [NON_FINITE.get(value, value) if type(value) is str else value for value in values]
    valid = np.fromiter(map(_is_number, values), dtype=bool, count=len(values))
    numbers = np.fromiter(
        (value if ok else 0.0 for value, ok in zip(values, valid.tolist())), dtype=np.float64, count=len(values)
    )
    return numbers, valid


def _is_number(value: Any) -> bool:
    return type(value) is float or (type(value) is int and -sys.float_info.max <= value <= sys.float_info.max)


def _both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a & b


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else _EMPTY.copy()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
