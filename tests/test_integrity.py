"""Stored data never changes: not through a run's inputs, not through a live output, and a content
changed in place behind the store's back is refused, never served. Outputs never bring home what a
link points at outside the outputs folder.

These run as root in CI, as the reports that found them did (root ignores a file's 0444 mode).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import Project, poll
from tests.test_runners import IMAGE, NO_DOCKER, docker_ready, require

STEPS = f"""
- step:
    name: vandal
    image: {IMAGE}
    command:
      - cat $VH_INPUTS_DIR/data/data.txt > $VH_OUTPUTS_DIR/seen.txt
      - chmod u+w $VH_INPUTS_DIR/data/data.txt
      - echo CORRUPTED >> $VH_INPUTS_DIR/data/data.txt
    inputs:
      - name: data
- step:
    name: live-then-overwrite
    image: {IMAGE}
    command:
      - echo first > $VH_OUTPUTS_DIR/live.txt
      - chmod 0444 $VH_OUTPUTS_DIR/live.txt
      - while [ ! -e $VH_OUTPUTS_DIR/gate ]; do sleep 0.05; done
      - chmod u+w $VH_OUTPUTS_DIR/live.txt
      - echo overwritten > $VH_OUTPUTS_DIR/live.txt
- step:
    name: links
    image: {IMAGE}
    command:
      - echo model > $VH_OUTPUTS_DIR/model.txt
      - ln -s model.txt $VH_OUTPUTS_DIR/latest.txt
      - ln -s /etc/hostname $VH_OUTPUTS_DIR/leak.txt
      - ln -s .. $VH_OUTPUTS_DIR/up
"""


@pytest.fixture
def steps(project: Project) -> Project:
    project.write("valohai.yaml", STEPS)
    project.write("data.txt", "original\n")
    return project


def launch(project: Project, step: str, *args: str, runner: str = "local", **env: str) -> dict:
    extra = ["--env", "current"] if runner == "local" else ["--runner", runner]
    doc = project.wait(project.run(step, *extra, *args, **env), timeout=90)
    assert doc["status"] in ("complete", "error"), doc
    return doc


def blob_of(project: Project, sha256: str) -> Path:
    return project.home / "blobs" / sha256[:2] / sha256


def data_get(project: Project, datum: str, tmp: Path) -> str:
    out = tmp / hashlib.sha256(datum.encode()).hexdigest()[:8]
    project.vhtui("data", "get", datum, str(out))
    return next(out.iterdir()).read_text()


def test_a_step_that_writes_its_input_changes_only_its_own_copy(steps: Project, tmp_path: Path) -> None:
    first = launch(steps, "vandal", "--data=data.txt")
    sha256 = first["inputs"][0]["checksums"]["sha256"]
    stored = blob_of(steps, sha256)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256  # the store still holds "original"
    second = launch(steps, "vandal", "--data=data.txt")
    seen = next(o for o in second["outputs"] if o["name"] == "seen.txt")
    assert data_get(steps, seen["uri"], tmp_path) == "original\n"  # the next run read the true content


@pytest.mark.parametrize("runner", ["local", "docker"])
def test_a_live_output_overwritten_later_keeps_what_was_stored(steps: Project, tmp_path: Path, runner: str) -> None:
    if runner == "docker":
        require(docker_ready(), NO_DOCKER)
    extra = ["--env", "current"] if runner == "local" else ["--runner", runner]
    counter = steps.run("live-then-overwrite", *extra)
    first = poll("the live output to be stored", lambda: [o for o in steps.info(counter)["outputs"]
                                                          if o["name"] == "live.txt"])[0]
    outputs = next(p for p in (steps.home / "executions").glob("*/outputs") if (p / "live.txt").exists())
    (outputs / "gate").write_text("go")  # the run goes on: it overwrites its live output
    doc = steps.wait(counter, timeout=90)
    assert doc["status"] == "complete", steps.logs(counter)
    assert data_get(steps, first["uri"], tmp_path) == "first\n"
    assert hashlib.sha256(blob_of(steps, first["checksums"]["sha256"]).read_bytes()).hexdigest() == \
        first["checksums"]["sha256"]
    final = [o for o in doc["outputs"] if o["name"] == "live.txt"]
    assert {data_get(steps, o["uri"], tmp_path / o["id"][:8]) for o in final} == {"first\n", "overwritten\n"}


def test_a_content_changed_in_place_is_refused_not_served(steps: Project, tmp_path: Path) -> None:
    doc = launch(steps, "links")
    model = next(o for o in doc["outputs"] if o["name"] == "model.txt")
    blob = blob_of(steps, model["checksums"]["sha256"])
    os.chmod(blob, 0o644)
    blob.write_text("tampered\n")  # what a root job, or anyone with a chmod, could do
    result = steps.vhtui("data", "get", model["uri"], str(tmp_path / "out"), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"vhtui: error: datum {model['id']} (model.txt) is corrupted: the stored "
                                     f"content {model['checksums']['sha256'][:16]} was changed in place "
                                     "(it no longer matches its sha256)")
    refused = steps.vhtui("run", "vandal", f"--data={model['uri']}", "--env", "current", check=False)
    assert refused.returncode == 1 and f"datum {model['id']} (model.txt) is corrupted" in refused.stderr


def test_an_untouched_content_is_served_after_a_cheap_check(steps: Project, tmp_path: Path) -> None:
    doc = launch(steps, "links")
    model = next(o for o in doc["outputs"] if o["name"] == "model.txt")
    blob = blob_of(steps, model["checksums"]["sha256"])
    os.utime(blob)  # a touched mtime alone: rehashed once, found intact, served
    assert data_get(steps, model["uri"], tmp_path) == "model\n"


@pytest.mark.parametrize("runner", ["local", "docker"])
def test_outputs_never_follow_a_link_out_of_the_outputs_folder(steps: Project, runner: str, tmp_path: Path) -> None:
    if runner == "docker":
        require(docker_ready(), NO_DOCKER)
    doc = launch(steps, "links", runner=runner)
    names = sorted(o["name"] for o in doc["outputs"])
    assert names == ["latest.txt", "model.txt"], names  # the link inside is stored as what it names
    latest = next(o for o in doc["outputs"] if o["name"] == "latest.txt")
    assert data_get(steps, latest["uri"], tmp_path) == "model\n"
    log = steps.logs(doc["counter"], "--stderr")
    assert "vhtui: output leak.txt was not stored: it is a link to /etc/hostname, outside the outputs folder" in log
    assert "vhtui: output up was not stored" in log
