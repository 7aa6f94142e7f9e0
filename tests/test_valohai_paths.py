"""Real Valohai scripts, unchanged: hard-coded `/valohai/...` paths, `source` in a step, and
Valohai's own `execution.json`, on the local runner (its own /valohai, runners.sandbox), in Docker
and on an agent; as root and as an ordinary user.

Shaped like dataset-update-example's `uds.py` (writes `/valohai/outputs/file2.csv` through a
parameter's default) and drift-detection-example's `helpers.py` (reads
`/valohai/config/execution.json` and splits `valohai.project-name` on "/"). Real parts: bubblewrap,
the Docker engine, an agent on loopback, SQLite, the CLI.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from runners import sandbox, script_argv
from tests.conftest import Project
from tests.test_runners import IMAGE, require, runner  # noqa: F401  (runner: the fixture)

STEPS = f"""
- step:
    name: uds
    image: {IMAGE}
    command: python3 uds.py {{parameters}}
    parameters:
      - name: output_dir
        default: /valohai/outputs/
    inputs:
      - name: data
- step:
    name: sourcing
    image: {IMAGE}
    command:
      - source env.sh
      - echo "greeting=$GREETING bash=${{BASH_VERSION:+yes}}"
- step:
    name: valohai-fails
    image: {IMAGE}
    command: python3 -c "open('/valohai/outputs/x', 'w')"
- step:
    name: plain-fails
    image: {IMAGE}
    command: "false"
"""

UDS = """
import argparse, json, os
p = argparse.ArgumentParser(); p.add_argument("--output_dir")
out = p.parse_args().output_dir
info = json.load(open("/valohai/config/execution.json"))
data = "/valohai/inputs/data/" + os.listdir("/valohai/inputs/data")[0]
try:
    open(data, "a").write("tamper")
    inputs_writable = True
except OSError:
    inputs_writable = False
home = os.environ.get("VHTUI_HOME", "")
store_seen = sorted(os.listdir(home)) if home and os.path.isdir(home) else []
with open(os.path.join(out, "file2.csv"), "w") as f:
    f.write(open(data).read() + info["valohai.project-name"].split("/")[1])
os.symlink("/valohai/outputs/file2.csv", "/valohai/outputs/latest.csv")  # absolute, as the job sees it
print(json.dumps({"keys": sorted(info), "info": info, "inputs_writable": inputs_writable, "store_seen": store_seen,
                  "cwd": os.getcwd(), "repository": os.environ["VH_REPOSITORY_DIR"]}))
"""

# every key of Valohai's own execution.json, as its runtime writes it
VALOHAI_KEYS = sorted(f"valohai.{key}" for key in (
    "commit-identifier", "creator-email", "creator-id", "creator-name", "environment-id", "environment-name",
    "environment-slug", "execution-counter", "execution-ctime", "execution-duration", "execution-id",
    "execution-image", "execution-qtime", "execution-status", "execution-step", "execution-tags",
    "execution-title", "pipeline-counter", "pipeline-id", "pipeline-node-id", "pipeline-tags", "pipeline-title",
    "project-id", "project-name", "task-counter", "task-id"))


@pytest.fixture
def valohai(project: Project) -> Project:
    project.write("valohai.yaml", STEPS)
    project.write("uds.py", UDS)
    project.write("env.sh", "export GREETING=hi\n")
    project.write("data.csv", "a,b\n1,2\n")
    return project


def needs_a_sandbox(runner: str) -> None:
    """Local and agent runs get /valohai from bubblewrap; Docker from its container."""
    if runner != "docker":
        require(sandbox.unavailable() is None, f"no sandbox here: {sandbox.unavailable()}")


def launch(project: Project, runner: str, step: str, *args: str, **env: str) -> int:
    extra = ["--env", "current"] if runner in ("local", "box") else []
    return project.run(step, "--runner", runner, *extra, *args, **env)


def test_a_script_with_hard_coded_valohai_paths_runs_unchanged(valohai: Project, runner: str) -> None:
    needs_a_sandbox(runner)
    host_had_valohai = os.path.lexists("/valohai")
    counter = launch(valohai, runner, "uds", "--data=data.csv")
    doc = valohai.wait(counter, timeout=120)
    assert doc["status"] == "complete", valohai.logs(counter)
    seen = doc["metadata"]
    assert seen["keys"] == VALOHAI_KEYS
    assert seen["info"]["valohai.project-name"] == f"{getpass.getuser()}/project"
    assert [o["name"] for o in doc["outputs"]] == ["file2.csv", "latest.csv"]
    out = valohai.root.parent / "out"
    valohai.vhtui("exec", "outputs", str(counter), "--download", str(out))
    assert (out / "file2.csv").read_text() == (out / "latest.csv").read_text() == "a,b\n1,2\nproject"
    assert seen["cwd"] == seen["repository"] == "/valohai/repository"
    assert seen["inputs_writable"] is False  # inputs are mounted read-only everywhere now
    assert "executions" not in seen["store_seen"] and "vhtui.sqlite3" not in seen["store_seen"]
    assert os.path.lexists("/valohai") == host_had_valohai  # nothing was made on the host


def test_execution_json_is_valohais_own(valohai: Project) -> None:
    needs_a_sandbox("local")
    counter = launch(valohai, "local", "uds", "--data=data.csv", VHTUI_OWNER="alice")
    doc = valohai.wait(counter, timeout=60)
    assert doc["status"] == "complete", valohai.logs(counter)
    info = doc["metadata"]["info"]
    assert info["valohai.project-name"] == "alice/project" and info["valohai.creator-name"] == "alice"
    for key in ("valohai.execution-ctime", "valohai.execution-qtime"):
        assert datetime.fromisoformat(info[key]).utcoffset() is not None, info[key]  # ISO 8601 with its zone
    assert info["valohai.execution-counter"] == counter and info["valohai.execution-step"] == "uds"
    assert info["valohai.execution-id"] == doc["id"]
    assert info["valohai.creator-id"] == os.getuid() and info["valohai.execution-status"] == "started"
    assert info["valohai.environment-name"] == "local" and info["valohai.execution-tags"] == []
    [config] = (valohai.home / "executions").glob("*/config")
    import yaml

    assert yaml.safe_load((config / "execution.yaml").read_text()) == json.loads((config / "execution.json").read_text())
    assert yaml.safe_load((config / "parameters.yaml").read_text()) == {"output_dir": "/valohai/outputs/"}


def test_a_step_that_sources_a_file_runs_under_bash(valohai: Project, runner: str) -> None:
    """Valohai's output-metadata-example does `source`, which dash (sh) does not have."""
    counter = launch(valohai, runner, "sourcing")
    doc = valohai.wait(counter, timeout=60)
    assert doc["status"] == "complete", valohai.logs(counter)
    assert valohai.logs(counter).strip() == "greeting=hi bash=yes"


@pytest.mark.parametrize(("path", "shell"), [(None, "bash"), ("only-sh", "sh")])
def test_the_job_script_runs_with_bash_where_there_is_one_else_sh(tmp_path: Path, path: str | None,
                                                                  shell: str) -> None:
    """The rule every runner uses (runners.script_argv), on a PATH with bash and on one without."""
    script = tmp_path / "job.sh"
    script.write_text('if [ -n "$BASH_VERSION" ]; then echo bash; else echo sh; fi\n')
    env = dict(os.environ)
    if path:
        only_sh = tmp_path / path
        only_sh.mkdir()
        (only_sh / "sh").symlink_to("/bin/sh")
        env["PATH"] = str(only_sh)
    result = subprocess.run(script_argv(script, str(script)), env=env, capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, shell), result.stderr


def test_a_shebang_still_wins(tmp_path: Path) -> None:
    script = tmp_path / "job"
    script.write_text(f"#!{sys.executable}\nprint('python ran it')\n")
    result = subprocess.run(script_argv(script, str(script)), capture_output=True, text=True)
    assert result.stdout.strip() == "python ran it", result.stderr


def test_an_ordinary_user_gets_its_own_valohai_too(valohai: Project) -> None:
    """vhtui run as uid 4321 (bubblewrap through a user namespace, no root): the same script
    completes, and what it wrote belongs to that user."""
    require(os.getuid() == 0, "switching users needs root")
    needs_a_sandbox("local")
    run = valohai.vhtui_as_user("run", "uds", "--env", "current", "--data=data.csv", "--follow")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    outputs = list((valohai.home / "executions").glob("*/outputs/file2.csv"))
    assert len(outputs) == 1 and outputs[0].stat().st_uid == 4321
    assert outputs[0].read_text().endswith("\nproject")
    seen = json.loads(next(line for line in run.stdout.splitlines() if line.startswith('{"keys"')))
    assert seen["info"]["valohai.project-name"] == "user4321/project"  # no name for uid 4321 here
    assert seen["inputs_writable"] is False and "executions" not in seen["store_seen"]


def test_without_a_namespace_runs_go_on_and_a_valohai_failure_says_why(valohai: Project) -> None:
    counter = launch(valohai, "local", "valohai-fails", VHTUI_LOCAL_SANDBOX="0")
    doc = valohai.wait(counter, timeout=60)
    assert doc["status"] == "error"
    assert "/valohai/ paths" in doc["status_detail"] and "turned off" in doc["status_detail"]
    assert "--runner docker" in doc["status_detail"]
    counter = launch(valohai, "local", "plain-fails", VHTUI_LOCAL_SANDBOX="0")
    doc = valohai.wait(counter, timeout=60)
    assert doc["status"] == "error" and "/valohai" not in doc["status_detail"]
    counter = launch(valohai, "local", "sourcing", VHTUI_LOCAL_SANDBOX="0")  # the rest runs as before
    assert valohai.wait(counter, timeout=60)["status"] == "complete"
    local = valohai.vhtui("runner", "ls", VHTUI_LOCAL_SANDBOX="0").stdout.splitlines()[1]
    assert "no /valohai: turned off (local_sandbox = false)" in local


@pytest.mark.parametrize(("variable", "value"), [("VHTUI_LOCAL_SANDBOX", "maybe"), ("VHTUI_OWNER", "a/b"),
                                                 ("VHTUI_OWNER", "two words")])
def test_bad_sandbox_and_owner_settings_are_one_line(valohai: Project, variable: str, value: str) -> None:
    result = valohai.vhtui("run", "sourcing", check=False, **{variable: value})
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_the_sandbox_probe_is_remembered_until_what_it_depends_on_changes(tmp_path: Path) -> None:
    """A launch reads the remembered answer instead of making a namespace; another boot, user or
    bubblewrap (the key), or a damaged file, asks the kernel again."""
    real = sandbox._probe()
    probe_file = tmp_path / sandbox.PROBE_FILE

    def ask() -> str | None:
        sandbox.unavailable.cache_clear()
        return sandbox.unavailable(tmp_path)

    try:
        assert ask() == real and json.loads(probe_file.read_text())["problem"] == real
        remembered = json.loads(probe_file.read_text())
        probe_file.write_text(json.dumps({**remembered, "problem": "as remembered"}))
        assert ask() == "as remembered"
        probe_file.write_text(json.dumps({"key": "another boot", "problem": "as remembered"}))
        assert ask() == real and json.loads(probe_file.read_text()) == remembered
        probe_file.write_text("{not json")
        assert ask() == real
    finally:
        sandbox.unavailable.cache_clear()
