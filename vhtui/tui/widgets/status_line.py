"""A one-line status under a list: repainting it never costs a layout pass (Static.update does)."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widget import Widget


class StatusLine(Widget):
    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    """

    text = reactive("", layout=False)

    def render(self) -> str:
        return self.text
