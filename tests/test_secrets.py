"""Secrets reach the command and nothing else: not the store, the views, the log, another
process's command line, nor the agent's disk."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.agent_helper import Agent
from tests.conftest import Project, poll

TOKEN = "tok-4f8a1c2e9b7d"  # given with --secret NAME=VALUE
PASSWORD = "pw-93e1b7c05a"  # a variable whose name says it is secret
FROM_ENV = "env-7d2c9a41f0"  # --secret NAME, the value from the caller's environment

STEP = """
- step:
    name: uses-secrets
    image: python:3.11
    command:
      - python3 show.py
      - while [ ! -e $VH_OUTPUTS_DIR/gate ] && [ -z "$NO_GATE" ]; do sleep 0.05; done
"""
SHOW = """
import hashlib, os
for name in ("API_TOKEN", "DB_PASSWORD", "FROM_ENV_KEY", "PLAIN"):
    value = os.environ.get(name, "")
    print(name, "=", value, "sha", hashlib.sha256(value.encode()).hexdigest()[:12], flush=True)
"""


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@pytest.fixture
def steps(project: Project) -> Project:
    project.write("valohai.yaml", STEP)
    project.write("show.py", SHOW)
    return project


def launch(project: Project, *extra: str, **env: str) -> int:
    return project.run("uses-secrets", "--env", "current", "--secret", f"API_TOKEN={TOKEN}",
                       "--env-var", f"DB_PASSWORD={PASSWORD}", "--env-var", "PLAIN=visible",
                       "--secret", "FROM_ENV_KEY", *extra, FROM_ENV_KEY=FROM_ENV, **env)


def everything_stored(home: Path) -> bytes:
    """Every byte vhtui keeps: the store, logs, config files, the supervisor's own log."""
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_secret_values_reach_the_command_and_nothing_else(steps: Project) -> None:
    counter = launch(steps)
    poll("the command to print", lambda: "PLAIN" in steps.logs(counter))
    supervisor = poll("the supervisor", lambda: _supervisor_pid(steps, counter))
    cmdline = Path(f"/proc/{supervisor}/cmdline").read_bytes()
    assert TOKEN.encode() not in cmdline and PASSWORD.encode() not in cmdline  # not in ps
    assert not (steps.home / "executions" / "1" / "secrets.json").exists()  # read once, then gone
    (steps.home / "executions" / "1" / "outputs" / "gate").write_text("")
    doc = steps.wait(counter)
    assert doc["status"] == "complete", steps.logs(counter)
    lines = dict(line.split(" = ", 1) for line in steps.logs(counter).splitlines())
    assert lines["API_TOKEN"] == f"**** sha {sha(TOKEN)}"  # the command saw the value; the log does not
    assert lines["DB_PASSWORD"] == f"**** sha {sha(PASSWORD)}"
    assert lines["FROM_ENV_KEY"] == f"**** sha {sha(FROM_ENV)}"
    assert lines["PLAIN"] == f"visible sha {sha('visible')}"
    assert doc["environment_variables"] == {"API_TOKEN": "****", "DB_PASSWORD": "****", "FROM_ENV_KEY": "****",
                                            "PLAIN": "visible"}
    assert "****" in steps.vhtui("exec", "info", str(counter)).stdout
    stored = everything_stored(steps.home)
    for value in (TOKEN, PASSWORD, FROM_ENV):
        assert value.encode() not in stored, value


def test_a_secret_named_but_not_in_the_environment_is_one_line(steps: Project) -> None:
    result = steps.vhtui("run", "uses-secrets", "--secret", "NOT_THERE_TOKEN", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("vhtui: error: --secret NOT_THERE_TOKEN: no variable NOT_THERE_TOKEN in your "
                                     "environment to take it from")


def test_secrets_on_an_agent_never_reach_its_disk(steps: Project, tmp_path: Path) -> None:
    agent = Agent(tmp_path / "agent").start()
    try:
        steps.vhtui("runner", "add", "box", agent.url, "--token-file", str(agent.token_file))
        counter = launch(steps, "--runner", "box", "--env-var", "NO_GATE=1")
        doc = steps.wait(counter, timeout=90)
        assert doc["status"] == "complete", steps.logs(counter)
        assert f"**** sha {sha(TOKEN)}" in steps.logs(counter)
        for value in (TOKEN, PASSWORD, FROM_ENV):
            assert value.encode() not in everything_stored(agent.root), value
            assert value.encode() not in everything_stored(steps.home), value
    finally:
        agent.stop_all()


def _supervisor_pid(project: Project, counter: int) -> int | None:
    with sqlite3.connect(project.home / "vhtui.sqlite3", timeout=30) as conn:
        found = conn.execute("SELECT supervisor_pid FROM executions WHERE counter = ?", (counter,)).fetchone()
    return found[0] if found else None


def test_the_rule_for_names(project: Project) -> None:
    from vhtui.engine.secrets import is_secret

    assert [n for n in ("API_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY", "SSH_KEY", "EPOCHS", "PATH")
            if is_secret(n)] == ["API_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY", "SSH_KEY"]
    project.home.mkdir(parents=True)
    (project.home / "config.toml").write_text('secret_patterns = ["*CREDENTIAL*"]\n')
    project.write("valohai.yaml", STEP)
    project.write("show.py", "import os; print(os.environ['MY_CREDENTIAL'])\n")
    counter = project.run("uses-secrets", "--env", "current", "--env-var", "MY_CREDENTIAL=abc-123-xyz",
                          "--env-var", "NO_GATE=1")
    assert project.wait(counter)["environment_variables"] == {"MY_CREDENTIAL": "****", "NO_GATE": "1"}
    assert project.logs(counter).strip() == "****"
    assert json.dumps(project.info(counter)).count("abc-123-xyz") == 0
