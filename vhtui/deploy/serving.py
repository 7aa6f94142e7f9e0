"""Serving a deployment's versions: the router first, then every endpoint, each waited for.

What `vhtui deploy start` and `stop` do, in one place for every caller: a version that is started
is marked enabled (so it is what the user wants up), its endpoints get a supervisor each unless they
already run, and the call returns once each endpoint listens or has failed. The wait outlasts each
supervisor's own start timeout, so what the caller sees is the supervisor's verdict and its reason,
never a start still pending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vhtui.context import Context
from vhtui.deploy.process import START_TIMEOUT_S, reconcile_endpoints, start_endpoint, stop_endpoint, wait_settled
from vhtui.deploy.router import ensure_router, stop_router
from vhtui.store import deployments as deployment_rows

VERDICT_MARGIN_S = 10.0  # past a supervisor's own timeout and stop grace, for its verdict to be stored


@dataclass
class Served:
    version: dict[str, Any]
    endpoint: dict[str, Any]  # as it settled: running, or why not

    @property
    def running(self) -> bool:
        return bool(self.endpoint["status"] == "running")


def start_versions(ctx: Context, versions: list[dict[str, Any]], router_port: int | None = None,
                   timeout: float | None = None,
                   progress: Callable[[dict[str, Any], dict[str, Any], str], None] | None = None,
                   ) -> tuple[dict[str, Any], list[Served]]:
    """Serve `versions` behind the router; return the router's address and how each endpoint settled.

    `timeout` is how long each server has to listen once its environment is ready; `progress`
    hears (version, endpoint, line) while environments are made.
    """
    timeout = timeout or START_TIMEOUT_S
    router = ensure_router(ctx, port=router_port)
    started = []
    for version in versions:
        deployment_rows.set_enabled(ctx.db, version["id"], True)
        for endpoint in deployment_rows.endpoints_of(ctx.db, version["id"]):
            if endpoint["status"] not in ("starting", "running"):
                start_endpoint(ctx, endpoint, timeout)
            started.append((version, endpoint["id"]))
    by_id = {endpoint_id: version for version, endpoint_id in started}
    follow = (lambda endpoint, line: progress(by_id[endpoint["id"]], endpoint, line)) if progress else None
    settled = wait_settled(ctx, [endpoint_id for _, endpoint_id in started],
                           timeout + ctx.settings.stop_grace + VERDICT_MARGIN_S, follow)
    return router, [Served(version, endpoint) for (version, _), endpoint in zip(started, settled)]


def stop_versions(ctx: Context, versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stop every endpoint of `versions` and mark them disabled; return the endpoints as they ended."""
    endpoints = []
    for version in versions:
        deployment_rows.set_enabled(ctx.db, version["id"], False)
        endpoints += deployment_rows.endpoints_of(ctx.db, version["id"])
    return _stop(ctx, endpoints)


def stop_everything(ctx: Context) -> tuple[list[dict[str, Any]], bool]:
    """Every running endpoint of every project, then the router; True if a router was stopped."""
    reconcile_endpoints(ctx)
    ended = _stop(ctx, deployment_rows.active_endpoints(ctx.db))
    return ended, stop_router(ctx)


def _stop(ctx: Context, endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for endpoint in endpoints:
        stop_endpoint(ctx, endpoint)
    return wait_settled(ctx, [e["id"] for e in endpoints], ctx.settings.stop_grace + 10)
