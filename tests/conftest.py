"""Shared fixtures: an isolated $VHTUI_HOME, throwaway projects, and the CLI run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "valohai-yaml"
EXAMPLE = REPO / "examples" / "quickstart"


def poll(what: str, condition: Any, timeout: float = 60, interval: float = 0.05) -> Any:
    """condition()'s first truthy value; after `timeout` seconds (a hang guard, never a measurement)
    the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return value


@pytest.fixture
def vh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "vhtui-home"
    monkeypatch.setenv("VHTUI_HOME", str(home))
    monkeypatch.setenv("VHTUI_STOP_GRACE", "2")
    monkeypatch.delenv("VHTUI_GPUS", raising=False)
    return home


class Project:
    """A project directory and a way to drive `vhtui` in it as a subprocess."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, VHTUI_HOME=str(self.home))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def vhtui(self, *args: str, check: bool = True, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "vhtui", *args], cwd=self.root, env=self.env(**env),
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"vhtui {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def run(self, step: str, *args: str, **env: str) -> int:
        """Launch and return the execution counter."""
        out = self.vhtui("run", step, *args, **env).stdout.strip().splitlines()
        return int(out[-1])

    def info(self, counter: int) -> dict[str, Any]:
        return json.loads(self.vhtui("exec", "info", str(counter), "--json").stdout)

    def try_info(self, counter: int) -> dict[str, Any]:
        """Like info, but an execution that does not exist yet reads as status 'absent'."""
        result = self.vhtui("exec", "info", str(counter), "--json", check=False)
        if result.returncode != 0 and ("no execution" in result.stderr or "no executions" in result.stderr):
            return {"status": "absent"}
        if result.returncode != 0:
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)

    def wait(self, counter: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.info(counter)
            if doc["status"] in ("complete", "error", "stopped", "crashed"):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"#{counter} still {doc['status']} after {timeout}s")
            time.sleep(0.1)

    def wait_for_status(self, counter: int, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.try_info(counter)
            if doc["status"] == status:
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"#{counter} is {doc['status']}, not {status}, after {timeout}s")
            time.sleep(0.1)

    def logs(self, counter: int, *args: str) -> str:
        return self.vhtui("exec", "logs", str(counter), *args).stdout


@pytest.fixture
def project(tmp_path: Path, vh_home: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, vh_home)
