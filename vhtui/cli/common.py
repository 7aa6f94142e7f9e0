"""What every command of the CLI shares: the context, the current project, tables and JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

from vhtui.context import Context
from vhtui.errors import NotFound, VhtuiError

STATUS_SYMBOLS = {"created": "·", "queued": "…", "started": "▶", "stopping": "■", "complete": "✔",
                  "error": "✖", "stopped": "■", "crashed": "☠"}


def open_context() -> Context:
    """The store, reconciled first: no command reports a run whose supervisor is long dead."""
    from vhtui.engine.reconcile import reconcile

    ctx = Context.open()
    reconcile(ctx)
    return ctx


def project_id(ctx: Context) -> int:
    """The store's id of the project around the current directory."""
    from vhtui.project import find_root
    from vhtui.store import projects as project_rows

    root = find_root()
    row = project_rows.find_by_path(ctx.db, root)
    if row is None:
        raise NotFound(f"no executions yet in the project at {root}")
    return int(row["id"])


def execution_by_ref(ctx: Context, ref: str) -> dict[str, Any]:
    """An execution of this project by its number, `3` or `#3`."""
    from vhtui.store import executions as execution_rows

    text = ref.lstrip("#")
    if not (text.isascii() and text.isdigit()):
        raise VhtuiError(f"{ref!r} is not an execution number (like 3 or #3)")
    number = int(text)
    execution = execution_rows.get_by_counter(ctx.db, project_id(ctx), number) if number < 2 ** 63 else None
    if execution is None:
        raise NotFound(f"no execution #{text} in this project")
    return execution


def print_log(ctx: Context, execution: dict[str, Any], stream: str | None = None,
              follow: bool = False) -> dict[str, Any]:
    """Print an execution's log (one stream, or both); with `follow`, until it has ended and every
    line is out. Returns the execution as it was last read."""
    import time

    from vhtui.engine.reconcile import reconcile
    from vhtui.store import executions as execution_rows
    from vhtui.store.executions import FINAL_STATUSES
    from vhtui.supervision.logfile import LogReader

    reader = LogReader(ctx.home.log_path(execution["id"]))
    out = sys.stdout.buffer
    offset = 0
    while True:
        row = execution_rows.get(ctx.db, execution["id"]) or execution
        for line_offset, line_stream, line in reader.read_lines(offset):
            if stream is None or line_stream == stream:
                out.write(line + b"\n")
            offset = line_offset + len(line) + 1
        out.flush()
        if not follow or (row["status"] in FINAL_STATUSES and reader.size() <= offset):
            return row
        reconcile(ctx)  # a supervisor that died meanwhile ends the follow instead of hanging it
        time.sleep(0.2)


def count_option(text: str) -> int:
    """An argparse type: a whole number from 0 to a billion."""
    import argparse

    if not (text.isascii() and text.isdigit()) or int(text) > 10 ** 9:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 1000000000, not {text!r}")
    return int(text)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str, allow_nan=False)  # strict JSON, whatever is stored
    sys.stdout.write("\n")


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


def short(value: Any) -> str:
    """A metric as a table cell: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
