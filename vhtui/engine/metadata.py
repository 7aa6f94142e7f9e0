"""Metadata ingestion: every stdout line that is a JSON object becomes a timestamped event.

Lines are found with one regular-expression pass over each block of output, parsed with orjson
(falling back to the standard parser for the NaN and Infinity that Python's json.dumps prints),
kept in memory and written in batches, with the running summary (the latest value of each key).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from vhtui.store import Database
from vhtui.store import metadata as metadata_rows

_JSON_LINE = re.compile(rb"^[ \t]*(\{.*\})[ \t\r]*$", re.M)


def parse_json_object(text: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


class MetadataSink:
    def __init__(self, db: Database, execution_id: int) -> None:
        self.db = db
        self.execution_id = execution_id
        self.seq = metadata_rows.count(db, execution_id)
        self.summary: dict[str, Any] = {}
        self.pending: list[tuple[int, float, str]] = []

    def feed(self, block: bytes, now: float) -> int:
        """Take whole stdout lines; return how many metadata events they held."""
        if b"{" not in block:
            return 0
        found = 0
        for match in _JSON_LINE.finditer(block):
            text = match.group(1)
            event = parse_json_object(text)
            if event is None:
                continue
            self.pending.append((self.seq, now, text.decode("utf-8", "replace")))
            self.summary.update(event)
            self.seq += 1
            found += 1
        return found

    def flush(self) -> bool:
        """Store pending events; True if there were any (the summary changed)."""
        if not self.pending:
            return False
        metadata_rows.append_batch(self.db, self.execution_id, self.pending, self.summary, self.seq)
        self.pending = []
        return True
