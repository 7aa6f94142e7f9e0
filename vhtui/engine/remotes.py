"""Remote runners the user registered (`vhtui runner add`), and turning any runner name into a runner.

Registrations live in `$VHTUI_HOME/runners.json` (name, agent URL, token file, optional CA file),
written atomically. The token itself is never copied: it is read from its file at each use, so a
rotated token takes effect at once and no secret lands in the store.
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

BUILT_IN = ("local", "docker")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _path(ctx: Context) -> Path:
    return ctx.home.root / "runners.json"


def registered(ctx: Context) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(_path(ctx).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise VhtuiError(f"{_path(ctx)} is not valid JSON ({exc}): fix or remove it") from None


def _save(ctx: Context, runners: dict[str, dict[str, Any]]) -> None:
    tmp = _path(ctx).with_suffix(".tmp")
    tmp.write_text(json.dumps(runners, indent=2))
    os.replace(tmp, _path(ctx))


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


def remote_runner(ctx: Context, name: str) -> Any:
    entry = registered(ctx).get(name)
    if entry is None:
        raise NotFound(f"unknown runner {name!r} (available: {', '.join(names(ctx))})")
    verify: Any = True
    if entry.get("ca_file"):
        import ssl

        verify = ssl.create_default_context(cafile=entry["ca_file"])
    return get_runner("remote", url=entry["url"], token=read_token(entry["token_file"]), name=name, verify=verify)


def open_runner(ctx: Context, name: str) -> Runner:
    """The runner an execution names: built in, or a registered agent."""
    if name in BUILT_IN:
        return get_runner(name, envs_dir=ctx.home.envs)
    try:
        return remote_runner(ctx, name)  # type: ignore[no-any-return]
    except RunnerError as exc:
        raise VhtuiError(str(exc)) from None


HEALTH_HEADERS = ("name", "url", "health", "gpus", "free slots", "running", "queued")


def health(ctx: Context, name: str) -> dict[str, Any]:
    """One registered runner's health as its agent reports it; an error is a status, not a failure."""
    entry = registered(ctx)[name]
    try:
        host = remote_runner(ctx, name).call("GET", "/v1/host").json()
        return {"name": name, "url": entry["url"], "health": "ok", **host}
    except (RunnerError, VhtuiError) as exc:
        return {"name": name, "url": entry["url"], "health": str(exc)}


def health_of_all(ctx: Context) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:  # one slow agent must not hold up the rest
        return list(pool.map(lambda name: health(ctx, name), sorted(registered(ctx))))


def health_columns(row: dict[str, Any]) -> list[str]:
    """A health report as the CLI table and the TUI's runners screen show it (HEALTH_HEADERS)."""
    if row["health"] != "ok":
        return [row["name"], row["url"], row["health"], "", "", "", ""]
    gpus = ", ".join(f"{g['name'] or 'gpu'}#{g['index']}"
                     + (f" {g['utilization']}%" if g.get("utilization") is not None else "")
                     for g in row["gpus"]) or "none"
    return [row["name"], row["url"], f"ok ({row['hostname']}, {row['cpus']} CPUs)", gpus,
            f"{row['free_slots']}/{row['slots']}", str(row["running"]), str(row["queued"])]
