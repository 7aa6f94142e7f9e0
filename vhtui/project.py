"""Find, load and lint `valohai.yaml` with the official valohai-yaml library."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import yaml as pyyaml

from vhtui.errors import NotFound, VhtuiError

if TYPE_CHECKING:
    from valohai_yaml.objs import Config, Step

CONFIG_NAME = "valohai.yaml"


@dataclass
class Project:
    root: Path
    config: Config

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def step(self, name: str) -> Step:
        return match_step(self.config, name)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` that holds a valohai.yaml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise NotFound(f"no {CONFIG_NAME} in {here} or any directory above it")


def load_config(path: Path) -> Config:
    """Parse and validate a valohai.yaml; a broken file raises one clear VhtuiError."""
    from valohai_yaml import ValidationErrors, parse

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VhtuiError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise VhtuiError(f"{path} is not UTF-8 text") from None
    try:
        return parse(text)
    except pyyaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise VhtuiError(f"{path}: YAML syntax error{where}: {problem}") from None
    except ValidationErrors as exc:
        first = next(iter(exc.errors), None)
        detail = f"{first.message} (at {'.'.join(str(p) for p in first.path)})" if first is not None else str(exc)
        more = f" and {len(exc.errors) - 1} more; run `vhtui lint`" if len(exc.errors) > 1 else ""
        raise VhtuiError(f"{path} is not a valid valohai.yaml: {detail}{more}") from None
    except Exception as exc:  # valohai-yaml raises plain errors for some semantic problems
        raise VhtuiError(f"{path} is not a valid valohai.yaml: {exc}") from None


def load_project(start: Path | None = None) -> Project:
    root = find_root(start)
    return Project(root=root, config=load_config(root / CONFIG_NAME))


def match_step(config: Config, name: str) -> Step:
    """Exact name, else a unique case-insensitive prefix, as Valohai's CLI matches steps."""
    if name in config.steps:
        return config.steps[name]
    folded = name.lower()
    matches = [step for key, step in config.steps.items() if key.lower().startswith(folded)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(config.steps)) or "none"
    if matches:
        names = ", ".join(sorted(s.name for s in matches))
        raise VhtuiError(f"step {name!r} is ambiguous: it matches {names}")
    raise NotFound(f"no step {name!r} in valohai.yaml (steps: {known})")


def lint_files(paths: list[str], strict_warnings: bool, out: TextIO, ansi_colors: bool = False) -> int:
    """Lint as valohai-yaml's own linter does: the same messages, summary line and exit code."""
    from valohai_yaml.lint import lint

    errors = warnings = 0
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            out.write(f">>> {path}\nerror: cannot read file: {exc.strerror}\n{'-' * 60}\n")
            errors += 1
            continue
        result = lint(io.BytesIO(data), ansi_colors=ansi_colors)
        if result.messages:
            out.write(f">>> {path}\n")
        for item in result.messages:
            out.write(f"{item['type']}: {item['message']}\n{'-' * 60}\n")
        errors += result.error_count
        warnings += result.warning_count
    if errors or warnings:
        out.write(f"*** {errors} errors, {warnings} warnings\n")
    return 1 if errors or (strict_warnings and warnings) else 0
