"""Step parameters: option names, validation with valohai-yaml, and every default resolved.

Option names are folded as Valohai's CLI folds them, so a parameter `learning_rate` is reachable as
both `--learning-rate` and `--learning_rate`. Values are validated and cast by valohai-yaml's own
`Parameter.validate`; each error names the parameter and the rule it broke.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vhtui.errors import VhtuiError
from vhtui.textfiles import load_yaml, read_text


def option_name(name: str) -> str:
    """Valohai's CLI form of a parameter or input name."""
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower()


def option_aliases(name: str) -> list[str]:
    folded = option_name(name)
    return sorted({f"--{folded}", f"--{folded.replace('-', '_')}", f"--{name}"})


def read_parameter_file(path: str) -> dict[str, Any]:
    """Values from a JSON or YAML mapping of parameter names to values."""
    text = read_text(Path(path), "parameter file")
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise VhtuiError(f"parameter file {path} is not valid JSON: {str(exc).splitlines()[0]}") from None
    else:
        data = load_yaml(text, f"parameter file {path}")
    if not isinstance(data, dict):
        raise VhtuiError(f"parameter file {path} must hold a mapping of parameter names to values")
    return data


def parse_flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise VhtuiError(f"parameter {name!r}: {value!r} is not a flag value (true or false)")


def resolve_parameters(step: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Validated values for every parameter of `step`: given ones, else defaults (flags included)."""
    from valohai_yaml import ValidationErrors

    lookup = {option_name(n): n for n in step.parameters}
    values: dict[str, Any] = {}
    for key, value in given.items():
        name = key if key in step.parameters else lookup.get(option_name(key))
        if name is None:
            known = ", ".join(step.parameters) or "none"
            raise VhtuiError(f"step {step.name!r} has no parameter {key!r} (parameters: {known})")
        values[name] = value
    resolved: dict[str, Any] = {}
    for name, parameter in step.parameters.items():
        if parameter.type == "flag":
            raw = values.get(name, parameter.default)
            resolved[name] = parse_flag(name, raw) if raw is not None else False
            continue
        if name not in values:
            if parameter.default is not None:
                resolved[name] = parameter.default
            elif not parameter.optional:
                raise VhtuiError(f"parameter {name!r} is required: give it with --{option_name(name)}=<value>")
            continue
        value = values[name]
        if parameter.multiple and not isinstance(value, (list, tuple)):
            value = [value]
        if isinstance(value, (list, tuple)):
            value = [_normalise(v) for v in value]
        else:
            value = _normalise(value)
        try:
            resolved[name] = parameter.validate(value)
        except ValidationErrors as exc:
            raise VhtuiError(f"parameter {name!r}: {'; '.join(str(e) for e in exc.errors)}") from None
    return resolved


def _normalise(value: Any) -> Any:
    """Leave typed values (from a parameter file) as they are; strip text from the command line."""
    return value.strip() if isinstance(value, str) else value


def build_command(step: Any, parameters: dict[str, Any]) -> list[str]:
    """The step's command lines with parameters interpolated by valohai-yaml's own builder."""
    return step.build_command({k: v for k, v in parameters.items() if v is not None})
