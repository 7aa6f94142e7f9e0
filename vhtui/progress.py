"""Progress for long work (fetching inputs, packaging, storing outputs).

Engine code reports through a `Progress` object and never prints; the CLI picks a bar on a
terminal and plain lines otherwise, the TUI its own widget, tests the silent default.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Protocol, TextIO
from collections.abc import Iterator


class Task(Protocol):
    def advance(self, amount: int) -> None: ...


class Progress:
    """The silent default."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield _NullTask()


class _NullTask:
    def advance(self, amount: int) -> None:
        pass


class LineProgress(Progress):
    """Plain lines for logs and pipes: one when sizeable work starts, one when slow work ends."""

    SIZEABLE = 16 << 20
    SLOW_S = 1.0

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        if total and total >= self.SIZEABLE:
            self.out.write(f"{description} ({_human(total)})...\n")
        started = time.monotonic()
        yield _NullTask()
        elapsed = time.monotonic() - started
        if elapsed >= self.SLOW_S:
            self.out.write(f"{description}: done in {elapsed:.1f}s\n")


class BarProgress(Progress):
    """A rich progress bar, for a terminal."""

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        from rich.progress import (BarColumn, DownloadColumn, Progress as RichProgress,
                                   TextColumn, TimeRemainingColumn, TransferSpeedColumn)

        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn()]
        with RichProgress(*columns, transient=True, console=_stderr_console()) as bar:
            task_id = bar.add_task(description, total=total)
            yield _RichTask(bar, task_id)


class _RichTask:
    def __init__(self, bar, task_id) -> None:  # type: ignore[no-untyped-def]
        self.bar, self.task_id = bar, task_id

    def advance(self, amount: int) -> None:
        self.bar.advance(self.task_id, amount)


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def for_terminal(stream: TextIO = sys.stderr) -> Progress:
    return BarProgress() if stream.isatty() else LineProgress(stream)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"

