"""What the workbench's tests share: a seeded store, with $VHTUI_HOME pointing at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui import seed
from vhtui.context import Context


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Context, Path]:
    ctx, root = seed.build(tmp_path / "seeded")
    monkeypatch.setenv("VHTUI_HOME", str(ctx.home.root))
    return ctx, root
