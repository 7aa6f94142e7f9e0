"""Deployments with real parts: endpoint processes, the router on 127.0.0.1, SQLite, the CLI as a
user runs it. Only the Kubernetes cluster is absent: exported manifests are checked against the
official client's models instead.

One deployment is built once for the module (two trained models, three versions) and every test
that only reads or moves aliases shares it; tests that break things use their own version.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Project, poll

VALOHAI_YAML = """\
- step:
    name: train
    image: python:3.11
    command: python train.py {parameters}
    parameters:
      - name: w
        type: float
        default: 2.0
- endpoint:
    name: predict
    image: python:3.11
    server-command: python serve.py
    port: 8000
    files:
      - name: model
        path: model.json
- endpoint:
    name: static
    image: python:3.11
    server-command: python -m http.server 8000 --bind 127.0.0.1
    port: 8000
- endpoint:
    name: wsgi-predict
    image: python:3.11
    wsgi: app:application
    files:
      - name: model
        path: model.json
- endpoint:
    name: crashy
    image: python:3.11
    server-command: python -c "import sys; sys.exit('the model is corrupt')"
    port: 8000
"""

TRAIN = """\
import json, os, sys
w = float(sys.argv[1].split("=")[1])
json.dump({"w": w}, open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "model.json"), "w"))
print(json.dumps({"loss": 1 / w}))
"""

SERVE = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
MODEL = json.load(open("model.json"))

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/whoami"):
            answer = {"prefix": self.headers.get("X-VH-Prefix"), "default_prefix": os.environ["VH_DEFAULT_PREFIX"],
                      "path": self.path}
        else:
            answer = {"w": MODEL["w"]}
            print(json.dumps({"vh_metadata": {"w_used": MODEL["w"]}}), flush=True)
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

APP = """\
import json
MODEL = json.load(open("model.json"))

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"w": MODEL["w"], "wsgi": True}).encode()]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RoutedProject(Project):
    """A project whose deployments are served by its own router, on a free loopback port."""

    def __init__(self, root: Path, home: Path) -> None:
        super().__init__(root, home)
        self.router_port = free_port()

    def vhtui(self, *args: str, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("VHTUI_ROUTER_PORT", str(self.router_port))
        return super().vhtui(*args, **kwargs)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.router_port}/{path.lstrip('/')}"

    def endpoint(self, deployment: str, version: str) -> dict[str, Any]:
        """The version's (first) endpoint, as `deploy info --json` gives it."""
        doc = json.loads(self.vhtui("deploy", "info", deployment, version, "--json").stdout)
        return doc["versions"][0]["endpoints"][0]  # type: ignore[no-any-return]


@contextmanager
def serving(project: RoutedProject) -> Iterator[RoutedProject]:
    """The project, and afterwards every endpoint and its router stopped, whatever failed."""
    try:
        yield project
    finally:
        project.vhtui("deploy", "stop", "--all", check=False)


class Deployed(RoutedProject):
    """A project with two trained models and deployment `web`: v1 (w=2) production, v2 (w=3) staging."""

    models: list[str]

    def deployment(self, *args: str) -> dict[str, Any]:
        return json.loads(self.vhtui("deploy", "info", "web", *args, "--json").stdout)


def make_project(root: Path, home: Path) -> Deployed:
    root.mkdir(parents=True)
    project = Deployed(root, home)
    project.write("valohai.yaml", VALOHAI_YAML)
    project.write("train.py", TRAIN)
    project.write("serve.py", SERVE)
    project.write("app.py", APP)
    return project


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("deploy")
    project = make_project(base / "project", base / "home")
    counters = [project.run("train", f"--w={w}", "--env", "current") for w in (2, 3)]
    for counter in counters:
        project.wait(counter)
    project.models = [project.vhtui("exec", "outputs", str(c), "--json").stdout for c in counters]
    project.models = [json.loads(m)[0]["uri"] for m in project.models]
    for model in project.models:
        project.vhtui("deploy", "version", "create", "web", "--endpoint", "predict", "--endpoint", "static",
                      "--endpoint", "wsgi-predict", "--file", f"predict.model={model}",
                      "--file", f"wsgi-predict.model={model}", "--adhoc", "--env", "current")
    with serving(project):  # a start that fails still leaves a router to stop
        project.vhtui("deploy", "start", "web")
        project.vhtui("deploy", "alias", "set", "web", "production", "v1")
        project.vhtui("deploy", "alias", "set", "web", "staging", "v2")
        yield project


def test_versions_serve_side_by_side_behind_aliases(web: Deployed) -> None:
    assert httpx.get(web.url("web/production/predict/")).json() == {"w": 2.0}
    assert httpx.get(web.url("web/staging/predict/")).json() == {"w": 3.0}
    assert httpx.get(web.url("web/v2/wsgi-predict/")).json() == {"w": 3.0, "wsgi": True}
    # both versions declare port 8000 for `static`; each got a port of its own
    ports = {v["version"]: v["endpoints"][1]["port"] for v in web.deployment()["versions"]}
    assert len(set(ports.values())) == 2 and 8000 not in ports.values()
    assert httpx.get(web.url("web/v1/static/valohai.yaml")).text.startswith("- step:")


def test_prefix_is_stripped_and_named(web: Deployed) -> None:
    answer = httpx.get(web.url("web/production/predict/whoami?x=1")).json()
    assert answer == {"prefix": "/web/production/predict/", "default_prefix": "/web/v1/predict/",
                      "path": "/whoami?x=1"}


@pytest.mark.parametrize("path, detail", [
    ("nope/production/predict/", {"deployment": "nope"}),
    ("web/v9/predict/", {"deployment": "web", "version": "v9"}),
    ("web/production/nope/", {"deployment": "web", "version": "v1", "endpoint": "nope"}),
    ("web", {}),
])
def test_unknown_routes_are_404_with_json(web: Deployed, path: str, detail: dict[str, str]) -> None:
    response = httpx.get(web.url(path))
    assert response.status_code == 404
    body = response.json()
    assert body["error"] and detail.items() <= body.items()


def test_alias_moves_under_load_lose_no_request(web: Deployed) -> None:
    web.vhtui("deploy", "alias", "set", "web", "live", "v1")
    failures: list[str] = []
    seen: set[float] = set()
    count = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal count
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    response = client.get(web.url("web/live/predict/"))
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                    else:
                        seen.add(response.json()["w"])
                        count += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for version in ("v2", "v1", "v2", "v1", "v2"):
            web.vhtui("deploy", "alias", "set", "web", "live", version)
            # the move is visible to the very next request
            assert httpx.get(web.url("web/live/predict/")).json()["w"] == {"v1": 2.0, "v2": 3.0}[version]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert failures == []
    assert count > 20 and seen == {2.0, 3.0}


def test_request_metrics_and_vh_metadata(web: Deployed) -> None:
    before = web.deployment("v1")["versions"][0]["endpoints"][0]["requests"]["requests"]
    for _ in range(10):
        httpx.get(web.url("web/production/predict/"))
    httpx.get(web.url("web/production/predict/missing-version-is-fine"))
    def stored() -> dict[str, Any] | None:  # the router stores its figures once a second
        predict = web.deployment("v1")["versions"][0]["endpoints"][0]
        return predict if predict["requests"]["requests"] >= before + 11 else None

    predict = poll("the router to store the 11 requests", stored)
    assert predict["requests"]["errors"] == 0
    assert 0 < predict["requests"]["p50_ms"] <= predict["requests"]["p99_ms"]
    assert predict["metadata"] == {"w_used": 2.0}  # from the endpoint's {"vh_metadata": ...} lines
    assert predict["files"][0]["execution"]["counter"] == 1  # the training execution behind the model


def test_compare_two_aliases(web: Deployed) -> None:
    doc = json.loads(web.vhtui("deploy", "compare", "web", "production", "staging", "--request", "/?x=1",
                               "--json").stdout)
    left, right = doc["sides"]
    assert (left["alias"], left["version"], right["alias"], right["version"]) == ("production", "v1", "staging", "v2")
    assert [f["execution"]["counter"] for f in left["endpoints"][0]["files"]] == [1]
    assert [f["execution"]["counter"] for f in right["endpoints"][0]["files"]] == [2]
    answers = doc["request"]["answers"]
    assert [json.loads(a["body"]) for a in answers] == [{"w": 2.0}, {"w": 3.0}]
    assert all(a["status"] == 200 and a["latency_ms"] > 0 for a in answers)
    assert doc["request"]["differences"] == ["w"]
    text = web.vhtui("deploy", "compare", "web", "production", "staging").stdout
    assert "production" in text and "staging" in text and "v1" in text and "v2" in text


def test_mirroring_counts_agreement(web: Deployed) -> None:
    web.vhtui("deploy", "alias", "set", "web", "twin", "v1")
    web.vhtui("deploy", "mirror", "web", "production", "twin")
    web.vhtui("deploy", "mirror", "web", "staging", "twin")
    try:
        for _ in range(5):
            assert httpx.get(web.url("web/production/predict/")).json() == {"w": 2.0}
            assert httpx.get(web.url("web/staging/predict/")).json() == {"w": 3.0}
        # mirrored answers are compared after the client's, and stored once a second
        same = poll("5 mirrored answers for production", lambda: mirrored(web, "production", 5))
        other = poll("5 mirrored answers for staging", lambda: mirrored(web, "staging", 5))
    finally:
        web.vhtui("deploy", "mirror", "web", "production", "--off")
        web.vhtui("deploy", "mirror", "web", "staging", "--off")
    assert same["mirrored"] == 5 and same["agreement"] == 1.0
    assert other["mirrored"] == 5 and other["agreement"] == 0.0


def mirrored(web: Deployed, alias: str, count: int) -> dict[str, Any] | None:
    """The comparison of `alias` with its mirror `twin`, once it counts `count` mirrored requests."""
    mirror = json.loads(web.vhtui("deploy", "compare", "web", alias, "twin", "--json").stdout)["mirror"]
    return mirror if mirror["mirrored"] >= count else None


def test_kubernetes_export_matches_the_official_models(web: Deployed, tmp_path: Path) -> None:
    from kubernetes.client import ApiClient

    out = tmp_path / "web.yaml"
    web.vhtui("deploy", "export", "--kubernetes", "web", "-o", str(out))
    documents = list(yaml.safe_load_all(out.read_text()))
    client = ApiClient()
    models = [client.deserialize(json.dumps(d), f"V1{d['kind']}", "application/json") for d in documents]
    kinds = [type(m).__name__ for m in models]
    assert kinds.count("V1Deployment") == kinds.count("V1Service") == 6  # 2 versions x 3 endpoints
    assert kinds[-1] == "V1Ingress"
    deployment = next(m for m in models if type(m).__name__ == "V1Deployment")
    container = deployment.spec.template.spec.containers[0]
    assert (container.image, container.ports[0].container_port) == ("python:3.11", 8000)
    assert {e.name: e.value for e in container.env} == {"PORT": "8000", "VH_DEFAULT_PREFIX": "/web/v1/predict/"}
    service = next(m for m in models if type(m).__name__ == "V1Service")
    assert service.spec.selector == deployment.spec.selector.match_labels
    paths = {p.path: p.backend.service.name for p in models[-1].spec.rules[0].http.paths}
    assert paths["/web/production/predict/"] == "web-v1-predict"
    assert paths["/web/staging/predict/"] == paths["/web/v2/predict/"] == "web-v2-predict"


def test_a_version_that_is_down_answers_at_once(web: Deployed) -> None:
    model = web.models[0]
    web.vhtui("deploy", "version", "create", "web", "--name", "doomed", "--endpoint", "predict",
              "--file", f"model={model}", "--adhoc", "--env", "current")
    web.vhtui("deploy", "start", "web", "doomed")
    assert httpx.get(web.url("web/doomed/predict/")).status_code == 200
    pgid = next(e for v in web.deployment()["versions"] if v["version"] == "doomed" for e in v["endpoints"])
    server_pgid = _server_pgid(web, pgid["endpoint_id"])
    os.killpg(server_pgid, signal.SIGKILL)  # the server dies under the router's feet
    # an answer, not a hang (how soon: benchmarks/limits.py); the timeout is only a hang guard
    response = httpx.get(web.url("web/doomed/predict/"), timeout=30)
    body = response.json()
    assert response.status_code in (502, 503), body  # not answering (502) or already seen dead (503)
    assert body["error"].startswith("version 'doomed' of 'web' is ")
    assert {"deployment": "web", "version": "doomed", "endpoint": "predict"}.items() <= body.items()
    poll("the endpoint to be crashed",
         lambda: web.deployment("doomed")["versions"][0]["endpoints"][0]["status"] == "crashed")
    response = httpx.get(web.url("web/doomed/predict/"))
    assert response.status_code == 503 and "'doomed'" in response.json()["error"]
    web.vhtui("deploy", "stop", "web", "doomed")
    assert httpx.get(web.url("web/production/predict/")).json() == {"w": 2.0}  # the others keep serving


def _server_pgid(web: Deployed, endpoint_id: int) -> int:
    from vhtui.store import open_database

    db = open_database(web.home / "vhtui.sqlite3")
    try:
        state = db.query_one("SELECT runner_state FROM deployment_endpoints WHERE id = ?", (endpoint_id,))[0]
        return int(json.loads(state)["pgid"])
    finally:
        db.close()


def test_an_endpoint_that_crashes_at_start(web: Deployed) -> None:
    web.vhtui("deploy", "version", "create", "web", "--name", "broken", "--endpoint", "crashy", "--adhoc",
              "--env", "current")
    result = web.vhtui("deploy", "start", "web", "broken", check=False)
    assert result.returncode == 1
    assert "vhtui: error: did not start: broken/crashy crashed" in result.stderr
    assert "the model is corrupt" in result.stderr and "Traceback" not in result.stderr
    refused = web.vhtui("deploy", "alias", "set", "web", "production", "broken", check=False)
    assert refused.returncode == 1 and "not serving" in refused.stderr
    assert httpx.get(web.url("web/production/predict/")).json() == {"w": 2.0}
    assert httpx.get(web.url("web/broken/crashy/")).status_code == 503


def test_an_endpoint_whose_port_is_taken(web: Deployed) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        web.write("valohai.yaml", VALOHAI_YAML + f"""\
- endpoint:
    name: pinned
    image: python:3.11
    server-command: python -m http.server {port} --bind 127.0.0.1
""")
        try:
            web.vhtui("deploy", "version", "create", "web", "--name", "pinned", "--endpoint", "pinned", "--adhoc",
                      "--env", "current")
            result = web.vhtui("deploy", "start", "web", "pinned", check=False)
        finally:
            web.write("valohai.yaml", VALOHAI_YAML)
    assert result.returncode == 1 and "pinned/pinned crashed" in result.stderr
    assert "Address already in use" in result.stderr
    assert httpx.get(web.url("web/staging/predict/")).json() == {"w": 3.0}


def test_router_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", tmp_path / "home")
    project.vhtui("deploy", "version", "create", "solo", "--endpoint", "static", "--adhoc", "--env", "current")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = project.vhtui("deploy", "start", "solo", check=False, VHTUI_ROUTER_PORT=str(busy.getsockname()[1]))
    assert result.returncode == 1
    assert result.stderr.startswith("vhtui: error: the router's address 127.0.0.1:") and "in use" in result.stderr
    assert project.vhtui("deploy", "stop", "--all").returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "nope"], "no endpoint 'nope' in valohai.yaml (endpoints: crashy, predict, static, wsgi-predict)"),
    (["--endpoint", "predict"], "endpoint 'predict' needs its file 'model'"),
    (["--endpoint", "predict", "--file", "model=datum://no-such-model"], "no datum or alias 'no-such-model'"),
    (["--endpoint", "static", "--file", "weights=datum://x"], "endpoint 'static' declares no file 'weights'"),
    (["--endpoint", "predict", "--endpoint", "static", "--file", "model=datum://x"], "--file 'model=datum://x': name the endpoint too"),
])
def test_bad_versions_are_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    project = make_project(tmp_path / "project", tmp_path / "home")
    result = project.vhtui("deploy", "version", "create", "web", *args, "--adhoc", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vhtui: error: {message}")
    assert "web" not in project.vhtui("deploy", "ls", check=False).stdout  # nothing was written


def test_a_taken_version_name_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", tmp_path / "home")
    create = ["deploy", "version", "create", "solo", "--endpoint", "static", "--adhoc", "--name", "v1"]
    project.vhtui(*create)
    datums = project.vhtui("data", "ls", "--all", "--json").stdout
    result = project.vhtui(*create, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "vhtui: error: deployment 'solo' already has a version 'v1'"
    assert project.vhtui("data", "ls", "--all", "--json").stdout == datums  # no second code datum
