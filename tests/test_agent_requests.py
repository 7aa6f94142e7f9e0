"""Bad requests and damaged run folders: a clear 400 for a bad query parameter, and one run folder
with a broken record never breaks the routes that list every run."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runners import frames
from tests.agent_helper import TOKEN, Agent
from tests.conftest import poll

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = Agent(tmp_path / "agent").start()
    yield running
    running.stop_all()


def _start(agent: Agent, run_id: str, script: str) -> None:
    """Upload a bundle holding only config/job.sh, and start it."""
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w") as tar:
        data = script.encode()
        info = tarfile.TarInfo("config/job.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert httpx.put(f"{agent.url}/v1/runs/{run_id}/bundle", content=bundle.getvalue(), headers=AUTH).status_code == 200
    assert httpx.post(f"{agent.url}/v1/runs/{run_id}", json={"script": "job.sh", "env": {}},
                      headers=AUTH).status_code == 201


def _state(agent: Agent, run_id: str) -> str:
    return str(httpx.get(f"{agent.url}/v1/runs/{run_id}", headers=AUTH).json()["state"])


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the test's own whose pid a damaged record names: the agent must never signal it."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("keeper, status", [
    ('{"pid": PID}', '{"state": "running"}'),
    ('{"pid": PID, "start": null}', '{"state": "running"}'),
    ('{"pid": "x", "start": "y"}', '{"state": "running"}'),
    ("[1, 2]", '{"state": "queued"}'),
    ('"a string"', '{"state": "running"}'),
    ("not json {", '{"state": "running", "gpus": 3}'),
    ("{}", "null"),
    ("{}", "[]"),
    ("{}", '{"state": 7}'),
], ids=["no-start", "unknown-start", "wrong-types", "a-list", "a-string", "not-json", "status-null",
        "status-a-list", "status-a-number"])
def test_a_damaged_run_record_never_breaks_the_listing(agent: Agent, bystander: subprocess.Popen[bytes],
                                                       keeper: str, status: str) -> None:
    _start(agent, "healthy", "echo fine\n")
    poll("the healthy run to end", lambda: _state(agent, "healthy") == "exited")
    damaged = agent.root / "state" / "runs" / "damaged"
    (damaged / "config").mkdir(parents=True)
    (damaged / "spec.json").write_text('{"script": "job.sh"}')
    (damaged / "keeper.json").write_text(keeper.replace("PID", str(bystander.pid)))
    (damaged / "status.json").write_text(status)
    try:
        listing = httpx.get(f"{agent.url}/v1/runs", headers=AUTH)
        assert listing.status_code == 200, listing.text
        runs = {r["id"]: r for r in listing.json()["runs"]}
        assert runs["healthy"]["state"] == "exited" and runs["healthy"]["exit_code"] == 0
        assert runs["damaged"]["state"] == "lost" and "damaged" in runs["damaged"]["reason"], runs["damaged"]
        host = httpx.get(f"{agent.url}/v1/host", headers=AUTH)
        assert host.status_code == 200 and host.json()["running"] == 0, host.text
        assert httpx.get(f"{agent.url}/v1/runs/damaged", headers=AUTH).status_code == 200
        assert httpx.post(f"{agent.url}/v1/runs/damaged/stop", headers=AUTH).status_code == 200
        assert bystander.poll() is None, "the agent signalled a pid read from a damaged record"
        assert httpx.delete(f"{agent.url}/v1/runs/damaged", headers=AUTH).status_code == 200
        assert httpx.delete(f"{agent.url}/v1/runs/healthy", headers=AUTH).status_code == 200
        assert httpx.get(f"{agent.url}/v1/runs", headers=AUTH).json() == {"runs": []}
    finally:  # the agent fixture's clean-up signals what every keeper.json names: leave no damaged one
        shutil.rmtree(damaged, ignore_errors=True)


@pytest.mark.parametrize("query, rule", [
    ("offset=-5", "offset"), ("offset=abc", "offset"), ("offset=1.5", "offset"), ("offset=", "offset"),
    ("offset=%2B3", "offset"),
])
def test_a_bad_output_offset_is_a_clear_400(agent: Agent, query: str, rule: str) -> None:
    _start(agent, "r1", "echo hello\n")
    poll("the run to end", lambda: _state(agent, "r1") == "exited")
    response = httpx.get(f"{agent.url}/v1/runs/r1/output?{query}", headers=AUTH, timeout=30)
    assert response.status_code == 400, response.content
    assert rule in response.json()["error"]


@pytest.mark.parametrize("grace", ["nan", "inf", "-inf", "-1", "1e9", "abc", ""])
def test_a_bad_stop_grace_is_a_clear_400(agent: Agent, grace: str) -> None:
    _start(agent, "r2", "sleep 30\n")
    response = httpx.post(f"{agent.url}/v1/runs/r2/stop?grace={grace}", headers=AUTH)
    assert response.status_code == 400, response.text
    assert "grace" in response.json()["error"]
    assert not (agent.root / "state" / "runs" / "r2" / "stop.json").exists()
    assert httpx.post(f"{agent.url}/v1/runs/r2/stop?grace=0.5", headers=AUTH).status_code == 200
    poll("the run to stop", lambda: _state(agent, "r2") == "exited")


def test_an_offset_past_the_output_so_far_gets_whole_frames(agent: Agent) -> None:
    """A client that asks from further on than the run has printed gets the rest, well framed (the
    second line goes to stderr, so it is a frame of its own, shorter than the bytes to skip)."""
    _start(agent, "r3", 'echo first\nwhile [ ! -e go ]; do sleep 0.05; done\necho "second line" >&2\necho third\n')
    poll("the first line", lambda: httpx.get(f"{agent.url}/v1/runs/r3", headers=AUTH).json()["frames_size"] > 0)
    with httpx.stream("GET", f"{agent.url}/v1/runs/r3/output", params={"offset": len("first\nsecond line\n") + 2},
                      headers=AUTH, timeout=30) as response:
        (agent.root / "state" / "runs" / "r3" / "repository" / "go").touch()
        assert response.status_code == 200
        body = response.read()
    parts, rest = frames.split(body)
    assert rest == b"" and b"".join(payload for _, payload in parts) == b"ird\n"
