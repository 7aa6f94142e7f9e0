"""A job's outputs never bring home a file of the agent's host: packing the outputs follows no link
out of the outputs folder, whichever backend ran the job, and the run's log says what was left out.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runners import RunSpec
from runners.remote import RemoteRunner
from tests.agent_helper import TOKEN, Agent
from tests.conftest import Project
from tests.test_runners import IMAGE, NO_DOCKER, docker_ready, require

LINKS_LEAVING = ("host-secret", "token", "up", "run-record", "dangling")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = Agent(tmp_path / "agent").start()
    yield running
    running.stop_all()


def _outputs_tar(agent: Agent, run_id: str, readonly: bool) -> dict[str, bytes | None]:
    """What the agent's outputs route sends: member name -> content (None for a folder)."""
    response = httpx.get(f"{agent.url}/v1/runs/{run_id}/outputs", params={"readonly": "1"} if readonly else {},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        return {m.name: tar.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
                for m in tar.getmembers()}


def test_a_local_job_cannot_link_the_agents_files_into_its_outputs(agent: Agent, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("a file of the agent's host\n")
    secret.chmod(0o444)  # read-only, so a live (read-only) fetch would take it too
    for name in ("repo", "inputs", "outputs", "config"):
        (tmp_path / name).mkdir()
    (tmp_path / "config" / "job.sh").write_text(f"""
cd ../outputs
echo good > good.txt && chmod 0444 good.txt
mkdir sub && echo deep > sub/deep.txt
ln -s good.txt inside
ln -s "$PWD/good.txt" inside-absolute
ln -s sub sub-link
ln -s {secret} host-secret
ln -s {agent.token_file} token
ln -s .. up
ln -s ../keeper.json run-record
ln -s nowhere dangling
echo done
""")
    runner = RemoteRunner(agent.url, TOKEN)
    spec = RunSpec("links1", tmp_path / "config" / "job.sh", tmp_path / "repo", tmp_path / "inputs",
                   tmp_path / "outputs", tmp_path / "config", env={})
    handle = runner.start(spec)
    chunks = list(runner.stream(handle))
    stderr = b"".join(c.data for c in chunks if c.stream == "stderr").decode()

    everything = _outputs_tar(agent, "links1", readonly=False)
    assert sorted(everything) == ["outputs", "outputs/good.txt", "outputs/inside", "outputs/inside-absolute",
                                  "outputs/sub", "outputs/sub/deep.txt"]
    assert everything["outputs/inside"] == everything["outputs/inside-absolute"] == b"good\n"
    final = _outputs_tar(agent, "links1", readonly=True)
    assert sorted(final) == ["outputs/good.txt", "outputs/inside", "outputs/inside-absolute"]

    assert runner.wait(handle) == 0
    home = tmp_path / "outputs"
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == [
        "good.txt", "inside", "inside-absolute", "sub", "sub/deep.txt"]
    assert not any(p.is_symlink() for p in home.rglob("*"))
    for name in LINKS_LEAVING:  # the log says which output was left out, and why
        assert f"output {name} was not stored: it is a link" in stderr, stderr
    assert f"a link to {secret}, outside the outputs folder" in stderr
    assert "output sub-link was not stored: it is a link to a folder" in stderr
    assert "inside" not in stderr.replace("inside-", "").replace("outside", "")  # stored: no warning


def test_a_docker_job_cannot_link_the_agents_files_into_its_outputs(project: Project, tmp_path: Path) -> None:
    """In a container a link names a path of the agent's host once the agent reads it: /etc/shadow
    there is the host's."""
    require(docker_ready(), NO_DOCKER)
    agent = Agent(tmp_path / "agent", backend="docker").start()
    try:
        project.write("valohai.yaml", f"""
        - step:
            name: links
            image: {IMAGE}
            command:
              - echo good > $VH_OUTPUTS_DIR/good.txt
              - ln -s good.txt $VH_OUTPUTS_DIR/inside
              - ln -s /etc/shadow $VH_OUTPUTS_DIR/shadow
              - ln -s {agent.token_file} $VH_OUTPUTS_DIR/token
              - ln -s .. $VH_OUTPUTS_DIR/up
        """)
        project.vhtui("runner", "add", "dockerbox", agent.url, "--token-file", str(agent.token_file))
        counter = project.run("links", "--runner", "dockerbox")
        doc = project.wait(counter, timeout=60)
        assert doc["status"] == "complete", project.logs(counter)
        out = tmp_path / "out"
        project.vhtui("exec", "outputs", str(counter), "--download", str(out))
        assert sorted(p.name for p in out.iterdir()) == ["good.txt", "inside"]
        assert (out / "inside").read_text() == "good\n"
        log = project.logs(counter)
        for name, target in (("shadow", "/etc/shadow"), ("token", str(agent.token_file)), ("up", "..")):
            assert f"output {name} was not stored: it is a link to {target}, outside the outputs folder" in log, log
    finally:
        agent.stop_all()
