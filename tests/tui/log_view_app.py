"""A tiny app hosting one LogView, for the functional tests and the snapshot (snap_compare loads
this file by path and builds `LogViewApp()`, which then shows a small deterministic sample log).

The app records the messages the view posts, so tests can assert on them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.message import Message

from vhtui.supervision.logfile import LogWriter
from vhtui.tui.widgets.log_view import LogView

SAMPLE = [
    ("stdout", b"\x1b[1mvhtui\x1b[0m sample log: colours, stderr, a progress bar, a tab\n"),
    ("stdout", b"epoch 1  loss \x1b[32m0.812\x1b[0m  acc \x1b[36m0.61\x1b[0m\n"),
    ("stderr", b"warning: \x1b[33mlearning rate\x1b[0m is high\n"),
    ("stderr", b"UserWarning: this line came from stderr\n"),
    ("stdout", b"epoch 2  loss \x1b[32m0.404\x1b[0m  acc \x1b[36m0.78\x1b[0m\n"),
    ("stdout", b"progress  10%\rprogress  60%\rprogress 100%\n"),
    ("stderr", b"\x1b[31mERROR\x1b[0m checkpoint dir missing, writing to ./tmp\n"),
    ("stdout", b"done\ttook 12.3 s " + b"-" * 90 + b" the end of a long line\n"),
]


def write_log(path: Path, records: list[tuple[str, bytes]]) -> None:
    writer = LogWriter(path)
    for stream, data in records:
        writer.write(stream, data)
    writer.close()


class LogViewApp(App[None]):
    def __init__(self, path: Path | None = None, **options: Any) -> None:
        super().__init__()
        if path is None:
            self._sample_dir = tempfile.TemporaryDirectory(prefix="vhtui-log-view-")
            path = Path(self._sample_dir.name) / "output.log"
            write_log(path, SAMPLE)
            options.setdefault("line_numbers", True)
        self.path = path
        self.options = options
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        yield LogView(self.path, **self.options)

    def on_log_view_follow_changed(self, message: LogView.FollowChanged) -> None:
        self.messages.append(message)

    def on_log_view_search_result(self, message: LogView.SearchResult) -> None:
        self.messages.append(message)
