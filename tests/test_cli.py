"""A CLI that explains itself: step listings, typed help, did-you-mean, versions, Ctrl-C on follow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, Project

STEPS = """
- step:
    name: train
    image: python:3.11
    description: Train the model on the prepared data
    command: python train.py {parameters}
    parameters:
      - name: epochs
        type: integer
        default: 3
        min: 1
        max: 100
        description: passes over the data
      - name: learning_rate
        type: float
        default: 0.01
      - name: optimizer
        type: string
        default: adam
        choices: [adam, sgd]
      - name: verbose
        type: flag
        default: false
    inputs:
      - name: dataset
        default: datum://latest-dataset
      - name: extra
        optional: true
- step:
    name: preprocess
    image: python:3.11
    command:
      - pip install -r requirements.txt
      - python preprocess.py
- step:
    name: slow
    image: python:3.11
    command:
      - echo begin
      - sleep 3
      - echo end
"""


@pytest.fixture
def steps(project: Project) -> Project:
    project.write("valohai.yaml", STEPS)
    return project


def test_run_alone_lists_the_steps_one_line_each(steps: Project) -> None:
    bare = steps.vhtui("run", check=False)
    helped = steps.vhtui("run", "--help")
    assert bare.returncode == 2 and bare.stdout == helped.stdout
    lines = helped.stdout.splitlines()
    assert lines[0].startswith("usage: vhtui run STEP")
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.startswith("  ")}
    assert listed == {"train": "Train the model on the prepared data",
                      "preprocess": "pip install -r requirements.txt && python preprocess.py",
                      "slow": "echo begin && sleep 3 && echo end"}
    assert "the following arguments are required" not in helped.stdout + helped.stderr


def test_outside_a_project_run_says_how_to_point_at_one(project: Project, tmp_path: Path) -> None:
    result = project.vhtui("run", check=False)
    assert result.returncode == 2
    assert "no valohai.yaml in" in result.stdout and "vhtui -C DIR run" in result.stdout
    project.write("valohai.yaml", STEPS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pointed = subprocess.run([sys.executable, "-m", "vhtui", "-C", str(project.root), "run"], cwd=elsewhere,
                             env=project.env(), capture_output=True, text=True)
    assert "train" in pointed.stdout and "preprocess" in pointed.stdout


def test_step_help_names_types_defaults_limits_and_inputs(steps: Project) -> None:
    text = steps.vhtui("run", "train", "--help", COLUMNS="200").stdout  # no wrapping
    assert "--epochs INT" in text and "integer, default 3, min 1, max 100: passes over the data" in text
    assert "--learning-rate FLOAT" in text and "float, default 0.01" in text
    assert "--optimizer STRING" in text and "one of adam, sgd" in text
    assert "--verbose [BOOL]" in text and "flag, default False" in text and "one of True" not in text
    assert "--dataset URI" in text and "default datum://latest-dataset" in text
    assert "--extra URI" in text and "optional" in text
    assert "PARAM:" not in text.upper() and "INPUT:" not in text.upper()


def test_a_bad_option_is_one_line_pointing_at_the_help(steps: Project) -> None:
    result = steps.vhtui("run", "train", "--epochz=3", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vhtui: error: unrecognized arguments: --epochz=3 (see vhtui run train --help)"]


def test_version_and_help(project: Project) -> None:
    from vhtui import __version__

    assert project.vhtui("--version").stdout.strip() == f"vhtui {__version__}"
    text = project.vhtui("--help").stdout
    assert "With no command, `vhtui` opens the workbench" in text


@pytest.mark.parametrize(("args", "expected"), [
    (["rnu"], "vhtui: error: no command 'rnu'; did you mean run?"),
    (["exec", "lsit"], "vhtui: error: no action 'lsit'; did you mean list?"),
    (["run", "trian"], "vhtui: error: no step 'trian' in valohai.yaml; did you mean train?"),
])
def test_a_mistyped_command_or_step_gets_did_you_mean(steps: Project, args: list[str], expected: str) -> None:
    result = steps.vhtui(*args, check=False)
    assert result.returncode in (1, 2)
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(expected)


PIPELINE = "'train-pipeline' is a pipeline in valohai.yaml, and pipelines are not run yet: vhtui runs steps"


@pytest.mark.parametrize(("args", "expected"), [
    (["pipeline", "run", "train-pipeline"], PIPELINE),
    (["pipeline", "run", "train-pipeline", "--adhoc"], PIPELINE),
    (["run", "train-pipeline"], PIPELINE),
    (["run", "train-pipeline", "--help"], PIPELINE),
    (["pipeline"], "pipelines are not run yet (valohai.yaml has train-pipeline): vhtui runs steps"),
    (["pipeline", "--help"], "pipelines are not run yet (valohai.yaml has train-pipeline): vhtui runs steps"),
    (["run", "my-sweep"], "'my-sweep' is a task blueprint in valohai.yaml, and tasks are not run yet"),
])
def test_a_pipeline_or_task_blueprint_is_named_as_not_run_yet(project: Project, args: list[str], expected: str) -> None:
    """A real Valohai example: its pipeline and task blueprint are said to be such, in one line."""
    project.write("valohai.yaml", (CORPUS / "examples" / "pipeline-with-task-blueprint-example.yaml").read_text())
    result = project.vhtui(*args, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"vhtui: error: {expected}")


def test_pipeline_outside_a_project_says_pipelines_are_not_run_yet(project: Project) -> None:
    result = project.vhtui("pipeline", "run", "train-pipeline", check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["vhtui: error: pipelines are not run yet: vhtui runs steps (`vhtui run` "
                                          "lists them)"]


def test_runner_ls_lists_the_built_in_runners_with_their_health(project: Project) -> None:
    rows = {r["name"]: r for r in json.loads(project.vhtui("runner", "ls", "--json").stdout)["results"]}
    assert list(rows)[:2] == ["local", "docker"]
    assert rows["local"]["health"] == "ok" and rows["local"]["cpus"] >= 1
    assert rows["local"]["free_slots"] == rows["local"]["slots"] and rows["local"]["running"] == 0
    down = {r["name"]: r for r in json.loads(project.vhtui(
        "runner", "ls", "--json", DOCKER_HOST="unix:///nonexistent/docker.sock").stdout)["results"]}
    assert "cannot reach the Docker engine" in down["docker"]["health"]
    table = project.vhtui("runner", "ls").stdout.splitlines()
    assert table[0].split()[:3] == ["name", "where", "health"]
    assert table[1].startswith("local") and "this host" in table[1] and "ok (" in table[1]


def test_ctrl_c_on_follow_says_the_execution_goes_on(steps: Project) -> None:
    process = subprocess.Popen([sys.executable, "-m", "vhtui", "run", "slow", "--env", "current", "--follow"],
                               cwd=steps.root, env=steps.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "begin"  # the run is under way and followed
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "#1 goes on without you" in err and "vhtui exec stop 1" in err and "Traceback" not in err
    assert steps.wait(1)["status"] == "complete"  # Ctrl-C stopped the following, not the run


def test_a_known_file_is_loaded_without_jsonschema_and_a_new_one_is_validated(steps: Project) -> None:
    """A launch of a file that passed validation before does not import jsonschema (most of a cold
    start); a file never seen is still validated by valohai-yaml's schema."""
    probe = ("import sys; from pathlib import Path; from vhtui.project import load_config\n"
             "try:\n    load_config(Path('valohai.yaml'))\nexcept Exception as exc:\n    print('error:', exc)\n"
             "print('jsonschema' in sys.modules)")

    def load() -> list[str]:
        return subprocess.run([sys.executable, "-c", probe], cwd=steps.root, env=steps.env(), capture_output=True,
                              text=True, check=True).stdout.splitlines()

    steps.vhtui("lint")  # creates the home
    steps.run("preprocess", "--env", "current")  # validates, and remembers the verdict
    assert load() == ["False"]
    steps.write("valohai.yaml", STEPS.replace("type: integer", "type: integr"))
    first = load()
    assert first[-1] == "True" and first[0].startswith("error:") and "is not a valid valohai.yaml" in first[0]


def test_lint_creates_no_folders(project: Project) -> None:
    """`vhtui lint` outside any home creates no home: loading a valohai.yaml creates no folders."""
    project.write("valohai.yaml", STEPS)
    home = Path(project.home)
    assert not home.exists()
    project.vhtui("lint")
    assert not home.exists()
    assert os.listdir(project.root) == ["valohai.yaml"]


def test_follow_prints_the_log_then_the_final_status(steps: Project) -> None:
    result = steps.vhtui("run", "slow", "--env", "current", "--follow")
    assert result.stdout.splitlines() == ["begin", "end"]
    assert result.stderr.strip().splitlines()[-1] == "#1 complete"


def test_a_refused_launch_leaves_no_standby_supervisor(steps: Project) -> None:
    """`vhtui run` forks its supervisor before checking the launch (so that its imports overlap);
    a refused launch must take that process with it, and store nothing."""
    from tests.conftest import poll

    marker = "--epochs=0"  # below the minimum: refused after the standby was forked
    result = steps.vhtui("run", "train", marker, check=False)
    assert result.returncode == 1 and "less than the minimum" in result.stderr

    def standbys() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in cmdline and b"vhtui" in b" ".join(cmdline):
                found.append(entry.name)
        return found

    poll("the standby supervisor to exit", lambda: not standbys(), timeout=20)
    assert "no executions" in steps.vhtui("exec", "list", check=False).stderr
