"""Regenerate screenshots/*.svg from the same scenarios the snapshot tests check."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.tui.scenarios import SCENARIOS, make_app  # noqa: E402


async def shoot(out: Path) -> None:
    out.mkdir(exist_ok=True)
    for scenario in SCENARIOS:
        app = make_app()
        async with app.run_test(size=scenario.size) as pilot:
            await pilot.pause(0.3)
            if scenario.before:
                await scenario.before(pilot)
            await pilot.pause(0.3)
            app.save_screenshot(str(out / f"{scenario.name}.svg"))
        print(f"screenshots/{scenario.name}.svg")


if __name__ == "__main__":
    asyncio.run(shoot(REPO / "screenshots"))
