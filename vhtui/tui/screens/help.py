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

    def compose(self) -> ComposeResult:
        table = Table(title=f"Keys: {type(self.under).__name__.removesuffix('Screen') or 'screen'}",
                      expand=True, box=None, title_style="bold")
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("action")
        table.add_column("binding id", style="dim")
        seen: set[str] = set()
        for key, active in sorted(self.under.active_bindings.items(), key=lambda kv: kv[1].binding.description):
            binding = active.binding
            name = binding.description or binding.action
            if (name, binding.id) in seen:
                continue
            seen.add((name, binding.id))  # type: ignore[arg-type]
            table.add_row(self.app.get_key_display(binding), name, binding.id or "")
        table.add_row("ctrl+p", "Command palette: #N, run STEP, project NAME, screens", "")
        with VerticalScroll(id="help-box"):
            yield Static(table)
            yield Static("Remap keys in $VHTUI_HOME/keymap.toml: `binding-id = \"key\"`.", classes="field-label")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss()
