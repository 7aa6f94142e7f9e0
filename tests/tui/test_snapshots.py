"""A snapshot of every screen (pytest-textual-snapshot), on the seeded, deterministic store.

Update after an intended change with `scripts/screenshots.sh` (it also rewrites screenshots/).
"""

from __future__ import annotations

import pytest

from tests.tui.scenarios import SCENARIOS, Scenario, make_app


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_screen(snap_compare, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=scenario.size, run_before=scenario.before)
