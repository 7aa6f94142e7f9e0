"""User settings: `$VHTUI_HOME/config.toml`, each overridable by a `VHTUI_*` environment variable.

    max_parallel = 4          # executions running at once on this machine
    gpus = "auto"             # "auto" (NVML), a count, or a list of GPU indices
    default_runner = "local"
    stop_grace = 10           # seconds between SIGTERM and SIGKILL
    [environments]            # a step's `environment` -> the runner that serves it
    "aws-eu-west-1-p3" = "docker"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from vhtui.errors import VhtuiError

DEFAULT_SECRET_PATTERNS = ("*TOKEN*", "*SECRET*", "*PASSWORD*", "*KEY*")  # names of variables kept secret
from vhtui.home import Home


@dataclass
class Settings:
    max_parallel: int = max(4, os.cpu_count() or 1)
    gpus: Any = "auto"
    default_runner: str = "local"
    stop_grace: float = 10.0
    environments: dict[str, str] = field(default_factory=dict)
    secret_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_SECRET_PATTERNS))


def load_settings(home: Home) -> Settings:
    settings = Settings()
    path = home.config_file
    if path.is_file():
        import tomllib

        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise VhtuiError(f"{path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if hasattr(settings, key):
                setattr(settings, key, value)
    env = os.environ
    try:
        if env.get("VHTUI_MAX_PARALLEL"):
            settings.max_parallel = int(env["VHTUI_MAX_PARALLEL"])
        if env.get("VHTUI_STOP_GRACE"):
            settings.stop_grace = float(env["VHTUI_STOP_GRACE"])
    except ValueError as exc:
        raise VhtuiError(f"bad VHTUI_* setting: {exc}") from None
    if env.get("VHTUI_GPUS"):
        settings.gpus = env["VHTUI_GPUS"]
    if env.get("VHTUI_DEFAULT_RUNNER"):
        settings.default_runner = env["VHTUI_DEFAULT_RUNNER"]
    if settings.max_parallel < 1:
        raise VhtuiError("max_parallel must be at least 1")
    return settings
