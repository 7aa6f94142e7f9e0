"""Metadata events, stored as blocks: the events that arrived together, one JSON object per line.

A row per event would cost SQLite more than producing the event costs the user's program; a block
per arrival (thousands of events when a run floods, one when it trickles) keeps ingestion at the
program's own speed. Each event is numbered (`seq`) and timestamped with its block's arrival time;
readers get events one by one.

Valid JSON has no NaN or infinity, yet Python's json.dumps prints them (`NaN`, `Infinity`) and
training loops do print them. They are stored as the strings "nan", "inf" and "-inf", the names
Python shows them by (`NON_FINITE`), never as invalid JSON: SQLite's json functions (the metric sort)
read every summary, every `--json` document parses, the views show "nan" as the program meant it,
and charts turn the names back into numbers. The one ambiguity: a program that prints the string
"nan" reads the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from vhtui.store.db import Database, dumps

Block = tuple[int, int, float, bytes]  # first seq, count, arrival time, JSON lines
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # stored name -> value


def json_safe(value: Any) -> Any:
    """`value` with every NaN and infinity in it replaced by its name in NON_FINITE."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def is_number(value: Any) -> bool:
    """A metric value: a JSON number (true and false are not) or the name of a non-finite one."""
    return type(value) in (int, float) or (type(value) is str and value in NON_FINITE)


def append_blocks(db: Database, execution_id: int, blocks: Sequence[Block], summary: dict[str, Any], count: int) -> None:
    """Store blocks and the execution's running summary in one transaction."""
    with db.write() as conn:
        conn.executemany(
            f"INSERT INTO metadata (execution_id, first_seq, count, time, data) VALUES ({execution_id}, ?, ?, ?, ?)",
            blocks,
        )
        conn.execute(
            "UPDATE executions SET metadata_summary = ?, metadata_count = ? WHERE id = ?",
            (dumps(json_safe(summary)), count, execution_id),
        )


def parse_block(data: bytes) -> list[dict[str, Any]]:
    """A stored block's events: one parse for the block; line by line only for a block stored with
    the invalid `NaN` and `Infinity` (by a vhtui before NON_FINITE), whose values are named as now."""
    try:
        return orjson.loads(b"[" + data.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return [json_safe(json.loads(line)) for line in data.split(b"\n")]


def iter_blocks(db: Database, execution_id: int, after_seq: int = -1) -> Iterator[tuple[int, float, list[dict[str, Any]], int]]:
    """(seq of the first event yielded, arrival time, the events after `after_seq`, last seq) per block.

    The first block is found by a seek on the primary key: a condition on first_seq + count would
    read every block of the execution, which a live poll of the tail cannot afford.
    """
    first_block = db.conn.execute(
        "SELECT COALESCE(MAX(first_seq), 0) FROM metadata WHERE execution_id = ? AND first_seq <= ?",
        (execution_id, after_seq + 1),
    ).fetchone()[0]
    cursor = db.conn.execute(
        "SELECT first_seq, count, time, data FROM metadata WHERE execution_id = ? AND first_seq >= ?"
        " ORDER BY first_seq",
        (execution_id, first_block),
    )
    for first_seq, count, when, data in cursor:
        skip = max(0, after_seq + 1 - first_seq)
        events = parse_block(bytes(data))
        yield first_seq + skip, when, events[skip:] if skip else events, first_seq + count - 1


def iter_events(db: Database, execution_id: int, after_seq: int = -1) -> Iterator[tuple[int, float, dict[str, Any]]]:
    """(seq, time, event) in order, from the first event after `after_seq`."""
    for start, when, events, _ in iter_blocks(db, execution_id, after_seq):
        for offset, event in enumerate(events):
            yield start + offset, when, event


def first_event_time(db: Database, execution_id: int) -> float:
    """When the execution's first event arrived (0.0 before any): time zero of a chart's "time" axis."""
    row = db.query_one(
        "SELECT time FROM metadata WHERE execution_id = ? ORDER BY first_seq LIMIT 1", (execution_id,)
    )
    return float(row["time"]) if row else 0.0


def next_seq(db: Database, execution_id: int) -> int:
    row = db.query_one(
        "SELECT COALESCE(MAX(first_seq + count), 0) AS n FROM metadata WHERE execution_id = ?", (execution_id,)
    )
    return int(row["n"]) if row else 0


def truncate(db: Database, execution_id: int, seq: int) -> None:
    """Forget events from `seq` on (a resumed run receives them again)."""
    with db.write() as conn:
        conn.execute("DELETE FROM metadata WHERE execution_id = ? AND first_seq >= ?", (execution_id, seq))
