"""The workbench's keyboard model, driven with the key sequences a new user types (pilot tests on
a seeded store): lists are always true, keys act on their first press, the header names the screen,
and what is typed after `/` goes to the filter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
import pytest
from typing import Any

from tests.tui.test_app import table
from tests.tui.waiting import until
from vhtui.context import Context
from vhtui.store import executions as execution_rows
from vhtui.tui.app import VhtuiApp
from vhtui.tui.screens.execution import ExecutionScreen
from vhtui.tui.screens.executions import ExecutionsScreen
from vhtui.tui.widgets.metadata_panel import MetadataPanel

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


async def open_execution(pilot: Any, app: VhtuiApp, counter: int) -> None:
    while table(app).row(table(app).cursor)["counter"] != counter:  # type: ignore[index]
        await pilot.press("j")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ExecutionScreen))


def footer_keys(app: VhtuiApp) -> set[str]:
    """The keys the footer lists now."""
    return {binding.key for (_, binding, enabled, _) in app.screen.active_bindings.values() if binding.show}


async def test_a_tabs_keys_act_the_moment_it_shows(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await open_execution(pilot, app, 4)  # the longer training run: its overview scrolls at 80x24
        screen = app.screen
        overview = screen.query_one("#overview-scroll")
        assert overview.max_scroll_y >= 2
        await pilot.press("j")
        assert overview.scroll_y == 1
        await pilot.press("k")
        assert overview.scroll_y == 0
        await pilot.press("pagedown")
        await until(pilot, lambda: overview.scroll_y == overview.max_scroll_y)

        await pilot.press("2")  # Logs: f (follow) acts at once, and the footer lists it
        log = screen.query_one("#log")
        assert log.has_focus and "f" in footer_keys(app)
        following = log.follow
        await pilot.press("f")
        assert log.follow is not following

        await pilot.press("3")  # Metadata: t (table) acts at once
        panel = screen.query_one(MetadataPanel)
        assert panel.has_focus_within and {"l", "m", "x", "t", "e"} <= footer_keys(app)
        await pilot.press("t")
        assert panel.query_one("#metadata-views").current == "metadata-table-view"

        for key, tab in (("4", "outputs"), ("1", "overview"), ("2", "logs"), ("5", "lineage"), ("3", "metadata")):
            await pilot.press(key)
            await pilot.pause(0.1)  # it used to snap back to Metadata about 50 ms later
            assert screen.query_one("TabbedContent").active == tab
            assert screen.query_one(f"#{tab}").has_focus_within


def header(app: VhtuiApp) -> str:
    from textual.widgets import Header

    return app.screen.query_one(Header).screen_sub_title


async def test_each_screen_names_itself_in_the_header_when_it_shows(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert header(app) == "quickstart"
        await pilot.press("space", "space", "c")  # compare #7 and #6
        await until(pilot, lambda: header(app) == "compare #6 #7")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ExecutionsScreen))
        assert header(app) == "quickstart"
        await open_execution(pilot, app, 2)
        assert header(app).startswith("#2 train · complete")
        await pilot.press("5", "enter")  # lineage: the producer of its input, #1
        await until(pilot, lambda: header(app).startswith("#1 preprocess"))
        await pilot.press("escape")
        await until(pilot, lambda: header(app).startswith("#2 train"))
        for key, name in (("D", "data · quickstart"), ("P", "projects"), ("R", "runners")):
            await pilot.press(key)
            await until(pilot, lambda: header(app) == name)
            await pilot.press("escape")
            await until(pilot, lambda: header(app).startswith("#2 train"))


KEY_NAMES = {"/": "slash", ":": "colon", "?": "question_mark", ".": "full_stop", "=": "equals_sign"}


async def type_fast(pilot: Any, text: str) -> None:
    """Keys as a fast typist or a paste sends them: all queued before the app handles the first
    (as the driver queues them; `pilot.press` waits for each to be handled)."""
    from textual import events

    for char in text:
        event = events.Key(KEY_NAMES.get(char, char), char)
        event.set_sender(pilot.app)
        pilot.app._driver.send_message(event)
    await pilot.pause()


async def test_keys_typed_right_after_slash_go_to_the_filter(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        sort = (table(app).query.sort, table(app).query.descending)
        await type_fast(pilot, "/status:bogus")
        await pilot.pause()
        assert app.screen.query_one("#filter").value == "status:bogus"
        assert isinstance(app.screen, ExecutionsScreen)  # no Stop dialog, no rerun form
        assert (table(app).query.sort, table(app).query.descending) == sort  # no `o`, no `O`
        assert not [n for n in app._notifications if "already ended" in n.message]
        await type_fast(pilot, "/x")  # in the field, `/` is typed like any other key
        assert app.screen.query_one("#filter").value == "status:bogus/x"


async def test_tab_keys_are_typed_inside_a_field(seeded: tuple[Context, Path]) -> None:
    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await open_execution(pilot, app, 2)
        await pilot.press("e")  # export: a field with the folder to write to
        box = app.screen.query_one("#outputs-input")
        await until(pilot, lambda: box.has_focus)
        await type_fast(pilot, "12")  # (the proposed folder is selected: typing replaces it)
        assert box.value == "12" and app.screen.query_one("TabbedContent").active == "outputs"


async def test_keys_typed_right_after_slash_go_to_the_request_in_alias_compare(seeded: tuple[Context, Path]) -> None:
    from vhtui.tui.screens.alias_compare import AliasCompareScreen

    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.project_id is not None
        app.push_screen(AliasCompareScreen(app.project_id, "predict-api", "production", "staging"))
        await until(pilot, lambda: isinstance(app.screen, AliasCompareScreen))
        await pilot.pause()
        screen = app.screen
        screen.show_answers = lambda answers: None  # type: ignore[method-assign]  # (nothing serves here)
        await type_fast(pilot, "/predict?x=0.5")
        assert app.screen is screen  # neither the training run (t) nor the help (?) opened
        assert screen.query_one("#request").value == "predict?x=0.5"


async def test_metadata_export_goes_under_the_store_not_into_the_project(seeded: tuple[Context, Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`e` in Metadata wrote `N-metadata.csv` into the project's tree, which the next launch's code
    snapshot took; it goes under $VHTUI_HOME/exports, and the notification says where."""
    ctx, root = seeded
    monkeypatch.chdir(root)  # the workbench opened in the project, as users open it
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await open_execution(pilot, app, 2)
        await pilot.press("3", "e")
        written = ctx.home.exports / "2-metadata.csv"
        await until(pilot, written.exists)
        assert not list(root.rglob("*-metadata.csv"))
        await until(pilot, lambda: any(str(written) in n.message for n in app._notifications))


async def test_a_mistyped_status_says_so_instead_of_a_silent_zero(seeded: tuple[Context, Path]) -> None:
    from vhtui.tui.widgets.status_line import StatusLine

    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"status:stoped")
        await until(pilot, lambda: "unknown status" in app.screen.query_one(StatusLine).text)
        assert app.screen.query_one(StatusLine).text == "unknown status 'stoped'; did you mean stopped?"
        await pilot.press("backspace", "backspace", *"ped")  # fixed: the message goes with its cause
        await until(pilot, lambda: app.screen.query_one(StatusLine).text.startswith("1 execution(s)"))


async def test_a_choice_with_a_default_offers_no_blank(seeded: tuple[Context, Path]) -> None:
    from textual.widgets import Select

    ctx, root = seeded
    app = VhtuiApp(ctx, root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_launch("train")
        await until(pilot, lambda: bool(app.screen.query("#param-optimizer")))
        optimizer = app.screen.query_one("#param-optimizer", Select)
        assert optimizer.value == "sgd" and not optimizer._allow_blank
        optimizer.value = "momentum"
        await pilot.pause()
        assert app.screen._raw_parameters()["optimizer"] == "momentum"
        assert str(app.screen.query_one("#error-optimizer").render()) == ""
