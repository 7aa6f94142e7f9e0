"""Which port an endpoint's server is given, and which ports it really listens on.

Valohai runs each endpoint alone in its container, so real servers often just bind the declared
`port` (tensorflow-example's `greet` is `python -m wsgiref.simple_server`, always 8000) and never
read `$PORT`. Here versions share one host, so: a command that names its declared port gets a free
port (the number replaced in the command), as does a `wsgi:` endpoint (our server reads `$PORT`);
any other command gets its declared port while no other endpoint holds it and it can be bound,
and a free one otherwise. Claims are made under a lock on the deployments folder, so two
supervisors starting at once never both take the same declared port.

What a server listens on is read from /proc (the kernel's socket tables and the server's process
group), never by connecting to it: a server that answers one request and exits (simple_server's
demo does) must not have that request taken by a readiness check.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhtui.context import Context
from vhtui.store import deployments as deployment_rows

VALOHAI_DEFAULT_PORT = 8000  # an endpoint that declares no port is expected on Valohai's default
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def declared_port(spec: dict[str, Any]) -> int:
    return int(spec.get("port") or VALOHAI_DEFAULT_PORT)


def names_port(spec: dict[str, Any], port: int) -> bool:
    """True when the server command spells out `port` (so it can be given another)."""
    return any(port_pattern(port).search(line) for line in spec.get("server_command") or [])


def port_pattern(port: int) -> re.Pattern[str]:
    return re.compile(rf"(?<![\d.]){port}(?!\d)")


def free_port() -> int:
    """A port nothing listens on now; the endpoint binds it a moment later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bindable(port: int) -> bool:
    """True if a server could bind `port` on every address now (as simple_server's '' does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no hold
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Claim:
    """The port a server is given, its declared one, and who holds that when it was not free."""

    port: int
    declared: int
    holder: str | None = None  # "v1", "v1/greet", "web/v1/greet" or "another process (pid 12, nginx)"


def claim_port(ctx: Context, endpoint: dict[str, Any], version: dict[str, Any], deployment: dict[str, Any]) -> Claim:
    """Choose the endpoint's port (see the module's docstring) and record it as held."""
    spec = endpoint["spec"]
    declared = declared_port(spec)
    with _claims_locked(ctx.home.deployments):
        held = {e["port"]: e for e in deployment_rows.active_endpoints(ctx.db)
                if e["port"] and e["id"] != endpoint["id"]}
        holder = None
        if spec.get("wsgi") or names_port(spec, declared):
            port = _free_port_not_in(held)
        elif declared not in held and bindable(declared):
            port = declared
        else:
            holder = _describe_holder(ctx, held.get(declared), version, deployment, endpoint, declared)
            port = _free_port_not_in(held)
        deployment_rows.update_endpoint(ctx.db, endpoint["id"], port=port)
    return Claim(port, declared, holder)


def _free_port_not_in(held: dict[int, Any]) -> int:
    while (port := free_port()) in held:
        pass
    return port


@contextmanager
def _claims_locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _describe_holder(ctx: Context, holder: dict[str, Any] | None, version: dict[str, Any],
                     deployment: dict[str, Any], endpoint: dict[str, Any], port: int) -> str:
    if holder is None:
        pid = listener_pid(port)
        return "another process" + (f" (pid {pid[0]}, {pid[1]})" if pid else "")
    their_version = deployment_rows.get_version_by_id(ctx.db, holder["version_id"]) or {}
    theirs = deployment_rows.get_deployment_by_id(ctx.db, their_version.get("deployment_id", -1)) or {}
    name = their_version.get("name", "?")
    if theirs.get("id") != deployment["id"]:
        return f"{theirs.get('name', '?')}/{name}/{holder['name']}"
    return name if holder["name"] == endpoint["name"] else f"{name}/{holder['name']}"


# -- what is listening, from /proc ------------------------------------------------------------
def _listening() -> dict[str, int] | None:
    """Socket inode -> port of every listening TCP socket here; None where /proc cannot say."""
    found: dict[str, int] = {}
    readable = False
    for table in _TABLES:
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN:
                found[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return found if readable else None


def is_listening(port: int) -> bool:
    """True once something listens on `port`; where /proc cannot tell, a connection is tried."""
    table = _listening()
    if table is None:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0
    return port in table.values()


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _processes() -> Iterator[tuple[int, int, str]]:
    """(pid, process group, name) of every process that can be seen."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                head, _, tail = f.read().rpartition(b")")
            name = head.split(b"(", 1)[1].decode(errors="replace")
            yield int(entry.name), int(tail.split()[2]), name
        except (OSError, IndexError, ValueError):
            continue


def group_ports(pgid: int) -> set[int]:
    """The TCP ports the processes of group `pgid` listen on."""
    table = _listening() or {}
    inodes: set[str] = set()
    for pid, group, _ in _processes():
        if group == pgid:
            inodes |= _socket_inodes(pid)
    return {port for inode, port in table.items() if inode in inodes}


def listener_pid(port: int) -> tuple[int, str] | None:
    """(pid, name) of a process that listens on `port`, where this user may see it."""
    inodes = {inode for inode, p in (_listening() or {}).items() if p == port}
    if not inodes:
        return None
    for pid, _, name in _processes():
        if _socket_inodes(pid) & inodes:
            return pid, name
    return None
