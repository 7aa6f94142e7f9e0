"""Shared fixtures: an isolated $VHTUI_HOME, throwaway projects, and the CLI run as a user runs it."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "valohai-yaml"
EXAMPLE = REPO / "examples" / "quickstart"
ORDINARY_USER = 4321  # a uid with no name here: tests run vhtui as it to see what a non-root user gets


def poll(what: str, condition: Any, timeout: float = 60, interval: float = 0.05) -> Any:
    """condition()'s first truthy value; after `timeout` seconds (a hang guard, never a measurement)
    the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return value


def live_processes_with(argument: str) -> list[int]:
    """Host pids (not zombies) whose command line holds `argument`: a sandboxed run has its own
    pid namespace, so the pid its shell sees means nothing out here."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and argument.encode() in (entry / "cmdline").read_bytes().split(b"\0") \
                    and "Z" not in (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


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

    def vhtui_as_user(self, *args: str, groups: tuple[int, ...] = (), timeout: float = 120,
                      **env: str) -> subprocess.CompletedProcess[str]:
        """`vhtui ARGS` run by an ordinary user (uid and gid 4321, in `groups`), to whom the project
        and the home are handed over first. Needs root (see tests.test_runners.require)."""
        for path in (self.root, self.home.parent):
            subprocess.run(["chown", "-R", f"{ORDINARY_USER}:{ORDINARY_USER}", str(path)], check=True)
        for parent in self.home.parent.parents:  # pytest's temp folders are private to root
            if parent == parent.parent:
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
        groups_arg = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
        python, python_env = ordinary_user_python()
        return subprocess.run(
            [*as_ordinary_user(groups_arg), python, "-m", "vhtui", *args], cwd=self.root,
            env=self.env(HOME=str(self.home.parent), **python_env, **env), capture_output=True, text=True,
            timeout=timeout,
        )

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


def as_ordinary_user(groups_arg: str = "--clear-groups") -> list[str]:
    return ["setpriv", f"--reuid={ORDINARY_USER}", f"--regid={ORDINARY_USER}", groups_arg]


@functools.cache
def ordinary_user_python() -> tuple[str, dict[str, str]]:
    """An interpreter the ordinary user may start (vhtui starts its supervisors and router with
    its own), with vhtui importable: this one where it can, else the system's python of the same
    version with this one's packages on PYTHONPATH (on these machines this one lives in root's
    private home, as pyenv puts it)."""
    if subprocess.run([*as_ordinary_user(), "sh", "-c", 'test -x "$0"', sys.executable]).returncode == 0:
        return sys.executable, {}
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    return system, {"PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])}


@pytest.fixture
def project(tmp_path: Path, vh_home: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, vh_home)
