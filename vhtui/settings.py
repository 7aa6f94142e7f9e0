"""User settings: `$VHTUI_HOME/config.toml`, each overridable by a `VHTUI_*` environment variable.

    max_parallel = 4          # executions running at once on this machine
    gpus = "auto"             # "auto" (NVML), a count, or a list of GPU indices
    default_runner = "local"
    stop_grace = 10           # seconds between SIGTERM and SIGKILL
    secret_patterns = ["*TOKEN*", "*SECRET*", "*PASSWORD*", "*KEY*"]  # variables kept secret
    local_sandbox = true      # local runs get their own /valohai where bubblewrap can make one
    owner = "alice"           # projects are `owner/project` in execution.json (default: your user name)
    [environments]            # a step's `environment` -> the runner that serves it
    "aws-eu-west-1-p3" = "docker"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from vhtui.errors import VhtuiError, did_you_mean
from vhtui.home import Home
from vhtui.textfiles import read_text

DEFAULT_SECRET_PATTERNS = ("*TOKEN*", "*SECRET*", "*PASSWORD*", "*KEY*")  # names of variables kept secret


@dataclass
class Settings:
    max_parallel: int = max(4, os.cpu_count() or 1)
    gpus: Any = "auto"
    default_runner: str = "local"
    stop_grace: float = 10.0
    environments: dict[str, str] = field(default_factory=dict)
    secret_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_SECRET_PATTERNS))
    local_sandbox: bool = True
    owner: str = field(default_factory=lambda: _user_name())


def load_settings(home: Home) -> Settings:
    """The settings file, then the environment; a wrong value is one line naming the file (or the
    variable), the key and what it should be."""
    settings = Settings()
    path = home.config_file
    if path.exists():
        import tomllib

        try:
            data = tomllib.loads(read_text(path))
        except tomllib.TOMLDecodeError as exc:
            raise VhtuiError(f"{path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in CHECKS:
                raise VhtuiError(f"{path}: unknown setting {key!r}{did_you_mean(key, list(CHECKS))} "
                                 f"(settings: {', '.join(CHECKS)})")
            setattr(settings, key, _checked(f"{path}: {key}", key, value))
    for key, variable in ENVIRONMENT.items():
        if os.environ.get(variable):
            text = os.environ[variable]
            value: Any = text
            if key == "local_sandbox":
                value = {"1": True, "true": True, "0": False, "false": False}.get(text.strip().lower(), text)
            elif key in ("max_parallel", "stop_grace"):
                try:
                    value = (int if key == "max_parallel" else float)(text)
                except ValueError:
                    raise VhtuiError(f"{variable} must be {_EXPECTED[key]}, not {text!r}") from None
            setattr(settings, key, _checked(variable, key, value))
    return settings


ENVIRONMENT = {"max_parallel": "VHTUI_MAX_PARALLEL", "stop_grace": "VHTUI_STOP_GRACE", "gpus": "VHTUI_GPUS",
               "default_runner": "VHTUI_DEFAULT_RUNNER", "local_sandbox": "VHTUI_LOCAL_SANDBOX",
               "owner": "VHTUI_OWNER"}
_EXPECTED = {"max_parallel": "a whole number of 1 or more", "stop_grace": "a number of seconds, 0 or more",
             "gpus": '"auto", a count, or a list of GPU indices', "default_runner": "a runner's name",
             "environments": "a table of environment names to runner names",
             "secret_patterns": "a list of name patterns like \"*TOKEN*\"",
             "local_sandbox": "true or false (1 or 0 in the environment)",
             "owner": "a name without '/' or spaces"}


def _is_text_table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


CHECKS = {
    "max_parallel": lambda v: type(v) is int and v >= 1,
    "gpus": lambda v: (isinstance(v, str) and bool(v.strip())) or (type(v) is int and v >= 0)
    or (isinstance(v, list) and all(type(i) is int and i >= 0 for i in v)),
    "default_runner": lambda v: isinstance(v, str) and bool(v),
    "stop_grace": lambda v: type(v) in (int, float) and v >= 0 and v == v and v != float("inf"),
    "environments": _is_text_table,
    "secret_patterns": lambda v: isinstance(v, list) and all(isinstance(p, str) and p for p in v),
    "local_sandbox": lambda v: type(v) is bool,
    "owner": lambda v: isinstance(v, str) and bool(v) and not any(c in v for c in "/ \t\n") and v.isprintable(),
}


def _user_name() -> str:
    """Who runs vhtui, as the system names them; a uid with no name in a container is `user<uid>`."""
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    return name if CHECKS["owner"](name) else f"user{os.getuid()}"


def _checked(where: str, key: str, value: Any) -> Any:
    if not CHECKS[key](value):
        raise VhtuiError(f"{where} must be {_EXPECTED[key]}, not {value!r}")
    return value
