"""The alias router: one reverse proxy on loopback for every deployment of this store.

`/<deployment>/<version or alias>/<endpoint>/<path>` is forwarded to that version's endpoint as
`/<path>`, exactly as the client sent it (the raw path: `%3F` stays `%3F`), with the prefix in
`X-VH-Prefix`, as Valohai does. The routing table is one immutable dict, rebuilt from SQLite
whenever another process commits (`PRAGMA data_version`, polled every 50 ms, or at once on
`POST /_vh/reload`) and swapped in with one assignment: each request reads the table once, so it
goes to the alias's old version or its new one, never to a half-moved alias, and requests in
flight finish where they started. Upstream connections are kept alive in one shared aiohttp
session (per request it costs well under half of what httpx's client did here).

Bodies stream, so the router's memory does not grow with them: a request body goes on as it
arrives (with its Content-Length, else chunked); an answer goes back as it comes, except one of
at most 1 MiB with a Content-Length, which is read whole and sent in one piece (the fast path).
Answers pass through byte for byte, compressed or not. Failures answer at once with JSON naming
what failed: 404 for an unknown deployment, version, alias or endpoint and 503 for a version
that is not running, both before a byte of the body is read (and the connection is closed, so
the client stops sending it); 413 for a body over the limit; 502 for a version that does not
answer; 504 after the read timeout. Mirroring copies requests and answers of up to 1 MiB.

Settings, from the environment of `deploy serve` (or of `deploy start`, which checks them before
it starts the router detached): `VHTUI_ROUTER_MAX_BODY`, the largest request body, in bytes or
with K, M or G (default 100M; `deploy serve --max-body`): a larger declared length is refused
with 413 before it is read, a chunked body once it passes the limit; `VHTUI_ROUTER_READ_TIMEOUT`,
seconds to wait for an endpoint's answer (default 60); `VHTUI_ROUTER_PORT` (default 8700).

Who is answered: the Host header must name this router (127.0.0.1, localhost or ::1, or the
address it is bound to; any port; an IP address too when it listens on all of them), else 403:
a web page that rebinds its own domain to 127.0.0.1 gets nothing through the visitor's browser.
`POST /_vh/reload` needs the token the router writes into its state file (`router.json`, 0600,
so only the store's owner reads it), which `notify_router` sends. One router serves a store: it
holds a lock on its state file while it runs, and a second `deploy serve` is refused, naming the
first, instead of rewriting the file and orphaning it (which also splits the request figures).

Run in the foreground with `vhtui deploy serve`; `deploy start` starts it detached when needed.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import httpx
from yarl import URL

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
READ_TIMEOUT_S = 60.0
MAX_BODY = 100 << 20
WHOLE = 1 << 20  # answers up to this size are read whole; mirrors copy bodies up to this size
LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1"))
ALL_ADDRESSES = frozenset(("0.0.0.0", "::", ""))
TOKEN_HEADER = "X-VH-Token"
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length"))
ANSWER_HOP_BY_HOP = HOP_BY_HOP - {b"content-length"}  # an answer's length passes through (HEAD included)
SIZE = re.compile(r"(\d+)([KMG]?)", re.IGNORECASE)


# -- settings -----------------------------------------------------------------------------------
def parse_port(text: str, what: str) -> int:
    """A router port from the command line or the environment (`what` says which)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise VhtuiError(f"{what} {text!r} is not a port: use 1 to 65535")
    return port


def parse_size(text: str, what: str) -> int:
    found = SIZE.fullmatch(text.strip())
    size = int(found[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[found[2].upper()] if found else 0
    if size <= 0:
        raise VhtuiError(f"{what} {text!r} is not a size: use bytes, or a number with K, M or G (100M)")
    return size


def parse_seconds(text: str, what: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise VhtuiError(f"{what} {text!r} is not a number of seconds above 0")
    return seconds


def human_size(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def default_port() -> int:
    text = os.environ.get("VHTUI_ROUTER_PORT")
    return parse_port(text, "VHTUI_ROUTER_PORT") if text else DEFAULT_PORT


@dataclass(frozen=True)
class Limits:
    """The router's settings from its environment (and `deploy serve --max-body`), checked before it
    starts, so a typo is the user's one line rather than a detached router's death."""

    read_timeout_s: float = READ_TIMEOUT_S
    max_body: int = MAX_BODY

    @classmethod
    def from_env(cls, max_body: str | None = None) -> Limits:
        timeout = os.environ.get("VHTUI_ROUTER_READ_TIMEOUT")
        body = max_body or os.environ.get("VHTUI_ROUTER_MAX_BODY")
        return cls(parse_seconds(timeout, "VHTUI_ROUTER_READ_TIMEOUT") if timeout else READ_TIMEOUT_S,
                   parse_size(body, "--max-body" if max_body else "VHTUI_ROUTER_MAX_BODY") if body else MAX_BODY)


# -- the routing table --------------------------------------------------------------------------
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


class Upload:
    """A request body passed on as it arrives, counted against the limit; its bytes are kept (up to
    WHOLE) only when a mirror needs a copy."""

    def __init__(self, first: dict[str, Any], receive: Any, limit: int, keep: bool) -> None:
        self.first = first
        self.receive = receive
        self.limit = limit
        self.size = 0
        self.kept: list[bytes] | None = [] if keep else None
        self.too_large = self.gone = self.done = False

    async def __aiter__(self) -> Any:
        message = self.first
        while True:
            if message["type"] == "http.disconnect":
                self.gone = True
                raise ConnectionAbortedError("the client went away while sending its body")
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self.limit:
                self.too_large = True
                raise ConnectionAbortedError("the body is over the limit")
            if self.kept is not None:
                if self.size > WHOLE:
                    self.kept = None
                else:
                    self.kept.append(chunk)
            if chunk:
                yield chunk
            if not message.get("more_body"):
                self.done = True
                return
            message = await self.receive()

    def body(self) -> bytes | None:
        """The whole body, if it was kept."""
        return b"".join(self.kept) if self.done and self.kept is not None else None


class Router:
    """The ASGI app. The table attribute is only ever replaced whole."""

    def __init__(self, database: Path, limits: Limits, token: str, host: str = DEFAULT_HOST) -> None:
        self.database = database
        self.limits = limits
        self.token = token.encode()
        self.hosts = LOOPBACK | {host.lower().strip("[]")}
        self.any_address = host in ALL_ADDRESSES
        if self.any_address:  # reached from other machines, by this one's names or any address
            self.hosts |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.recorder = RequestRecorder()
        self.client: aiohttp.ClientSession | None = None
        self.table = Table({}, {}, {}, frozenset())
        self.generation = 0
        self.notified = 0  # reloads asked for with the token
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        self.reader = open_database(self.database)
        self.writer = open_database(self.database)
        self.reload()
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=self.limits.read_timeout_s),
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

    def host_allowed(self, value: bytes) -> bool:
        name = host_name(value)
        return name is not None and (name in self.hosts or self.any_address and is_address(name))

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers: list[tuple[str, str]] = []
        host = length = None
        chunked = False
        for key, value in scope["headers"]:
            if key not in HOP_BY_HOP:
                headers.append((key.decode("latin-1"), value.decode("latin-1")))
            elif key == b"host":
                host = value
            elif key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = True
        unread = chunked or bool(length)  # a body still on its way: an early answer closes the connection
        if host is not None and not self.host_allowed(host):
            await _json(send, 403, {"error": f"the host {host.decode('latin-1')!r} is not this router's "
                                             "(DNS rebinding is refused)"}, close=unread)
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if raw.startswith(b"/_vh/"):
            await self._admin(scope, send)
            return
        table = self.table  # the one read of the table this request makes
        parts = raw.split(b"/", 4)
        if len(parts) < 4 or not all(parts[1:4]):
            await _json(send, 404, {"error": "expected /<deployment>/<version or alias>/<endpoint>/<path>"},
                        close=unread)
            return
        deployment, ref, endpoint = (segment(p) for p in parts[1:4])
        try:
            target = resolve(table, deployment, ref, endpoint)
        except RouteError as exc:
            await _json(send, exc.status, exc.detail, close=unread)
            return
        if length is not None and length > self.limits.max_body:
            await self._too_large(send, target)
            return
        message = await receive()
        mirror_alias = table.mirrors.get((deployment, ref))
        upload = None
        if message.get("more_body"):
            upload = Upload(message, receive, self.limits.max_body, keep=mirror_alias is not None)
            data: Any = upload
            if length is not None:
                headers.append(("Content-Length", str(length)))
        else:
            data = message.get("body") or None
            if data and len(data) > self.limits.max_body:
                await self._too_large(send, target)
                return
        headers.append(("X-VH-Prefix", b"/".join(parts[:4]).decode("latin-1") + "/"))
        method = scope["method"]
        query = scope["query_string"]
        started = time.perf_counter()
        answered = False
        try:
            async with self.client.request(  # type: ignore[union-attr]
                    method, upstream_url(target.port, parts, query), headers=headers, data=data,
                    allow_redirects=False) as response:
                status, size = response.status, response.content_length
                out = [(k, v) for k, v in response.raw_headers if k.lower() not in ANSWER_HOP_BY_HOP]
                content = None
                if size is not None and size <= WHOLE:
                    content = await response.read()
                else:
                    answered = True
                    await send({"type": "http.response.start", "status": status, "headers": out})
                    async for chunk in response.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, True)
            await self._failed(send, target, exc, upload, answered)
            return
        if content is None:
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": content})
        self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, status >= 500)
        body = data if upload is None else upload.body()
        if mirror_alias and content is not None and (upload is None or body is not None):
            asyncio.create_task(self._mirror(table, target, ref, mirror_alias, method, parts, query, headers, body,
                                             status, content))

    async def _failed(self, send: Any, target: Target, exc: Exception, upload: Upload | None, answered: bool) -> None:
        """Answer for an exchange with the endpoint that failed: 413 when it was our limit, 504 or 502."""
        name = f"version {target.version!r} of {target.deployment!r}"
        if answered:  # too late for an error answer: the client sees the connection close
            print(f"router: the answer of {name} broke off: {exc!r}", file=sys.stderr)
        elif upload is not None and upload.too_large:
            await self._too_large(send, target)
        elif upload is None or not upload.gone:
            timeout = isinstance(exc, asyncio.TimeoutError)
            failure = (f"did not answer within {self.limits.read_timeout_s:g}s" if timeout
                       else f"is not answering: {type(exc).__name__}")
            await _json(send, 504 if timeout else 502, {
                "error": f"{name} {failure}", "deployment": target.deployment, "version": target.version,
                "endpoint": target.endpoint}, close=upload is not None and not upload.done)

    async def _too_large(self, send: Any, target: Target) -> None:
        limit = self.limits.max_body
        await _json(send, 413, {"error": f"the request body is over the router's limit of {human_size(limit)} "
                                         "(VHTUI_ROUTER_MAX_BODY, or deploy serve --max-body)", "limit": limit,
                                "deployment": target.deployment, "version": target.version,
                                "endpoint": target.endpoint}, close=True)

    async def _mirror(self, table: Table, source: Target, alias: str, mirror_alias: str, method: str,
                      parts: list[bytes], query: bytes, headers: list[tuple[str, str]], body: bytes | None,
                      status: int, content: bytes) -> None:
        """Send a copy to the mirror alias; record whether both answered the same."""
        try:
            target = resolve(table, source.deployment, mirror_alias, source.endpoint)
            started = time.perf_counter()
            async with self.client.request(  # type: ignore[union-attr]
                    method, upstream_url(target.port, parts, query), headers=headers, data=body,
                    allow_redirects=False) as response:
                copy = await read_at_most(response, WHOLE)
            self.recorder.record(target.endpoint_id, (time.perf_counter() - started) * 1000, response.status >= 500)
            agreed = response.status == status and copy is not None and same_body(copy, content)
        except (RouteError, aiohttp.ClientError, asyncio.TimeoutError):
            agreed = False
        self.recorder.record_mirror(source.deployment_id, alias, mirror_alias, agreed)

    async def _admin(self, scope: dict[str, Any], send: Any) -> None:
        path = scope["path"]
        if path == "/_vh/reload" and scope["method"] == "POST":
            given = next((v for k, v in scope["headers"] if k == b"x-vh-token"), b"")
            if not hmac.compare_digest(given, self.token):
                await _json(send, 403, {"error": "a reload needs the router's token (from its state file)"})
                return
            self.notified += 1
            self.reload()
        if path in ("/_vh/health", "/_vh/reload"):
            await _json(send, 200, {"ok": True, "generation": self.generation, "notified": self.notified,
                                    "pid": os.getpid()})
        elif path == "/_vh/routes":
            table = self.table
            await _json(send, 200, {
                "versions": {f"{d}/{v}": {e: t.status for e, t in eps.items()} for (d, v), eps in table.versions.items()},
                "aliases": {f"{d}/{a}": v for (d, a), v in table.aliases.items()}})
        else:
            await _json(send, 404, {"error": f"no admin route {path}"})


def host_name(value: bytes) -> str | None:
    """The name in a Host header, without its port; None when it is not `name[:port]`."""
    host = value.decode("latin-1").lower()
    if host.startswith("["):
        name, _, port = host[1:].partition("]")
        port = port[1:] if port.startswith(":") else port or "0"
    elif host.count(":") > 1:  # a bare IPv6 address
        return host
    else:
        name, colon, port = host.partition(":")
        port = port if colon else "0"
    return name if port.isdigit() else None


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def segment(raw: bytes) -> str:
    """A routing segment of the raw path (deployment, version or alias, endpoint), decoded."""
    text = raw.decode("latin-1")
    return unquote(text) if "%" in text else text


def upstream_url(port: int | None, parts: list[bytes], query: bytes) -> URL:
    """The endpoint's URL: the raw path after the prefix and the query, as the client sent them."""
    rest = parts[4].decode("latin-1") if len(parts) > 4 else ""
    return URL(f"http://127.0.0.1:{port}/{rest}" + (f"?{query.decode('latin-1')}" if query else ""), encoded=True)


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The answer's body, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def same_body(a: bytes, b: bytes) -> bool:
    """Equal bytes, or equal JSON (key order and spacing do not count)."""
    if a == b:
        return True
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


async def _json(send: Any, status: int, payload: dict[str, Any], close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"connection", b"close")] if close else headers})
    await send({"type": "http.response.body", "body": body})


# -- the router process ------------------------------------------------------------------------
def check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise VhtuiError(f"the router cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            raise VhtuiError(f"the router's address {host}:{port} is in use by another program "
                             "(choose another with --port or VHTUI_ROUTER_PORT)") from None


def serve(ctx: Context, host: str, port: int, max_body: str | None = None) -> int:
    """Run the router in the foreground until SIGTERM or Ctrl-C."""
    import uvicorn

    limits = Limits.from_env(max_body)
    state = ctx.home.router_state
    fd = claim_state(state)
    try:
        check_port_free(host, port)
        token = secrets.token_urlsafe(32)
        pid, started = owner.me()
        os.ftruncate(fd, 0)
        record = {"pid": pid, "started": started, "host": host, "port": port, "token": token}
        os.pwrite(fd, json.dumps(record).encode(), 0)
        uvicorn.run(Router(ctx.home.database, limits, token, host), host=host, port=port, log_level="warning",
                    access_log=False, lifespan="on", backlog=2048)
    finally:
        state.unlink(missing_ok=True)  # ours: we hold its lock
        os.close(fd)
    return 0


def claim_state(path: Path) -> int:
    """The state file, open and locked for as long as this router runs; refused while another holds it.

    The file is written in place, never replaced, so the lock is on the file that readers read; one
    that a router ending now has just unlinked is let go and the claim starts again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.fchmod(fd, 0o600)
                return fd
        except BlockingIOError:
            os.close(fd)
            running = read_state(path)
            where = f" at {router_url(running)} (pid {running['pid']})" if running else f" ({path})"
            raise VhtuiError(f"a router is already running for this store{where}") from None
        except FileNotFoundError:
            pass
        os.close(fd)


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and {"pid", "host", "port"} <= state.keys() else None


def running_router(ctx: Context) -> dict[str, Any] | None:
    """The detached router's pid, host, port and token, if it is alive."""
    state = read_state(ctx.home.router_state)
    return state if state and owner.alive(state["pid"], state.get("started")) else None


def router_url(state: dict[str, Any]) -> str:
    host = state["host"]
    return f"http://{f'[{host}]' if ':' in host else host}:{state['port']}"


def ensure_router(ctx: Context, host: str = DEFAULT_HOST, port: int | None = None, timeout: float = 15.0) -> dict[str, Any]:
    """The running router, or a new detached one once it answers."""
    state = running_router(ctx)
    if state:
        return state
    Limits.from_env()  # a bad setting is refused here, not in the detached router's log
    port = port or default_port()
    check_port_free(host, port)
    log_path = ctx.home.router_log
    pid = start_detached("vhtui", ["deploy", "serve", "--host", host, "--port", str(port)], log_path, ctx.home.root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not owner.alive(pid, None):
            state = running_router(ctx)
            if state:  # another `deploy start` started one first, so ours gave way
                return state
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
            httpx.post(f"{router_url(state)}/_vh/reload", headers={TOKEN_HEADER: str(state.get("token", ""))},
                       timeout=2.0)
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
