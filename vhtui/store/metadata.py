"""Metadata events: one row per JSON line an execution printed, stored in batches."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from vhtui.store.db import Database, dumps


def append_batch(
    db: Database, execution_id: int, rows: Sequence[tuple[int, float, bytes | str]], summary: dict[str, Any],
    count: int,
) -> None:
    """Store (seq, time, JSON text) rows and the execution's running summary in one transaction."""
    with db.write() as conn:
        conn.executemany(
            f"INSERT INTO metadata (execution_id, seq, time, data) VALUES ({execution_id}, ?, ?, ?)", rows
        )
        conn.execute(
            "UPDATE executions SET metadata_summary = ?, metadata_count = ? WHERE id = ?",
            (dumps(summary), count, execution_id),
        )


def iter_events(db: Database, execution_id: int, after_seq: int = -1) -> Iterator[tuple[int, float, dict[str, Any]]]:
    cursor = db.conn.execute(
        "SELECT seq, time, data FROM metadata WHERE execution_id = ? AND seq > ? ORDER BY seq",
        (execution_id, after_seq),
    )
    for seq, when, data in cursor:
        yield seq, when, json.loads(data)


def count(db: Database, execution_id: int) -> int:
    row = db.query_one("SELECT count(*) AS n FROM metadata WHERE execution_id = ?", (execution_id,))
    return int(row["n"]) if row else 0
