"""The alias router: one reverse proxy on loopback for every deployment of this store.

`/<deployment>/<version or alias>/<endpoint>/<path>` is forwarded to that version's endpoint as
`/<path>` (the prefix stripped, and given in `X-VH-Prefix`, as Valohai does). The routing table is
one immutable dict, rebuilt from SQLite whenever another process commits (`PRAGMA data_version`,
polled every 50 ms, or at once on `POST /_vh/reload`) and swapped in with one assignment: each
request reads the table once, so it goes to the alias's old version or its new one, never to a
half-moved alias, and requests in flight finish where they started. Upstream connections are kept
alive in one shared aiohttp session (per request it costs well under half of what httpx's client
did here, which was most of what the router added); bodies pass through as sent, compressed or
not. Failures answer at once with JSON naming what failed: 404 for an unknown deployment,
version, alias or endpoint; 503 for a version that is not running; 502 for one that does not
answer; 504 after the read timeout.

Run in the foreground with `vhtui deploy serve`; `deploy start` starts it detached when needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from vhtui.context import Context
from vhtui.deploy.metrics import RequestRecorder
from vhtui.errors import VhtuiError
from vhtui.store import deployments as deployment_rows
from vhtui.store import open_database
from vhtui.supervision import owner
from vhtui.supervision.detach import start_detached

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
POLL_S = 0.05
FLUSH_S = 1.0
READ_TIMEOUT_S = float(os.environ.get("VHTUI_ROUTER_READ_TIMEOUT", "60"))
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length"))


def default_port() -> int:
    return int(os.environ.get("VHTUI_ROUTER_PORT", DEFAULT_PORT))


@dataclass(frozen=True)
class Upstream:
    """An endpoint's answer: status, raw headers, body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    content: bytes


@dataclass(frozen=True)
class Target:
    deployment_id: int
    deployment: str
    version: str
    endpoint: str
    endpoint_id: int
    status: str
    port: int | None
    reason: str | None


@dataclass(frozen=True)
class Table:
    """(deployment, version) -> {endpoint: Target}; aliases -> version; mirrors (deployment, alias) -> alias."""

    versions: dict[tuple[str, str], dict[str, Target]]
    aliases: dict[tuple[str, str], str]
    mirrors: dict[tuple[str, str], str]
    deployments: frozenset[str]


def load_table(db: Any) -> Table:
    versions: dict[tuple[str, str], dict[str, Target]] = {}
    names: dict[int, str] = {}
    for r in deployment_rows.routing_rows(db):
        names[r["deployment_id"]] = r["deployment"]
        versions.setdefault((r["deployment"], r["version"]), {})[r["endpoint"]] = Target(
            r["deployment_id"], r["deployment"], r["version"], r["endpoint"], r["endpoint_id"], r["status"],
            r["port"], r["reason"])
    aliases, mirrors = {}, {}
    for a in deployment_rows.all_aliases(db):
        aliases[(names[a["deployment_id"]], a["name"])] = a["version"]
        if a["mirror_to"]:
            mirrors[(names[a["deployment_id"]], a["name"])] = a["mirror_to"]
    return Table(versions, aliases, mirrors, frozenset(names.values()))


class RouteError(Exception):
    def __init__(self, status: int, message: str, **detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = {"error": message, **detail}


def resolve(table: Table, deployment: str, ref: str, endpoint: str) -> Target:
    if deployment not in table.deployments:
        raise RouteError(404, f"no deployment {deployment!r}", deployment=deployment)
    version = ref if (deployment, ref) in table.versions else table.aliases.get((deployment, ref))
    if version is None:
        raise RouteError(404, f"deployment {deployment!r} has no version or alias {ref!r}",
                         deployment=deployment, version=ref)
    target = table.versions[(deployment, version)].get(endpoint)
    if target is None:
        raise RouteError(404, f"version {version!r} of {deployment!r} has no endpoint {endpoint!r}",
                         deployment=deployment, version=version, endpoint=endpoint)
    if target.status != "running" or not target.port:
        why = f": {target.reason}" if target.reason else ""
        raise RouteError(503, f"version {version!r} of {deployment!r} is {target.status}{why}",
                         deployment=deployment, version=version, endpoint=endpoint)
    return target


class Router:
    """The ASGI app. The table attribute is only ever replaced whole."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.recorder = RequestRecorder()
        self.client: aiohttp.ClientSession | None = None
        self.table = Table({}, {}, {}, frozenset())
        self.generation = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        self.reader = open_database(self.database)
        self.writer = open_database(self.database)
        self.reload()
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=READ_TIMEOUT_S),
            auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"))
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._flush())]

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.client:
            await self.client.close()
        self.recorder.flush(self.writer)

    def reload(self) -> None:
        self._data_version = self.reader.data_version()
        self.table = load_table(self.reader)
        self.generation += 1

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if self.reader.data_version() != self._data_version:
                self.reload()

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await asyncio.to_thread(self.recorder.flush, self.writer)
            except Exception as exc:  # noqa: BLE001 (a busy store must not stop the router)
                print(f"router: could not store request figures: {exc}", file=sys.stderr)

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if path.startswith("/_vh/"):
            await self._admin(path, scope["method"], send)
            return
        table = self.table  # the one read of the table this request makes
        parts = path.split("/", 4)
        if len(parts) < 4 or not all(parts[1:4]):
            await _json(send, 404, {"error": "expected /<deployment>/<version or alias>/<endpoint>/<path>"})
            return
        deployment, ref, endpoint = parts[1:4]
        rest = "/" + (parts[4] if len(parts) > 4 else "")
        try:
            target = resolve(table, deployment, ref, endpoint)
        except RouteError as exc:
            await _json(send, exc.status, exc.detail)
            return
        body = await _read_body(receive)
        prefix = f"/{deployment}/{ref}/{endpoint}/"
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        headers.append((b"x-vh-prefix", prefix.encode()))
        query = scope.get("query_string") or b""
        url = f"http://127.0.0.1:{target.port}{rest}" + (f"?{query.decode('latin-1')}" if query else "")
        started = time.perf_counter()
        try:
            response = await self._forward(scope["method"], url, headers, body)
        except asyncio.TimeoutError:
            self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, True)
            await _json(send, 504, {"error": f"version {target.version!r} of {deployment!r} did not answer within "
                                             f"{READ_TIMEOUT_S:g}s", "deployment": deployment,
                                    "version": target.version, "endpoint": endpoint})
            return
        except aiohttp.ClientError as exc:
            self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, True)
            await _json(send, 502, {"error": f"version {target.version!r} of {deployment!r} is not answering: "
                                             f"{type(exc).__name__}", "deployment": deployment,
                                    "version": target.version, "endpoint": endpoint})
            return
        self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, response.status >= 500)
        out_headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
        out_headers.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": response.content})
        mirror_alias = table.mirrors.get((deployment, ref))
        if mirror_alias:
            asyncio.create_task(self._mirror(table, target, ref, mirror_alias, scope, headers, body, response))

    async def _forward(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Upstream:
        """One request to an endpoint, its answer read whole."""
        async with self.client.request(  # type: ignore[union-attr]
                method, url, headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=body or None, allow_redirects=False) as response:
            return Upstream(response.status, list(response.raw_headers), await response.read())

    async def _mirror(self, table: Table, source: Target, alias: str, mirror_alias: str, scope: dict[str, Any],
                      headers: list[tuple[bytes, bytes]], body: bytes, answer: Upstream) -> None:
        """Send a copy to the mirror alias; record whether both answered the same."""
        try:
            target = resolve(table, source.deployment, mirror_alias, source.endpoint)
            path = scope["path"].split("/", 4)
            query = scope.get("query_string") or b""
            url = f"http://127.0.0.1:{target.port}/" + (path[4] if len(path) > 4 else "") + \
                (f"?{query.decode('latin-1')}" if query else "")
            started = time.perf_counter()
            response = await self._forward(scope["method"], url, headers, body)
            self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, response.status >= 500)
            agreed = response.status == answer.status and same_body(response.content, answer.content)
        except (RouteError, aiohttp.ClientError, asyncio.TimeoutError):
            agreed = False
        self.recorder.record_mirror(source.deployment_id, alias, mirror_alias, agreed)

    async def _admin(self, path: str, method: str, send: Any) -> None:
        if path == "/_vh/reload" and method == "POST":
            self.reload()
        if path in ("/_vh/health", "/_vh/reload"):
            await _json(send, 200, {"ok": True, "generation": self.generation, "pid": os.getpid()})
        elif path == "/_vh/routes":
            table = self.table
            await _json(send, 200, {
                "versions": {f"{d}/{v}": {e: t.status for e, t in eps.items()} for (d, v), eps in table.versions.items()},
                "aliases": {f"{d}/{a}": v for (d, a), v in table.aliases.items()}})
        else:
            await _json(send, 404, {"error": f"no admin route {path}"})


def same_body(a: bytes, b: bytes) -> bool:
    """Equal bytes, or equal JSON (key order and spacing do not count)."""
    if a == b:
        return True
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- the router process ------------------------------------------------------------------------
def check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise VhtuiError(f"the router's address {host}:{port} is in use by another program "
                             "(choose another with --port or VHTUI_ROUTER_PORT)") from None


def serve(ctx: Context, host: str, port: int) -> int:
    """Run the router in the foreground until SIGTERM or Ctrl-C."""
    import uvicorn

    check_port_free(host, port)
    state = ctx.home.router_state
    state.parent.mkdir(parents=True, exist_ok=True)
    pid, started = owner.me()
    state.write_text(json.dumps({"pid": pid, "started": started, "host": host, "port": port}))
    try:
        uvicorn.run(Router(ctx.home.database), host=host, port=port, log_level="warning", access_log=False,
                    lifespan="on", backlog=2048)
    finally:
        try:
            if json.loads(state.read_text()).get("pid") == os.getpid():  # ours, not a newer router's
                state.unlink()
        except (OSError, ValueError):
            pass
    return 0


def running_router(ctx: Context) -> dict[str, Any] | None:
    """The detached router's pid, host and port, if it is alive."""
    try:
        state = json.loads(ctx.home.router_state.read_text())
    except (OSError, ValueError):
        return None
    return state if owner.alive(state.get("pid"), state.get("started")) else None


def router_url(state: dict[str, Any]) -> str:
    return f"http://{state['host']}:{state['port']}"


def ensure_router(ctx: Context, host: str = DEFAULT_HOST, port: int | None = None, timeout: float = 15.0) -> dict[str, Any]:
    """The running router, or a new detached one once it answers."""
    state = running_router(ctx)
    if state:
        return state
    port = port or default_port()
    check_port_free(host, port)
    log_path = ctx.home.router_log
    pid = start_detached("vhtui", ["deploy", "serve", "--host", host, "--port", str(port)], log_path, ctx.home.root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not owner.alive(pid, None):
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise VhtuiError(f"the router did not start: {tail[0]}")
        try:
            httpx.get(f"http://{host}:{port}/_vh/health", timeout=0.5).raise_for_status()
            return {"pid": pid, "host": host, "port": port}
        except httpx.HTTPError:
            time.sleep(0.05)
    raise VhtuiError(f"the router did not answer on {host}:{port} within {timeout:.0f}s (see {log_path})")


def notify_router(ctx: Context) -> None:
    """Make a change visible now rather than at the router's next poll (best effort)."""
    state = running_router(ctx)
    if state:
        try:
            httpx.post(f"{router_url(state)}/_vh/reload", timeout=2.0)
        except httpx.HTTPError:
            pass


def stop_router(ctx: Context, timeout: float = 10.0) -> bool:
    state = running_router(ctx)
    if state is None:
        return False
    owner.signal_owner(state["pid"], state.get("started"), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and owner.alive(state["pid"], state.get("started")):
        time.sleep(0.05)
    return True
