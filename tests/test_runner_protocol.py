"""The Runner protocol itself, called in-process on each runner (tests/test_runners.py drives the
same runners through the CLI): what a runner says it can do, `wait` telling a run that is still
going (None) from one that is gone (RunLost), and a resumable runner finding its run again.

Docker and the agent are real (scripts/test.sh sets up Docker; the agent is `vhtui runner serve`
on loopback).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from runners import ResumableRunner, RunLost, Runner, RunSpec, get_runner, sandbox
from tests.agent_helper import TOKEN, Agent
from tests.conftest import poll
from tests.test_runners import IMAGE, NO_DOCKER, docker_ready, require


@pytest.fixture(params=["local", "docker", "remote"])
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    if request.param == "docker":
        require(docker_ready(), NO_DOCKER)
    if request.param != "remote":
        yield get_runner(request.param, envs_dir=tmp_path / "envs", gpus="0")
        return
    agent = Agent(tmp_path / "agent").start()
    try:
        yield get_runner("remote", url=agent.url, token=TOKEN, name="box")
    finally:
        agent.stop_all()


def spec(tmp_path: Path, command: str) -> RunSpec:
    dirs = {name: tmp_path / "run" / name for name in ("repository", "inputs", "outputs", "config")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    script = dirs["config"] / "command.sh"
    script.write_text(command + "\n")
    return RunSpec(run_id=f"protocol-{tmp_path.name}"[:60], script=script, repository_dir=dirs["repository"],
                   inputs_dir=dirs["inputs"], outputs_dir=dirs["outputs"], config_dir=dirs["config"],
                   image=IMAGE, options={"env_mode": "current"})


def drain(runner: Runner, handle: object) -> bytes:
    return b"".join(chunk.data for chunk in runner.stream(handle))  # type: ignore[arg-type]


def test_a_runner_says_what_it_can_do(runner: Runner) -> None:
    assert runner.kind in ("local", "docker", "remote")
    assert {type(runner.uses_host_slots), type(runner.protects_inputs), type(runner.resumable)} == {bool}
    assert runner.uses_host_slots is (runner.kind != "remote")
    # a local run protects its inputs only in its own namespace (read-only there)
    assert runner.protects_inputs is (runner.kind != "local" or sandbox.unavailable() is None)
    assert runner.resumable is (runner.kind == "remote") and hasattr(runner, "reattach") is runner.resumable
    health = runner.health()
    assert health["health"] == "ok" and health["gpus"] == []
    runner.preflight(IMAGE, 0)  # nothing to refuse


def test_preflight_refuses_more_gpus_than_there_are(runner: Runner) -> None:
    from runners import RunnerError

    with pytest.raises(RunnerError, match="asks for 1 GPU"):
        runner.preflight(IMAGE, 1)  # the hosts here offer none (gpus="0", the agent's --gpus 0)


def test_wait_says_still_running_then_gives_the_exit_code(runner: Runner, tmp_path: Path) -> None:
    handle = runner.start(spec(tmp_path, "echo started; sleep 1; echo done; exit 3"))
    assert runner.wait(handle, timeout=0.1) is None  # still going: not an exit, not lost
    assert drain(runner, handle).splitlines() == [b"started", b"done"]
    assert runner.wait(handle) == 3


@pytest.mark.parametrize("runner", ["docker", "remote"], indirect=True)  # a local run is its owner's child
def test_a_run_that_vanishes_is_lost_not_running(runner: Runner, tmp_path: Path) -> None:
    handle = runner.start(spec(tmp_path, "echo started; sleep 60"))
    if runner.kind == "docker":
        subprocess.run(["docker", "rm", "-f", handle.state["container"]], check=True, capture_output=True)
    else:  # the agent forgets the run: its folder goes, keeper and all
        run_dir = tmp_path / "agent" / "state" / "runs" / handle.state["run"]
        poll("the run to start on the agent", lambda: (run_dir / "keeper.json").exists())
        subprocess.run(["pkill", "-KILL", "-f", str(run_dir)], check=False)
        shutil.rmtree(run_dir)
    with pytest.raises(RunLost):
        runner.wait(handle, timeout=30)


@pytest.mark.parametrize("runner", ["remote"], indirect=True)  # the one resumable runner
def test_a_resumable_runner_finds_its_run_again(runner: Runner, tmp_path: Path) -> None:
    assert runner.resumable
    resumable = cast(ResumableRunner, runner)
    handle = runner.start(spec(tmp_path, "echo one; sleep 1; echo two"))
    found = resumable.reattach(dict(handle.state))
    assert found is not None and found.state["run"] == handle.state["run"]
    assert drain(runner, found).splitlines() == [b"one", b"two"]
    assert runner.wait(found) == 0
    assert resumable.reattach(dict(handle.state)) is None  # ended and deleted: gone
