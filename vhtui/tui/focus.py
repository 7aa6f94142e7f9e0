"""Giving a widget the keys at once, from the very next key.

Keys typed fast (or pasted) are queued: the app hands each to the widget focused *when the app
reads it*, before that widget has handled the ones ahead of it. So a key that moves focus to a
text field (`/`, `1`-`5`) must act as the app reads it: such bindings are `priority` bindings
(run by the app itself, in order), and the focus moves at once (`focus_now`; Textual's
`Widget.focus()` moves it later, through `call_later`). Before, `/status:bogus` typed quickly
fired the table's `s` (Stop) three times and its `o` (sort).

A priority binding sees its key even inside a text field: `typing` says when to leave it there.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, TextArea


def focus_now(widget: Widget) -> None:
    widget.screen.set_focus(widget)


def typing(screen: Screen[object]) -> bool:
    """True while a text field has the keys (a priority binding then lets its key be typed)."""
    return isinstance(screen.focused, (Input, TextArea))
