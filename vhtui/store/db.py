"""Connections, transactions and migrations.

Every process (CLI, TUI, one supervisor per execution) opens its own connection. WAL lets readers
run beside a writer; writers take the lock with BEGIN IMMEDIATE, hold it briefly, and wait for each
other up to the busy timeout instead of failing with "database is locked".

Whatever SQLite itself reports (a damaged or removed file, a full disk, a lock held too long)
becomes one `StoreError` line saying what is wrong and where; a failed write is rolled back, so
nothing stored before is touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vhtui.errors import StoreError, VhtuiError, quoted
from vhtui.store.schema import MIGRATIONS

BUSY_TIMEOUT_S = float(os.environ.get("VHTUI_BUSY_TIMEOUT") or 60.0)  # how long a writer waits for the lock


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """What SQLite's error means for the user, in one line."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL" or "disk is full" in text:
        return StoreError(f"the disk holding the store ({path.parent}) is full: free some space and try again",
                          "full")
    if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
        return StoreError(f"the store at {path} is damaged ({text}); see 'Recovering the store' in the README",
                          "damaged")
    if code.startswith("SQLITE_BUSY") or "locked" in text:
        return StoreError(f"the store at {path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s",
                          "busy")
    if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
        return StoreError(f"cannot use the store at {path}: {text}", "unusable")
    if "no such table" in text:
        return StoreError(f"the store at {path} was removed or replaced while in use; run the command again",
                          "replaced")
    return StoreError(f"the store at {path} failed: {text}")


def not_utf8(exc: UnicodeEncodeError) -> VhtuiError:
    """A value given on a command line in another encoding (bytes that are not UTF-8) cannot be stored."""
    text = exc.object if isinstance(exc.object, str) else str(exc.object)
    return VhtuiError(f"{quoted(text.encode('utf-8', 'backslashreplace').decode())} is not valid UTF-8 text")


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._connect()
            self._migrate()
        except sqlite3.Error as exc:
            raise store_error(path, exc) from None

    def _connect(self) -> None:
        _make_private(self.path)
        self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._identity = _identity(self.path)

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
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        try:
            yield self.conn
        except BaseException as exc:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a full disk can refuse even that; SQLite rolls back by itself then
            if isinstance(exc, sqlite3.Error):
                raise store_error(self.path, exc) from None
            if isinstance(exc, UnicodeEncodeError):
                raise not_utf8(exc) from None
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise store_error(self.path, exc) from None

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self._read(sql, params, all_rows=True)  # type: ignore[no-any-return]

    def query_one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self._read(sql, params, all_rows=False)  # type: ignore[no-any-return]

    def _read(self, sql: str, params: Any, all_rows: bool) -> Any:
        try:
            cursor = self.conn.execute(sql, params)
            return cursor.fetchall() if all_rows else cursor.fetchone()
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        except UnicodeEncodeError as exc:
            raise not_utf8(exc) from None

    def data_version(self) -> int:
        """A number that changes whenever another connection commits: a cheap "did anything change?"."""
        row = self.query_one("PRAGMA data_version")
        return int(row[0]) if row else 0

    def replaced(self) -> bool:
        """Whether the file at the store's path is no longer the one this connection has open (it was
        removed, or another store was put there): what this connection reads is then stale."""
        return _identity(self.path) != self._identity

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def closed_for_fork(self) -> Iterator[None]:
        """SQLite must not be open across fork(): close, let the caller fork, then reconnect."""
        self.conn.close()
        try:
            yield
        finally:
            try:
                self._connect()
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from None


def _make_private(path: Path) -> None:
    """The store file readable by its user alone (0600), created so before SQLite opens it: SQLite
    gives its -wal and -shm files the same mode. An older store that others could read is fixed.

    An existing store is never opened here: closing any descriptor of the file drops every POSIX
    lock this process holds on it, and another connection of this process (a supervisor has two)
    would then look absent to the next process that closes, which would checkpoint and delete the
    WAL under it. Only a file that does not exist yet, and so has no connection, is created.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            pass  # created meanwhile, or not creatable: SQLite says why, in its own words
        return
    except OSError:
        return
    if mode & 0o077:
        for name in (path.name, path.name + "-wal", path.name + "-shm"):
            try:
                os.chmod(path.with_name(name), 0o600)
            except OSError:
                pass


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


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
