"""What screens and actions use of the app, typed, without importing the app.

Textual types `screen.app` as a plain `App`; importing `VhtuiApp` to say more would be an import
loop (the app imports every screen). `workbench(app)` names the part of `VhtuiApp` they use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from textual.app import App

from vhtui.context import Context


@runtime_checkable
class Workbench(Protocol):
    """The workbench's context, the open project, and how to navigate and announce writes."""

    ctx: Context
    project_id: int | None
    project_root: Path | None

    def open_project(self, project_id: int) -> None: ...

    def open_execution(self, execution_id: int) -> None: ...

    def open_launch(self, step: str | None = None, prefill: dict[str, Any] | None = None) -> None: ...

    def store_changed_here(self) -> None: ...


def workbench(app: App[Any]) -> Workbench:
    """The app as the workbench it is (only `VhtuiApp` hosts the screens that call this)."""
    return cast(Workbench, app)
