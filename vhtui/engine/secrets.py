"""Secrets: environment values that reach the command and nothing else.

A variable is secret when it is given with `--secret NAME=VALUE` (or `--secret NAME`, its value
taken from the caller's environment), or when its name says so: it contains TOKEN, SECRET,
PASSWORD or KEY (the `secret_patterns` setting changes the list). A secret's value is never
stored: the execution records the name with `****`, every view shows that, and the output is
masked before it is logged. The value goes to the supervisor in a file only the user can read,
outside every folder the command sees, which the supervisor deletes as soon as it has read it; a
re-run asks for it again.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

from vhtui.settings import DEFAULT_SECRET_PATTERNS

SHOWN = "****"
FILE_NAME = "secrets.json"  # in the execution's folder, beside (never inside) what the command sees


def is_secret(name: str, patterns: tuple[str, ...] | list[str] = DEFAULT_SECRET_PATTERNS) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), pattern.upper()) for pattern in patterns)


def shown(environment: dict[str, str], secret_names: set[str]) -> dict[str, str]:
    """The environment as it may be stored and shown: each secret's value replaced by ****."""
    return {name: SHOWN if name in secret_names else value for name, value in environment.items()}


def hand_over(directory: Path, values: dict[str, str]) -> None:
    """Leave the values for the supervisor, readable by the user alone."""
    if not values:
        return
    fd = os.open(directory / FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)


def take(directory: Path) -> dict[str, str]:
    """The values left for this execution, read once: the file is gone afterwards."""
    path = directory / FILE_NAME
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        values = {}
    path.unlink(missing_ok=True)
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}
