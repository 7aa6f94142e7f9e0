"""Metadata ingestion: every stdout line that is a JSON object becomes a timestamped event.

Lines are found with one regular-expression pass over each block of output (after a cheaper
search for a brace), parsed with one orjson call per block (falling back line by line, to the
standard parser for the NaN and Infinity that Python's json.dumps prints: such a line is stored
re-encoded, with those values named as vhtui.store.metadata says, since it is not valid JSON), and
written in batches by a thread with its own connection, so the store's work overlaps reading the
next output. The running summary keeps NaN a float, for stop conditions.
Events that arrive together are stored together, as one block (see vhtui.store.metadata).
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from vhtui.supervision.logfile import Region, parse_json_object
from vhtui.store import metadata as metadata_rows
from vhtui.store.db import dumps
from vhtui.store.metadata import Block, json_safe
from vhtui.errors import StoreError
from vhtui.store import open_database

_JSON_LINE = re.compile(rb"^[ \t]*(\{.*\})[ \t\r]*$", re.M)


def _valid_json(line: bytes, event: dict[str, Any]) -> bytes:
    """The line as stored: itself, unless it may hold a NaN or an infinity (only the standard
    parser read it then), which valid JSON cannot."""
    if b"NaN" in line or b"Infinity" in line:
        return dumps(json_safe(event)).encode()
    return line


class MetadataSink:
    def __init__(self, database: Path, execution_id: int, summary: dict[str, Any] | None = None) -> None:
        self.execution_id = execution_id
        self.db = open_database(database)  # used by the writer thread only
        self.seq = self.committed_seq = metadata_rows.next_seq(self.db, execution_id)
        self.summary: dict[str, Any] = dict(summary or {})  # a resumed run goes on from what is stored
        self.pending: list[Block] = []
        self.batches: queue.Queue[tuple[list[Block], dict[str, Any], int] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.writer = threading.Thread(target=self._write_batches, name="metadata-writer", daemon=True)
        self.writer.start()

    def feed(self, regions: list[Region], now: float) -> int:
        """Take whole stdout lines; return how many metadata events they held."""
        found = 0
        for buf, start, end in regions:
            if buf.find(b"{", start, end) < 0:
                continue
            lines = _JSON_LINE.findall(buf, start, end)
            if not lines:
                continue
            try:  # one parse for the whole block; a line that is `{...}` and parses is an object
                events = orjson.loads(b"[" + b",".join(lines) + b"]")
            except orjson.JSONDecodeError:
                parsed = [parse_json_object(line) for line in lines]
                lines = [_valid_json(line, event) for line, event in zip(lines, parsed) if event is not None]
                events = [event for event in parsed if event is not None]
            for event in events:
                self.summary.update(event)
            if lines:
                self.pending.append((self.seq, len(lines), now, b"\n".join(lines)))
                self.seq += len(lines)
                found += len(lines)
        return found

    def flush(self) -> bool:
        """Hand pending events to the writer; True if there were any (the summary changed)."""
        if not self.pending:
            return False
        self.batches.put((self.pending, dict(self.summary), self.seq))
        self.pending = []
        return True

    def close(self) -> None:
        """Store everything still pending and stop the writer; raise what the writer hit."""
        self.flush()
        self.batches.put(None)
        self.writer.join()
        self.db.close()
        if self.error:
            raise self.error

    def _write_batches(self) -> None:
        while (batch := self.batches.get()) is not None:
            while self.error is None:
                try:
                    metadata_rows.append_blocks(self.db, self.execution_id, *batch)
                    self.committed_seq = batch[2]
                    break
                except StoreError as exc:
                    if exc.kind != "busy":
                        self.error = exc
                    else:  # another process holds the store: wait, the events are kept meanwhile
                        print(f"vhtui: {exc}; trying again", file=sys.stderr, flush=True)
                        time.sleep(1.0)
                except BaseException as exc:  # noqa: BLE001 (reported by close())
                    self.error = exc
