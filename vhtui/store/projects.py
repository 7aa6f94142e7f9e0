"""Projects: a directory with a valohai.yaml, and its per-project execution counter."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from vhtui.store.db import Database


def ensure(db: Database, path: Path, name: str | None = None) -> int:
    path_text = str(path.resolve())
    row = db.query_one("SELECT id FROM projects WHERE path = ?", (path_text,))
    if row:
        return int(row["id"])
    with db.write() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO projects (uid, name, path, created_at) VALUES (?, ?, ?, ?)",
            (str(uuid.uuid4()), name or path.resolve().name, path_text, time.time()),
        )
        return int(conn.execute("SELECT id FROM projects WHERE path = ?", (path_text,)).fetchone()["id"])


def get(db: Database, project_id: int) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM projects WHERE id = ?", (project_id,))
    return dict(row) if row else None


def find_by_path(db: Database, path: Path) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM projects WHERE path = ?", (str(path.resolve()),))
    return dict(row) if row else None


def list_all(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query("SELECT * FROM projects ORDER BY name")]


def list_with_activity(db: Database) -> list[tuple[dict[str, Any], int, float | None]]:
    """Projects with their execution count and last launch, most recently active first."""
    rows = db.query(
        "SELECT p.*, count(e.id) AS runs, max(e.created_at) AS last FROM projects p"
        " LEFT JOIN executions e ON e.project_id = p.id GROUP BY p.id ORDER BY last DESC NULLS LAST, p.name"
    )
    return [({k: r[k] for k in r.keys() if k not in ("runs", "last")}, r["runs"], r["last"]) for r in rows]
