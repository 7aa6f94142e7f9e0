"""Per-version figures: requests, errors and latency (recorded by the router), and `vh_metadata`.

The router counts each request into a bucket per (endpoint, second) in memory and merges the
buckets into the store once a second, so a busy endpoint costs one small write a second, not one
per request. Latencies are kept as float32 milliseconds per second, enough for exact percentiles
over any window. An endpoint reports its own metrics as Valohai's do: a stdout line
`{"vh_metadata": {"accuracy": 0.93}}` becomes a timestamped event of that version.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable
from typing import Any

from vhtui.supervision.logfile import Region, parse_json_object
from vhtui.store import deployments as deployment_rows
from vhtui.store.db import Database

VH_METADATA = b'"vh_metadata"'
WINDOW_S = 60


class RequestRecorder:
    """Per-second buckets of (count, errors, latencies) per endpoint, drained by the flusher."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[int, int], tuple[int, int, array[float]]] = {}
        self.mirror: dict[tuple[int, str, str, int], tuple[int, int]] = {}

    def record(self, endpoint_id: int, latency_ms: float, error: bool) -> None:
        key = (endpoint_id, int(time.time()))
        count, errors, latencies = self.buckets.get(key) or (0, 0, array("f"))
        latencies.append(latency_ms)
        self.buckets[key] = (count + 1, errors + int(error), latencies)

    def record_mirror(self, deployment_id: int, source: str, target: str, agreed: bool) -> None:
        key = (deployment_id, source, target, int(time.time()))
        count, agreed_count = self.mirror.get(key, (0, 0))
        self.mirror[key] = (count + 1, agreed_count + int(agreed))

    def flush(self, db: Database) -> None:
        buckets, self.buckets = self.buckets, {}
        mirror, self.mirror = self.mirror, {}
        if buckets:
            deployment_rows.add_request_stats(db, buckets)
        if mirror:
            deployment_rows.add_mirror_stats(db, mirror)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def endpoint_summary(db: Database, endpoint_id: int, window_s: int = WINDOW_S, now: float | None = None) -> dict[str, Any]:
    """Totals, then the last `window_s` seconds: rate, error rate, percentiles, per-second series."""
    now = now or time.time()
    first = int(now) - window_s + 1
    rows = deployment_rows.request_stats(db, endpoint_id, first)
    by_second = {second: (count, errors, latencies) for second, count, errors, latencies in rows}
    latencies = sorted(v for _, _, _, values in rows for v in values)
    count = sum(r[1] for r in rows)
    errors = sum(r[2] for r in rows)
    total, total_errors = deployment_rows.totals(db, endpoint_id)
    rate_series, latency_series = [], []
    for second in range(first, int(now) + 1):
        c, _, values = by_second.get(second, (0, 0, array("f")))
        rate_series.append(float(c))
        latency_series.append(float(sorted(values)[len(values) // 2]) if values else 0.0)
    return {
        "requests": total, "errors": total_errors, "window_s": window_s,
        "rate": count / window_s, "error_rate": errors / count if count else 0.0,
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99),
        "rate_series": rate_series, "latency_series": latency_series,
    }


def vh_metadata_in(regions: Iterable[Region]) -> list[dict[str, Any]]:
    """The `vh_metadata` objects of whole stdout lines (a cheap search first: most lines are not)."""
    found = []
    for buf, start, end in regions:
        if buf.find(VH_METADATA, start, end) < 0:
            continue
        for line in buf[start:end].splitlines():
            if VH_METADATA in line:
                event = parse_json_object(line.strip())
                if event and isinstance(event.get("vh_metadata"), dict):
                    found.append(event["vh_metadata"])
    return found


def metadata_series(db: Database, endpoint_id: int) -> dict[str, tuple[list[float], list[float]]]:
    """Each numeric vh_metadata key as (seconds since the first event, values), for charts."""
    events = deployment_rows.metadata_events(db, endpoint_id)
    series: dict[str, tuple[list[float], list[float]]] = {}
    t0 = events[0][0] if events else 0.0
    for when, event in events:
        for key, value in event.items():
            if type(value) in (int, float):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(when - t0)
                ys.append(float(value))
    return series


def latest_metadata(db: Database, endpoint_id: int) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for _, event in deployment_rows.metadata_events(db, endpoint_id):
        latest.update(event)
    return latest
