"""Starting a detached worker: its own session, so it outlives the shell, CLI or TUI that asked.

Every worker that owns something while nobody watches (an execution's supervisor, an endpoint's
server, the alias router, later task and pipeline orchestrators) is started here, one way:

- a single-threaded caller (the CLI) forks it when it can run in-process (`main` given): no second
  interpreter start and no second round of imports, which is most of a launch's cost;
- otherwise (the TUI has threads, and forking threads is unsafe) a fresh interpreter runs
  `python -m MODULE ARGS`.

Its stdout and stderr go to `log_path`, so a worker that fails says why there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

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
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the intermediate child exits at once; the grandchild is adopted by init
        return
    code = 1
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
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
