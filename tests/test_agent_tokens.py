"""The agent's token: a rotated token file takes effect without a restart, and the agent warns at
start-up about a token file others can read and about serving beyond loopback without TLS."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.agent_helper import TOKEN, Agent

ROTATED = "a-rotated-token-9876543210fedcba"


def _status(agent: Agent, token: str) -> int:
    return httpx.get(f"{agent.url}/v1/host", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def _warnings(agent: Agent) -> list[str]:
    return [line for line in (agent.root / "agent.log").read_text().splitlines() if "warning" in line.lower()]


@pytest.mark.parametrize("how", ["rewritten", "replaced"])
def test_a_rotated_token_takes_effect_without_a_restart(tmp_path: Path, how: str) -> None:
    agent = Agent(tmp_path / "agent").start()
    try:
        assert _status(agent, TOKEN) == 200
        if how == "rewritten":  # the same file, new content
            agent.token_file.write_text(ROTATED + "\n")
        else:  # a new file moved over the old one, as editors and rotation scripts do
            new = agent.token_file.with_name("token.new")
            new.write_text(ROTATED)
            os.replace(new, agent.token_file)
        assert _status(agent, ROTATED) == 200
        assert _status(agent, TOKEN) == 401
        agent.token_file.write_text("short")  # unusable: nobody gets in, not even with the old token
        assert _status(agent, TOKEN) != 200 and _status(agent, "short") != 200
        agent.token_file.write_text(TOKEN)
        assert _status(agent, TOKEN) == 200
    finally:
        agent.stop_all()


@pytest.mark.parametrize("mode, warned", [(0o644, True), (0o640, True), (0o604, True), (0o600, False),
                                          (0o400, False)])
def test_a_token_file_others_can_read_is_warned_about_once(tmp_path: Path, mode: int, warned: bool) -> None:
    agent = Agent(tmp_path / "agent")
    agent.token_file.chmod(mode)
    agent.start()
    try:
        warnings = [w for w in _warnings(agent) if "token file" in w]
        assert warnings == ([f"vhtui: warning: the token file {agent.token_file} can be read or changed by others "
                             f"(mode {mode:04o}): chmod 600 {agent.token_file}"] if warned else []), warnings
    finally:
        agent.stop_all()


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_serving_beyond_loopback_without_tls_is_warned_about(tmp_path: Path, host: str, warned: bool) -> None:
    agent = Agent(tmp_path / "agent", host=host)
    agent.token_file.chmod(0o600)
    agent.start()
    try:
        assert _status(agent, TOKEN) == 200
        warnings = [w for w in _warnings(agent) if "TLS" in w]
        assert len(warnings) == int(warned), warnings
        if warned:
            assert warnings[0].startswith(f"vhtui: warning: serving on {host} without TLS")
    finally:
        agent.stop_all()
