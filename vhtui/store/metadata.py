"""Metadata events, stored as blocks: the events that arrived together, one JSON object per line.

A row per event would cost SQLite more than producing the event costs the user's program; a block
per arrival (thousands of events when a run floods, one when it trickles) keeps ingestion at the
program's own speed. Each event is numbered (`seq`) and timestamped with its block's arrival time;
readers get events one by one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from vhtui.store.db import Database, dumps

Block = tuple[int, int, float, bytes]  # first seq, count, arrival time, JSON lines


def append_blocks(db: Database, execution_id: int, blocks: Sequence[Block], summary: dict[str, Any], count: int) -> None:
    """Store blocks and the execution's running summary in one transaction."""
    with db.write() as conn:
        conn.executemany(
            f"INSERT INTO metadata (execution_id, first_seq, count, time, data) VALUES ({execution_id}, ?, ?, ?, ?)",
            blocks,
        )
        conn.execute(
            "UPDATE executions SET metadata_summary = ?, metadata_count = ? WHERE id = ?",
            (dumps(summary), count, execution_id),
        )


def iter_events(db: Database, execution_id: int, after_seq: int = -1) -> Iterator[tuple[int, float, dict[str, Any]]]:
    """(seq, time, event) in order, from the first event after `after_seq`."""
    from vhtui.engine.metadata import parse_json_object

    cursor = db.conn.execute(
        "SELECT first_seq, time, data FROM metadata WHERE execution_id = ? AND first_seq + count > ?"
        " ORDER BY first_seq",
        (execution_id, after_seq + 1),
    )
    for first_seq, when, data in cursor:
        lines = bytes(data).split(b"\n")
        try:
            events = orjson.loads(b"[" + b",".join(lines) + b"]")
        except orjson.JSONDecodeError:  # NaN or Infinity somewhere in the block
            events = [parse_json_object(line) for line in lines]
        for offset, event in enumerate(events):
            seq = first_seq + offset
            if seq > after_seq:
                yield seq, when, event


def next_seq(db: Database, execution_id: int) -> int:
    row = db.query_one(
        "SELECT COALESCE(MAX(first_seq + count), 0) AS n FROM metadata WHERE execution_id = ?", (execution_id,)
    )
    return int(row["n"]) if row else 0
