"""Two aliases side by side: what both the `deploy compare` command and the TUI screen show.

For each alias: the version it points to, its code version, each endpoint's files with their
datums and the executions that produced them, live request figures and the latest `vh_metadata`;
the mirroring agreement between the two; and the same request sent to both, with where the two
answers differ.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from vhtui.context import Context
from vhtui.deploy.metrics import endpoint_summary, latest_metadata
from vhtui.deploy.versions import find_deployment, find_version
from vhtui.store import datums as datum_rows
from vhtui.store import deployments as deployment_rows
from vhtui.store import executions as execution_rows


def file_view(ctx: Context, file: dict[str, Any]) -> dict[str, Any]:
    """A version's file with its datum and, when an execution made it, that execution's summary."""
    datum = datum_rows.get(ctx.db, file["datum_id"]) or {}
    view = {"name": file["name"], "path": file["path"], "datum": f"datum://{file['datum_id']}",
            "datum_name": datum.get("name"), "sha256": datum.get("sha256"), "execution": None}
    if datum.get("producer_execution_id"):
        execution = execution_rows.get(ctx.db, datum["producer_execution_id"])
        if execution:
            view["execution"] = {"id": execution["id"], "counter": execution["counter"], "step": execution["step"],
                                 "status": execution["status"], "metrics": execution["metadata_summary"]}
    return view


def version_view(ctx: Context, version: dict[str, Any], window_s: int = 60, now: float | None = None) -> dict[str, Any]:
    endpoints = []
    for endpoint in deployment_rows.endpoints_of(ctx.db, version["id"]):
        endpoints.append({
            "name": endpoint["name"], "status": endpoint["status"], "port": endpoint["port"],
            "reason": endpoint["reason"], "files": [file_view(ctx, f) for f in endpoint["files"]],
            "requests": endpoint_summary(ctx.db, endpoint["id"], window_s, now),
            "metadata": latest_metadata(ctx.db, endpoint["id"]), "endpoint_id": endpoint["id"],
        })
    return {"version": version["name"], "version_id": version["id"], "code_version": version["code_version"],
            "created_at": version["created_at"], "endpoints": endpoints}


def compare_aliases(ctx: Context, project_id: int, deployment_name: str, left: str, right: str,
                    now: float | None = None) -> dict[str, Any]:
    """`now` fixes the end of the live window (tests and screenshots); by default, the present."""
    deployment = find_deployment(ctx, project_id, deployment_name)
    sides = []
    for alias in (left, right):
        sides.append({"alias": alias, **version_view(ctx, find_version(ctx, deployment, alias), now=now)})
    mirrors = {a["name"]: a["mirror_to"] for a in deployment_rows.aliases_of_deployment(ctx.db, deployment["id"])}
    mirror = None
    for source, target in ((left, right), (right, left)):
        if mirrors.get(source) == target:
            count, agreed = deployment_rows.mirror_totals(ctx.db, deployment["id"], source, target)
            mirror = {"source": source, "target": target, "mirrored": count, "agreed": agreed,
                      "agreement": agreed / count if count else None}
    return {"deployment": deployment_name, "deployment_id": deployment["id"], "sides": sides, "mirror": mirror}


def send_to_both(base_url: str, deployment: str, aliases: list[str], endpoint: str, path: str,
                 method: str = "GET", body: str | None = None) -> list[dict[str, Any]]:
    """The same request through the router to each alias, one after the other, each timed."""
    answers = []
    with httpx.Client(timeout=30.0) as client:
        for alias in aliases:
            url = f"{base_url}/{deployment}/{alias}/{endpoint}/{path.lstrip('/')}"
            started = time.perf_counter()
            try:
                response = client.request(method, url, content=body.encode() if body else None,
                                          headers={"content-type": "application/json"} if body else None)
                status, text = response.status_code, response.text
            except httpx.HTTPError as exc:
                status, text = None, f"{type(exc).__name__}: {exc}"
            answers.append({"alias": alias, "status": status, "body": text,
                            "latency_ms": (time.perf_counter() - started) * 1000})
    return answers


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value as dotted paths to leaves, so two answers compare key by key."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def differences(left: str, right: str) -> list[str]:
    """Where two answers differ: JSON leaf paths when both are JSON, else line numbers (1-based)."""
    try:
        a, b = flatten(json.loads(left)), flatten(json.loads(right))
        return [k for k in dict.fromkeys([*a, *b]) if a.get(k, ...) != b.get(k, ...)]
    except ValueError:
        la, lb = left.splitlines(), right.splitlines()
        return [f"line {i + 1}" for i in range(max(len(la), len(lb)))
                if (la[i] if i < len(la) else None) != (lb[i] if i < len(lb) else None)]
