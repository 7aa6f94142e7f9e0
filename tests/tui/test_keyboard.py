"""The workbench's keyboard model, driven with the key sequences a new user types (pilot tests on
a seeded store): lists are always true, keys act on their first press, the header names the screen,
and what is typed after `/` goes to the filter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
import pytest

from tests.tui import seed
from tests.tui.waiting import until
from vhtui.context import Context
from vhtui.store import executions as execution_rows
from vhtui.tui.app import VhtuiApp
from vhtui.tui.screens.execution import ExecutionScreen
from vhtui.tui.screens.executions import ExecutionsScreen
from vhtui.tui.widgets.execution_table import ExecutionTable

REPO = Path(__file__).resolve().parents[2]

# another process's launch that runs to its end: a row created, then completed
ANOTHER_PROCESS = """
import sys, time
from vhtui.store import open_database, executions
from pathlib import Path
db = open_database(Path(sys.argv[1]))
row = executions.create(db, int(sys.argv[2]), {"step": "train", "runner": "local", "command": "true",
    "parameters": {"epochs": 3}, "code_version": {}, "environment": {}, "spec": {}, "title": sys.argv[3]}, [])
executions.update(db, row["id"], status="started", started_at=time.time())
executions.update(db, row["id"], status="complete", ended_at=time.time(), exit_code=0)
"""


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Context, Path]:
    ctx, root = seed.build(tmp_path / "seeded")
    monkeypatch.setenv("VHTUI_HOME", str(ctx.home.root))
    return ctx, root


def table(app: VhtuiApp) -> ExecutionTable:
    return app.screen.query_one(ExecutionTable)


def shown_counters(app: VhtuiApp) -> list[int]:
    t = table(app)
    return [t.row(i)["counter"] for i in range(t.total)]  # type: ignore[index]


def stored_counters(ctx: Context, project_id: int, sort: str, descending: bool) -> list[int]:
    rows = execution_rows.page(ctx.db, project_id, offset=0, limit=-1, sort=sort, descending=descending)
    return [row["counter"] for row in rows]


def launch_elsewhere(ctx: Context, project_id: int, title: str) -> None:
    subprocess.run([sys.executable, "-c", ANOTHER_PROCESS, str(ctx.home.database), str(project_id), title],
                   cwd=REPO, check=True)


@pytest.mark.parametrize("sort", ["counter", "title"])
async def test_home_shows_what_ended_while_another_screen_covered_it(seeded: tuple[Context, Path],
                                                                      sort: str) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        while table(app).query.sort != sort:
            await pilot.press("o")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ExecutionScreen))
        assert app.project_id is not None
        launch_elsewhere(ctx, app.project_id, "made while covered")
        await pilot.pause(0.3)  # polls happen while the execution screen is on top
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ExecutionsScreen) and table(app).total == 8)
        t = table(app)
        assert shown_counters(app) == stored_counters(ctx, app.project_id, t.query.sort, t.query.descending)


async def test_home_shows_the_apps_own_writes_made_while_covered(seeded: tuple[Context, Path]) -> None:
    """The launch form's writes are the app's own (data_version does not move for its connection)."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        while table(app).query.sort != "title":
            await pilot.press("o")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ExecutionScreen))
        assert app.project_id is not None
        for title in ("first from the form", "second from the form"):
            execution_rows.create(ctx.db, app.project_id, {
                "step": "train", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
                "environment": {}, "spec": {}, "title": title}, [])
            app.store_changed_here()  # as the launch form does after it launched
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ExecutionsScreen) and table(app).total == 9)
        t = table(app)
        assert shown_counters(app) == stored_counters(ctx, app.project_id, "title", t.query.descending)


async def test_a_count_begun_before_the_latest_change_is_not_taken(seeded: tuple[Context, Path]) -> None:
    """On a long history the total comes from a count in a worker; one that began before a newer
    reload (a launch, a filter) would hide the newest rows if it were taken."""
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        stale = t._generation
        t.reload()
        t._counted(3, stale)
        assert t.total == 7
        t._counted(7, t._generation)
        assert t.total == 7
