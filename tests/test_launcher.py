"""The resident launcher (VHTUI_LAUNCHER=1): the same launches, the same refusals, much less waiting."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project


@pytest.fixture
def launcher_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    yield {"VHTUI_LAUNCHER": "1", "XDG_RUNTIME_DIR": str(runtime)}
    pid_file = runtime / f"vhtui-launcher-{os.getuid()}.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


def wait_for_launcher(runtime: str) -> Path:
    sock = Path(runtime) / f"vhtui-launcher-{os.getuid()}.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert time.monotonic() < deadline, "the launcher did not start"
        time.sleep(0.1)
    return sock


def test_launches_go_through_the_launcher_once_it_runs(project: Project, launcher_env: dict[str, str]) -> None:
    project.write("valohai.yaml", """
    - step:
        name: where
        image: python:3.11
        command: echo "launcher=${VHTUI_IN_LAUNCHER:-no}" {parameters}
        parameters:
          - name: n
            type: integer
            default: 1
            min: 1
    """)
    first = project.run("where", "--env", "current", **launcher_env)  # cold: starts the launcher
    wait_for_launcher(launcher_env["XDG_RUNTIME_DIR"])
    second = project.run("where", "--n=2", "--env", "current", **launcher_env)
    assert project.wait(first)["status"] == "complete" and project.wait(second)["status"] == "complete"
    assert project.logs(first).strip() == "launcher=no --n=1"
    assert project.logs(second).strip() == "launcher=1 --n=2"
    # a refusal through the launcher is the same one line and exit code, and stores nothing
    refused = project.vhtui("run", "where", "--n=0", check=False, **launcher_env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "vhtui: error: parameter 'n': 0 is less than the minimum allowed (1)"
    listing = project.vhtui("exec", "list", "--json").stdout
    assert '"counter": 3' not in listing


def test_a_dead_launcher_means_a_cold_launch(project: Project, launcher_env: dict[str, str]) -> None:
    project.write("valohai.yaml", """
    - step:
        name: quick
        image: python:3.11
        command: "true"
    """)
    project.run("quick", "--env", "current", **launcher_env)
    wait_for_launcher(launcher_env["XDG_RUNTIME_DIR"])
    pid_file = Path(launcher_env["XDG_RUNTIME_DIR"]) / f"vhtui-launcher-{os.getuid()}.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # leaves its socket file behind
    time.sleep(0.2)
    counter = project.run("quick", "--env", "current", **launcher_env)
    assert project.wait(counter)["status"] == "complete"
