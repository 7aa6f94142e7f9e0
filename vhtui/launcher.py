"""A resident launcher: `vhtui run` without paying for Python's imports on every launch.

Most of a cold launch is starting the interpreter and importing valohai-yaml (with jsonschema)
and the engine. With `VHTUI_LAUNCHER=1`, `vhtui run` hands its arguments, working directory,
environment and terminal (its stdin, stdout and stderr, passed as file descriptors) to a launcher
process that has all of that loaded. The launcher forks a child per request, which becomes that
`vhtui run` in every way that matters and reports its exit code back; Ctrl-C is forwarded. The
first use starts the launcher (and runs cold); it exits after IDLE_S without requests, and refuses
requests once vhtui's code changed under it, so an upgrade never runs stale code.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IDLE_S = 600.0
STALE = -1000  # the exit code that says: my code is older than yours, run it yourself
_HEADER = struct.Struct(">I")


def enabled() -> bool:
    return os.environ.get("VHTUI_LAUNCHER", "").lower() in ("1", "true", "yes", "on")


def socket_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(runtime) / f"vhtui-launcher-{os.getuid()}.sock"


def code_stamp() -> float:
    """When vhtui's code last changed (its newest source file)."""
    newest = 0.0
    for package in (Path(__file__).parent, Path(__file__).parent.parent / "runners"):
        for path in package.rglob("*.py"):
            newest = max(newest, path.stat().st_mtime)
    return newest


# -- the client side (in `vhtui run`) --------------------------------------------------------------
def run_remotely(argv: list[str]) -> int | None:
    """The exit code of `vhtui argv` run by the launcher; None when there is none (run it here)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(socket_path()))
    except OSError:
        client.close()
        start_launcher()
        return None
    with client:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "code": code_stamp()}).encode()
        socket.send_fds(client, [_HEADER.pack(len(request)) + request], [0, 1, 2])
        reply = b""
        while len(reply) < 4:
            try:
                chunk = client.recv(4 - len(reply))
            except KeyboardInterrupt:
                client.sendall(b"I")  # Ctrl-C: the child gets it as if it were this process
                continue
            if not chunk:
                return None
            reply += chunk
    code = struct.unpack(">i", reply)[0]
    return None if code == STALE else code


def start_launcher() -> None:
    subprocess.Popen([sys.executable, "-m", "vhtui.launcher"], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


# -- the launcher ----------------------------------------------------------------------------
def serve() -> None:
    import valohai_yaml.objs  # noqa: F401  (the imports this process exists to keep loaded)

    import runners.docker  # noqa: F401
    import runners.local  # noqa: F401
    import vhtui.cli  # noqa: F401
    import vhtui.cli_run  # noqa: F401
    import vhtui.engine.launch  # noqa: F401
    import vhtui.engine.supervisor  # noqa: F401

    try:
        import docker  # noqa: F401  (the Docker runner's SDK: 150 ms a launch otherwise)
    except ImportError:
        pass
    stamp = code_stamp()
    path = socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        listener.bind(str(path))
    except OSError:
        return  # another launcher won the race
    os.chmod(path, 0o600)
    pid_file = path.with_suffix(".pid")
    pid_file.write_text(str(os.getpid()))
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    children: dict[socket.socket, int] = {}
    last_request = time.monotonic()
    try:
        while children or time.monotonic() - last_request < IDLE_S:
            for key, _ in selector.select(0.05):
                if key.data is None:
                    last_request = time.monotonic()
                    conn, _ = listener.accept()
                    child = _start_child(listener, conn, stamp)
                    if child is None:
                        return  # stale: this launcher's code is older than the caller's
                    children[conn] = child
                    selector.register(conn, selectors.EVENT_READ, child)
                elif conn_data := key.fileobj.recv(1):  # type: ignore[union-attr]
                    if conn_data == b"I":
                        os.kill(key.data, signal.SIGINT)
                else:
                    selector.unregister(key.fileobj)
            for conn, pid in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    try:
                        conn.sendall(struct.pack(">i", os.waitstatus_to_exitcode(status)))
                    except OSError:
                        pass
                    if _registered(selector, conn):
                        selector.unregister(conn)
                    conn.close()
                    del children[conn]
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


def _registered(selector: selectors.BaseSelector, conn: socket.socket) -> bool:
    try:
        selector.get_key(conn)
        return True
    except KeyError:
        return False


def _start_child(listener: socket.socket, conn: socket.socket, stamp: float) -> int | None:
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    size = _HEADER.unpack(message[:4])[0]
    body = message[4:]
    while len(body) < size:
        body += conn.recv(size - len(body))
    request: dict[str, Any] = json.loads(body)
    if request["code"] != stamp:
        conn.sendall(struct.pack(">i", STALE))
        conn.close()
        for fd in fds:
            os.close(fd)
        return None
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    code = 1
    try:
        listener.close()
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"], VHTUI_IN_LAUNCHER="1")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from vhtui.cli import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 (a forked child must never return into the launcher)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return None


if __name__ == "__main__":
    serve()
