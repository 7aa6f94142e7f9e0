"""Where vhtui keeps its state: `$VHTUI_HOME`, by default `~/.local/share/vhtui`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "vhtui.sqlite3"

    @property
    def executions(self) -> Path:
        return self.root / "executions"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def input_cache(self) -> Path:
        return self.root / "cache" / "inputs"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    def execution_dir(self, execution_id: int) -> Path:
        return self.executions / str(execution_id)

    def log_path(self, execution_id: int) -> Path:
        return self.execution_dir(execution_id) / "output.log"


def current_home() -> Home:
    root = os.environ.get("VHTUI_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "vhtui"
    )
    home = Home(Path(root).resolve())
    home.root.mkdir(parents=True, exist_ok=True)
    return home
