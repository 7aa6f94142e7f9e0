"""Executions and datums as Valohai's API documents them (`counter`, `status`, `ctime`, ...).

One builder, so `--json` of every command, and any API later, say the same thing the same way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from vhtui.context import Context
from vhtui.store import datums as datum_rows
from vhtui.store import executions as execution_rows


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def duration(execution: dict[str, Any]) -> float | None:
    """Seconds it ran (so far, while it runs); None before it started."""
    if not execution.get("started_at"):
        return None
    return round((execution.get("ended_at") or time.time()) - execution["started_at"], 3)


def commands(execution: dict[str, Any]) -> list[str]:
    """The step's commands as valohai.yaml writes them, parameters filled in: what Valohai shows as
    an execution's command, not vhtui's job script around them. A row from before they were kept
    apart (store schema 5) has only the script, which is shown instead."""
    if execution.get("commands") is None:
        return execution["command"].strip().splitlines()
    return execution["commands"]


def execution_document(ctx: Context, execution: dict[str, Any], full: bool = False) -> dict[str, Any]:
    """An execution in Valohai's API field names; `full` adds its command, inputs and outputs."""
    doc: dict[str, Any] = {
        "id": execution["uid"], "counter": execution["counter"], "status": execution["status"],
        "step": execution["step"], "title": execution["title"], "runner": execution["runner"],
        "ctime": iso(execution["created_at"]), "started_at": iso(execution["started_at"]),
        "ended_at": iso(execution["ended_at"]), "duration": duration(execution),
        "exit_code": execution["exit_code"], "status_detail": execution["reason"],
        "parameters": execution["parameters"], "metadata": execution["metadata_summary"],
    }
    if full:
        doc.update({
            "image": execution["image"], "command": "\n".join(commands(execution)),
            "commit": execution["code_version"], "environment_variables": execution["environment"],
            "time_limit": execution["spec"].get("time_limit"),
            "no_output_timeout": execution["spec"].get("no_output_timeout"),
            "stop_condition": execution["spec"].get("stop_condition"),
            "runtime": {k: execution["spec"].get(k) for k in ("env_mode", "python", "gpus")},
            "queued_at": iso(execution["queued_at"]), "metadata_count": execution["metadata_count"],
            "inputs": [
                {"name": i["name"], "filename": i["filename"], "uri": i["uri"], "datum": i["datum_id"],
                 "size": i["size"], "checksums": {"sha256": i["sha256"]}}
                for i in execution_rows.inputs_of(ctx.db, execution["id"])
            ],
            "outputs": [datum_document(ctx, d) for d in datum_rows.produced_by(ctx.db, execution["id"])],
        })
    return doc


def datum_document(ctx: Context, datum: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": datum["id"], "name": datum["name"], "size": datum["size"], "checksums": {"sha256": datum["sha256"]},
        "uri": f"datum://{datum['id']}", "ctime": iso(datum["created_at"]), "kind": datum["kind"],
        "output_execution": datum.get("producer_counter"), "tags": datum["tags"],
        "properties": datum["properties"], "aliases": datum_rows.aliases_of(ctx.db, datum["id"]),
    }
