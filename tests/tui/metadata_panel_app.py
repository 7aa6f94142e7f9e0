"""A host app for the Metadata panel over a small deterministic store (seeded data, fixed times).

Loadable by path for snapshot tests (`snap_compare("metadata_panel_app.py")`): without arguments it
builds its store in a temporary directory it owns.
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

from textual.app import App, ComposeResult

from vhtui.engine.metadata import MetadataSink
from vhtui.store import executions as execution_rows
from vhtui.store import open_database
from vhtui.store import projects as project_rows
from vhtui.tui.widgets.metadata_panel import MetadataPanel

T0 = 1793181600.0


def build_store(directory: Path, events: int = 400, seed: int = 7) -> tuple[Path, int]:
    """A store with one execution whose stdout held `events` training-like metadata lines."""
    database = directory / "store.sqlite3"
    db = open_database(database)
    project_id = project_rows.ensure(db, directory, name="demo")
    execution = execution_rows.create(db, project_id, {
        "step": "train", "runner": "local", "command": "python train.py", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [])
    db.close()
    write_events(database, execution["id"], range(events), seed)
    return database, execution["id"]


def write_events(database: Path, execution_id: int, steps: range, seed: int = 7) -> None:
    """Metadata lines for these steps, as the engine's sink stores them (ten lines per block)."""
    rng = random.Random(seed + steps.start)
    sink = MetadataSink(database, execution_id)
    for first in range(steps.start, steps.stop, 10):
        lines = []
        for step in range(first, min(first + 10, steps.stop)):
            loss = 2.0 * math.exp(-step / 120) + 0.05 + rng.random() * 0.08
            accuracy = 1 - loss / 2.2
            lines.append(f'{{"epoch": {step // 50}, "step": {step}, "loss": {loss:.5f}, "accuracy": {accuracy:.5f},'
                         f' "phase": "train"}}\n')
        block = "".join(lines).encode()
        sink.feed([(block, 0, len(block))], T0 + first * 0.25)
    sink.close()


class MetadataPanelApp(App[None]):
    def __init__(self, database: Path | None = None, execution_id: int | None = None, live: bool = False,
                 export_path: Path | None = None) -> None:
        super().__init__()
        if database is None:
            self._directory = tempfile.TemporaryDirectory(prefix="vhtui-metadata-")
            database, execution_id = build_store(Path(self._directory.name))
        self.database = database
        self.execution_id = execution_id or 1
        self.live = live
        self.export_path = export_path
        self.exported: list[MetadataPanel.Exported] = []

    def compose(self) -> ComposeResult:
        yield MetadataPanel(self.database, self.execution_id, self.live, export_path=self.export_path)

    def on_metadata_panel_exported(self, message: MetadataPanel.Exported) -> None:
        self.exported.append(message)
