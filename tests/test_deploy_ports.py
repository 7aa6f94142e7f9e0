"""Which port an endpoint's server gets, and what a failed start says: real servers, the router on
127.0.0.1, SQLite and the CLI as a user runs it.

A server that binds its declared port without reading `$PORT` (tensorflow-example's `greet` is
`python -m wsgiref.simple_server`, which always binds 8000) must start; a second version of it
cannot, and says who holds the port; servers that read `$PORT` still run beside it; a server that
listens somewhere else is named; and every failed start keeps its reason in `deploy info --json`
and `deploy ls --json`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import poll
from tests.test_deploy import RoutedProject, free_port, serving
from tests.test_runners import require
from vhtui.deploy.ports import bindable

# simple_server's demo opens a browser on its page: a console browser would take its one request
NO_BROWSER = {"BROWSER": "true"}

# shaped like `python -m wsgiref.simple_server`: binds a port it does not read from $PORT, answers
# exactly one request, then exits (so a readiness check that connects would use up that request)
GREET = """\
from wsgiref.simple_server import demo_app, make_server
with make_server("", {port}, demo_app) as httpd:
    print("Serving HTTP on port", httpd.socket.getsockname()[1], flush=True)
    httpd.handle_request()
"""

READS_PORT = """\
import os
from wsgiref.simple_server import demo_app, make_server
make_server("127.0.0.1", int(os.environ["PORT"]), demo_app).serve_forever()
"""


class Ports(RoutedProject):
    def vhtui(self, *args: str, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().vhtui(*args, **NO_BROWSER, **kwargs)

    def create(self, deployment: str, endpoint: str) -> None:
        self.vhtui("deploy", "version", "create", deployment, "--endpoint", endpoint, "--adhoc", "--env", "current")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url(path), timeout=30)


@pytest.fixture
def ports(tmp_path: Path, vh_home: Path) -> Any:
    root = tmp_path / "project"
    root.mkdir()
    with serving(Ports(root, vh_home)) as project:
        yield project


SILENT = 'python -c "import time; time.sleep(600)"'  # a server that never listens
CRASHY = "python -c \"import sys; sys.exit('the model is corrupt')\""  # one that fails at start


def endpoint_yaml(name: str, command: str, port: int) -> str:
    """One endpoint of valohai.yaml, as the servers below are declared."""
    return (f"- endpoint:\n    name: {name}\n    image: python:3.11\n    server-command: {command}\n"
            f"    port: {port}\n")


def one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return str(lines[0])


def test_the_real_simple_server_on_8000(ports: Ports) -> None:
    require(bindable(8000), "port 8000 is taken on this machine, and python -m wsgiref.simple_server binds only 8000")
    ports.write("valohai.yaml", endpoint_yaml("greet", "python -m wsgiref.simple_server", 8000))
    ports.create("hello", "greet")
    started = ports.vhtui("deploy", "start", "hello", check=False)
    assert started.returncode == 0, started.stderr
    assert (ports.endpoint("hello", "v1")["status"], ports.endpoint("hello", "v1")["port"]) == ("running", 8000)
    ports.create("hello", "greet")
    line = one_error_line(ports.vhtui("deploy", "start", "hello", "v2", check=False))
    assert "v2/greet crashed (listens on 8000, which v1 holds; servers that read $PORT run side by side" in line
    assert ports.endpoint("hello", "v2")["reason"].startswith("listens on 8000, which v1 holds")
    # the demo answers one request and exits: the readiness check took none of it
    answer = ports.get("hello/v1/greet/")
    assert answer.status_code == 200 and answer.text.startswith("Hello world!"), answer.text


def test_an_ordinary_user_serves_a_server_on_its_declared_port(ports: Ports) -> None:
    """Run by uid 4321, not root: the server runs in its own /valohai too and serves there."""
    require(os.getuid() == 0, "switching users needs root")
    port = free_port()
    ports.write("valohai.yaml", endpoint_yaml("greet", "python greet.py", port))
    ports.write("greet.py", "import os\nassert os.getcwd() == '/valohai/repository'\n" + GREET.format(port=port))
    started = ports.vhtui_as_user("deploy", "version", "create", "hello", "--endpoint", "greet", "--adhoc")
    assert started.returncode == 0, started.stderr
    started = ports.vhtui_as_user("deploy", "start", "hello", VHTUI_ROUTER_PORT=str(ports.router_port), **NO_BROWSER)
    assert started.returncode == 0, started.stderr
    endpoint = ports.endpoint("hello", "v1")
    assert (endpoint["status"], endpoint["port"]) == ("running", port)
    answer = ports.get("hello/v1/greet/")
    assert answer.status_code == 200 and answer.text.startswith("Hello world!"), answer.text


def test_a_server_that_binds_its_declared_port_gets_it_and_a_second_one_names_the_holder(ports: Ports) -> None:
    declared = free_port()
    ports.write("greet.py", GREET.format(port=declared))
    ports.write("reads_port.py", READS_PORT)
    ports.write("valohai.yaml", endpoint_yaml("greet", "python greet.py", declared)
                + endpoint_yaml("polite", "python reads_port.py", declared))
    ports.create("hello", "greet")
    ports.vhtui("deploy", "start", "hello")
    v1 = ports.endpoint("hello", "v1")
    assert (v1["status"], v1["port"]) == ("running", declared)

    ports.create("hello", "greet")
    line = one_error_line(ports.vhtui("deploy", "start", "hello", "v2", check=False))
    held = f"listens on {declared}, which v1 holds; servers that read $PORT run side by side"
    assert line.startswith(f"vhtui: error: did not start: v2/greet crashed ({held}"), line
    v2 = ports.endpoint("hello", "v2")
    assert v2["status"] == "crashed" and v2["reason"].startswith(held) and v2["port"] is None

    ports.create("hello", "polite")  # declares the same port, but reads $PORT: runs beside v1
    ports.vhtui("deploy", "start", "hello", "v3")
    v3 = ports.endpoint("hello", "v3")
    assert v3["status"] == "running" and v3["port"] not in (None, declared)
    assert ports.get("hello/v3/polite/").text.startswith("Hello world!")
    assert ports.get("hello/v1/greet/").text.startswith("Hello world!")  # its one request, untouched


def test_a_declared_port_held_by_another_program_is_named(ports: Ports) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("", 0))
        busy.listen()
        declared = busy.getsockname()[1]
        ports.write("greet.py", GREET.format(port=declared))
        ports.write("valohai.yaml", endpoint_yaml("greet", "python greet.py", declared))
        ports.create("hello", "greet")
        line = one_error_line(ports.vhtui("deploy", "start", "hello", check=False))
    assert f"listens on {declared}, which another process (pid {os.getpid()}, " in line, line
    assert "Address already in use" in line  # what the server itself said


def test_a_server_that_listens_on_another_port_is_named(ports: Ports) -> None:
    declared, actual = free_port(), free_port()
    ports.write("valohai.yaml", endpoint_yaml("elsewhere", "python elsewhere.py", declared))
    ports.write("elsewhere.py", f"""\
from http.server import HTTPServer, BaseHTTPRequestHandler
HTTPServer(("127.0.0.1", {actual}), BaseHTTPRequestHandler).serve_forever()
""")
    ports.create("web", "elsewhere")
    line = one_error_line(ports.vhtui("deploy", "start", "web", check=False))
    said = f"listens on {actual}, not on its port {declared} (its declared port, also given as $PORT)"
    assert said in line, line
    endpoint = ports.endpoint("web", "v1")
    assert endpoint["status"] == "crashed" and endpoint["reason"] == said


def test_every_failed_start_keeps_its_reason(ports: Ports) -> None:
    declared = free_port()
    ports.write("valohai.yaml", endpoint_yaml("silent", SILENT, declared)
                + endpoint_yaml("crashy", CRASHY, declared))
    ports.create("web", "silent")
    ports.create("web", "crashy")
    line = one_error_line(ports.vhtui("deploy", "start", "web", "v1", "--timeout", "2", check=False))
    silent = ports.endpoint("web", "v1")
    assert silent["status"] == "crashed", silent  # not `stopped` with no reason, as a timeout once was
    assert re.fullmatch(r"did not listen on its port \d+ within 2s \(it listens on no port\)", silent["reason"])
    assert line == f"vhtui: error: did not start: v1/silent crashed ({silent['reason']})"
    listed = json.loads(ports.vhtui("deploy", "ls", "--json").stdout)["results"][0]["versions"]
    assert listed[0]["endpoints"][0]["reason"] == silent["reason"]

    one_error_line(ports.vhtui("deploy", "start", "web", "v2", check=False))
    crashy = ports.endpoint("web", "v2")
    assert crashy["status"] == "crashed" and crashy["reason"] == "exited with code 1 at start: the model is corrupt"
    assert f"endpoint crashy: crashed ({crashy['reason']})" in ports.vhtui("deploy", "info", "web").stdout


def test_bad_timeouts_are_one_line(ports: Ports) -> None:
    for value in ("0", "-3", "nan", "soon"):
        result = ports.vhtui("deploy", "start", "web", "--timeout", value, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "--timeout: expected a number of seconds above 0" in result.stderr, result.stderr


def test_a_stop_while_starting_ends_as_stopped(ports: Ports) -> None:
    declared = free_port()
    ports.write("valohai.yaml", endpoint_yaml("silent", SILENT, declared))
    ports.create("web", "silent")
    start = subprocess.Popen([sys.executable, "-m", "vhtui", "deploy", "start", "web", "--timeout", "600"],
                             cwd=ports.root, env=ports.env(VHTUI_ROUTER_PORT=str(ports.router_port)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll("the server to be launched", lambda: ports.endpoint("web", "v1")["status"] == "starting"
             and ports.endpoint("web", "v1")["port"] == declared)
        ports.vhtui("deploy", "stop", "web")
        _, err = start.communicate(timeout=60)
    finally:
        start.kill()
    assert start.returncode == 1 and err.strip() == "vhtui: error: did not start: v1/silent stopped", err
    endpoint = ports.endpoint("web", "v1")
    assert (endpoint["status"], endpoint["reason"], endpoint["port"]) == ("stopped", None, None)
