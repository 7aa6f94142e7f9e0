"""Find, load and lint `valohai.yaml` with the official valohai-yaml library."""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO


from vhtui import lazy_jsonschema
from vhtui.errors import NotFound, VhtuiError, did_you_mean
from vhtui.textfiles import check_yaml, load_yaml, read_text

if TYPE_CHECKING:
    from valohai_yaml.objs import Config, Step

CONFIG_NAME = "valohai.yaml"
RUNS_STEPS = "vhtui runs steps (`vhtui run` lists them)"  # what it does run, where it refuses what it does not yet


@dataclass
class Project:
    root: Path
    config: Config

    def step(self, name: str) -> Step:
        return match_step(self.config, name)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` that holds a valohai.yaml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise NotFound(f"no {CONFIG_NAME} in {here} or any directory above it")


@functools.cache
def _schema_validator() -> Any:
    """valohai-yaml's schema validator, without re-checking the bundled schema on every launch."""
    from jsonschema import Draft202012Validator
    from valohai_yaml.validation import get_json_schema

    return Draft202012Validator(get_json_schema())


def parse_config(text: str, where: str = CONFIG_NAME) -> Config:
    """valohai_yaml.parse; a text that passed schema validation before is not validated again (nor
    is jsonschema imported for it)."""
    lazy_jsonschema.install()
    from valohai_yaml import ValidationErrors, __version__
    from valohai_yaml.objs import Config

    data = load_yaml(text, where)
    if data is None:
        return Config()
    verdict = _verdict_path(f"{__version__}\0{text}")
    if not verdict.exists():
        errors = list(_schema_validator().iter_errors(data))
        if errors:
            raise ValidationErrors(errors)
        _remember_valid(verdict)
    return Config.parse(data)


def _verdict_path(key: str) -> Path:
    from vhtui.home import current_home

    return current_home().valid_configs / hashlib.sha256(key.encode()).hexdigest()


def _remember_valid(verdict: Path) -> None:
    """Only into a home that exists (`Home.ensure` makes the folder): loading creates no folders."""
    try:
        verdict.touch()
    except OSError:  # no home yet, or a read-only one: it only costs time next launch
        pass


def load_config(path: Path) -> Config:
    """Parse and validate a valohai.yaml; a broken file raises one clear VhtuiError."""
    lazy_jsonschema.install()
    from valohai_yaml import ValidationErrors

    text = read_text(path)
    try:
        return parse_config(text, str(path))
    except VhtuiError:
        raise
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


def not_run_yet(config: Config, name: str) -> str | None:
    """What to say when `name` is a pipeline or a task blueprint of valohai.yaml: vhtui parses
    those but does not run them yet, and "no step" would tell the user their file is wrong."""
    kinds = ((config.pipelines, "a pipeline", "pipelines"), (config.tasks, "a task blueprint", "tasks"))
    for known, what, plural in kinds:
        if name in known:
            return f"{name!r} is {what} in {CONFIG_NAME}, and {plural} are not run yet: {RUNS_STEPS}"
    return None


def match_step(config: Config, name: str) -> Step:
    """Exact name, else a pipeline's or task's exact name (refused), else a unique
    case-insensitive prefix of a step's, as Valohai's CLI matches steps."""
    if name in config.steps:
        return config.steps[name]
    if refusal := not_run_yet(config, name):
        raise VhtuiError(refusal)
    folded = name.lower()
    matches = [step for key, step in config.steps.items() if key.lower().startswith(folded)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(config.steps)) or "none"
    if matches:
        names = ", ".join(sorted(s.name for s in matches))
        raise VhtuiError(f"step {name!r} is ambiguous: it matches {names}")
    raise NotFound(f"no step {name!r} in valohai.yaml{did_you_mean(name, list(config.steps))} (steps: {known})")


def lint_files(paths: list[str], strict_warnings: bool, out: TextIO, ansi_colors: bool = False) -> int:
    """Lint as valohai-yaml's own linter does: the same messages, summary line and exit code."""
    lazy_jsonschema.install()
    from valohai_yaml.lint import lint

    errors = warnings = 0
    for path in paths:
        try:
            text = read_text(Path(path))
            check_yaml(text, path)  # before valohai-yaml's own reading, which has no such guards
        except VhtuiError as exc:
            out.write(f">>> {path}\nerror: {exc}\n{'-' * 60}\n")
            errors += 1
            continue
        result = lint(io.BytesIO(text.encode()), ansi_colors=ansi_colors)
        if result.messages:
            out.write(f">>> {path}\n")
        for item in result.messages:
            out.write(f"{item['type']}: {item['message']}\n{'-' * 60}\n")
        errors += result.error_count
        warnings += result.warning_count
    if errors or warnings:
        out.write(f"*** {errors} errors, {warnings} warnings\n")
    return 1 if errors or (strict_warnings and warnings) else 0
