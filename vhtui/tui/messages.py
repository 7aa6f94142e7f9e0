"""Messages that cross modules of the TUI, so that screens need not import the app to receive them.

A widget's own messages (`ExecutionTable.Opened`, `LogView.FollowChanged`, ...) stay nested in
the widget: Textual names their handlers after it (`on_execution_table_opened`), and whoever
handles them already imports the widget.
"""

from __future__ import annotations

from textual.message import Message


class StoreChanged(Message):
    """Another process committed to the store: refetch what is on screen."""
