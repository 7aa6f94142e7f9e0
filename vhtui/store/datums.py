"""Datum rows: stored files with their producer, tags, properties, aliases and dataset versions."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from vhtui.store.db import Database, decode, dumps


SELECT = ("SELECT d.*, e.counter AS producer_counter FROM datums d"
          " LEFT JOIN executions e ON e.id = d.producer_execution_id")


def _decode(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return decode(row, ("tags", "properties"))


def insert(db: Database, datum: dict[str, Any]) -> None:
    row = dict(datum, tags=dumps(datum.get("tags", [])), properties=dumps(datum.get("properties", {})))
    row.setdefault("created_at", time.time())
    names = ", ".join(row)
    with db.write() as conn:
        conn.execute(f"INSERT INTO datums ({names}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values()))


def get(db: Database, datum_id: str) -> dict[str, Any] | None:
    return _decode(db.query_one(f"{SELECT} WHERE d.id = ?", (datum_id,)))


def find_by_prefix(db: Database, prefix: str) -> list[dict[str, Any]]:
    return [_decode(r) for r in db.query(f"{SELECT} WHERE d.id LIKE ? LIMIT 3", (prefix + "%",))]  # type: ignore[misc]


def list_for_project(db: Database, project_id: int | None) -> list[dict[str, Any]]:
    if project_id is None:
        rows = db.query(f"{SELECT} ORDER BY d.created_at DESC")
    else:
        rows = db.query(f"{SELECT} WHERE d.project_id = ? ORDER BY d.created_at DESC", (project_id,))
    return [_decode(r) for r in rows]  # type: ignore[misc]


def produced_by(db: Database, execution_id: int) -> list[dict[str, Any]]:
    rows = db.query(f"{SELECT} WHERE d.producer_execution_id = ? ORDER BY d.name", (execution_id,))
    return [_decode(r) for r in rows]  # type: ignore[misc]


def set_alias(db: Database, project_id: int, name: str, datum_id: str) -> None:
    with db.write() as conn:
        conn.execute(
            "INSERT INTO datum_aliases (project_id, name, datum_id, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (project_id, name) DO UPDATE SET datum_id = excluded.datum_id, updated_at = excluded.updated_at",
            (project_id, name, datum_id, time.time()),
        )


def resolve_alias(db: Database, project_id: int, name: str) -> str | None:
    row = db.query_one("SELECT datum_id FROM datum_aliases WHERE project_id = ? AND name = ?", (project_id, name))
    return row["datum_id"] if row else None


def aliases_of(db: Database, datum_id: str) -> list[str]:
    return [r["name"] for r in db.query("SELECT name FROM datum_aliases WHERE datum_id = ? ORDER BY name", (datum_id,))]


def aliases(db: Database, project_id: int) -> dict[str, str]:
    rows = db.query("SELECT name, datum_id FROM datum_aliases WHERE project_id = ? ORDER BY name", (project_id,))
    return {r["name"]: r["datum_id"] for r in rows}


def add_to_dataset_version(db: Database, project_id: int, dataset: str, version: str, datum_id: str) -> None:
    with db.write() as conn:
        conn.execute("INSERT OR IGNORE INTO datasets (project_id, name) VALUES (?, ?)", (project_id, dataset))
        dataset_id = conn.execute(
            "SELECT id FROM datasets WHERE project_id = ? AND name = ?", (project_id, dataset)
        ).fetchone()[0]
        conn.execute(
            "INSERT OR IGNORE INTO dataset_versions (dataset_id, name, created_at) VALUES (?, ?, ?)",
            (dataset_id, version, time.time()),
        )
        version_id = conn.execute(
            "SELECT id FROM dataset_versions WHERE dataset_id = ? AND name = ?", (dataset_id, version)
        ).fetchone()[0]
        conn.execute(
            "INSERT OR IGNORE INTO dataset_version_datums (version_id, datum_id) VALUES (?, ?)", (version_id, datum_id)
        )


def dataset_version_datums(db: Database, project_id: int, dataset: str, version: str) -> list[str]:
    rows = db.query(
        "SELECT dvd.datum_id FROM dataset_version_datums dvd JOIN dataset_versions v ON v.id = dvd.version_id"
        " JOIN datasets d ON d.id = v.dataset_id WHERE d.project_id = ? AND d.name = ? AND v.name = ?",
        (project_id, dataset, version),
    )
    return [r["datum_id"] for r in rows]


def users_still_running(db: Database, datum_id: str) -> list[int]:
    """Counters of active executions that take this datum as an input."""
    rows = db.query(
        "SELECT e.counter FROM executions e JOIN execution_inputs i ON i.execution_id = e.id"
        " WHERE i.datum_id = ? AND e.status IN ('created', 'queued', 'started', 'stopping')", (datum_id,))
    return [r["counter"] for r in rows]


def delete(db: Database, datum_id: str) -> bool:
    """Remove a datum, its aliases and dataset memberships; True if no other datum shares its content."""
    with db.write() as conn:
        sha = conn.execute("SELECT sha256 FROM datums WHERE id = ?", (datum_id,)).fetchone()
        if sha is None:
            return False
        conn.execute("DELETE FROM datum_aliases WHERE datum_id = ?", (datum_id,))
        conn.execute("DELETE FROM dataset_version_datums WHERE datum_id = ?", (datum_id,))
        conn.execute("DELETE FROM datums WHERE id = ?", (datum_id,))
        return conn.execute("SELECT 1 FROM datums WHERE sha256 = ? LIMIT 1", (sha[0],)).fetchone() is None


def outputs_version(db: Database, execution_id: int) -> tuple[Any, ...]:
    """Changes whenever an execution's outputs, their aliases or their consumers change: one cheap
    look for screens that must not rebuild on every commit of other runs."""
    row = db.query_one(
        "SELECT (SELECT count(*) FROM datums WHERE producer_execution_id = :e),"
        " (SELECT max(created_at) FROM datums WHERE producer_execution_id = :e),"
        " (SELECT count(*) FROM datum_aliases a JOIN datums d ON d.id = a.datum_id WHERE d.producer_execution_id = :e),"
        " (SELECT max(a.updated_at) FROM datum_aliases a JOIN datums d ON d.id = a.datum_id"
        "  WHERE d.producer_execution_id = :e),"
        " (SELECT count(*) FROM execution_inputs i JOIN datums d ON d.id = i.datum_id"
        "  WHERE d.producer_execution_id = :e)",
        {"e": execution_id},
    )
    return tuple(row) if row else ()
