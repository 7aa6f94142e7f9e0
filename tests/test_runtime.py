"""Inside an execution: the runtime contract, valohai-utils, logs, outputs and their metadata."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import Project, live_processes_with


def test_valohai_utils_script_runs_unchanged(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: utils
        image: python:3.11
        command: python utils_script.py {parameters}
        parameters:
          - name: epochs
            type: integer
            default: 2
          - name: rate
            type: float
            default: 0.5
        inputs:
          - name: table
    """)
    project.write("data.csv", "a,b\n1,2\n3,4\n")
    project.write("utils_script.py", """
    import json
    import valohai

    valohai.prepare(step="utils", default_parameters={"epochs": 1, "rate": 0.1},
                    default_inputs={"table": "nothing.csv"})
    epochs = valohai.parameters("epochs").value
    rate = valohai.parameters("rate").value
    path = valohai.inputs("table").path()
    rows = open(path).read().splitlines()
    for epoch in range(epochs):
        with valohai.logger() as logger:
            logger.log("epoch", epoch)
            logger.log("rate", rate)
            logger.log("rows", len(rows))
    out = valohai.outputs().path("result.json")
    json.dump({"rows": len(rows), "epochs": epochs}, open(out, "w"))
    print("input at", path)
    """)
    counter = project.run("utils", "--epochs=4", "--table=data.csv")
    doc = project.wait(counter)
    assert doc["status"] == "complete", project.logs(counter)
    assert doc["metadata"] == {"epoch": 3, "rate": 0.5, "rows": 3}
    assert doc["metadata_count"] == 4
    assert [o["name"] for o in doc["outputs"]] == ["result.json"]
    log = project.logs(counter)
    assert "/inputs/table/data.csv" in log


def test_config_files_and_vh_variables(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: contract
        image: python:3.11
        command: python contract.py
        parameters:
          - name: size
            type: integer
            default: 5
        inputs:
          - name: things
        environment-variables:
          - name: MY_SETTING
            default: hello
    """)
    project.write("thing.txt", "content\n")
    project.write("contract.py", """
    import json, os
    config = os.environ["VH_CONFIG_DIR"]
    print(json.dumps({
        "cwd_is_repo": os.getcwd() == os.environ["VH_REPOSITORY_DIR"],
        "vars": sorted(k for k in os.environ if k.startswith("VH_")),
        "params": json.load(open(os.path.join(config, "parameters.json"))),
        "inputs": json.load(open(os.path.join(config, "inputs.json"))),
        "execution": json.load(open(os.path.join(config, "execution.json"))),
        "setting": os.environ.get("MY_SETTING"),
        "input_file": open(os.path.join(os.environ["VH_INPUTS_DIR"], "things", "thing.txt")).read(),
    }))
    """)
    counter = project.run("contract", "--things=thing.txt", "--env", "current")
    doc = project.wait(counter)
    seen = doc["metadata"]
    assert seen["cwd_is_repo"] is True
    assert {"VH_REPOSITORY_DIR", "VH_INPUTS_DIR", "VH_OUTPUTS_DIR", "VH_CONFIG_DIR", "VH_JOB_ID",
            "VH_EXECUTION_ID", "VH_PROJECT_ID"} <= set(seen["vars"])
    assert seen["params"] == {"size": 5}
    file_info = seen["inputs"]["things"]["files"][0]
    assert file_info["name"] == "thing.txt" and file_info["size"] == 8
    assert len(file_info["checksums"]["sha256"]) == 64
    assert seen["execution"]["valohai.execution-counter"] == counter
    assert seen["execution"]["valohai.execution-id"] == doc["id"]
    assert seen["setting"] == "hello"
    assert seen["input_file"] == "content\n"


def test_logs_keep_order_and_streams(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: talk
        image: python:3.11
        command: python talk.py
    """)
    project.write("talk.py", """
    import sys, time
    for i in range(20):
        stream = sys.stderr if i % 5 == 4 else sys.stdout
        print(f"line {i} on {'err' if stream is sys.stderr else 'out'}", file=stream, flush=True)
        time.sleep(0.01)
    sys.stdout.write("no newline at the end")
    """)
    counter = project.run("talk", "--env", "current")
    assert project.wait(counter)["status"] == "complete"
    lines = project.logs(counter).splitlines()
    assert lines[:20] == [f"line {i} on {'err' if i % 5 == 4 else 'out'}" for i in range(20)]
    assert lines[20] == "no newline at the end"
    assert project.logs(counter, "--stderr").splitlines() == [f"line {i} on err" for i in (4, 9, 14, 19)]
    assert len(project.logs(counter, "--stdout").splitlines()) == 17


def test_outputs_sidecars_aliases_tags_and_datasets(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: make
        image: python:3.11
        command: python make.py
    """)
    project.write("make.py", """
    import json, os
    out = os.environ["VH_OUTPUTS_DIR"]
    os.makedirs(os.path.join(out, "sub"), exist_ok=True)
    open(os.path.join(out, "model.bin"), "wb").write(b"weights" * 100)
    json.dump({"valohai.tags": ["best", "v1"], "valohai.alias": "prod-model", "accuracy": 0.93,
               "valohai.dataset-versions": ["dataset://models/v1"]},
              open(os.path.join(out, "model.bin.metadata.json"), "w"))
    open(os.path.join(out, "sub", "a.txt"), "w").write("same content")
    open(os.path.join(out, "sub", "b.txt"), "w").write("same content")
    with open(os.path.join(out, "valohai.metadata.jsonl"), "w") as f:
        f.write(json.dumps({"file": "sub/a.txt", "metadata": {"split": "train"}}) + "\\n")
    """)
    counter = project.run("make", "--env", "current")
    doc = project.wait(counter)
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert set(outputs) == {"model.bin", "sub/a.txt", "sub/b.txt"}  # sidecars are not outputs
    model = outputs["model.bin"]
    assert model["tags"] == ["best", "v1"] and model["aliases"] == ["prod-model"]
    assert model["properties"] == {"accuracy": 0.93}
    assert outputs["sub/a.txt"]["properties"] == {"split": "train"}
    # identical content stored once: one blob, shared with both outputs
    sha = outputs["sub/a.txt"]["checksums"]["sha256"]
    assert sha == outputs["sub/b.txt"]["checksums"]["sha256"]
    blob = project.home / "blobs" / sha[:2] / sha
    assert blob.stat().st_nlink >= 3 and (blob.stat().st_mode & 0o222) == 0
    # the alias and the dataset version reach the datum
    target = project.root.parent / "download"
    project.vhtui("data", "get", "datum://prod-model", str(target))
    assert (target / "model.bin").read_bytes() == b"weights" * 100
    with sqlite3.connect(project.home / "vhtui.sqlite3") as conn:
        rows = conn.execute("SELECT d.name FROM dataset_version_datums v JOIN datums d ON d.id = v.datum_id").fetchall()
    assert rows == [("model.bin",)]
    # download all outputs of the execution
    out_dir = project.root.parent / "all"
    project.vhtui("exec", "outputs", str(counter), "--download", str(out_dir))
    assert (out_dir / "sub" / "b.txt").read_text() == "same content"
    assert os.access(out_dir / "sub" / "b.txt", os.W_OK)


def test_live_output_is_stored_while_running(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: live
        image: python:3.11
        command: python live.py
    """)
    project.write("live.py", """
    import os, time
    path = os.path.join(os.environ["VH_OUTPUTS_DIR"], "checkpoint.pt")
    open(path, "w").write("epoch 1")
    os.chmod(path, 0o444)
    print("checkpoint written", flush=True)
    time.sleep(30)
    """)
    counter = project.run("live", "--env", "current")
    project.wait_for_status(counter, "started")
    deadline = time.monotonic() + 15
    while not project.info(counter)["outputs"]:
        assert time.monotonic() < deadline, "live output was not stored during the run"
        time.sleep(0.2)
    assert project.info(counter)["status"] == "started"
    assert project.info(counter)["outputs"][0]["name"] == "checkpoint.pt"
    project.vhtui("exec", "stop", str(counter))
    doc = project.wait(counter)
    assert doc["status"] == "stopped"
    assert [o["name"] for o in doc["outputs"]] == ["checkpoint.pt"]  # not stored twice


def _write_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, so the test installs without any network."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "VALUE = 42\n")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return wheel


def test_layered_venv_isolates_installs_and_is_reused(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: deps
        image: python:3.11
        command:
          - pip install --no-index --find-links wheels -r requirements.txt
          - python -c "import vhtui_probe_pkg, pytest, sys; print(vhtui_probe_pkg.__file__); print(sys.prefix)"
    """)
    _write_wheel(project.root / "wheels", "vhtui_probe_pkg", "1.0")
    project.write("requirements.txt", "vhtui_probe_pkg==1.0\n")
    first = project.run("deps")
    doc = project.wait(first, timeout=120)
    log = project.logs(first)
    assert doc["status"] == "complete", log
    envs = project.home / "envs"
    assert str(envs) in log  # installed into the execution's venv ...
    user_site = [p for p in sys.path if p.endswith("site-packages")]
    assert not any((Path(p) / "vhtui_probe_pkg").exists() for p in user_site)  # ... never the user's
    # pytest comes from the user's environment, seen through the layered venv
    second = project.run("deps")
    assert project.wait(second, timeout=120)["status"] == "complete"
    log2 = project.logs(second)
    assert "Requirement already satisfied: vhtui_probe_pkg" in log2
    assert "Successfully installed" not in log2
    assert len([p for p in envs.iterdir() if p.is_dir()]) == 1


def test_gpu_slots_are_disjoint_and_queue(project: Project) -> None:
    """No GPU exists here: VHTUI_GPUS stands in for NVML's device count (a documented override)."""
    project.write("valohai.yaml", """
    - step:
        name: gpu
        image: python:3.11
        command: python gpu.py
        resources:
          devices:
            nvidia.com/gpu: 2
    """)
    project.write("gpu.py", """
    import json, os, time
    print(json.dumps({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}), flush=True)
    time.sleep(2)
    print(json.dumps({"end": time.time()}))
    """)
    env = {"VHTUI_GPUS": "3"}
    counters = [project.run("gpu", "--env", "current", **env) for _ in range(2)]
    docs = [project.wait(c, timeout=60) for c in counters]
    assert all(d["status"] == "complete" for d in docs)
    sets = [set(d["metadata"]["cuda"].split(",")) for d in docs]
    assert all(len(s) == 2 for s in sets)
    # three GPUs, two runs of two each: they cannot overlap in time
    first, second = sorted(docs, key=lambda d: d["metadata"]["start"])
    assert second["metadata"]["start"] >= first["metadata"]["end"] - 0.05
    too_many = project.vhtui("run", "gpu", check=False, VHTUI_GPUS="1")
    assert too_many.returncode == 1 and "asks for 2 GPU(s); this machine has 1" in too_many.stderr


def test_watch_relaunches_on_change_and_stops_the_replaced_run(project: Project) -> None:
    import subprocess

    project.write("valohai.yaml", """
    - step:
        name: loop
        image: python:3.11
        command: python loop.py
    """)
    project.write("loop.py", "import time\nprint('version 1', flush=True)\ntime.sleep(60)\n")
    watcher = subprocess.Popen([sys.executable, "-m", "vhtui", "run", "loop", "--watch", "--env", "current"],
                               cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        project.wait_for_status(1, "started", timeout=30)
        time.sleep(0.5)
        project.write("loop.py", "import time\nprint('version 2', flush=True)\ntime.sleep(60)\n")
        project.wait_for_status(2, "started", timeout=30)
        assert project.wait(1, timeout=30)["status"] == "stopped"
        deadline = time.monotonic() + 10
        while "version 2" not in project.logs(2):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        watcher.terminate()
        watcher.wait(10)
        for counter in (1, 2, 3):
            project.vhtui("exec", "stop", str(counter), check=False)


def test_json_listing_for_scripts(project: Project) -> None:
    project.write("valohai.yaml", """
    - step:
        name: quick
        image: python:3.11
        command: >-
          echo '{"loss": 0.5}'
    """)
    counter = project.run("quick", "--title", "first try", "--env", "current")
    project.wait(counter)
    listing = json.loads(project.vhtui("exec", "list", "--json").stdout)
    assert listing["count"] == 1
    item = listing["results"][0]
    assert {"counter", "status", "step", "parameters", "duration", "title", "ctime"} <= set(item)
    assert item["title"] == "first try" and item["metadata"] == {"loss": 0.5}
    assert json.loads(project.vhtui("exec", "list", "--status", "error", "--json").stdout)["count"] == 0
    csv_text = project.vhtui("exec", "metadata", str(counter), "--csv").stdout
    assert csv_text.splitlines()[0] == "_seq,_time,loss" and csv_text.splitlines()[1].endswith(",0.5")


@pytest.mark.parametrize("sandbox", ["1", "0"], ids=["own-namespace", "real-paths"])
def test_nothing_the_command_started_outlives_it(project: Project, sandbox: str) -> None:
    duration = f"300.{uuid.uuid4().int % 10**9}"  # names this test's sleep among all processes
    project.write("valohai.yaml", f"""
    - step:
        name: leaky
        image: python:3.11
        command:
          - sleep {duration} &
          - echo started a background sleep
    """)
    counter = project.run("leaky", "--env", "current", VHTUI_LOCAL_SANDBOX=sandbox)
    doc = project.wait(counter, timeout=30)
    assert doc["status"] == "complete"
    deadline = time.monotonic() + 5
    while live_processes_with(duration):
        assert time.monotonic() < deadline, "the background process outlived its execution"
        time.sleep(0.1)
