"""`?`: every key of the screen underneath, with its binding id (for remapping)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def rows(self) -> list[tuple[str, str, str]]:
        """(keys, what they do, binding id) for every binding active on the screen underneath."""
        found: dict[tuple[str, str], list[str]] = {}
        for active in self.under.active_bindings.values():
            binding = active.binding
            found.setdefault((binding.description or binding.action, binding.id or ""), []).append(
                self.app.get_key_display(binding))
        rows = [(" ".join(sorted(set(keys))), name, binding_id) for (name, binding_id), keys in found.items()]
        rows.sort(key=lambda row: row[1])
        return rows + [("ctrl+p", "Command palette: #N, run STEP, project NAME, screens", "")]

    def compose(self) -> ComposeResult:
        table = Table(title=f"Keys: {type(self.under).__name__.removesuffix('Screen') or 'screen'}",
                      expand=True, box=None, title_style="bold")
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("action")
        table.add_column("binding id", style="dim")
        for row in self.rows():
            table.add_row(*row)
        with VerticalScroll(id="help-box"):
            yield Static(table)
            yield Static("Remap keys in $VHTUI_HOME/keymap.toml: `binding-id = \"key\"`.", classes="field-label")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss()
