"""What the workbench shows once its store cannot be read (damaged, removed, replaced): the reason,
in place of every screen, since what they showed may no longer be what the store holds."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label


class StoreLostScreen(Screen[None]):
    SUB_TITLE = "store lost"
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="store-lost"):
            yield Label("The workbench cannot read its store", classes="section-title")
            yield Label(self.reason, id="store-lost-reason")
            yield Label("What it showed may no longer be what the store holds, so it shows nothing more: "
                        "quit (q), put the store back or right, and start vhtui again.", classes="field-label")
        yield Footer()
