"""The launch form, generated from the step: typed fields validated as you type.

Validation is valohai-yaml's own (`Parameter.validate`, through `resolve_parameters`), the same the
CLI applies, so the form can never accept what a launch would refuse. The launch itself runs in a
worker; the new execution opens as soon as its row exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, Label, OptionList, Select, Static, Switch
from textual.widgets.option_list import Option

from vhtui.engine import registry
from runners.pyenv import ENV_MODES
from vhtui.engine.launch import LaunchRequest
from vhtui.engine.params import resolve_parameters
from vhtui.errors import VhtuiError
from vhtui.project import load_project
from vhtui.store import datums as datum_rows
from vhtui.tui.workbench import workbench


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


class DatumPicker(ModalScreen[str | None]):
    """Pick a datum (or an alias) for an input."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel")]

    def __init__(self, project_id: int) -> None:
        super().__init__()
        self.project_id = project_id

    def compose(self) -> ComposeResult:
        db = workbench(self.app).ctx.db
        options = [Option(f"datum://{alias}  → {datum_id[:8]}", id=f"datum://{alias}")
                   for alias, datum_id in datum_rows.aliases(db, self.project_id).items()]
        options += [Option(f"{d['name']}  {d['size']:,} B  #{d.get('producer_counter') or '-'}  {d['id'][:8]}",
                           id=f"datum://{d['id']}")
                    for d in datum_rows.list_for_project(db, self.project_id) if d["kind"] != "code"]
        with Vertical(id="help-box"):
            yield Label("Pick a datum (enter), esc to cancel", classes="section-title")
            yield OptionList(*options, id="datums")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LaunchScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="launch.back"),
        Binding("ctrl+s", "launch", "Launch", id="launch.launch"),
        Binding("ctrl+d", "pick_datum", "Pick datum", id="launch.pick_datum"),
    ]

    def __init__(self, project_root: Path, step: str | None = None, prefill: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.project = load_project(project_root)
        if not self.project.config.steps:
            raise VhtuiError("this valohai.yaml has no steps")
        self.step = self.project.step(step) if step else next(iter(self.project.config.steps.values()))
        self.prefill = prefill or {}

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            steps = [(name, name) for name in self.project.config.steps]
            yield self._field("step", Select(steps, value=self.step.name, allow_blank=False, id="step"))
            yield Vertical(id="step-fields")
            with Horizontal(id="launch-buttons"):
                yield Button("Launch (ctrl+s)", variant="primary", id="launch")
                yield Static("", id="launch-status")
        yield Footer()

    def _field(self, label: str, widget: Any, error_id: str | None = None) -> Vertical:
        parts = [Label(label, classes="field-label"), widget]
        if error_id:
            parts.append(Static("", id=error_id, classes="field-error"))
        return Vertical(*parts, classes="field")

    def on_mount(self) -> None:
        self._build_fields()

    def _build_fields(self) -> None:
        self.sub_title = f"launch {self.step.name}"
        box = self.query_one("#step-fields", Vertical)
        box.remove_children()
        values = self.prefill.get("parameters", {}) if self.prefill.get("step", self.step.name) == self.step.name \
            else {}
        fields: list[Any] = [self._field("title", Input(_text(self.prefill.get("title")), id="title"))]
        for name, parameter in self.step.parameters.items():
            current = values.get(name, parameter.default)
            label = f"{name} ({parameter.type}{', multiple, comma-separated' if parameter.multiple else ''})"
            if parameter.description:
                label += f": {parameter.description}"
            if parameter.type == "flag":
                widget: Any = Switch(value=bool(current), id=f"param-{name}")
            elif parameter.choices:
                options = [(str(c), c) for c in parameter.choices]
                # a choice with a default cannot be emptied; one without starts blank ("required"
                # below it until chosen, when it is required)
                blank = current not in parameter.choices
                widget = Select(options, value=Select.NULL if blank else current,
                                allow_blank=parameter.default is None, id=f"param-{name}")
            else:
                widget = Input(_text(current), id=f"param-{name}", placeholder="" if parameter.optional else "required")
            fields.append(self._field(label, widget, f"error-{name}"))
        given_inputs = self.prefill.get("inputs", {})
        for name, spec in self.step.inputs.items():
            default = given_inputs.get(name) or spec.default
            label = f"input {name}{'' if spec.optional else ' (required)'}: path, URL, datum:// (ctrl+d picks)"
            fields.append(self._field(label, Input(_text(default), id=f"input-{name}"), f"error-input-{name}"))
        runner = self.prefill.get("runner", "local")
        choices = registry.names(workbench(self.app).ctx)
        fields.append(self._field("runner", Select([(r, r) for r in choices], value=runner
                                                   if runner in choices else "local", allow_blank=False,
                                                   id="runner")))
        fields.append(self._field("environment (local runner)", Select(
            [(m, m) for m in ENV_MODES], value=self.prefill.get("env_mode", "venv"), allow_blank=False,
            id="env_mode")))
        box.mount_all(fields)

    # -- values and validation ------------------------------------------------------------
    def _raw_parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, parameter in self.step.parameters.items():
            widget = self.query_one(f"#param-{name}")
            if isinstance(widget, Switch):
                values[name] = widget.value
            elif isinstance(widget, Select):
                if not widget.is_blank():
                    values[name] = widget.value
            elif isinstance(widget, Input) and widget.value.strip():
                text = widget.value.strip()
                values[name] = [v.strip() for v in text.split(",") if v.strip()] if parameter.multiple else text
        return values

    def _inputs(self) -> dict[str, list[str]]:
        out = {}
        for name in self.step.inputs:
            text = self.query_one(f"#input-{name}", Input).value.strip()
            if text:
                out[name] = [v.strip() for v in text.split(",") if v.strip()]
        return out

    def validate_fields(self) -> bool:
        """Check each parameter alone, so each error sits under its own field."""
        ok = True
        raw = self._raw_parameters()
        for name, parameter in self.step.parameters.items():
            message = ""
            if name in raw:
                try:
                    resolve_parameters(_OneParameter(self.step, name), {name: raw[name]})
                except VhtuiError as exc:
                    message = str(exc)
            elif parameter.default is None and not parameter.optional and parameter.type != "flag":
                message = "required"
            self.query_one(f"#error-{name}", Static).update(message)
            ok = ok and not message
        for name, spec in self.step.inputs.items():
            missing = not spec.optional and not self.query_one(f"#input-{name}", Input).value.strip()
            self.query_one(f"#error-input-{name}", Static).update("required" if missing else "")
            ok = ok and not missing
        return ok

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith(("param-", "input-")):
            self.validate_fields()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "step" and event.value != self.step.name:
            self.step = self.project.step(str(event.value))
            self._build_fields()
        elif event.select.id and event.select.id.startswith("param-"):
            self.validate_fields()  # an error goes as soon as its cause does

    # -- actions --------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_pick_datum(self) -> None:
        focused = self.focused
        if not (isinstance(focused, Input) and focused.id and focused.id.startswith("input-")):
            self.notify("focus an input field first", severity="warning")
            return

        def picked(uri: str | None) -> None:
            if uri:
                focused.value = uri

        project_id = workbench(self.app).project_id
        assert project_id is not None  # the app opens the launch form only inside a project
        self.app.push_screen(DatumPicker(project_id), picked)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()

    def action_launch(self) -> None:
        if not self.validate_fields():
            self.notify("fix the fields marked in red first", severity="error")
            return
        request = LaunchRequest(
            project_root=self.project.root, step=self.step.name, parameters=self._raw_parameters(),
            inputs=self._inputs(), title=self.query_one("#title", Input).value.strip() or None,
            runner=str(self.query_one("#runner", Select).value), cwd=self.project.root,
            env_mode=str(self.query_one("#env_mode", Select).value),
        )
        self.query_one("#launch-status", Static).update("launching…")
        self.query_one("#launch", Button).disabled = True
        self._launch(request)

    @work(thread=True, exclusive=True, group="launch")
    def _launch(self, request: LaunchRequest) -> None:
        from vhtui.engine.launch import launch

        ctx = workbench(self.app).ctx.with_new_connection()
        try:
            execution = launch(ctx, request, project=self.project)
        except VhtuiError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 (shown, never a traceback)
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        finally:
            ctx.db.close()
        self.app.call_from_thread(self._launched, execution)

    def _failed(self, message: str) -> None:
        self.query_one("#launch-status", Static).update(message)
        self.query_one("#launch", Button).disabled = False
        self.notify(message, severity="error", timeout=8)

    def _launched(self, execution: dict[str, Any]) -> None:
        self.notify(f"#{execution['counter']} {execution['step']} launched")
        self.app.pop_screen()
        workbench(self.app).store_changed_here()
        workbench(self.app).open_execution(execution["id"])


class _OneParameter:
    """A view of a step with a single parameter, to validate fields one at a time."""

    def __init__(self, step: Any, name: str) -> None:
        self.name = step.name
        self.parameters = {name: step.parameters[name]}
