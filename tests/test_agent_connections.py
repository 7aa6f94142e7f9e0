"""Slow clients cannot starve the agent: a connection that never finishes its request head, or
stalls in its body, is closed by the agent, and a flood of them never keeps a real request out,
even with few file descriptors. The limits are lowered so the tests stay quick; no timing is
asserted, only what was closed and what was answered (with generous hang guards)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.agent_helper import TOKEN, Agent
from tests.conftest import poll

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HALF_A_HEAD = b"GET /v1/host HTTP/1.1\r\nHost: agent\r\nAuthoriz"


def _connect(agent: Agent, sent: bytes) -> socket.socket:
    sock = socket.create_connection((agent.host, agent.port), timeout=30)
    sock.sendall(sent)
    sock.setblocking(False)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def _closed(sockets: list[socket.socket]) -> Callable[[], int]:
    """How many of `sockets` the agent has closed so far (each counted once)."""
    seen: set[socket.socket] = set()

    def count() -> int:
        seen.update(s for s in sockets if s not in seen and _closed_by_peer(s))
        return len(seen)

    return count


def test_a_flood_of_stalled_clients_never_keeps_a_real_request_out(tmp_path: Path) -> None:
    """400 clients stall in their request head, more than the agent's 256 file descriptors allow;
    the head timeout is far away, so what lets the real request in is the connection cap: past it,
    the connection waiting longest for its head is closed."""
    agent = Agent(tmp_path / "agent", prefix=["prlimit", "--nofile=256:256", "--"],
                  extra=["--header-timeout", "600", "--max-connections", "100"]).start()
    opened: list[socket.socket] = []
    try:
        opened.extend(_connect(agent, HALF_A_HEAD) for _ in range(400))
        response = httpx.get(f"{agent.url}/v1/host", headers=AUTH, timeout=30)  # a hang guard
        assert response.status_code == 200, response.text
        closed = _closed(opened)
        poll("the agent to close all but 100 of the stalled connections", lambda: closed() >= 300)
        assert "the connection limit is 96" in (agent.root / "agent.log").read_text()  # 256 descriptors
    finally:
        for sock in opened:
            sock.close()
        agent.stop_all()


def test_stalled_heads_and_bodies_are_closed(tmp_path: Path) -> None:
    agent = Agent(tmp_path / "agent", extra=["--header-timeout", "1", "--body-timeout", "1"]).start()
    opened: list[socket.socket] = []
    try:
        opened.extend(_connect(agent, HALF_A_HEAD) for _ in range(20))
        opened.append(_connect(agent, b"GET /v1/host HTTP/1.1\r\n"))  # a slow client, a byte at a time
        # a whole head, the start of an upload's body, then nothing
        opened.append(_connect(agent, b"PUT /v1/runs/slow/bundle HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer "
                               + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000))
        slow = opened[-2]
        closed = _closed(opened)

        def all_closed() -> bool:
            try:
                slow.send(b"X")  # it never ends its head, however often it sends
            except OSError:
                pass
            return closed() == len(opened)

        poll("the agent to close every stalled connection", all_closed, timeout=90, interval=0.2)
        poll("the agent to remove the half-sent upload", lambda: not (agent.root / "state" / "runs" / "slow").exists())
        again = httpx.get(f"{agent.url}/v1/runs", headers=AUTH, timeout=30)
        assert again.status_code == 200 and again.json() == {"runs": []}
    finally:
        for sock in opened:
            sock.close()
        agent.stop_all()
