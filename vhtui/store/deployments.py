"""Deployment rows: deployments, their versions, each version's endpoint processes, aliases,
per-second request statistics, vh_metadata events and mirroring agreement."""

from __future__ import annotations

import json
import sqlite3
import time
from array import array
from typing import Any

from vhtui.store.db import Database, decode, dumps

ACTIVE_STATUSES = ("starting", "running", "stopping")
ENDPOINT_JSON_FIELDS = ("spec", "files", "runner_state")


def _endpoint(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return decode(row, ENDPOINT_JSON_FIELDS)


def _version(row: sqlite3.Row | None) -> dict[str, Any] | None:
    out = decode(row, ("code_version",))
    if out is not None:
        out["enabled"] = bool(out["enabled"])
    return out


# -- deployments ------------------------------------------------------------------------------
def ensure_deployment(db: Database, project_id: int, name: str) -> dict[str, Any]:
    with db.write() as conn:
        conn.execute("INSERT OR IGNORE INTO deployments (project_id, name, created_at) VALUES (?, ?, ?)",
                     (project_id, name, time.time()))
    return get_deployment(db, project_id, name)  # type: ignore[return-value]


def get_deployment(db: Database, project_id: int, name: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM deployments WHERE project_id = ? AND name = ?", (project_id, name))
    return dict(row) if row else None


def get_deployment_by_id(db: Database, deployment_id: int) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
    return dict(row) if row else None


def list_deployments(db: Database, project_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query("SELECT * FROM deployments WHERE project_id = ? ORDER BY name", (project_id,))]


# -- versions and their endpoints --------------------------------------------------------------
def next_version_name(db: Database, deployment_id: int) -> str:
    row = db.query_one("SELECT count(*) FROM deployment_versions WHERE deployment_id = ?", (deployment_id,))
    return f"v{row[0] + 1}"  # type: ignore[index]


def create_version(db: Database, deployment_id: int, name: str, code_version: dict[str, Any], env_mode: str,
                   endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """One version and its endpoints (name, spec, files) in one transaction."""
    with db.write() as conn:
        version_id = conn.execute(
            "INSERT INTO deployment_versions (deployment_id, name, code_version, env_mode, created_at)"
            " VALUES (?, ?, ?, ?, ?)", (deployment_id, name, dumps(code_version), env_mode, time.time())).lastrowid
        for endpoint in endpoints:
            conn.execute("INSERT INTO deployment_endpoints (version_id, name, spec, files) VALUES (?, ?, ?, ?)",
                         (version_id, endpoint["name"], dumps(endpoint["spec"]), dumps(endpoint["files"])))
    return get_version_by_id(db, version_id)  # type: ignore[arg-type, return-value]


def get_version(db: Database, deployment_id: int, name: str) -> dict[str, Any] | None:
    return _version(db.query_one("SELECT * FROM deployment_versions WHERE deployment_id = ? AND name = ?",
                                 (deployment_id, name)))


def get_version_by_id(db: Database, version_id: int) -> dict[str, Any] | None:
    return _version(db.query_one("SELECT * FROM deployment_versions WHERE id = ?", (version_id,)))


def list_versions(db: Database, deployment_id: int) -> list[dict[str, Any]]:
    rows = db.query("SELECT * FROM deployment_versions WHERE deployment_id = ? ORDER BY id", (deployment_id,))
    return [_version(r) for r in rows]  # type: ignore[misc]


def set_enabled(db: Database, version_id: int, enabled: bool) -> None:
    with db.write() as conn:
        conn.execute("UPDATE deployment_versions SET enabled = ? WHERE id = ?", (int(enabled), version_id))


def endpoints_of(db: Database, version_id: int) -> list[dict[str, Any]]:
    rows = db.query("SELECT * FROM deployment_endpoints WHERE version_id = ? ORDER BY name", (version_id,))
    return [_endpoint(r) for r in rows]  # type: ignore[misc]


def get_endpoint(db: Database, endpoint_id: int) -> dict[str, Any] | None:
    return _endpoint(db.query_one("SELECT * FROM deployment_endpoints WHERE id = ?", (endpoint_id,)))


def active_endpoints(db: Database) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in ACTIVE_STATUSES)
    rows = db.query(f"SELECT * FROM deployment_endpoints WHERE status IN ({marks})", ACTIVE_STATUSES)
    return [_endpoint(r) for r in rows]  # type: ignore[misc]


def update_endpoint(db: Database, endpoint_id: int, **fields: Any) -> None:
    values = {k: dumps(v) if k in ENDPOINT_JSON_FIELDS and v is not None else v for k, v in fields.items()}
    sets = ", ".join(f"{k} = ?" for k in values)
    with db.write() as conn:
        conn.execute(f"UPDATE deployment_endpoints SET {sets} WHERE id = ?", (*values.values(), endpoint_id))


# -- aliases -------------------------------------------------------------------------------------
def set_alias(db: Database, deployment_id: int, name: str, version_id: int) -> None:
    """One UPDATE: a reader sees the alias on the old version or the new one, never between."""
    with db.write() as conn:
        conn.execute(
            "INSERT INTO deployment_aliases (deployment_id, name, version_id, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (deployment_id, name) DO UPDATE SET version_id = excluded.version_id,"
            " updated_at = excluded.updated_at", (deployment_id, name, version_id, time.time()))


def set_mirror(db: Database, deployment_id: int, alias: str, target: str | None) -> bool:
    with db.write() as conn:
        changed = conn.execute("UPDATE deployment_aliases SET mirror_to = ? WHERE deployment_id = ? AND name = ?",
                               (target, deployment_id, alias)).rowcount
    return bool(changed)


def aliases_of_deployment(db: Database, deployment_id: int) -> list[dict[str, Any]]:
    rows = db.query("SELECT a.*, v.name AS version FROM deployment_aliases a"
                    " JOIN deployment_versions v ON v.id = a.version_id WHERE a.deployment_id = ? ORDER BY a.name",
                    (deployment_id,))
    return [dict(r) for r in rows]


def routing_rows(db: Database) -> list[sqlite3.Row]:
    """Everything the router needs, in one read: each endpoint of each version, with its deployment."""
    return db.query(
        "SELECT d.id AS deployment_id, d.name AS deployment, v.id AS version_id, v.name AS version, v.enabled,"
        " e.id AS endpoint_id, e.name AS endpoint, e.status, e.port, e.reason"
        " FROM deployment_endpoints e JOIN deployment_versions v ON v.id = e.version_id"
        " JOIN deployments d ON d.id = v.deployment_id")


def all_aliases(db: Database) -> list[sqlite3.Row]:
    return db.query("SELECT a.deployment_id, a.name, v.name AS version, a.mirror_to FROM deployment_aliases a"
                    " JOIN deployment_versions v ON v.id = a.version_id")


# -- metrics ---------------------------------------------------------------------------------------
def add_request_stats(db: Database, buckets: dict[tuple[int, int], tuple[int, int, array[float]]]) -> None:
    """Merge per-second buckets ((endpoint, second) -> count, errors, latencies in ms)."""
    with db.write() as conn:  # merged in Python: SQLite's || would turn the bytes into text
        for (endpoint_id, second), (count, errors, latencies) in buckets.items():
            old = conn.execute("SELECT count, errors, latencies FROM deployment_requests"
                               " WHERE endpoint_id = ? AND second = ?", (endpoint_id, second)).fetchone()
            data = latencies.tobytes()
            if old:
                count, errors, data = count + old[0], errors + old[1], bytes(old[2]) + data
            conn.execute("INSERT OR REPLACE INTO deployment_requests (endpoint_id, second, count, errors, latencies)"
                         " VALUES (?, ?, ?, ?, ?)", (endpoint_id, second, count, errors, data))


def request_stats(db: Database, endpoint_id: int, since: int) -> list[tuple[int, int, int, array[float]]]:
    rows = db.query("SELECT second, count, errors, latencies FROM deployment_requests"
                    " WHERE endpoint_id = ? AND second >= ? ORDER BY second", (endpoint_id, since))
    out = []
    for r in rows:
        latencies: array[float] = array("f")
        latencies.frombytes(r["latencies"])
        out.append((r["second"], r["count"], r["errors"], latencies))
    return out


def totals(db: Database, endpoint_id: int) -> tuple[int, int]:
    row = db.query_one("SELECT coalesce(sum(count), 0), coalesce(sum(errors), 0) FROM deployment_requests"
                       " WHERE endpoint_id = ?", (endpoint_id,))
    return int(row[0]), int(row[1])  # type: ignore[index]


def add_metadata(db: Database, endpoint_id: int, events: list[tuple[float, dict[str, Any]]]) -> None:
    with db.write() as conn:
        conn.executemany("INSERT INTO deployment_metadata (endpoint_id, time, data) VALUES (?, ?, ?)",
                         [(endpoint_id, t, dumps(e)) for t, e in events])


def metadata_events(db: Database, endpoint_id: int, limit: int = 10_000) -> list[tuple[float, dict[str, Any]]]:
    rows = db.query("SELECT time, data FROM deployment_metadata WHERE endpoint_id = ? ORDER BY time DESC LIMIT ?",
                    (endpoint_id, limit))
    return [(r["time"], json.loads(r["data"])) for r in reversed(rows)]


def add_mirror_stats(db: Database, buckets: dict[tuple[int, str, str, int], tuple[int, int]]) -> None:
    with db.write() as conn:
        for (deployment_id, source, target, second), (count, agreed) in buckets.items():
            conn.execute(
                "INSERT INTO deployment_mirror (deployment_id, source, target, second, count, agreed)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (deployment_id, source, target, second) DO UPDATE SET"
                " count = count + excluded.count, agreed = agreed + excluded.agreed",
                (deployment_id, source, target, second, count, agreed))


def mirror_totals(db: Database, deployment_id: int, source: str, target: str) -> tuple[int, int]:
    row = db.query_one("SELECT coalesce(sum(count), 0), coalesce(sum(agreed), 0) FROM deployment_mirror"
                       " WHERE deployment_id = ? AND source = ? AND target = ?", (deployment_id, source, target))
    return int(row[0]), int(row[1])  # type: ignore[index]
