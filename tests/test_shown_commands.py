"""An execution's command as Valohai shows it: the step's commands with parameters filled in,
never vhtui's job script around them (which `exec info --script` shows), in old stores too."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import Project

STEP = """
- step:
    name: train
    image: python:3.11
    command:
      - echo preparing
      - python -c "import sys; print(sys.argv[1:])" {parameters}
    parameters:
      - name: epochs
        type: integer
        default: 3
"""
COMMANDS = ["echo preparing", 'python -c "import sys; print(sys.argv[1:])" --epochs=5']


@pytest.fixture
def trained(project: Project) -> tuple[Project, int]:
    project.write("valohai.yaml", STEP)
    counter = project.run("train", "--epochs", "5", "--env", "current")
    assert project.wait(counter)["status"] == "complete"
    return project, counter


def shown_command(project: Project, counter: int) -> list[str]:
    """The lines `exec info` prints under "command:"."""
    text = project.vhtui("exec", "info", str(counter)).stdout
    return [line.strip() for line in text.split("\ncommand:\n", 1)[1].splitlines()]


def test_info_shows_the_steps_commands_with_parameters_filled_in(trained: tuple[Project, int]) -> None:
    project, counter = trained
    assert shown_command(project, counter) == COMMANDS
    assert project.info(counter)["command"] == "\n".join(COMMANDS)
    script = project.vhtui("exec", "info", str(counter), "--script").stdout
    assert script.startswith("set -e\n") and "trap" in script and script.endswith("\n".join(COMMANDS) + "\n")


def test_an_execution_from_before_commands_were_kept_shows_its_script(trained: tuple[Project, int]) -> None:
    """A store at schema 4 has no commands column: its rows show the job script they have, and the
    store, migrated, keeps the commands of the next run."""
    project, counter = trained
    with sqlite3.connect(project.home / "vhtui.sqlite3") as conn:
        conn.execute("ALTER TABLE executions DROP COLUMN commands")
        conn.execute("PRAGMA user_version = 4")
    conn.close()
    script = project.vhtui("exec", "info", str(counter), "--script").stdout
    assert shown_command(project, counter) == script.strip().splitlines()
    assert json.loads(project.vhtui("exec", "info", str(counter), "--json").stdout)["command"] == script.strip()
    again = project.run("train", "--epochs", "5", "--env", "current")
    assert project.wait(again)["command"] == "\n".join(COMMANDS)
