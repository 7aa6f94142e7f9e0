"""Moving an alias and mirroring one alias's traffic to another: the rules, for every caller.

An alias moves only to a version that is serving (every endpoint running), unless forced; a mirror
joins two aliases the deployment has. The CLI and the TUI both come through here, so they enforce
the same rules, and the router is told at once.
"""

from __future__ import annotations

from typing import Any

from vhtui.context import Context
from vhtui.deploy.router import notify_router
from vhtui.deploy.versions import check_name
from vhtui.errors import NotFound, VhtuiError
from vhtui.store import deployments as deployment_rows


def set_alias(ctx: Context, deployment: dict[str, Any], alias: str, version_name: str,
              force: bool = False) -> dict[str, Any]:
    """Point `alias` at a version, atomically; return the version."""
    check_name("alias", alias)
    version = deployment_rows.get_version(ctx.db, deployment["id"], version_name)
    if version is None:
        raise NotFound(f"deployment {deployment['name']!r} has no version {version_name!r}")
    down = [e["name"] for e in deployment_rows.endpoints_of(ctx.db, version["id"]) if e["status"] != "running"]
    if down and not force:
        raise VhtuiError(f"version {version_name!r} is not serving ({', '.join(down)} not running): "
                         f"`vhtui deploy start {deployment['name']} {version_name}` first, or --force")
    deployment_rows.set_alias(ctx.db, deployment["id"], alias, version["id"])
    notify_router(ctx)
    return version


def set_mirror(ctx: Context, deployment: dict[str, Any], source: str, target: str | None) -> None:
    """Copy `source`'s traffic to `target` (None: stop mirroring); both must be aliases of it."""
    aliases = {a["name"] for a in deployment_rows.aliases_of_deployment(ctx.db, deployment["id"])}
    for alias in filter(None, (source, target)):
        if alias not in aliases:
            raise NotFound(f"deployment {deployment['name']!r} has no alias {alias!r}")
    if target == source:
        raise VhtuiError(f"alias {source!r} cannot mirror to itself")
    deployment_rows.set_mirror(ctx.db, deployment["id"], source, target)
    notify_router(ctx)
