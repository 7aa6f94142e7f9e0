"""Slow clients cannot starve the agent: a connection that never finishes its request head, or
stalls in its body, is closed by the agent, and a flood of them never keeps a real request out,
even with few file descriptors. The limits are lowered so the test stays quick; no timing is
asserted, only what was closed and what was answered (with generous hang guards)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent_helper import TOKEN, Agent
from tests.conftest import poll

STALLED = 400  # more than the agent's file descriptors allow (256), and its connection cap (100)


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def _all_closed(sockets: list[socket.socket]) -> Callable[[], bool]:
    """A poll condition: every one of `sockets` has been closed by the agent (each counted once)."""
    open_ones = set(sockets)

    def check() -> bool:
        open_ones.difference_update([s for s in open_ones if _closed_by_peer(s)])
        return not open_ones

    return check


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = Agent(tmp_path / "agent", prefix=["prlimit", "--nofile=256:256", "--"],
                    extra=["--header-timeout", "2", "--body-timeout", "2", "--max-connections", "100"]).start()
    yield running
    running.stop_all()


def _connect(agent: Agent, head: bytes) -> socket.socket:
    sock = socket.create_connection((agent.host, agent.port), timeout=10)
    sock.sendall(head)
    sock.setblocking(False)
    return sock


def test_stalled_clients_are_closed_and_a_real_request_gets_through(agent: Agent) -> None:
    opened: list[socket.socket] = []
    try:
        for _ in range(STALLED):  # half a head, then nothing
            opened.append(_connect(agent, b"GET /v1/host HTTP/1.1\r\nHost: agent\r\nAuthoriz"))
        # a whole head, the start of an upload's body, then nothing
        opened.append(_connect(agent, b"PUT /v1/runs/slow/bundle HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer "
                               + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000))

        response = httpx.get(f"{agent.url}/v1/host", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert response.status_code == 200, response.text

        poll("the agent to close every stalled connection", _all_closed(opened), timeout=90)
        poll("the agent to remove the half-sent upload",
             lambda: not (agent.root / "state" / "runs" / "slow").exists(), timeout=30)
        again = httpx.get(f"{agent.url}/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert again.status_code == 200 and again.json() == {"runs": []}
    finally:
        for sock in opened:
            sock.close()
