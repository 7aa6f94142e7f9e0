"""The workbench when things go wrong: a store it cannot read, a store removed or replaced under it,
and a bug of its own, which must end the process with a non-zero exit and one line."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.widgets import Label

from tests.tui.waiting import settled, until
from vhtui import cli
from vhtui.context import Context
from vhtui.errors import StoreError
from vhtui.store import executions as execution_rows
from vhtui.store import open_database
from vhtui.tui.app import VhtuiApp, run_tui
from vhtui.tui.messages import StoreChanged
from vhtui.tui.screens.executions import ExecutionsScreen
from vhtui.tui.screens.store_lost import StoreLostScreen


def store_files(ctx: Context) -> list[Path]:
    database = ctx.home.database
    return [database, *(database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))]


def shown(app: App[Any]) -> str:
    return " ".join(str(label.render()) for label in app.screen.query(Label))


async def test_a_store_overwritten_with_garbage_is_a_message_not_a_crash(seeded: tuple[Context, Path]) -> None:
    """Once its write-ahead log is checkpointed, as when the last writer leaves, SQLite reads the
    store's own file again, and finds it is not a database (before, the app died on that)."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root, watch_interval=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        assert isinstance(app.screen, ExecutionsScreen)
        other = open_database(ctx.home.database)
        other.query("PRAGMA wal_checkpoint(TRUNCATE)")
        other.close()
        ctx.home.database.write_bytes(b"this is not a database\n" * 1000)
        await until(pilot, lambda: isinstance(app.screen, StoreLostScreen))
        await settled(pilot)
        assert f"the store at {ctx.home.database} is damaged" in shown(app)
        assert len(app.screen_stack) == 2  # nothing left that shows what the store held
        await pilot.press("D", "P", "R")  # every other screen reads the store: not offered
        assert isinstance(app.screen, StoreLostScreen)
        await pilot.press("q")
    assert app.return_code == 0  # a message the user read and quit on, not a crash


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_store_removed_or_replaced_under_the_app_is_said_on_screen(
        seeded: tuple[Context, Path], tmp_path: Path, how: str) -> None:
    """The app's connection goes on reading the old file, so it would show stale data for ever."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root, watch_interval=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)
        for path in store_files(ctx):
            path.unlink(missing_ok=True)
        if how == "replaced":
            other = tmp_path / "other" / "vhtui.sqlite3"
            other.parent.mkdir()
            open_database(other).close()
            os.replace(other, ctx.home.database)
        await until(pilot, lambda: isinstance(app.screen, StoreLostScreen))
        await settled(pilot)
        expected = "was removed" if how == "removed" else "was replaced by another file"
        assert f"the store at {ctx.home.database} {expected} while the workbench was open" in shown(app)
    assert ctx.home.database.exists() == (how == "replaced")  # no worker made a new store in its place


async def until_the_store_is_lost(app: VhtuiApp) -> None:
    """asyncio's wait, not the pilot's: the pilot waits for every widget of the screen to answer,
    which a widget whose handler failed never will (that screen is on its way out)."""
    deadline = time.monotonic() + 10
    while not isinstance(app.screen, StoreLostScreen):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("where", ["a key's action", "a screen's handler"])
async def test_a_read_that_fails_before_the_poll_looks_gives_way_to_the_message(
        seeded: tuple[Context, Path], monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The poll never looks here: the first read that fails shows the message, and the app goes
    on answering keys (a failed action would have stopped the app's own message loop for good)."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root, watch_interval=3600)
    async with app.run_test(size=(120, 30)) as pilot:
        await settled(pilot)

        def damaged(*args: Any, **kwargs: Any) -> None:
            raise StoreError(f"the store at {ctx.home.database} is damaged (database disk image is malformed)")

        monkeypatch.setattr(execution_rows, "page", damaged)
        if where == "a key's action":
            app.simulate_key("o")  # sorts again: the table reads its window
        else:
            app.screen.post_message(StoreChanged())
        await until_the_store_is_lost(app)
        await settled(pilot)
        assert "is damaged (database disk image is malformed)" in shown(app)
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape", "q")
    assert app.return_code == 0


@pytest.fixture
def broken_app(seeded: tuple[Context, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workbench with a bug in its home screen, run headless; returns the project's root."""
    ctx, root = seeded

    def broken(self: ExecutionsScreen) -> None:
        raise RuntimeError("a bug in the executions screen")

    monkeypatch.setattr(ExecutionsScreen, "on_mount", broken)
    monkeypatch.setattr(VhtuiApp, "run", lambda self: App.run(self, headless=True, size=(120, 30)))
    monkeypatch.chdir(root)
    ctx.home.root.chmod(0o700)  # as a home vhtui made itself: no note about it
    return root


def test_a_crash_of_the_workbench_is_raised_once_it_has_ended(
        broken_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Textual catches the exception, prints its traceback (with local variables) and returns: the
    process exited 0. run_tui raises it instead, for the CLI to report as any command's crash."""
    with pytest.raises(RuntimeError, match="a bug in the executions screen"):
        run_tui(broken_app)
    assert capsys.readouterr().err == ""


def test_a_crash_of_the_workbench_is_one_line_and_a_non_zero_exit(
        broken_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vhtui` with no command, as a user starts the workbench: the CLI's crash report."""
    code = cli.main([])
    assert code == cli.INTERNAL_ERROR
    [line] = capsys.readouterr().err.strip().splitlines()
    match = re.fullmatch(r"vhtui: internal error: RuntimeError: a bug in the executions screen "
                         r"\(the traceback is in (.+)\)", line)
    assert match, line
    report = Path(match[1]).read_text()
    assert "Traceback" in report and "in broken" in report
