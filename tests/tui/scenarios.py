"""Every screen of the workbench as a scenario: how to reach it from a fresh app on the seeded store.

The snapshot tests and `scripts/screenshots.py` both walk this list, so the pictures in the README
are exactly what the tests check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from textual.pilot import Pilot

from tests.tui import seed
from tests.tui.waiting import settled
from vhtui.tui.workbench import workbench


def _execution_id(pilot: Pilot[Any], counter: int) -> int:
    from vhtui.store import executions as execution_rows

    bench = workbench(pilot.app)
    assert bench.project_id is not None
    execution = execution_rows.get_by_counter(bench.ctx.db, bench.project_id, counter)
    assert execution is not None
    return int(execution["id"])


def _tab(counter: int, tab: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def go(pilot: Pilot[Any]) -> None:
        workbench(pilot.app).open_execution(_execution_id(pilot, counter))
        await settled(pilot)
        await pilot.press({"overview": "1", "logs": "2", "metadata": "3", "outputs": "4", "lineage": "5"}[tab])
        await settled(pilot)

    return go


async def _compare(pilot: Pilot[Any]) -> None:
    from vhtui.tui.screens.compare import CompareScreen

    pilot.app.push_screen(CompareScreen([_execution_id(pilot, c) for c in (2, 4)]))
    await settled(pilot)


async def _launch(pilot: Pilot[Any]) -> None:
    workbench(pilot.app).open_launch("train")
    await settled(pilot)


async def _keys(pilot: Pilot[Any], *keys: str) -> None:
    await pilot.press(*keys)
    await settled(pilot)


def _project_id(pilot: Pilot[Any]) -> int:
    project_id = workbench(pilot.app).project_id
    assert project_id is not None
    return project_id


async def _deployments(pilot: Pilot[Any]) -> None:
    from vhtui.tui.screens.deployments import DeploymentsScreen

    pilot.app.push_screen(DeploymentsScreen(_project_id(pilot), now=seed.T0 + 600))
    await settled(pilot)


async def _alias_compare(pilot: Pilot[Any]) -> None:
    """The seeded deployment's aliases; the answers pane is filled as a request to both would
    (no endpoint runs in a snapshot: tests/test_deploy.py sends real requests)."""
    from vhtui.tui.screens.alias_compare import AliasCompareScreen

    screen = AliasCompareScreen(_project_id(pilot), "predict-api", "production", "staging", now=seed.T0 + 600)
    pilot.app.push_screen(screen)
    await settled(pilot)
    screen.show_answers([
        {"alias": "production", "status": 200, "body": '{"y": 3.48, "model": "w=2.98"}', "latency_ms": 3.4},
        {"alias": "staging", "status": 200, "body": '{"y": 3.495, "model": "w=3.01"}', "latency_ms": 4.9},
    ])
    await settled(pilot)


def _pinned_health(ctx: Any) -> list[dict[str, Any]]:
    """The runners as the registry reports them, with what differs between machines pinned (this
    host's name, CPUs, GPUs and slots, whether a Docker engine runs): a picture must not depend on
    where it is taken. `vhtui runner ls` is tested on the real thing (tests/test_cli.py)."""
    from vhtui.engine import registry

    host = {"health": "ok", "hostname": "gpu-server", "cpus": 16, "slots": 4, "free_slots": 3,
            "gpus": [{"index": i, "name": "NVIDIA H100 80GB HBM3", "utilization": u} for i, u in ((0, 87), (1, 0))]}
    rows = registry.health_of_all(ctx)
    for row in rows:
        if row["name"] in registry.BUILT_IN:
            row.update(host, running=int(row["name"] == "local"), queued=0)
    return rows


async def _runners(pilot: Pilot[Any]) -> None:
    from vhtui.tui.screens.runners import RunnersScreen

    pilot.app.push_screen(RunnersScreen(ask=_pinned_health))
    await settled(pilot)


async def _store_lost(pilot: Pilot[Any]) -> None:
    """The seeded store removed under the open app, noticed by its next look at the store."""
    database = workbench(pilot.app).ctx.db.path
    for name in (database.name, database.name + "-wal", database.name + "-shm"):
        database.with_name(name).unlink(missing_ok=True)
    pilot.app._watch_store()
    await settled(pilot)


@dataclass
class Scenario:
    name: str
    before: Callable[[Pilot[Any]], Awaitable[None]] | None = None
    size: tuple[int, int] = (120, 32)
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = [
    Scenario("executions"),
    Scenario("executions-80x24", size=(80, 24)),
    Scenario("executions-filtered", lambda p: _keys(p, "slash", *"status:complete", "enter")),  # no blinking cursor
    Scenario("projects", lambda p: _keys(p, "P")),
    Scenario("execution-overview", _tab(2, "overview")),
    Scenario("execution-logs", _tab(2, "logs")),
    Scenario("execution-metadata", _tab(2, "metadata")),
    Scenario("execution-outputs", _tab(2, "outputs")),
    Scenario("execution-lineage", _tab(2, "lineage")),
    Scenario("launch", _launch, size=(120, 48)),
    Scenario("compare", _compare, size=(140, 40)),
    Scenario("data", lambda p: _keys(p, "D")),
    Scenario("help", lambda p: _keys(p, "question_mark"), size=(120, 40)),
    Scenario("deployments", _deployments),
    Scenario("alias-compare", _alias_compare, size=(140, 44)),
    Scenario("runners", _runners, size=(140, 24)),
    Scenario("store-lost", _store_lost, size=(100, 16)),
]


def make_app() -> Any:
    """A fresh app on a fresh seeded store at the fixed seed path."""
    import os

    from vhtui.tui.app import VhtuiApp

    ctx, root = seed.build()
    os.environ["VHTUI_HOME"] = str(ctx.home.root)
    return VhtuiApp(ctx, root, watch_interval=3600)  # no live refresh: pictures must be stable
