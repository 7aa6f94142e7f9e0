"""A deployment version's own environment: its `requirements.txt` installed into the layered venv
over the user's `python3`, as Valohai builds it into an endpoint's image; reused for the same
requirements; progress on the terminal; a failed install named in one line.

Real parts: pip installing wheels written here (no network: a path to the wheel, or
`--no-index --find-links`), endpoint servers, the router on 127.0.0.1, SQLite, the CLI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_deploy import RoutedProject, serving
from tests.test_pyenv import write_wheel

VALOHAI_YAML = """\
- endpoint:
    name: predict-digit
    image: python:3.11
    server-command: python serve.py
    port: 8000
"""

# like the example's predict-digit: it imports what requirements.txt brings, and crashes without it
SERVE = """\
import json, os, sys
from wsgiref.simple_server import make_server
import vhtui_tiny_model

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"value": vhtui_tiny_model.VALUE, "prefix": sys.prefix}).encode()]

make_server("127.0.0.1", int(os.environ["PORT"]), app).serve_forever()
"""


class Deployments(RoutedProject):
    def ask(self, version: str) -> dict[str, Any]:
        response = httpx.get(self.url(f"digits/{version}/predict-digit/"), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def envs(self) -> list[Path]:
        return sorted(p for p in (self.home / "envs").iterdir() if p.is_dir())


@pytest.fixture
def digits(tmp_path: Path, vh_home: Path) -> Any:
    root = tmp_path / "project"
    root.mkdir()
    with serving(Deployments(root, vh_home)) as project:
        project.write("valohai.yaml", VALOHAI_YAML)
        project.write("serve.py", SERVE)
        write_wheel(root / "wheels", "vhtui_tiny_model", "0.1", body="VALUE = 7\n")
        yield project


def user_python_has(module: str) -> bool:
    """What the user's python3 (the tests' interpreter, first on the CLI's PATH) imports."""
    code = f"import importlib.util; print(importlib.util.find_spec({module!r}) is not None)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def installed(stdout: str, version: str, wheel_version: str) -> bool:
    """pip's line for the tiny model installed, as passed on (newer pips spell the name with '-')."""
    pattern = rf"^{version}/predict-digit: Successfully installed vhtui[-_]tiny[-_]model-{re.escape(wheel_version)}$"
    return re.search(pattern, stdout, re.MULTILINE) is not None


def test_a_version_installs_its_requirements_once_and_reuses_them(digits: Deployments) -> None:
    assert not user_python_has("vhtui_tiny_model")
    digits.write("requirements.txt", "./wheels/vhtui_tiny_model-0.1-py3-none-any.whl\n")  # a path: no index
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc")
    first = digits.vhtui("deploy", "start", "digits")
    # progress on the terminal, as it happened
    assert "v1/predict-digit: pip install -r requirements.txt" in first.stdout
    assert installed(first.stdout, "v1", "0.1"), first.stdout
    assert "v1/predict-digit: environment ready in " in first.stdout
    answer = digits.ask("v1")
    assert answer["value"] == 7
    assert Path(answer["prefix"]).parent == digits.home / "envs"  # its own environment, not the user's
    assert not user_python_has("vhtui_tiny_model")

    # a second version with the same requirements reuses the environment: nothing is installed again
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc")
    second = digits.vhtui("deploy", "start", "digits", "v2")
    assert "v2/predict-digit: reusing the environment with requirements.txt installed before" in second.stdout
    assert "Successfully installed" not in second.stdout and "pip install" not in second.stdout
    assert digits.ask("v2") == answer
    assert len(digits.envs()) == 1


def test_other_requirements_get_another_environment(digits: Deployments) -> None:
    digits.write("requirements.txt", "--no-index\n--find-links wheels\nvhtui_tiny_model==0.1\n")
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc")
    digits.vhtui("deploy", "start", "digits")
    write_wheel(digits.root / "wheels", "vhtui_tiny_model", "0.2", body="VALUE = 8\n")
    digits.write("requirements.txt", "--no-index\n--find-links wheels\nvhtui_tiny_model==0.2\n")
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc")
    started = digits.vhtui("deploy", "start", "digits", "v2")
    assert installed(started.stdout, "v2", "0.2"), started.stdout
    assert (digits.ask("v1")["value"], digits.ask("v2")["value"]) == (7, 8)  # side by side, each its own
    assert len(digits.envs()) == 2


def test_a_failed_install_names_the_package_in_one_line(digits: Deployments) -> None:
    digits.write("requirements.txt", "--no-index\n--find-links wheels\nvhtui_tiny_model==0.1\nvhtui_no_such_pkg==1.0\n")
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc")
    result = digits.vhtui("deploy", "start", "digits", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("vhtui: error: did not start: v1/predict-digit crashed (cannot install "
                               "requirements.txt: No matching distribution found for vhtui_no_such_pkg==1.0")
    endpoint = digits.endpoint("digits", "v1")
    assert endpoint["status"] == "crashed" and "vhtui_no_such_pkg" in endpoint["reason"]
    log = Path(endpoint["reason"].rpartition("pip's output: ")[2].rstrip(")"))
    assert "No matching distribution found for vhtui_no_such_pkg" in log.read_text()
    assert digits.envs() == []  # a failed install never leaves an environment that looks ready

    digits.write("requirements.txt", "--no-index\n--find-links wheels\nvhtui_tiny_model==0.1\n")  # fixed
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc")
    digits.vhtui("deploy", "start", "digits", "v2")
    assert digits.ask("v2")["value"] == 7


def test_current_environment_installs_nothing(digits: Deployments) -> None:
    """`--env current` is the caller's environment as it is: what it lacks stays missing."""
    digits.write("requirements.txt", "./wheels/vhtui_tiny_model-0.1-py3-none-any.whl\n")
    digits.vhtui("deploy", "version", "create", "digits", "--endpoint", "predict-digit", "--adhoc", "--env", "current")
    result = digits.vhtui("deploy", "start", "digits", check=False)
    assert result.returncode == 1 and "No module named 'vhtui_tiny_model'" in result.stderr
    assert "pip install" not in result.stdout
