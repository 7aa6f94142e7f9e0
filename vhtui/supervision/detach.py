"""Starting a detached worker: its own session, so it outlives the shell, CLI or TUI that asked.

Every worker that owns something while nobody watches (an execution's supervisor, an endpoint's
server, the alias router, later task and pipeline orchestrators) is started here, one way:

- a single-threaded caller (the CLI) forks it when it can run in-process (`main` given): no second
  interpreter start and no second round of imports, which is most of a launch's cost;
- otherwise (the TUI has threads, and forking threads is unsafe) a fresh interpreter runs
  `python -m MODULE ARGS`.

Its stdout and stderr go to `log_path`, so a worker that fails says why there. A `Standby` is
the first kind forked ahead of time, for a caller that knows it is about to start one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from vhtui.store import Database


def start_detached(
    module: str, args: list[str], log_path: Path, home: Path, *,
    main: Callable[[list[str]], int] | None = None, db: Database | None = None,
) -> int | None:
    """Start `module` with `args` detached; return the pid of a fresh interpreter (None when forked,
    since the grandchild is adopted by init and reports its own pid where it records itself).

    `db`, the caller's connection, is closed across a fork (SQLite must not be open across one) and
    reopened after.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if main is not None and hasattr(os, "fork") and threading.active_count() == 1:
        if db is None:
            _fork(main, args, log_path, home)
        else:
            with db.closed_for_fork():
                _fork(main, args, log_path, home)
        return None
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True, env=dict(os.environ, VHTUI_HOME=str(home)),
        )
    return process.pid


def _fork(main: Callable[[list[str]], int], args: list[str], log_path: Path, home: Path) -> None:
    if _detached_child():
        _run_as_worker(main, args, log_path, home)


def _detached_child() -> bool:
    """Fork twice; True in the grandchild (in a session of its own, adopted by init), False in the
    caller once the intermediate child has exited."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the intermediate child exits at once
        return False
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
    except BaseException:  # noqa: BLE001 (nothing may escape a forked child)
        os._exit(1)
    return True


def _run_as_worker(main: Callable[[list[str]], int], args: list[str], log_path: Path, home: Path) -> NoReturn:
    """In a detached child: stdin from /dev/null, stdout and stderr to the log, then `main`."""
    code = 1
    try:
        os.environ["VHTUI_HOME"] = str(home)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        code = main(args)  # it opens its own connection to the store
    except BaseException:  # noqa: BLE001 (nothing may escape a forked child)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Standby:
    """A detached worker forked before its work exists, so that its imports overlap the caller's
    own work (validating, packaging, writing the row) instead of following it, and no store
    connection is open when it forks. `hand_over` gives it its work; `cancel` (or the caller's
    death) makes it exit having done nothing.
    """

    def __init__(self, warm: Callable[[], Callable[[list[str]], int]], home: Path) -> None:
        """`warm` imports what the worker needs and returns its main; it runs in the worker."""
        self.handed_over = False
        read, self._write = os.pipe()
        if not _detached_child():
            os.close(read)
            return
        os.close(self._write)
        null_fd = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # nothing reaches the caller's terminal: the log is not known yet
            os.dup2(null_fd, fd)
        try:
            main = warm()
            with os.fdopen(read, "rb") as pipe:
                order = pipe.read()
        except BaseException:  # noqa: BLE001 (nothing may escape a forked child)
            os._exit(1)
        if not order:
            os._exit(0)  # cancelled, or the caller died before handing anything over
        work = json.loads(order)
        _run_as_worker(main, work["args"], Path(work["log"]), home)

    @classmethod
    def start(cls, warm: Callable[[], Callable[[list[str]], int]], home: Path) -> Standby | None:
        """A standby worker, or None where forking is not safe (threads running) or possible."""
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return None
        return cls(warm, home)

    def hand_over(self, args: list[str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(self._write, "wb") as pipe:
            pipe.write(json.dumps({"args": args, "log": str(log_path)}).encode())
        self.handed_over = True

    def cancel(self) -> None:
        """It exits having done nothing (safe to repeat)."""
        if not self.handed_over and self._write >= 0:
            os.close(self._write)
            self._write = -1
