"""The workbench app: screens, global keys, the command palette, and watching the store.

The app holds no state the store does not have. It notices other processes' commits with SQLite's
`PRAGMA data_version` (a cheap read, polled twice a second), and its own writes, and tells the
active screen, which refetches only what it shows. A screen that was covered while things changed
is told the moment it shows again, so every list equals what the store holds whether or not it was
on screen. Every few seconds it reconciles crashed supervisors in a worker.

A store that can no longer be read (damaged, or removed or replaced under the open connection,
which would go on reading the old file) puts `StoreLostScreen` in place of every screen, whether
the poll notices it or a screen's own read fails first. Any other unhandled exception ends the app,
and `run_tui` raises it once the terminal is restored, so the CLI reports it as it reports any
command's crash: one line and a non-zero exit, the traceback in a file.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import partial
from pathlib import Path
from typing import Any, cast

from textual.app import App
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen
from textual import work
from textual.worker import WorkerFailed

from vhtui.context import Context
from vhtui.errors import StoreError, VhtuiError, did_you_mean
from vhtui.store import projects as project_rows
from vhtui.textfiles import read_text
from vhtui.tui.messages import StoreChanged


class WorkbenchCommands(Provider):
    """Ctrl+P: jump to `#N`, run a step, switch project, open any screen."""

    async def search(self, query: str) -> Hits:
        app = cast(VhtuiApp, self.app)
        matcher = self.matcher(query)
        for title, help_text, callback in app.palette_entries(query):
            score = matcher.match(title)
            if score > 0 or title.startswith(query.strip()):
                yield Hit(max(score, 0.5), matcher.highlight(title), callback, help=help_text)


class VhtuiApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "vhtui"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("P", "projects", "Projects", show=False, id="app.projects"),
        Binding("D", "data", "Data", id="app.data"),
        Binding("L", "launch", "Launch", show=False, id="app.launch"),
        Binding("E", "deployments", "Deployments", show=False, id="app.deployments"),
        Binding("R", "runners", "Runners", show=False, id="app.runners"),
    ]

    def __init__(
        self, ctx: Context, project_root: Path | None = None, watch_interval: float = 0.5,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.keymap = keymap or {}
        self.project_id: int | None = None
        self.project_root: Path | None = None
        self.watch_interval = watch_interval
        self._data_version: int | None = None
        self._own_writes = 0  # which do not move data_version for our own connection
        self._seen_by: weakref.WeakKeyDictionary[Screen[Any], tuple[int | None, int]] = weakref.WeakKeyDictionary()
        self.store_lost: str | None = None  # why the store can no longer be read, once it cannot
        self.crashed_with: BaseException | None = None
        self._loop_task: asyncio.Task[Any] | None = None
        if project_root is not None:
            self.project_id = project_rows.ensure(ctx.db, project_root)
            self.project_root = project_root

    def on_mount(self) -> None:
        self._loop_task = asyncio.current_task()  # where the app's own message loop runs
        self.set_keymap(self.keymap)
        self.set_interval(self.watch_interval, self._watch_store)
        self.set_interval(5.0, self._reconcile)
        if self.project_id is not None:
            self.open_project(self.project_id)
        else:
            from vhtui.tui.screens.projects import ProjectsScreen

            self.push_screen(ProjectsScreen())

    # -- store ----------------------------------------------------------------------------
    def _watch_store(self) -> None:
        """Tell the screen about other processes' commits, or show that the store is lost."""
        if self.store_lost is not None:
            return
        db = self.ctx.db
        if db.replaced():
            change = "replaced by another file" if db.path.exists() else "removed"
            self.show_store_lost(f"the store at {db.path} was {change} while the workbench was open")
            return
        try:
            version = db.data_version()
        except StoreError as exc:
            self.show_store_lost(str(exc))
            return
        self._data_version = version
        self._tell_screen()

    def _tell_screen(self) -> None:
        """Post StoreChanged to the active screen if the store changed since it last heard."""
        if self.store_lost is not None or not self.screen_stack:
            return
        screen = self.screen
        change = (self._data_version, self._own_writes)
        if self._seen_by.get(screen) != change:
            self._seen_by[screen] = change
            screen.post_message(StoreChanged())

    def pop_screen(self) -> Any:
        """The screen shown again learns at once what changed while it was covered."""
        result = super().pop_screen()
        self.call_later(self._tell_screen)
        return result

    def show_store_lost(self, reason: str) -> None:
        """Replace every screen by the reason (once): they show what the store held."""
        from vhtui.tui.screens.store_lost import StoreLostScreen

        if self.store_lost is not None:
            return
        self.store_lost = reason
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(StoreLostScreen(reason))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Without a readable store only quitting and help are left: every other screen reads it."""
        return self.store_lost is None or action in ("quit", "help")

    async def run_action(self, action: str, default_namespace: DOMNode | None = None) -> bool:
        """Every key's action runs in the app's own message loop, which an unhandled error would
        stop for good: a store error of one shows the store-lost screen instead."""
        try:
            return await super().run_action(action, default_namespace)
        except StoreError as exc:
            self.show_store_lost(str(exc))
            return True

    def _handle_exception(self, error: Exception) -> None:
        """Textual's one funnel for exceptions nothing handled (in a handler, a timer, a worker).

        A store error in a screen or a worker becomes the store-lost screen, which also takes
        away the screen whose handler failed (Textual stops a widget's message loop at its first
        unhandled error). One in the app's own loop ends the app, as that loop has stopped (the
        app's handlers catch theirs, `run_action` those of actions). Anything else ends the app
        as Textual ends it, but the traceback, which Textual prints with local variables, is
        kept for `run_tui` to raise instead."""
        cause = error.error if isinstance(error, WorkerFailed) else error
        if isinstance(cause, StoreError) and asyncio.current_task() is not self._loop_task:
            self.show_store_lost(str(cause))
            return
        self.crashed_with = self.crashed_with or cause  # the first, as Textual reports it
        super()._handle_exception(error)
        self._exit_renderables.clear()

    def store_changed_here(self) -> None:
        """Our own writes do not move data_version for our connection: announce them (to the
        screens under this one too, once they show)."""
        self._own_writes += 1
        self._tell_screen()

    @work(thread=True, exclusive=True, group="reconcile")
    def _reconcile(self) -> None:
        from vhtui.engine.reconcile import reconcile

        if self.store_lost is not None or self.ctx.db.replaced():
            return  # a new connection would make a new, empty store where one was removed
        ctx = self.ctx.with_new_connection()
        try:
            if reconcile(ctx):
                self.call_from_thread(self.store_changed_here)
        finally:
            ctx.db.close()

    # -- navigation -----------------------------------------------------------------------
    def open_project(self, project_id: int) -> None:
        from vhtui.tui.screens.executions import ExecutionsScreen

        project = project_rows.get(self.ctx.db, project_id)
        if project is None:
            self.notify(f"no project {project_id}", severity="error")
            return
        self.project_id = project_id
        self.project_root = Path(project["path"])
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(ExecutionsScreen(project_id))

    def open_execution(self, execution_id: int) -> None:
        from vhtui.tui.screens.execution import ExecutionScreen

        self.push_screen(ExecutionScreen(execution_id))

    def open_launch(self, step: str | None = None, prefill: dict[str, Any] | None = None) -> None:
        from vhtui.tui.screens.launch import LaunchScreen

        if self.project_root is None:
            self.notify("open a project first", severity="warning")
            return
        try:
            self.push_screen(LaunchScreen(self.project_root, step=step, prefill=prefill))
        except VhtuiError as exc:
            self.notify(str(exc), severity="error", timeout=8)

    def action_help(self) -> None:
        from vhtui.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.screen))

    def action_projects(self) -> None:
        from vhtui.tui.screens.projects import ProjectsScreen

        self.push_screen(ProjectsScreen())

    def action_data(self) -> None:
        from vhtui.tui.screens.data import DataScreen

        if self.project_id is not None:
            self.push_screen(DataScreen(self.project_id))

    def action_launch(self) -> None:
        self.open_launch()

    def action_runners(self) -> None:
        from vhtui.tui.screens.runners import RunnersScreen

        self.push_screen(RunnersScreen())

    def action_deployments(self) -> None:
        from vhtui.tui.screens.deployments import DeploymentsScreen

        if self.project_id is not None:
            self.push_screen(DeploymentsScreen(self.project_id))

    # -- command palette ------------------------------------------------------------------
    def palette_entries(self, query: str) -> list[tuple[str, str, Any]]:
        from vhtui.project import load_config
        from vhtui.store import executions as execution_rows

        entries: list[tuple[str, str, Any]] = []
        text = query.strip().lstrip("#")
        if self.project_id is not None and text.isdigit():
            execution = execution_rows.get_by_counter(self.ctx.db, self.project_id, int(text))
            if execution:
                entries.append((f"#{execution['counter']} {execution['step']} ({execution['status']})",
                                "open this execution", partial(self.open_execution, execution["id"])))
        if self.project_root is not None:
            try:
                steps = list(load_config(self.project_root / "valohai.yaml").steps)
            except VhtuiError:
                steps = []
            entries += [(f"run {step}", "open the launch form for this step", partial(self.open_launch, step))
                        for step in steps]
        entries += [(f"project {p['name']}", p["path"], partial(self.open_project, p["id"]))
                    for p in project_rows.list_all(self.ctx.db)]
        entries += [("screen: projects", "all projects", self.action_projects),
                    ("screen: data", "every datum of this project", self.action_data),
                    ("screen: launch", "launch an execution", self.action_launch),
                    ("screen: deployments", "versions, aliases; compare two aliases", self.action_deployments),
                    ("screen: runners", "local, Docker and remote agents: health, GPUs, slots", self.action_runners),
                    ("screen: help", "keys of the current screen", self.action_help)]
        return entries


def load_keymap(path: Path) -> dict[str, str]:
    """`binding-id = "keys"` lines, so any key can be remapped (ids are listed by `?`); an id that
    names no binding, or keys that are not text, is one line (Textual would ignore it silently)."""
    if not path.exists():
        return {}
    import tomllib

    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise VhtuiError(f"{path} is not valid TOML: {exc}") from None
    known = binding_ids()
    for binding_id, keys in data.items():
        if binding_id not in known:
            raise VhtuiError(f"{path}: {binding_id!r}: no binding with that id{did_you_mean(binding_id, sorted(known))}"
                             " (`?` lists each screen's ids)")
        if not isinstance(keys, str) or not keys.strip():
            raise VhtuiError(f"{path}: {binding_id!r} must name keys as text, like \"ctrl+x\"")
    return dict(data)


def binding_ids() -> set[str]:
    """Every binding id of the app, its screens and its widgets."""
    import importlib
    import pkgutil

    from vhtui.tui import screens, widgets

    found = {b.id for b in VhtuiApp.BINDINGS if isinstance(b, Binding) and b.id}
    for package in (screens, widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for value in vars(module).values():
                if isinstance(value, type) and value.__module__ == module.__name__:
                    found |= {b.id for b in getattr(value, "BINDINGS", []) if isinstance(b, Binding) and b.id}
    return found


def run_tui(project_root: Path | None) -> int:
    """The workbench, until it quits; what crashed it is raised here, once the terminal is back."""
    ctx = Context.open()
    app = VhtuiApp(ctx, project_root, keymap=load_keymap(ctx.home.keymap_file))
    app.run()
    if app.crashed_with is not None:
        raise app.crashed_with
    return app.return_code or 0
