"""The Docker Engine API over its socket, for the calls a run makes on its way.

Create, attach, start, wait, inspect, stop and remove are a handful of small JSON requests, but
docker-py brings requests and urllib3 with it, which cost a cold supervisor about 150 ms, as long
as `docker run` itself takes for a short command. So a run speaks HTTP/1.0 to the engine's socket
directly (one connection a request, closed by the engine after its answer, so a body is whatever
arrives before the end), and attaches with an HTTP/1.1 upgrade to the raw multiplexed stream.
Pulling a missing image, which needs registry credentials, stays with docker-py (runners.docker).

DOCKER_HOST may be unix:// (the default socket) or tcp:// without TLS; other transports (TLS,
ssh) are refused with a line saying so.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlencode

from runners import RunnerError

DEFAULT_HOST = "unix:///var/run/docker.sock"


class EngineError(RunnerError):
    """The engine answered with an error status; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def engine_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _unreachable(host: str, reason: object) -> RunnerError:
    return RunnerError(f"cannot reach the Docker engine at {host} ({reason}): start it with `sudo systemctl "
                       "start docker` (or run `dockerd`), or point DOCKER_HOST at a running one")


class Engine:
    """One Docker engine, addressed by DOCKER_HOST."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or engine_host()
        if os.environ.get("DOCKER_TLS_VERIFY") or not self.host.startswith(("unix://", "tcp://")):
            raise RunnerError(f"the docker runner speaks to an engine over unix:// or plain tcp:// (DOCKER_HOST is "
                              f"{self.host}): for an engine on another host, run `vhtui runner serve --backend "
                              "docker` there and add it with `vhtui runner add`")

    def connect(self, timeout: float | None = 60.0) -> socket.socket:
        try:
            if self.host.startswith("unix://"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self.host[len("unix://"):])
                return sock
            address, _, port = self.host[len("tcp://"):].rstrip("/").partition(":")
            return socket.create_connection((address, int(port or 2375)), timeout=timeout)
        except (OSError, ValueError) as exc:
            raise _unreachable(self.host, exc) from None

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                timeout: float | None = 60.0) -> Any:
        """One request; the decoded JSON answer (None when empty); EngineError for an error status.
        A `timeout` that passes raises TimeoutError."""
        text = self.call(method, path, query, body, timeout)
        return json.loads(text) if text.strip() else None

    def call(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
             timeout: float | None = 60.0) -> str:
        """One request; the answer's body as text."""
        target = path + (f"?{urlencode(query)}" if query else "")
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {target} HTTP/1.0\r\nHost: docker\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        with self.connect(timeout) as sock:
            try:
                sock.sendall(head.encode() + b"\r\n" + payload)
                chunks = []
                while data := sock.recv(1 << 16):
                    chunks.append(data)
            except TimeoutError:
                raise
            except OSError as exc:
                raise _unreachable(self.host, exc) from None
        status, text = _parse(b"".join(chunks))
        if status >= 400:
            try:
                message = json.loads(text).get("message") or text
            except ValueError:
                message = text
            raise EngineError(status, message.strip() or f"HTTP {status}")
        return text

    def ping(self) -> None:
        try:
            self.call("GET", "/_ping", timeout=10)
        except EngineError as exc:
            raise _unreachable(self.host, exc) from None
        except TimeoutError:
            raise _unreachable(self.host, "no answer within 10 s") from None

    def attach(self, container: str) -> socket.socket:
        """The container's multiplexed stdout and stderr, from before it starts to its end."""
        sock = self.connect(timeout=None)
        query = urlencode({"stream": 1, "stdout": 1, "stderr": 1})
        sock.sendall(f"POST /containers/{quote(container)}/attach?{query} HTTP/1.1\r\nHost: docker\r\n"
                     "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(1)  # byte by byte: the stream itself starts right after the headers
            if not data:
                sock.close()
                raise _unreachable(self.host, "the attach was cut")
            head += data
        status = int(head.split(b" ", 2)[1])
        if status not in (101, 200):
            sock.close()
            raise EngineError(status, f"cannot attach to container {container[:12]} (HTTP {status})")
        return sock

    # -- the calls a run makes ----------------------------------------------------------------
    def create(self, config: dict[str, Any]) -> str:
        return str(self.request("POST", "/containers/create", body=config)["Id"])

    def start(self, container: str) -> None:
        self.request("POST", f"/containers/{quote(container)}/start")

    def wait(self, container: str, timeout: float | None = None) -> dict[str, Any]:
        return self.request("POST", f"/containers/{quote(container)}/wait", timeout=timeout)  # type: ignore[no-any-return]

    def inspect(self, container: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{quote(container)}/json")  # type: ignore[no-any-return]

    def stop(self, container: str, grace: int) -> None:
        self.request("POST", f"/containers/{quote(container)}/stop", {"t": grace}, timeout=grace + 60)

    def remove(self, container: str) -> None:
        self.request("DELETE", f"/containers/{quote(container)}", {"force": 1})

    def containers(self, label: str) -> list[dict[str, Any]]:
        """Every container, running or not, that carries `label`."""
        return self.request("GET", "/containers/json",  # type: ignore[no-any-return]
                            {"all": 1, "filters": json.dumps({"label": [label]})})

    def has_image(self, image: str) -> bool:
        try:
            self.request("GET", f"/images/{quote(image, safe='/:@')}/json")
            return True
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise


def _parse(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise RunnerError(f"the Docker engine gave an answer that is not HTTP: {head[:80]!r}") from None
    return status, body.decode(errors="replace")
