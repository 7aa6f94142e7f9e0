"""The runner agent and the remote runner: security, bad input and faults, against a real agent
(`vhtui runner serve` on loopback, or in a network namespace of its own) and a real control side.

The link-cut and full-disk cases need root (a network namespace, a tmpfs); CI runs as root, so
there they fail rather than skip when root is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_helper import TOKEN, Agent
from tests.conftest import Project, poll
from tests.test_runners import IMAGE, NO_DOCKER, docker_ready, require

STEPS = """
- step:
    name: count
    image: python:3.11
    command: python3 count.py {parameters}
    parameters:
      - name: n
        type: integer
        default: 5
      - name: pause
        type: float
        default: 0
- step:
    name: big-input
    image: python:3.11
    command: ls -l /valohai/inputs/blob
    inputs:
      - name: blob
"""

COUNT = """
import argparse, json, time
p = argparse.ArgumentParser(); p.add_argument("--n", type=int); p.add_argument("--pause", type=float)
a = p.parse_args()
for i in range(a.n):
    print(f"line {i:06d}", flush=True)
    if i % 10 == 0:
        print(json.dumps({"i": i}), flush=True)
    time.sleep(a.pause)
"""


def need_root() -> None:
    require(os.geteuid() == 0, "this fault test needs root (a network namespace or a tmpfs)")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = Agent(tmp_path / "agent").start()
    yield running
    running.stop_all()


@pytest.fixture
def remote(project: Project, agent: Agent) -> Project:
    project.write("valohai.yaml", STEPS)
    project.write("count.py", COUNT)
    project.vhtui("runner", "add", "box", agent.url, "--token-file", str(agent.token_file))
    return project


def launch(project: Project, *args: str) -> int:
    return project.run("count", "--runner", "box", "--env", "current", *args)


def assert_whole(project: Project, counter: int, n: int) -> None:
    """Every line once, in order, and every metadata event once."""
    doc = project.wait(counter, timeout=120)
    assert doc["status"] == "complete", (doc, project.logs(counter)[-2000:])
    lines = [line for line in project.logs(counter).splitlines() if line.startswith("line ")]
    assert lines == [f"line {i:06d}" for i in range(n)]
    assert doc["metadata_count"] == len(range(0, n, 10))


# -- tokens --------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_every_route_wants_the_token(agent: Agent, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/v1/host"), ("GET", "/v1/runs"), ("PUT", "/v1/runs/x/bundle"),
                         ("POST", "/v1/runs/x"), ("GET", "/v1/runs/x/output"), ("DELETE", "/v1/runs/x")]:
        response = httpx.request(method, agent.url + path, headers=headers)
        assert response.status_code == 401 and response.json() == {"error": "missing or wrong token"}
    assert not (agent.root / "state" / "runs" / "x").exists()


def test_a_stale_token_is_one_clear_line_and_stores_nothing(remote: Project, agent: Agent) -> None:
    agent.token_file.write_text("a-rotated-token-0123456789")  # the agent restarts with a new token
    agent.kill()
    agent.start()
    (remote.root.parent / "old").write_text(TOKEN)
    remote.vhtui("runner", "add", "box", agent.url, "--token-file", str(remote.root.parent / "old"))
    result = remote.vhtui("run", "count", "--runner", "box", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "vhtui: error: the runner agent box refused the token (401): check its token file"]
    assert "no executions" in remote.vhtui("exec", "list", check=False).stderr


def test_an_unreachable_agent_is_one_clear_line(remote: Project, agent: Agent) -> None:
    agent.kill()
    result = remote.vhtui("run", "count", "--runner", "box", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"vhtui: error: cannot reach the runner agent box at {agent.url}")
    listing = remote.vhtui("runner", "ls").stdout
    assert "box" in listing and "cannot reach" in listing


def _runners(project: Project) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in json.loads(project.vhtui("runner", "ls", "--json").stdout)["results"]}


def test_runner_ls_shows_health_gpus_and_slots(remote: Project, agent: Agent) -> None:
    runners = _runners(remote)
    assert list(runners) == ["local", "docker", "box"]  # this host's runners first, then the agents
    doc = runners["box"]
    assert doc["url"] == agent.url and doc["health"] == "ok"
    assert doc["slots"] == 2 and doc["free_slots"] == 2 and doc["running"] == 0 and doc["queued"] == 0
    assert doc["cpus"] >= 1 and doc["memory_total"] > 0  # type: ignore[operator]
    assert doc["gpus"] == []  # no GPU here: the agent runs with --gpus 0 (scripts/gpu_check.py covers NVML)
    remote.vhtui("runner", "rm", "box")
    assert list(_runners(remote)) == ["local", "docker"]


# -- hostile archives ----------------------------------------------------------------------------
def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("archive, rule", [
    (_tar((_member("/etc/evil"), b"x")), "absolute paths are refused"),
    (_tar((_member("repository/../../evil"), b"x")), "'..' in a path is refused"),
    (_tar((_member("repository/out", tarfile.SYMTYPE, "../../../../etc/passwd"), b"")), "links are refused"),
    (_tar((_member("repository/abs", tarfile.SYMTYPE, "/etc/passwd"), b"")), "links are refused"),
    (_tar((_member("repository/hard", tarfile.LNKTYPE, "/etc/passwd"), b"")), "links are refused"),
    # a link that stays in the tree but names the run's own folder, and a member written through it
    (_tar((_member("repository/up", tarfile.SYMTYPE, ".."), b""),
          (_member("repository/up/status.json"), b'{"state": "running"}'),
          (_member("repository/up/keeper.json"), b'{"pid": 12345}')), "links are refused"),
    (_tar((_member("repository/a"), b"x"), (_member("repository/b", tarfile.LNKTYPE, "repository/a"), b"")),
     "links are refused"),
    (_tar((_member("repository/dev", tarfile.CHRTYPE), b"")), "device files"),
    (_tar((_member("elsewhere/file"), b"x")), "only repository, inputs, config may be sent"),
    (_tar((_member("./", tarfile.DIRTYPE), b"")), "empty and '.' names are refused"),
    (_tar((_member("", tarfile.REGTYPE), b"x")), "empty and '.' names are refused"),
    (_tar((_member("repository/ok"), b"x"), (_member(".", tarfile.DIRTYPE), b"")), "empty and '.' names are refused"),
    (_tar(*[(_member(f"inputs/f{i}"), b"") for i in range(60)]), "more than 50 files"),
    (_tar((_member("inputs/bomb"), b"0" * 300_000)), "more than 262,144 bytes"),
    (b"this is not a tar archive" * 100, "not a tar archive"),
], ids=["absolute", "dotdot", "symlink-out", "symlink-absolute", "hardlink-out", "through-a-link",
        "hardlink-inside", "device", "other-folder", "dot-slash", "empty-name", "dot-after-a-file",
        "too-many-files", "too-many-bytes", "not-tar"])
def test_hostile_archives_are_refused_and_leave_nothing(tmp_path: Path, archive: bytes, rule: str) -> None:
    agent = Agent(tmp_path / "agent", extra=["--max-files", "50", "--max-upload-mb", "0.25"]).start()
    try:
        response = httpx.put(f"{agent.url}/v1/runs/evil/bundle", content=archive,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 400, response.text
        assert rule in response.json()["error"]
        assert not (agent.root / "state" / "runs" / "evil").exists()
        assert not Path("/evil").exists() and not (tmp_path / "evil").exists()
        listing = httpx.get(f"{agent.url}/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert listing.status_code == 200 and listing.json() == {"runs": []}, listing.text
    finally:
        agent.stop_all()


# -- faults mid-run ------------------------------------------------------------------------------
def test_agent_killed_and_restarted_mid_run(remote: Project, agent: Agent) -> None:
    counter = launch(remote, "--n=150", "--pause=0.02")
    _wait_for_line(remote, counter, "line 000020")
    agent.kill()
    time.sleep(2)
    agent.start()
    assert_whole(remote, counter, 150)


def test_control_supervisor_killed_mid_run_is_resumed(remote: Project, agent: Agent) -> None:
    # a steady stream of metadata (an event every 20 ms): the metadata writer is always a batch
    # behind, and a checkpoint must be stored all the same, so that the resume starts past line 0
    counter = launch(remote, "--n=300", "--pause=0.02")
    _wait_for_line(remote, counter, "line 000050")
    poll("a checkpoint past the start to be stored (at a heartbeat)",
         lambda: (_execution(remote, counter)["checkpoint"] or {}).get("offset", 0) > 0)
    before = remote.info(counter)
    supervisor = _execution(remote, counter)["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)

    def resumed() -> bool:
        remote.vhtui("exec", "list")  # any reader reconciles: it starts a supervisor that resumes the run
        return _execution(remote, counter)["supervisor_pid"] != supervisor

    poll("a new supervisor to take the run over", resumed)
    assert_whole(remote, counter, 300)
    assert before["status"] == "started"


def test_a_run_the_agent_forgets_ends_crashed_as_lost(remote: Project, agent: Agent) -> None:
    """Not "still running" for ever, nor retried for the 300 s a cut link gets: gone is gone."""
    counter = launch(remote, "--n=1000", "--pause=0.05")
    _wait_for_line(remote, counter, "line 000005")
    run_dir = next((agent.root / "state" / "runs").iterdir())
    os.killpg(json.loads((run_dir / "keeper.json").read_text())["pid"], signal.SIGKILL)
    shutil.rmtree(run_dir)
    doc = remote.wait(counter, timeout=60)
    assert doc["status"] == "crashed" and doc["status_detail"].startswith("the run was lost: "), doc


def test_a_secret_never_reaches_the_agents_disk_or_the_log(agent: Agent, tmp_path: Path) -> None:
    from runners import RunSpec
    from runners.remote import RemoteRunner

    for name in ("repo", "inputs", "outputs", "config"):
        (tmp_path / name).mkdir()
    (tmp_path / "config" / "job.sh").write_text('echo "key is $API_KEY"; echo "half ${API_KEY%????}"\n')
    runner = RemoteRunner(agent.url, TOKEN)
    spec = RunSpec("secret1", tmp_path / "config" / "job.sh", tmp_path / "repo", tmp_path / "inputs",
                   tmp_path / "outputs", tmp_path / "config", env={"API_KEY": "s3cr3t-value-42", "X": "1"},
                   secret_env=frozenset({"API_KEY"}))
    handle = runner.start(spec)
    output = b"".join(chunk.data for chunk in runner.stream(handle))
    assert runner.wait(handle) == 0
    assert output.splitlines()[0] == b"key is ****"
    for path in (agent.root / "state").rglob("*"):
        if path.is_file():
            assert b"s3cr3t-value-42" not in path.read_bytes(), path


def test_tls_with_a_certificate(project: Project, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    agent = Agent(tmp_path / "agent", extra=["--tls-cert", str(cert), "--tls-key", str(key)], verify=str(cert)).start()
    try:
        project.write("valohai.yaml", STEPS)
        project.write("count.py", COUNT)
        assert agent.url.startswith("https://")
        project.vhtui("runner", "add", "tls", agent.url, "--token-file", str(agent.token_file), "--ca-file", str(cert))
        project.vhtui("runner", "add", "untrusted", agent.url, "--token-file", str(agent.token_file))
        counter = project.run("count", "--runner", "tls", "--env", "current", "--n=3")
        assert project.wait(counter)["status"] == "complete"
        refused = project.vhtui("run", "count", "--runner", "untrusted", check=False)
        assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    finally:
        agent.stop_all()


def test_a_full_disk_on_the_agent_is_a_clear_error(remote: Project, tmp_path: Path) -> None:
    need_root()
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        agent = Agent(small / "agent")
        agent.start()
        try:
            remote.vhtui("runner", "add", "tiny", agent.url, "--token-file", str(agent.token_file))
            (remote.root / "blob").write_bytes(os.urandom(4 << 20))
            counter = remote.run("big-input", "--runner", "tiny", "--env", "current", "--blob=blob")
            doc = remote.wait(counter)
            assert doc["status"] == "error"
            assert "the agent cannot store the upload: No space left on device" in doc["status_detail"]
            assert not any((small / "agent" / "state" / "runs").iterdir())  # its partial upload is gone
            blob = remote.root / "blob"  # nothing lost on this side: the input and its record are intact
            assert blob.stat().st_size == 4 << 20
            assert [(i["name"], i["size"], i["checksums"]["sha256"]) for i in doc["inputs"]] == [
                ("blob", 4 << 20, hashlib.sha256(blob.read_bytes()).hexdigest())]
        finally:
            agent.stop_all()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_cut_link_resumes_with_no_line_lost_or_twice(remote: Project, tmp_path: Path) -> None:
    """The agent runs as a second host in a network namespace joined by a veth pair; the link is
    taken down for several seconds while the run prints."""
    need_root()
    name = f"vhtui{os.getpid() % 10000}"
    host_if, agent_if = f"{name}h", f"{name}a"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", agent_if)
        ip("link", "set", agent_if, "netns", name)
        ip("addr", "add", "10.231.0.1/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", name, "ip", "addr", "add", "10.231.0.2/30", "dev", agent_if)
        ip("netns", "exec", name, "ip", "link", "set", agent_if, "up")
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        agent = Agent(tmp_path / "netns-agent", host="10.231.0.2", prefix=["ip", "netns", "exec", name])
        agent.start()
        try:
            remote.vhtui("runner", "add", "far", agent.url, "--token-file", str(agent.token_file))
            counter = remote.run("count", "--runner", "far", "--env", "current", "--n=400", "--pause=0.02")
            _wait_for_line(remote, counter, "line 000050")
            ip("link", "set", host_if, "down")
            time.sleep(6)  # longer than the client's read timeout: the stream must reconnect
            cut_log = remote.logs(counter)
            ip("link", "set", host_if, "up")
            assert_whole(remote, counter, 400)
            assert "line 000399" not in cut_log  # the run went on while the link was down
        finally:
            agent.stop_all()
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _wait_for_line(project: Project, counter: int, line: str) -> None:
    deadline = time.monotonic() + 60
    while line not in project.logs(counter):
        assert time.monotonic() < deadline, project.logs(counter)[-2000:]
        time.sleep(0.1)


def _execution(project: Project, counter: int) -> dict[str, Any]:
    """What the store holds about the run: its supervisor's pid, and the checkpoint a resumed
    supervisor would go on from (None until one is stored)."""
    conn = sqlite3.connect(project.home / "vhtui.sqlite3", timeout=30)
    try:
        pid, state = conn.execute("SELECT supervisor_pid, runner_state FROM executions WHERE counter = ?",
                                  (counter,)).fetchone()
    finally:
        conn.close()
    return {"supervisor_pid": pid, "checkpoint": json.loads(state or "{}").get("checkpoint")}


def test_an_agent_with_the_docker_backend(project: Project, tmp_path: Path) -> None:
    """The agent's own runner can be Docker: the command sees Valohai's container paths."""
    require(docker_ready(), NO_DOCKER)
    agent = Agent(tmp_path / "agent", backend="docker").start()
    try:
        project.write("valohai.yaml", f"""
        - step:
            name: where
            image: {IMAGE}
            command:
              - pwd
              - echo "$VH_OUTPUTS_DIR" > $VH_OUTPUTS_DIR/where.txt
        """)
        project.vhtui("runner", "add", "dockerbox", agent.url, "--token-file", str(agent.token_file))
        counter = project.run("where", "--runner", "dockerbox")
        doc = project.wait(counter, timeout=60)
        assert doc["status"] == "complete", project.logs(counter)
        assert project.logs(counter).strip() == "/valohai/repository"
        out = tmp_path / "out"
        project.vhtui("exec", "outputs", str(counter), "--download", str(out))
        assert (out / "where.txt").read_text().strip() == "/valohai/outputs"
    finally:
        agent.stop_all()
