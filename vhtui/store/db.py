"""Connections, transactions and migrations.

Every process (CLI, TUI, one supervisor per execution) opens its own connection. WAL lets readers
run beside a writer; writers take the lock with BEGIN IMMEDIATE, hold it briefly, and wait for each
other up to the busy timeout instead of failing with "database is locked".
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vhtui.errors import VhtuiError
from vhtui.store.schema import MIGRATIONS

BUSY_TIMEOUT_S = 60.0


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connect()
        self._migrate()

    def _connect(self) -> None:
        path = self.path
        try:
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise VhtuiError(f"cannot open the store at {path}: {exc}") from None
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == len(MIGRATIONS):
            return
        if version > len(MIGRATIONS):
            raise VhtuiError(f"the store at {self.path} was written by a newer vhtui (schema {version})")
        with self.write():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction; take it late, leave it early."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def data_version(self) -> int:
        """A number that changes whenever another connection commits: a cheap "did anything change?"."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def closed_for_fork(self) -> Iterator[None]:
        """SQLite must not be open across fork(): close, let the caller fork, then reconnect."""
        self.conn.close()
        try:
            yield
        finally:
            self._connect()


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (executescript would commit the migration's transaction)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending
            pending = ""
    if pending.strip():
        yield pending


def open_database(path: Path) -> Database:
    return Database(path)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def decode(row: sqlite3.Row | None, json_fields: tuple[str, ...]) -> dict[str, Any] | None:
    """A row as a dict, with the columns that hold JSON (as `dumps` wrote them) parsed."""
    if row is None:
        return None
    out = dict(row)
    for name in json_fields:
        if out.get(name) is not None:
            out[name] = json.loads(out[name])
    return out
