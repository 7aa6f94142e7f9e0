"""Launching: parameters, inputs, code versions, refusals that leave the store untouched."""

from __future__ import annotations

import http.server
import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project

STEPS = """
- step:
    name: train
    image: python:3.11
    command: python show.py {parameters}
    parameters:
      - name: learning_rate
        type: float
        default: 0.01
        min: 0.0
        max: 1.0
      - name: epochs
        type: integer
        default: 3
      - name: optimizer
        type: string
        default: sgd
        choices: [sgd, adam]
      - name: verbose
        type: flag
        default: true
      - name: quiet
        type: flag
      - name: layers
        type: integer
        multiple: separate
        optional: true
    inputs:
      - name: dataset
        optional: true
- step:
    name: needs-input
    image: python:3.11
    command: ls -R "$VH_INPUTS_DIR"
    inputs:
      - name: data
- step:
    name: trainer-two
    image: python:3.11
    command: "true"
"""

SHOW = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:]}))
print(json.dumps({"params": json.load(open(os.path.join(os.environ["VH_CONFIG_DIR"], "parameters.json")))}))
"""


@pytest.fixture
def steps(project: Project) -> Project:
    project.write("valohai.yaml", STEPS)
    project.write("show.py", SHOW)
    return project


def execution_count(project: Project) -> int:
    db = project.home / "vhtui.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM executions").fetchone()[0]


def test_parameters_folded_validated_and_defaults_resolved(steps: Project) -> None:
    counter = steps.run("train", "--learning-rate=0.5", "--epochs", "7", "--layers=3", "--layers=4", "--env", "current")
    doc = steps.wait(counter)
    assert doc["status"] == "complete", steps.logs(counter)
    assert doc["parameters"] == {"learning_rate": 0.5, "epochs": 7, "optimizer": "sgd", "verbose": True,
                                 "quiet": False, "layers": [3, 4]}
    assert doc["metadata"]["argv"] == ["--learning_rate=0.5", "--epochs=7", "--optimizer=sgd", "--verbose",
                                       "--layers=3,4"]
    assert doc["metadata"]["params"]["learning_rate"] == 0.5
    # the underscore spelling works too, and a flag can be turned off
    counter = steps.run("train", "--learning_rate=0.25", "--no-verbose", "--env", "current")
    doc = steps.wait(counter)
    assert doc["parameters"]["learning_rate"] == 0.25 and doc["parameters"]["verbose"] is False
    assert "--verbose" not in doc["metadata"]["argv"]


def test_parameter_file_json_and_yaml(steps: Project) -> None:
    steps.write("params.json", json.dumps({"epochs": 11, "optimizer": "adam"}))
    steps.write("params.yaml", "learning_rate: 0.75\n")
    counter = steps.run("train", "--parameter-file", "params.json", "--parameter-file", "params.yaml",
                        "--env", "current")
    doc = steps.wait(counter)
    assert doc["parameters"]["epochs"] == 11
    assert doc["parameters"]["optimizer"] == "adam"
    assert doc["parameters"]["learning_rate"] == 0.75


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs=abc"], "parameter 'epochs': abc is not an integer"),
    (["--learning-rate=2"], "parameter 'learning_rate': 2.0 is greater than the maximum allowed (1.0)"),
    (["--optimizer=rmsprop"], "parameter 'optimizer': rmsprop is not among the choices allowed"),
    (["--no-such=1"], "unrecognized arguments: --no-such=1"),
    (["-p", "bogus=1"], "step 'train' has no parameter 'bogus'"),
    (["--dataset=./missing.csv"], "input file './missing.csv' does not exist"),
    (["--dataset=datum://nope-alias"], "no datum or alias 'nope-alias'"),
    (["--dataset=http://127.0.0.1:9/x.csv"], "cannot fetch input 'http://127.0.0.1:9/x.csv'"),
    (["--runner=mars"], "unknown runner 'mars'"),
])
def test_refused_launch_is_one_line_and_stores_nothing(steps: Project, args: list[str], message: str) -> None:
    before = execution_count(steps)
    result = steps.vhtui("run", "train", *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert execution_count(steps) == before


def test_missing_required_input_and_unknown_step(steps: Project) -> None:
    result = steps.vhtui("run", "needs-input", check=False)
    assert result.returncode == 1 and "input 'data' is required" in result.stderr
    result = steps.vhtui("run", "nothing-like-this", check=False)
    assert result.returncode == 1 and "no step 'nothing-like-this'" in result.stderr
    result = steps.vhtui("run", "tr", check=False)  # 'train' and 'trainer-two' both match
    assert result.returncode == 1 and "ambiguous" in result.stderr
    assert execution_count(steps) == 0


def test_step_prefix_matches_case_insensitively(steps: Project) -> None:
    counter = steps.run("NEEDS", "--data=show.py", "--env", "current")
    assert steps.wait(counter)["step"] == "needs-input"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback serving tmp_path/www, recording each GET."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "train.csv").write_text("x,y\n1,2\n")
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def test_inputs_from_path_file_url_http_and_datum(steps: Project, http_server: tuple[str, list[str]]) -> None:
    base, hits = http_server
    data = steps.write("data/local.csv", "a,b\n1,2\n")
    counter = steps.run("needs-input", "--data=./data/local.csv", f"--data=file://{data}",
                        f"--data={base}/train.csv", "--env", "current")
    doc = steps.wait(counter)
    assert doc["status"] == "complete", steps.logs(counter)
    files = {(i["filename"], i["uri"].split(":")[0]) for i in doc["inputs"]}
    assert ("local.csv", "file") in files and ("train.csv", "http") in files
    assert all(len(i["checksums"]["sha256"]) == 64 for i in doc["inputs"])
    assert "train.csv" in steps.logs(counter)
    gets = len(hits)
    # fetched once, reused from the cache by checksum
    counter2 = steps.run("needs-input", f"--data={base}/train.csv", "--env", "current")
    assert steps.wait(counter2)["status"] == "complete"
    assert len(hits) == gets


def test_datum_alias_resolved_at_launch(steps: Project) -> None:
    steps.write("valohai.yaml", STEPS + """
- step:
    name: produce
    image: python:3.11
    command: sh -c 'echo "{parameter-value:text}" > "$VH_OUTPUTS_DIR/out.txt"'
    parameters:
      - name: text
        type: string
- step:
    name: consume
    image: python:3.11
    command: cat "$VH_INPUTS_DIR"/data/*
    inputs:
      - name: data
        default: datum://current
""")
    first = steps.wait(steps.run("produce", "--text=one", "--env", "current"))
    second = steps.wait(steps.run("produce", "--text=two", "--env", "current"))
    steps.vhtui("data", "alias", "current", first["outputs"][0]["uri"])
    consumer = steps.run("consume", "--env", "current")
    steps.vhtui("data", "alias", "current", second["outputs"][0]["uri"])  # moved after launch
    doc = steps.wait(consumer)
    assert doc["inputs"][0]["datum"] == first["outputs"][0]["id"]
    assert steps.logs(consumer).strip() == "one"
    assert steps.logs(steps.wait(steps.run("consume", "--env", "current"))["counter"]).strip() == "two"


def test_git_commit_and_uncommitted_diff_recorded(steps: Project) -> None:
    git = ["git", "-C", str(steps.root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    clean = steps.wait(steps.run("trainer-two", "--env", "current"))
    assert clean["commit"]["type"] == "git" and clean["commit"]["commit"] == head
    assert clean["commit"]["dirty"] is False
    steps.write("show.py", SHOW + "\nprint('changed')\n")
    steps.write("new_file.py", "print('untracked')\n")
    dirty = steps.wait(steps.run("trainer-two", "--env", "current"))
    assert dirty["commit"]["dirty"] is True
    out = steps.root.parent / "code-out"
    steps.vhtui("data", "get", f"datum://{dirty['commit']['datum_id']}", str(out))
    patch = next(out.iterdir()).read_text()
    assert "print('changed')" in patch and "new_file.py" in patch
    # the execution ran its own copy of the files, uncommitted changes included
    repo = steps.home / "executions"
    copies = [p for p in repo.glob("*/repository/new_file.py")]
    assert copies


def test_adhoc_tarball_honours_gitignore_and_vhignore(steps: Project) -> None:
    subprocess.run(["git", "-C", str(steps.root), "init", "-q"], check=True)
    steps.write(".gitignore", "*.log\n")
    steps.write(".vhignore", "bigdata/\n")
    steps.write("run.log", "ignored by git\n")
    steps.write("bigdata/huge.bin", "ignored by .vhignore\n")
    steps.write("src/model.py", "kept\n")
    doc = steps.wait(steps.run("trainer-two", "--adhoc", "--env", "current"))
    assert doc["commit"]["type"] == "adhoc" and len(doc["commit"]["sha256"]) == 64
    out = steps.root.parent / "tar-out"
    steps.vhtui("data", "get", f"datum://{doc['commit']['datum_id']}", str(out))
    import tarfile

    with tarfile.open(next(out.iterdir())) as tar:
        names = set(tar.getnames())
    assert {"valohai.yaml", "show.py", "src/model.py", ".gitignore"} <= names
    assert "run.log" not in names and "bigdata/huge.bin" not in names
    # the same tree packages to the same identity
    again = steps.wait(steps.run("trainer-two", "--adhoc", "--env", "current"))
    assert again["commit"]["sha256"] == doc["commit"]["sha256"]


def test_local_input_files_are_copied_not_linked(steps: Project) -> None:
    """Editing a data file after a run must not change what the run's input was recorded as."""
    data = steps.write("data/train.csv", "a,b\n1,2\n")
    mode = data.stat().st_mode
    counter = steps.run("needs-input", "--data=data/train.csv", "--env", "current")
    recorded = steps.wait(counter)["inputs"][0]["checksums"]["sha256"]
    assert data.stat().st_nlink == 1 and data.stat().st_mode == mode  # the user's file is left alone
    with open(data, "a") as f:
        f.write("3,4\n")  # edited in place
    import hashlib

    blob = steps.home / "blobs" / recorded[:2] / recorded
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == recorded
    second = steps.wait(steps.run("needs-input", "--data=data/train.csv", "--env", "current"))
    assert second["inputs"][0]["checksums"]["sha256"] != recorded


@pytest.mark.parametrize("path", [".git/config", "a/.git/x", ".venv/bin/python", "src/__pycache__/m.cpython-311.pyc",
                                  "m.pyc", "deep/er/m.pyc", ".vhtui/", "__pycache__/", "a/b/.venv/", "code.py",
                                  "a/.gitignore", ".venvx/f", "x__pycache__/f", "pyc", "m.pyc.txt", "notes/.git",
                                  "src/", ".github/workflows/ci.yml"])
def test_the_built_in_ignores_answer_as_pathspec_does(path: str) -> None:
    """Without ignore files, packaging skips pathspec; its answers must be pathspec's all the same."""
    import pathspec

    from vhtui.supervision import code

    patterns = [f"{f}/" for f in code.IGNORED_FOLDERS] + [f"*{s}" for s in code.IGNORED_SUFFIXES]
    assert code.AlwaysIgnored.match_file(path) == pathspec.GitIgnoreSpec.from_lines(patterns).match_file(path)
