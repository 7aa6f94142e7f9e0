"""A resident launcher: `vhtui run` without paying for Python's imports on every launch.

Most of a cold launch is starting the interpreter and importing valohai-yaml (with jsonschema)
and the engine. With `VHTUI_LAUNCHER=1`, `vhtui run` hands its arguments, working directory,
environment and terminal (its stdin, stdout and stderr, passed as file descriptors) to a launcher
process that has all of that loaded. The launcher forks a child per request, which becomes that
`vhtui run` in every way that matters. The first use starts the launcher (and runs cold); it exits
after IDLE_S without requests, and refuses requests once vhtui's code changed under it, so an
upgrade never runs stale code.

A launch happens exactly once, whatever the launcher does. The forked child, not the launcher,
owns the client's connection: it writes ACCEPTED (with its pid) before it does anything, then runs,
then writes EXITED with its exit code. So a connection that ends before ACCEPTED means nothing was
launched (the client runs it cold), and one that ends after ACCEPTED without EXITED means the child
died mid-launch (the client says so and never launches again). The client forwards Ctrl-C to the
child's pid itself, so the launcher may exit at any time.

Each request is one JSON line in a log beside the socket (private to the user, restarted with
each launcher): what was launched, by which child, or why it was refused.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

IDLE_S = 600.0
PRELOAD = ("valohai_yaml.objs", "runners.docker", "runners.local", "vhtui.cli", "vhtui.cli.run",
           "vhtui.engine.launch", "vhtui.engine.supervisor")  # what this process exists to keep loaded
_HEADER = struct.Struct(">I")  # the request's length
_MESSAGE = struct.Struct(">ci")  # what the child tells the client: a kind and a number
ACCEPTED, EXITED = b"A", b"X"  # ACCEPTED carries the child's pid, EXITED its exit code


def socket_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(runtime) / f"vhtui-launcher-{os.getuid()}.sock"


def log_path() -> Path:
    return socket_path().with_suffix(".log")


def code_stamp() -> float:
    """When vhtui's code last changed (its newest source file)."""
    newest = 0.0
    vhtui = Path(__file__).resolve().parent.parent
    for package in (vhtui, vhtui.parent / "runners"):
        for path in package.rglob("*.py"):
            newest = max(newest, path.stat().st_mtime)
    return newest


# -- the client side (in `vhtui run`) --------------------------------------------------------------
class _Answer:
    """The child's answer as it arrives; Ctrl-C is forwarded to the child once it has accepted."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.interrupted = False

    def on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if self.pid is not None:
            self._forward()

    def _forward(self) -> None:
        try:
            os.kill(self.pid, signal.SIGINT)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass

    def read(self, client: socket.socket) -> int | None:
        buffer = b""
        while True:
            try:
                chunk = client.recv(64)
            except OSError:  # a reset: the launcher went away
                chunk = b""
            if not chunk:
                return self._ended()
            buffer += chunk
            while len(buffer) >= _MESSAGE.size:
                kind, value = _MESSAGE.unpack(buffer[:_MESSAGE.size])
                buffer = buffer[_MESSAGE.size:]
                if kind == EXITED:
                    return value
                self.pid = value
                if self.interrupted:
                    self._forward()

    def _ended(self) -> int | None:
        if self.pid is None:  # nothing was launched
            return 130 if self.interrupted else None
        print(f"vhtui: error: the resident launcher's child (pid {self.pid}) died before it finished; "
              "the launch may have happened: check with `vhtui exec list`", file=sys.stderr)
        return 1


def run_remotely(argv: list[str]) -> int | None:
    """The exit code of `vhtui argv` run by the launcher; None when nothing was launched (run it here),
    130 when Ctrl-C came before anything was."""
    try:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "code": code_stamp()}).encode()
    except OSError:
        return None  # e.g. a deleted working directory: the cold launch says what is wrong
    data = _HEADER.pack(len(request)) + request
    answer = _Answer()
    previous = signal.signal(signal.SIGINT, answer.on_sigint)  # no KeyboardInterrupt mid-request
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            try:
                client.connect(str(socket_path()))
            except OSError:
                start_launcher()
                return 130 if answer.interrupted else None
            try:
                if _peer_uid(client) != os.getuid():
                    return None  # not our launcher: never hand it our environment
                sent = socket.send_fds(client, [data], [0, 1, 2])
                client.sendall(data[sent:])
            except OSError:
                return 130 if answer.interrupted else None  # it went away before it read the request
            return answer.read(client)
    finally:
        signal.signal(signal.SIGINT, previous)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def start_launcher() -> None:
    subprocess.Popen([sys.executable, "-m", "vhtui.cli.launcher"], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


# -- the launcher ----------------------------------------------------------------------------
def serve() -> None:
    path = socket_path()
    lock_fd = _lock(path.with_suffix(".lock"))
    if lock_fd is None:
        return  # another launcher is serving
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # a child imports it when it needs it: slower, never wrong
    stamp = code_stamp()
    listener = _listen(path)
    pid_file = path.with_suffix(".pid")
    pid_file.write_text(str(os.getpid()))
    os.close(os.open(log_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.chmod(log_path(), 0o600)
    last_request = time.monotonic()
    try:
        while time.monotonic() - last_request < IDLE_S:
            _reap_children()
            if not select.select([listener], [], [], 1.0)[0]:
                continue
            conn, _ = listener.accept()
            last_request = time.monotonic()
            with conn:
                if not _serve_one(conn, stamp, [listener.fileno(), lock_fd]):
                    return  # stale: this launcher's code is older than the caller's
    finally:
        path.unlink(missing_ok=True)  # while the lock is held: it can only be this launcher's socket
        pid_file.unlink(missing_ok=True)
        listener.close()


def _lock(path: Path) -> int | None:
    """One launcher per user: the lock is held for its whole life and released by its death."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a POSIX lock: forked children never hold it
    except OSError:
        os.close(fd)
        return None
    return fd


def _listen(path: Path) -> socket.socket:
    """Listen under a private temporary name, then move it into place: clients never meet a socket
    that is not listening yet, nor one that someone else could have connected to."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = path.with_suffix(".new")
    temporary.unlink(missing_ok=True)
    umask = os.umask(0o077)
    try:
        listener.bind(str(temporary))
    finally:
        os.umask(umask)
    listener.listen(16)
    os.replace(temporary, path)
    return listener


def _reap_children() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _log(entry: dict[str, Any]) -> None:
    line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}) + "\n"
    try:
        fd = os.open(log_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return  # the log is for looking back; it never stands in a launch's way
    try:
        os.write(fd, line.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def _serve_one(conn: socket.socket, stamp: float, inherited: list[int]) -> bool:
    """Fork a child for one request; False when the request is stale (the launcher must go)."""
    fds: list[int] = []
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = _read_request(conn, data, fds)
    except (OSError, ValueError) as exc:
        for fd in fds:
            os.close(fd)
        _log({"refused": f"unreadable request: {exc}"})
        return True
    if request["code"] != stamp:
        for fd in fds:
            os.close(fd)
        _log({"refused": "vhtui's code changed since this launcher started", "argv": request["argv"]})
        return False
    if os.fork() == 0:
        _child(conn, fds, request, inherited)
    for fd in fds:
        os.close(fd)
    return True  # the caller closes its copy of the connection: the child owns it now


def _read_request(conn: socket.socket, data: bytes, fds: list[int]) -> dict[str, Any]:
    while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack(data[:_HEADER.size])[0]:
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise ValueError("it ended early")
        data += chunk
    if len(fds) != 3:
        raise ValueError(f"{len(fds)} file descriptors, not 3")
    request: dict[str, Any] = json.loads(data[_HEADER.size:])
    return request


def _child(conn: socket.socket, fds: list[int], request: dict[str, Any], inherited: list[int]) -> NoReturn:
    """Become the client's `vhtui run`; never return into the launcher."""
    code = 1
    try:
        for fd in inherited:
            os.close(fd)
        # A supervisor this child forks must not hold the client's connection open: the client
        # learns of this child's death by the connection ending.
        os.register_at_fork(after_in_child=conn.close)
        try:
            conn.sendall(_MESSAGE.pack(ACCEPTED, os.getpid()))
        except OSError:
            os._exit(1)  # the client is gone: launch nothing
        _log({"pid": os.getpid(), "argv": request["argv"], "cwd": request["cwd"]})
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
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 (a forked child must never return into the launcher)
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 (e.g. a closed pipe; the exit code still goes back)
                pass
        try:
            conn.sendall(_MESSAGE.pack(EXITED, code))
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


if __name__ == "__main__":
    serve()
