"""One contract, every runner: the same steps must behave the same on the local, Docker and remote
(a runner agent on loopback) runners.

Docker runs for real: scripts/test.sh starts dockerd and builds the test image. Outside CI a
machine without Docker skips the Docker cases; in CI (CI set) they fail instead.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

from collections.abc import Iterator
from pathlib import Path

import pytest

from runners import sandbox
from tests.agent_helper import Agent
from tests.conftest import Project

IMAGE = "vhtui-test/python:3.11"
NO_DOCKER = f"no Docker engine or no {IMAGE} image here (scripts/docker-setup.sh provides both)"

STEPS = f"""
- step:
    name: contract
    image: {IMAGE}
    command: python3 contract.py {{parameters}}
    parameters:
      - name: lines
        type: integer
        default: 20
      - name: fail
        type: flag
    inputs:
      - name: data
- step:
    name: stubborn
    image: {IMAGE}
    command: python3 stubborn.py
- step:
    name: bashism
    image: {IMAGE}
    command: |
      #!/bin/bash
      if [[ {{parameter-value:word}} == wib* ]]; then echo "bash ran it: {{parameter-value:word}}"; fi
    parameters:
      - name: word
        type: string
        default: wibble
- step:
    name: flood
    image: {IMAGE}
    command: python3 flood.py
- step:
    name: utils
    image: {IMAGE}
    command: python3 utils_script.py {{parameters}}
    parameters:
      - name: epochs
        type: integer
        default: 2
    inputs:
      - name: table
- step:
    name: live
    image: {IMAGE}
    command: python3 live.py
- step:
    name: slow
    image: {IMAGE}
    command: sleep 60
    time-limit: 2
"""

CONTRACT = """
import json, os, sys, argparse
p = argparse.ArgumentParser(); p.add_argument("--lines", type=int); p.add_argument("--fail", action="store_true")
a = p.parse_args()
config = os.environ["VH_CONFIG_DIR"]
params = json.load(open(os.path.join(config, "parameters.json")))
inputs = json.load(open(os.path.join(config, "inputs.json")))
data_path = inputs["data"]["files"][0]["path"]
content = open(data_path).read()
try:
    open(data_path, "a").write("tamper")
    tampered = True
except OSError:
    tampered = False
for i in range(a.lines):
    print(json.dumps({"i": i, "loss": 1.0 / (i + 1)}), flush=True)
    if i % 5 == 4:
        print(f"stderr line {i}", file=sys.stderr, flush=True)
out = os.environ["VH_OUTPUTS_DIR"]
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
open(os.path.join(out, "sub", "result.txt"), "w").write(content.upper())
print(json.dumps({"cwd_is_repo": os.getcwd() == os.environ["VH_REPOSITORY_DIR"], "params": params,
                  "input_read_only": not tampered}))
sys.exit(3 if a.fail else 0)
"""

# Ignores SIGTERM, then ticks; its natural end ("finished") comes a minute after the SIGTERM, far
# past any grace period, so a stop must kill it.
STUBBORN = """
import os, signal, time
terminated = False
def on_term(*_):
    global terminated
    terminated = True
    print("ignoring SIGTERM", flush=True)
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "partial.txt"), "w").write("before stop\\n")
print("started", flush=True)
ticks = 0
while ticks < 600:
    time.sleep(0.1)
    if terminated:
        ticks += 1
        print(f"tick {ticks}", flush=True)
print("finished", flush=True)
"""


FLOOD = """
import sys
for i in range(300_000):
    sys.stdout.write(f"line {i:06d} " + "x" * 80 + "\\n")
"""

LIVE = """
import os, time
path = os.path.join(os.environ["VH_OUTPUTS_DIR"], "checkpoint.txt")
open(path, "w").write("epoch 1")
os.chmod(path, 0o444)
print("checkpoint written", flush=True)
time.sleep(60)
"""


UTILS_SCRIPT = """
import json
import valohai

valohai.prepare(step="utils", default_parameters={"epochs": 1}, default_inputs={"table": "nothing.csv"})
rows = open(valohai.inputs("table").path()).read().splitlines()
for epoch in range(valohai.parameters("epochs").value):
    with valohai.logger() as logger:
        logger.log("epoch", epoch)
        logger.log("rows", len(rows))
json.dump({"rows": len(rows)}, open(valohai.outputs().path("result.json"), "w"))
"""


def require(ready: bool, missing: str) -> None:
    """Skip a test whose prerequisite is missing here; in CI (CI set), which provides it, fail."""
    if ready:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing}, which CI must provide")
    pytest.skip(missing)


def docker_ready() -> bool:
    try:
        from runners.docker import docker_client

        docker_client().api.inspect_image(IMAGE)
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(params=["local", "docker", "remote"])
def runner(request: pytest.FixtureRequest, tmp_path: Path, project: Project) -> Iterator[str]:
    """A runner name to launch with. "remote" is a real agent (`vhtui runner serve`, local backend)
    on a loopback port, registered in the project's home as the runner `box`."""
    if request.param == "docker":
        require(docker_ready(), NO_DOCKER)
    if request.param != "remote":
        yield request.param
        return
    agent = Agent(tmp_path / "agent").start()
    try:
        project.vhtui("runner", "add", "box", agent.url, "--token-file", str(agent.token_file))
        yield "box"
    finally:
        agent.stop_all()


@pytest.fixture
def steps(project: Project) -> Project:
    project.write("valohai.yaml", STEPS)
    project.write("contract.py", CONTRACT)
    project.write("stubborn.py", STUBBORN)
    project.write("flood.py", FLOOD)
    project.write("live.py", LIVE)
    project.write("utils_script.py", UTILS_SCRIPT)
    project.write("data.txt", "hello\n")
    return project


def launch(project: Project, runner: str, step: str, *args: str) -> int:
    extra = ["--env", "current"] if runner in ("local", "box") else []
    return project.run(step, "--runner", runner, *extra, *args, VHTUI_STOP_GRACE="3")


def test_parameters_inputs_outputs_metadata_and_logs(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "contract", "--lines=20", "--data=data.txt")
    doc = steps.wait(counter, timeout=60)
    log = steps.logs(counter)
    assert doc["status"] == "complete", log
    assert doc["exit_code"] == 0
    assert doc["metadata"]["params"] == {"lines": 20, "fail": False}
    assert doc["metadata"]["cwd_is_repo"] is True
    # Docker and a sandboxed local run (an agent's too) mount inputs read-only
    assert doc["metadata"]["input_read_only"] is (runner == "docker" or sandbox.unavailable() is None)
    assert doc["metadata_count"] == 21
    stdout = steps.logs(counter, "--stdout").splitlines()
    assert [json.loads(line)["i"] for line in stdout[:20]] == list(range(20))  # in order, none lost
    assert steps.logs(counter, "--stderr").splitlines() == [f"stderr line {i}" for i in (4, 9, 14, 19)]
    assert [o["name"] for o in doc["outputs"]] == ["sub/result.txt"]
    out = steps.root.parent / f"out-{runner}"
    steps.vhtui("exec", "outputs", str(counter), "--download", str(out))
    assert (out / "sub" / "result.txt").read_text().startswith("HELLO")


def test_exit_code_is_an_error_and_outputs_are_kept(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "contract", "--lines=2", "--fail", "--data=data.txt")
    doc = steps.wait(counter, timeout=60)
    assert doc["status"] == "error" and doc["exit_code"] == 3
    assert [o["name"] for o in doc["outputs"]] == ["sub/result.txt"]


def wait_for_line(project: Project, counter: int, line: str) -> None:
    deadline = time.monotonic() + 60
    while line not in project.logs(counter).splitlines():
        assert time.monotonic() < deadline, project.logs(counter)
        time.sleep(0.2)


def assert_given_its_grace_then_killed(log: list[str]) -> None:
    """STUBBORN (or a command that does as it does) went on ticking after SIGTERM, in its grace
    period, and never finished: SIGKILL. How long each took is measured by benchmarks/limits.py."""
    assert "ignoring SIGTERM" in log, log
    assert "finished" not in log, log[-3:]
    ticks = log[log.index("ignoring SIGTERM") + 1:]
    assert ticks and ticks == [f"tick {i}" for i in range(1, len(ticks) + 1)], log


def test_stop_kills_after_the_grace_period(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "stubborn")
    wait_for_line(steps, counter, "started")
    steps.vhtui("exec", "stop", str(counter))
    doc = steps.wait(counter, timeout=120)
    assert doc["status"] == "stopped"
    assert_given_its_grace_then_killed(steps.logs(counter).splitlines())
    assert [o["name"] for o in doc["outputs"]] == ["partial.txt"]


def test_a_shebang_command_runs_under_its_interpreter(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "bashism")
    assert steps.wait(counter, timeout=60)["status"] == "complete", steps.logs(counter)
    assert steps.logs(counter).strip() == "bash ran it: wibble"


def test_a_flood_of_output_is_stored_whole(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "flood")
    assert steps.wait(counter, timeout=120)["status"] == "complete"
    lines = steps.logs(counter).splitlines()
    assert len(lines) == 300_000
    assert lines[0].startswith("line 000000 ") and lines[-1].startswith("line 299999 ")


def test_a_valohai_utils_script_runs_unchanged(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "utils", "--epochs=3", "--table=data.txt")
    doc = steps.wait(counter, timeout=60)
    assert doc["status"] == "complete", steps.logs(counter)
    assert doc["metadata"] == {"epoch": 2, "rows": 1} and doc["metadata_count"] == 3
    assert [o["name"] for o in doc["outputs"]] == ["result.json"]


def test_live_outputs_are_stored_while_running(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "live")
    deadline = time.monotonic() + 60
    while not steps.info(counter)["outputs"]:
        assert time.monotonic() < deadline, "the read-only output was not stored during the run"
        time.sleep(0.3)
    assert steps.info(counter)["status"] == "started"
    steps.vhtui("exec", "stop", str(counter))
    assert [o["name"] for o in steps.wait(counter, timeout=30)["outputs"]] == ["checkpoint.txt"]


def test_time_limit(steps: Project, runner: str) -> None:
    counter = launch(steps, runner, "slow")
    doc = steps.wait(counter, timeout=40)
    assert doc["status"] == "error" and "time limit" in doc["status_detail"]


# -- Docker only -----------------------------------------------------------------------------
@pytest.fixture
def docker_steps(steps: Project) -> Project:
    require(docker_ready(), NO_DOCKER)
    return steps


def _labelled_containers() -> list[dict]:
    from runners.docker import RUN_LABEL, docker_client

    return docker_client().api.containers(all=True, filters={"label": RUN_LABEL})


def test_killed_supervisor_leaves_no_container(docker_steps: Project) -> None:
    counter = launch(docker_steps, "docker", "stubborn")
    wait_for_line(docker_steps, counter, "started")
    with sqlite3.connect(docker_steps.home / "vhtui.sqlite3") as conn:
        pid, state = conn.execute("SELECT supervisor_pid, runner_state FROM executions WHERE counter = ?",
                                  (counter,)).fetchone()
    container = json.loads(state)["container"]
    assert any(c["Id"] == container for c in _labelled_containers())
    os.kill(pid, signal.SIGKILL)
    doc = docker_steps.wait(counter)  # reading the store reconciles
    assert doc["status"] == "crashed" and "supervisor" in doc["status_detail"]
    assert not any(c["Id"] == container for c in _labelled_containers())


def test_finished_runs_leave_no_container(docker_steps: Project) -> None:
    counter = launch(docker_steps, "docker", "contract", "--lines=1", "--data=data.txt")
    assert docker_steps.wait(counter, timeout=60)["status"] == "complete"
    assert _labelled_containers() == []


def test_missing_image_is_named(docker_steps: Project) -> None:
    counter = launch(docker_steps, "docker", "contract", "--data=data.txt", "--image", "vhtui-test/absent:0")
    doc = docker_steps.wait(counter, timeout=60)
    assert doc["status"] == "error"
    assert "cannot pull image vhtui-test/absent:0" in doc["status_detail"]


def test_docker_down_is_one_clear_line_and_stores_nothing(steps: Project) -> None:
    result = steps.vhtui("run", "contract", "--runner", "docker", "--data=data.txt", check=False,
                         DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach the Docker engine" in result.stderr and "dockerd" in result.stderr
    assert not (steps.home / "executions").exists() or not any((steps.home / "executions").iterdir())


def test_outputs_belong_to_the_invoking_user(docker_steps: Project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run vhtui itself as an ordinary user (uid 4321, in the socket's group); its outputs are its own."""
    require(os.getuid() == 0, "switching users needs root")
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    run = docker_steps.vhtui_as_user("run", "contract", "--runner", "docker", "--lines=1", "--data=data.txt",
                                     "--follow", groups=(socket_gid,))
    assert run.returncode == 0, run.stderr
    outputs = list((docker_steps.home / "executions").glob("*/outputs/sub/result.txt"))
    assert outputs and all(p.stat().st_uid == 4321 for p in outputs)


def test_assigned_gpus_reach_the_engine_as_a_device_request(docker_steps: Project) -> None:
    """No GPU exists here: VHTUI_GPUS stands in for NVML, and the real engine, which has no GPU
    driver, refuses the device request. That refusal is the proof the request was made."""
    docker_steps.write("valohai.yaml", STEPS + f"""
- step:
    name: gpu
    image: {IMAGE}
    command: "true"
    resources:
      devices:
        nvidia.com/gpu: 1
""")
    counter = docker_steps.run("gpu", "--runner", "docker", VHTUI_GPUS="2")
    doc = docker_steps.wait(counter, timeout=60)
    assert doc["status"] == "error"
    assert "gpu" in doc["status_detail"].lower() and "device" in doc["status_detail"].lower()


def test_cpu_and_memory_limits_reach_the_container(docker_steps: Project) -> None:
    """The step's resources become cgroup limits that the command can read from inside, and a
    command that outgrows its memory ends with a reason that says so."""
    docker_steps.write("valohai.yaml", STEPS + f"""
- step:
    name: limited
    image: {IMAGE}
    command:
      - cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes
      - cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us
      - python3 -c "b = bytearray({{parameter-value:grow}} * 1024 * 1024); print('allocated', len(b))"
    parameters:
      - name: grow
        type: integer
    resources:
      cpu:
        max: 0.5
      memory:
        max: 64
""")
    fits = docker_steps.wait(docker_steps.run("limited", "--runner", "docker", "--grow=8"), timeout=60)
    assert fits["status"] == "complete", fits
    memory, cpu = docker_steps.logs(fits["counter"]).splitlines()[:2]
    assert int(memory) == 64 * 1024 * 1024
    assert cpu.split()[0] == "50000"  # half of the 100000 µs period (cgroup v2 "50000 100000", v1 "50000")
    grows = docker_steps.wait(docker_steps.run("limited", "--runner", "docker", "--grow=400"), timeout=60)
    assert grows["status"] == "error"
    assert "out of memory" in grows["status_detail"] and "64 MB" in grows["status_detail"], grows
