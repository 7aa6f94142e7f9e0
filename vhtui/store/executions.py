"""Execution rows: creation with the per-project counter `#N`, status changes, listing."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

from vhtui.store.db import Database, decode, dumps

ACTIVE_STATUSES = ("created", "queued", "started", "stopping")
FINAL_STATUSES = ("complete", "error", "stopped", "crashed")
STATUSES = ACTIVE_STATUSES + FINAL_STATUSES
JSON_FIELDS = ("parameters", "code_version", "environment", "spec", "runner_state", "metadata_summary",
               "commands")


def _decode(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return decode(row, JSON_FIELDS)


def create(db: Database, project_id: int, fields: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Insert an execution (status `created`) and its inputs, taking the project's next counter."""
    values = {k: dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()}
    with db.write() as conn:
        counter = conn.execute(
            "UPDATE projects SET next_counter = next_counter + 1 WHERE id = ? RETURNING next_counter - 1",
            (project_id,),
        ).fetchone()[0]
        values.update(uid=str(uuid.uuid4()), project_id=project_id, counter=counter, status="created", created_at=time.time())
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        execution_id = conn.execute(
            f"INSERT INTO executions ({names}) VALUES ({marks})", tuple(values.values())
        ).lastrowid
        conn.executemany(
            "INSERT INTO execution_inputs (execution_id, name, position, uri, datum_id, filename, sha256, size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (execution_id, i["name"], i["position"], i["uri"], i.get("datum_id"), i.get("filename"),
                 i.get("sha256"), i.get("size"))
                for i in inputs
            ],
        )
    return get(db, execution_id)  # type: ignore[return-value]


def get(db: Database, execution_id: int) -> dict[str, Any] | None:
    return _decode(db.query_one("SELECT * FROM executions WHERE id = ?", (execution_id,)))


def get_by_counter(db: Database, project_id: int, counter: int) -> dict[str, Any] | None:
    return _decode(
        db.query_one("SELECT * FROM executions WHERE project_id = ? AND counter = ?", (project_id, counter))
    )


def list_active(db: Database) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in ACTIVE_STATUSES)
    return [_decode(r) for r in db.query(f"SELECT * FROM executions WHERE status IN ({marks})", ACTIVE_STATUSES)]  # type: ignore[misc]


def update(db: Database, execution_id: int, only_if_active: bool = True, **fields: Any) -> bool:
    """Set fields; by default a finished execution is left as it is. True if a row changed."""
    values = {k: dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in fields.items()}
    sql = "UPDATE executions SET " + ", ".join(f"{k} = ?" for k in values) + " WHERE id = ?"
    params: list[Any] = [*values.values(), execution_id]
    if only_if_active:
        sql += " AND status IN (" + ", ".join("?" for _ in ACTIVE_STATUSES) + ")"
        params += ACTIVE_STATUSES
    with db.write() as conn:
        return conn.execute(sql, params).rowcount > 0


def stop_requested(db: Database, execution_id: int) -> bool:
    row = db.query_one("SELECT stop_requested_at FROM executions WHERE id = ?", (execution_id,))
    return bool(row and row["stop_requested_at"])


def claim_dead_owner(db: Database, execution_id: int, dead_pid: int, now: float) -> bool:
    """Clear a dead supervisor's pid, once: of all the readers that saw it dead, only the one whose
    UPDATE changes the row takes the execution over."""
    with db.write() as conn:
        return conn.execute("UPDATE executions SET supervisor_pid = NULL, heartbeat_at = ? "
                            "WHERE id = ? AND supervisor_pid = ?", (now, execution_id, dead_pid)).rowcount > 0


def active_by_runner(db: Database) -> dict[str, dict[str, int]]:
    """{runner: {status: count}} of the executions not yet ended, in every project."""
    marks = ", ".join("?" for _ in ACTIVE_STATUSES)
    counts: dict[str, dict[str, int]] = {}
    for row in db.query(f"SELECT runner, status, count(*) AS n FROM executions WHERE status IN ({marks}) "
                        "GROUP BY runner, status", ACTIVE_STATUSES):
        counts.setdefault(row["runner"], {})[row["status"]] = row["n"]
    return counts


def inputs_of(db: Database, execution_id: int) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.query("SELECT * FROM execution_inputs WHERE execution_id = ? ORDER BY name, position", (execution_id,))
    ]


def consumers_of_datum(db: Database, datum_id: str) -> list[dict[str, Any]]:
    return [
        _decode(r)  # type: ignore[misc]
        for r in db.query(
            "SELECT DISTINCT e.* FROM executions e JOIN execution_inputs i ON i.execution_id = e.id"
            " WHERE i.datum_id = ? ORDER BY e.id",
            (datum_id,),
        )
    ]


SORTABLE = {"counter": "counter", "status": "status", "step": "step", "title": "title",
            "duration": "(COALESCE(ended_at, (julianday('now') - 2440587.5) * 86400.0) - started_at)", "runner": "runner",
            "created": "created_at"}


def _filter_sql(project_id: int, status: str | None, step: str | None, text: str | None) -> tuple[str, list[Any]]:
    sql = " WHERE project_id = ?"
    params: list[Any] = [project_id]
    if status:
        sql += " AND status = ?"
        params.append(status)
    if step:
        sql += " AND step = ?"
        params.append(step)
    if text and len(text) >= 3:  # the trigram index finds substrings of 3 characters or more
        sql += (" AND (id IN (SELECT rowid FROM executions_search WHERE executions_search MATCH ?)"
                " OR '#' || counter = ?)")
        params += ['"' + text.replace('"', '""') + '"', text]
    elif text:
        sql += " AND (step LIKE ? OR title LIKE ? OR parameters LIKE ? OR status LIKE ? OR '#' || counter = ?)"
        like = f"%{text}%"
        params += [like, like, like, like, text]
    return sql, params


def page(
    db: Database, project_id: int, *, offset: int, limit: int, status: str | None = None, step: str | None = None,
    text: str | None = None, sort: str = "counter", descending: bool = True,
) -> list[dict[str, Any]]:
    """One window of a filtered, sorted listing: screens fetch only the rows they show.

    `sort` is a column of SORTABLE or `metric:<key>` (the latest value of a metadata key; of the
    names of non-finite values, see vhtui.store.metadata, "nan" counts as no value and the
    infinities as the largest and smallest numbers).
    """
    where, params = _filter_sql(project_id, status, step, text)
    direction = "DESC" if descending else "ASC"
    if sort.startswith("metric:"):
        key = sort[7:].replace('"', '\\"')  # a JSON path error unescaped (escaped, SQLite 3.40 finds none)
        params.append(f'$."{key}"')
        value = f"json_extract(metadata_summary, ?{len(params)})"  # a numbered parameter: used twice
        expression = f"CASE {value} WHEN 'nan' THEN NULL WHEN 'inf' THEN 9e999 WHEN '-inf' THEN -9e999 ELSE {value} END"
    else:
        expression = SORTABLE.get(sort, "counter")
    if expression == "counter":  # walks the (project_id, counter) index and stops at LIMIT
        order = f"counter {direction}"
    else:  # executions without the value sort last, whichever the direction
        order = f"{expression} {direction} NULLS LAST, counter DESC"
    sql = f"SELECT * FROM executions{where} ORDER BY {order} LIMIT ? OFFSET ?"
    return [_decode(r) for r in db.query(sql, [*params, limit, offset])]  # type: ignore[misc]


def count(db: Database, project_id: int, status: str | None = None, step: str | None = None,
          text: str | None = None) -> int:
    where, params = _filter_sql(project_id, status, step, text)
    return int(db.query_one(f"SELECT count(*) FROM executions{where}", params)[0])  # type: ignore[index]
