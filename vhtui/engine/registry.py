"""Which runners exist, and turning a runner's name into a Runner.

`local` and `docker` run on this host; every other name is a runner agent the user registered
(`vhtui runner add`), kept in `$VHTUI_HOME/runners.json` (name, agent URL, token file, optional CA
file) and written atomically. A token itself is never copied: it is read from its file at each
use, so a rotated token takes effect at once and no secret lands in the store.

This is the one place that knows runners by name; everything else asks a runner what it can do.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from runners import Runner, RunnerError, get_runner
from vhtui.context import Context
from vhtui.errors import NotFound, VhtuiError
from vhtui.store import executions as execution_rows
from vhtui.textfiles import read_text

BUILT_IN = ("local", "docker")  # always there; a registered runner may not take these names
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def registered(ctx: Context) -> dict[str, dict[str, Any]]:
    """The registrations, checked for the shape `runner add` writes: a wrong one is one line."""
    path = ctx.home.runners_file
    if not path.exists():
        return {}
    try:
        runners = json.loads(read_text(path))
    except ValueError as exc:
        raise VhtuiError(f"{path} is not valid JSON ({exc}): fix or remove it") from None
    if not isinstance(runners, dict):
        raise VhtuiError(f"{path} must map runner names to their registrations (url, token_file): fix or remove it")
    for name, entry in runners.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) \
                or not isinstance(entry.get("token_file"), str):
            raise VhtuiError(f"{path}: runner {name!r} needs a url and a token_file (see `vhtui runner add`)")
    return runners


def _save(ctx: Context, runners: dict[str, dict[str, Any]]) -> None:
    path = ctx.home.runners_file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runners, indent=2))
    os.replace(tmp, path)


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise VhtuiError(f"cannot read the token file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise VhtuiError(f"the token in {path} is too short: use at least 16 characters")
    return token


def add(ctx: Context, name: str, url: str, token_file: str, ca_file: str | None = None) -> dict[str, Any]:
    if name in BUILT_IN or not NAME.match(name):
        raise VhtuiError(f"bad runner name {name!r}: lower-case letters, digits, '-' and '_', not local or docker")
    if not re.match(r"^https?://[^/]+", url):
        raise VhtuiError(f"bad agent URL {url!r}: use http://HOST:PORT or https://HOST:PORT")
    read_token(token_file)
    if ca_file and not Path(ca_file).is_file():
        raise VhtuiError(f"no CA file at {ca_file}")
    runners = registered(ctx)
    runners[name] = {"url": url.rstrip("/"), "token_file": str(Path(token_file).resolve()),
                     "ca_file": str(Path(ca_file).resolve()) if ca_file else None}
    _save(ctx, runners)
    return runners[name]


def remove(ctx: Context, name: str) -> None:
    runners = registered(ctx)
    if runners.pop(name, None) is None:
        raise NotFound(f"no runner named {name!r}")
    _save(ctx, runners)


def names(ctx: Context) -> list[str]:
    return [*BUILT_IN, *sorted(registered(ctx))]


def where(ctx: Context, name: str) -> str:
    """Where a runner runs things, as the runners listing says it."""
    if name in BUILT_IN:
        return "this host" if name == "local" else "this host's Docker engine"
    return str(registered(ctx)[name]["url"])


def has_env_mode(name: str) -> bool:
    """Whether a run's environment mode (`--env venv` or `current`) says anything about it: it is
    the local runner's choice of Python; a Docker image brings its own, and which backend an agent
    uses is its own business."""
    return name == "local"


def open_runner(ctx: Context, name: str) -> Runner:
    """The runner an execution names: built in, or a registered agent."""
    if name in BUILT_IN:
        return get_runner(name, envs_dir=ctx.home.envs, gpus=ctx.settings.gpus, state_dir=ctx.home.root,
                          sandbox=ctx.settings.local_sandbox)
    entry = registered(ctx).get(name)
    if entry is None:
        raise NotFound(f"unknown runner {name!r} (available: {', '.join(names(ctx))})")
    from runners.remote import trust_store

    try:
        verify: Any = trust_store(entry["ca_file"]) if entry.get("ca_file") else True
        return get_runner("remote", url=entry["url"], token=read_token(entry["token_file"]), name=name,
                          verify=verify)
    except RunnerError as exc:
        raise VhtuiError(str(exc)) from None


HEALTH_HEADERS = ("name", "where", "health", "gpus", "free slots", "running", "queued")


def health(ctx: Context, name: str) -> dict[str, Any]:
    """One runner's health as it reports it; an error is a status, not a failure. For runners of
    this host, the slots and counts come from the store (they share this host's slots)."""
    row: dict[str, Any] = {"name": name, "where": where(ctx, name)}
    if name not in BUILT_IN:
        row["url"] = row["where"]
    try:
        runner = open_runner(ctx, name)
    except VhtuiError as exc:
        return {**row, "health": str(exc), "gpus": []}
    row.update(runner.health())
    if runner.uses_host_slots and row["health"] == "ok":
        counts = execution_rows.active_by_runner(ctx.db)
        busy = sum(counts.get(n, {}).get(s, 0) for n in BUILT_IN for s in ("started", "stopping"))
        mine = counts.get(name, {})
        row.update(slots=ctx.settings.max_parallel, free_slots=max(0, ctx.settings.max_parallel - busy),
                   running=mine.get("started", 0) + mine.get("stopping", 0),
                   queued=mine.get("created", 0) + mine.get("queued", 0))
    return row


def health_of_all(ctx: Context) -> list[dict[str, Any]]:
    """Every runner's health, asked at once: one slow agent must not hold up the rest."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(name: str) -> dict[str, Any]:
        own = ctx.with_new_connection()  # sqlite connections are not shared between threads
        try:
            return health(own, name)
        finally:
            own.db.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(ask, names(ctx)))


def health_columns(row: dict[str, Any]) -> list[str]:
    """A health report as the CLI table and the TUI's runners screen show it (HEALTH_HEADERS)."""
    if row["health"] != "ok":
        return [row["name"], row["where"], row["health"], "", "", "", ""]
    gpus = ", ".join(f"{g['name'] or 'gpu'}#{g['index']}"
                     + (f" {g['utilization']}%" if g.get("utilization") is not None else "")
                     for g in row["gpus"]) or "none"
    health = f"ok ({row['hostname']}, {row['cpus']} CPUs)"
    if row.get("no_own_valohai"):  # a local run (here or on an agent) at real paths: why
        health += f"; no /valohai: {row['no_own_valohai']}"
    return [row["name"], row["where"], health, gpus,
            f"{row['free_slots']}/{row['slots']}", str(row["running"]), str(row["queued"])]
