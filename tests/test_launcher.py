"""The resident launcher (VHTUI_LAUNCHER=1): the same launches, the same refusals, much less waiting,
and each launch exactly once whatever happens to the launcher.

Whether a launch went through the launcher is read from two places: the launcher's log (one line
per request) and the step's own environment (VHTUI_IN_LAUNCHER is set only in a launcher's child).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, poll

STEPS = """
- step:
    name: where
    image: python:3.11
    command: echo "launcher=${VHTUI_IN_LAUNCHER:-no}" {parameters}
    parameters:
      - name: n
        type: integer
        default: 1
        min: 1
- step:
    name: gated
    image: python:3.11
    command: while [ ! -e "$GATE" ]; do sleep 0.05; done; echo "launcher=${VHTUI_IN_LAUNCHER:-no}"
"""


class Launcher:
    """One test's launcher: its runtime directory, the environment that selects it, its log."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.env = {"VHTUI_LAUNCHER": "1", "XDG_RUNTIME_DIR": str(runtime)}
        stem = runtime / f"vhtui-launcher-{os.getuid()}"
        self.sock, self.pid_file, self.log = (stem.with_suffix(s) for s in (".sock", ".pid", ".log"))

    def serving(self) -> int:
        """The pid of the launcher once it serves."""
        return int(poll("the launcher", lambda: self.sock.exists() and self.pid_file.exists()
                        and self.pid_file.read_text()))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def launches(self) -> list[list[str]]:
        """The argv of each launch the launcher's children made."""
        return [entry["argv"] for entry in self.entries() if "pid" in entry]

    def child(self, *argv: str) -> int:
        """The pid of the child that launched `argv`, once it has."""
        return int(poll(f"a launch of {argv}", lambda: next(
            (e["pid"] for e in self.entries() if e.get("argv") == list(argv) and "pid" in e), None)))

    def processes(self) -> list[int]:
        """Every process started as this test's launcher (its forked children too)."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vhtui.cli.launcher" in cmdline and f"XDG_RUNTIME_DIR={self.runtime}".encode() in environ:
                found.append(int(proc.name))
        return found


@pytest.fixture
def launcher(tmp_path: Path, project: Project) -> Iterator[Launcher]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    project.write("valohai.yaml", STEPS)
    yield Launcher(runtime)
    for pid in Launcher(runtime).processes():
        os.kill(pid, signal.SIGKILL)


def started(project: Project, launcher: Launcher) -> int:
    """Start the launcher as the first launch does; its pid."""
    project.run("where", "--env", "current", **launcher.env)
    return launcher.serving()


def counters(project: Project) -> list[int]:
    result = project.vhtui("exec", "list", "--json", check=False)
    if "no executions yet" in result.stderr:
        return []
    assert result.returncode == 0, result.stderr
    return sorted(row["counter"] for row in json.loads(result.stdout)["results"])


def launch_in_background(project: Project, launcher: Launcher, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vhtui", "run", *args, "--env", "current"], cwd=project.root,
                            env=project.env(**launcher.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def gated(project: Project, launcher: Launcher, gate: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """`vhtui run gated --follow` through the launcher, its child's step running behind `gate`."""
    argv = ["gated", f"--env-var=GATE={gate}", "--follow"]
    client = launch_in_background(project, launcher, *argv)
    launcher.child("run", *argv, "--env", "current")
    return client, ["run", *argv, "--env", "current"]


def gone(pid: int) -> bool:
    """The process has exited (it may linger as a zombie until its parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def pending_connection(launcher_pid: int) -> bool:
    """True while a connection to the launcher waits to be accepted: /proc/net/unix lists it under the
    address its listening socket (flags 00010000) is bound to, in state 02 ('connecting')."""
    fds = Path(f"/proc/{launcher_pid}/fd")
    inodes = {link[8:-1] for link in (os.readlink(fd) for fd in fds.iterdir()) if link.startswith("socket:")}
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    listening = {row[7] for row in rows if len(row) == 8 and row[6] in inodes and row[3] == "00010000"}
    return any(len(row) == 8 and row[7] in listening and row[5] == "02" for row in rows)


def test_launches_go_through_the_launcher_once_it_runs(project: Project, launcher: Launcher) -> None:
    first = project.run("where", "--env", "current", **launcher.env)  # cold: starts the launcher
    launcher.serving()
    assert launcher.launches() == []
    second = project.run("where", "--n=2", "--env", "current", **launcher.env)
    assert project.wait(first)["status"] == "complete" and project.wait(second)["status"] == "complete"
    assert project.logs(first).strip() == "launcher=no --n=1"
    assert project.logs(second).strip() == "launcher=1 --n=2"
    assert oct(launcher.log.stat().st_mode & 0o777) == "0o600"
    # a refusal through the launcher is the same one line and exit code, and stores nothing
    refused = project.vhtui("run", "where", "--n=0", check=False, **launcher.env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "vhtui: error: parameter 'n': 0 is less than the minimum allowed (1)"
    assert launcher.launches() == [["run", "where", "--n=2", "--env", "current"], ["run", "where", "--n=0"]]
    assert counters(project) == [1, 2]


def test_a_dead_launcher_means_a_cold_launch(project: Project, launcher: Launcher) -> None:
    os.kill(started(project, launcher), signal.SIGKILL)  # leaves its socket file behind
    poll("the launcher to die", lambda: not launcher.processes())
    counter = project.run("where", "--n=3", "--env", "current", **launcher.env)
    assert project.wait(counter)["status"] == "complete"
    assert project.logs(counter).strip() == "launcher=no --n=3"
    assert ["run", "where", "--n=3", "--env", "current"] not in launcher.launches()


def test_a_request_the_launcher_never_accepted_runs_cold_once(project: Project, launcher: Launcher) -> None:
    pid = started(project, launcher)
    os.kill(pid, signal.SIGSTOP)  # the request will sit unaccepted
    client = launch_in_background(project, launcher, "where", "--n=4")
    poll("the request to wait on the stopped launcher", lambda: pending_connection(pid))
    os.kill(pid, signal.SIGKILL)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    counter = int(out.split()[-1])
    assert counters(project) == [1, counter]
    assert project.wait(counter)["status"] == "complete"
    assert project.logs(counter).strip() == "launcher=no --n=4"


@pytest.mark.parametrize("how", ["killed", "stale request"])
def test_a_launch_in_flight_outlives_its_launcher(project: Project, launcher: Launcher, tmp_path: Path,
                                                  how: str) -> None:
    pid = started(project, launcher)
    gate = tmp_path / "gate"
    client, _ = gated(project, launcher, gate)
    project.wait_for_status(2, "started")
    if how == "killed":
        os.kill(pid, signal.SIGKILL)
    else:  # vhtui's code changes: the next request is refused and the launcher exits
        os.utime(Path(__file__).parent.parent / "vhtui" / "cli" / "launcher.py")
        assert project.run("where", "--n=5", "--env", "current", **launcher.env) == 3
        assert launcher.entries()[-1]["refused"] == "vhtui's code changed since this launcher started"
        poll("the launcher to exit", lambda: gone(pid))
    gate.touch()
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert out.strip() == "launcher=1"
    assert err.strip().splitlines() == ["#2 gated launched (local)", "#2 complete"]
    assert counters(project) == ([1, 2] if how == "killed" else [1, 2, 3])


def test_a_child_that_dies_mid_launch_is_reported_not_repeated(project: Project, launcher: Launcher,
                                                               tmp_path: Path) -> None:
    started(project, launcher)
    gate = tmp_path / "gate"
    client, argv = gated(project, launcher, gate)
    project.wait_for_status(2, "started")
    os.kill(launcher.child(*argv), signal.SIGKILL)
    try:
        _, err = client.communicate(timeout=120)
    finally:
        gate.touch()
    assert client.returncode == 1
    assert err.strip().splitlines()[-1].startswith("vhtui: error: the resident launcher's child (pid ")
    assert "the launch may have happened: check with `vhtui exec list`" in err
    assert project.wait(2)["status"] == "complete"
    assert counters(project) == [1, 2]


def test_ctrl_c_reaches_the_child(project: Project, launcher: Launcher, tmp_path: Path) -> None:
    started(project, launcher)
    gate = tmp_path / "gate"
    client, argv = gated(project, launcher, gate)
    child = launcher.child(*argv)
    project.wait_for_status(2, "started")
    client.send_signal(signal.SIGINT)
    try:
        client.communicate(timeout=120)
    finally:
        gate.touch()
    assert client.returncode == 130  # as a cold `vhtui run --follow` interrupted: the execution runs on
    assert gone(child)
    assert project.wait(2)["status"] == "complete"
