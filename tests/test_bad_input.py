"""Bad input, one case a row: each gets one clear line on stderr and a non-zero exit, never a
traceback or a hang, and stores nothing. (The agent's and the router's own options have their
tables in tests/test_agent_cli.py and tests/test_router_input.py.)"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Project

STEPS = """
- step:
    name: train
    image: python:3.11
    command: echo trained > $VH_OUTPUTS_DIR/model.txt
    parameters:
      - name: epochs
        type: integer
        default: 3
"""
NESTED = "a: " + "[" * 5000 + "]" * 5000 + "\n"
LAUGHS = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))


@dataclass
class Case:
    name: str
    args: list[str | bytes]
    expect: str  # a piece of the one line
    setup: Callable[[Project], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def _write(name: str, text: str | bytes) -> Callable[[Project], None]:
    def setup(project: Project) -> None:
        path = project.root / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def _home_file(name: str, text: str) -> Callable[[Project], None]:
    def setup(project: Project) -> None:
        project.home.mkdir(parents=True, exist_ok=True)
        (project.home / name).write_text(text)

    return setup


def _fifo(project: Project) -> None:
    os.mkfifo(project.root / "pipe.yaml")


def _undecodable_file(project: Project) -> None:
    (project.root / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")


CASES = [
    Case("huge execution number", ["exec", "info", "18446744073709551616"], "no execution #18446744073709551616"),
    Case("superscript digit", ["exec", "info", "²"], "is not an execution number"),
    Case("huge limit", ["exec", "list", "--limit", str(2 ** 70)], "--limit"),
    Case("negative limit", ["exec", "list", "--limit", "-3"], "--limit"),
    Case("non-UTF-8 title", ["run", "train", "--env", "current", b"--title=caf\xe9"], "not valid UTF-8"),
    Case("non-UTF-8 step", ["exec", "list", b"--step=caf\xe9"], "not valid UTF-8"),
    Case("non-UTF-8 alias", ["data", "alias", b"caf\xe9", "datum://x"], "invalid alias name"),
    Case("alias with a space", ["data", "alias", "my model", "datum://x"], "invalid alias name"),
    Case("alias with a newline", ["data", "alias", "my\nmodel", "datum://x"], "invalid alias name"),
    Case("alias of 100k characters", ["data", "alias", "a" * 100_000, "datum://x"], "invalid alias name"),
    Case("a project file with a non-UTF-8 name", ["run", "train", "--env", "current", "--adhoc"], "",
         setup=_undecodable_file),
    Case("deeply nested valohai.yaml (lint)", ["lint", "deep.yaml"], "too deeply nested",
         setup=_write("deep.yaml", NESTED)),
    Case("deeply nested valohai.yaml (run)", ["run", "train"], "too deeply nested",
         setup=_write("valohai.yaml", NESTED)),
    Case("billion laughs (lint)", ["lint", "laughs.yaml"], "aliases", setup=_write("laughs.yaml", LAUGHS)),
    Case("billion laughs (run)", ["run", "train"], "aliases", setup=_write("valohai.yaml", LAUGHS)),
    Case("billion laughs parameter file", ["run", "train", "--parameter-file", "p.yaml"], "aliases",
         setup=_write("p.yaml", LAUGHS)),
    Case("deeply nested parameter file", ["run", "train", "--parameter-file", "p.yaml"], "too deeply nested",
         setup=_write("p.yaml", NESTED)),
    Case("a FIFO as the YAML file", ["lint", "pipe.yaml"], "not a regular file", setup=_fifo),
    Case("/dev/zero as the YAML file", ["lint", "/dev/zero"], "not a regular file"),
    Case("latin-1 valohai.yaml", ["run", "train"], "not UTF-8",
         setup=_write("valohai.yaml", STEPS.replace("train", "tr\xe4in").encode("latin-1"))),
    Case("download under a file", ["exec", "outputs", "1", "--download", "valohai.yaml/out"], "cannot write"),
    Case("download into /proc", ["exec", "outputs", "1", "--download", "/proc/vhtui-test"], "cannot write"),
    Case("data get into a file", ["data", "get", "datum://model", "valohai.yaml"], "not a folder"),
    Case("max_parallel is a word", ["exec", "list"], "max_parallel", setup=_home_file("config.toml", 'max_parallel = "four"\n')),
    Case("max_parallel is a fraction", ["exec", "list"], "max_parallel", setup=_home_file("config.toml", "max_parallel = 2.5\n")),
    Case("stop_grace is a word", ["exec", "list"], "stop_grace", setup=_home_file("config.toml", 'stop_grace = "x"\n')),
    Case("an unknown setting", ["exec", "list"], "unknown setting", setup=_home_file("config.toml", "max_paralel = 2\n")),
    Case("environments is a string", ["exec", "list"], "environments",
         setup=_home_file("config.toml", 'environments = "docker"\n')),
    Case("runners.json is null", ["runner", "ls"], "runners.json", setup=_home_file("runners.json", "null")),
    Case("runners.json is a list", ["runner", "ls"], "runners.json", setup=_home_file("runners.json", "[]")),
    Case("a runner without url", ["runner", "ls"], "url",
         setup=_home_file("runners.json", '{"gpu": {"token_file": "/x"}}')),
    Case("VHTUI_HOME is a file", ["exec", "list"], "VHTUI_HOME", env={"VHTUI_HOME": "/etc/hostname"}),
    Case("VHTUI_MAX_PARALLEL is a word", ["exec", "list"], "VHTUI_MAX_PARALLEL", env={"VHTUI_MAX_PARALLEL": "lots"}),
    Case("an image that cannot exist", ["run", "train", "--runner", "docker", "--image", "Not A Valid:Image"],
         "not a valid image name"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one completed execution and an aliased output, made once and copied for each
    case, so every command has something to refuse on."""
    root = tmp_path_factory.mktemp("bad-input")
    project = Project(root / "project", root / "home")
    project.root.mkdir()
    project.write("valohai.yaml", STEPS)
    counter = project.run("train", "--env", "current")
    assert project.wait(counter)["status"] == "complete"
    project.vhtui("data", "alias", "model", project.info(counter)["outputs"][0]["uri"])
    return root


@pytest.fixture
def stored(template: Path, tmp_path: Path, vh_home: Path) -> Project:
    shutil.copytree(template / "home", vh_home, symlinks=True)
    shutil.copytree(template / "project", tmp_path / "project", symlinks=True)
    # the copied store still names the template's project folder: point it at the copy
    with sqlite3.connect(vh_home / "vhtui.sqlite3") as conn:
        conn.execute("UPDATE projects SET path = ?", (str(tmp_path / "project"),))
    return Project(tmp_path / "project", vh_home)


def _vhtui(project: Project, args: list[str | bytes], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    argv = [os.fsencode(a) if isinstance(a, str) else a for a in args]
    return subprocess.run([sys.executable.encode(), b"-m", b"vhtui", *argv], cwd=project.root,
                          env=project.env(**env), capture_output=True, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line(stored: Project, case: Case) -> None:
    if case.setup:
        case.setup(stored)
    before = _executions(stored)
    result = _vhtui(stored, case.args, case.env)
    err = result.stderr.decode(errors="replace")
    if case.name == "a project file with a non-UTF-8 name":  # a name that is not UTF-8 is packaged as it is
        assert result.returncode == 0, err
        return
    assert result.returncode not in (0, 70), (result.returncode, err)
    if case.args[0] == "lint":  # lint speaks in valohai-yaml's linter's format, on stdout
        out = result.stdout.decode()
        assert "Traceback" not in err and "error: " in out and case.expect in out, (out, err)
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vhtui: error: "), err
    assert case.expect in lines[0], lines[0]
    if case.env.get("VHTUI_HOME") is None:
        assert _executions(stored) == before  # nothing stored by a refused command


def _executions(project: Project) -> int:
    with sqlite3.connect(project.home / "vhtui.sqlite3") as conn:
        return int(conn.execute("SELECT count(*) FROM executions").fetchone()[0])


def test_a_keymap_naming_an_unknown_binding_is_one_line(tmp_path: Path) -> None:
    from vhtui.errors import VhtuiError
    from vhtui.tui.app import load_keymap

    path = tmp_path / "keymap.toml"
    path.write_text('"executions.stp" = "ctrl+x"\n')
    with pytest.raises(VhtuiError, match="'executions.stp': no binding with that id; did you mean executions.stop?"):
        load_keymap(path)
    path.write_text('"executions.stop" = 3\n')
    with pytest.raises(VhtuiError, match="must name keys as text"):
        load_keymap(path)
    path.write_text('"executions.stop" = "ctrl+x"\n')
    assert load_keymap(path) == {"executions.stop": "ctrl+x"}
