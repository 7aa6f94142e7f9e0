"""A seeded, deterministic store for TUI tests, snapshots and screenshots.

Fixed times, ids and contents, at a fixed path (`SEED_ROOT`), so every screen renders the same on
every machine. The project is a copy of the bundled quickstart example.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from vhtui.context import Context
from vhtui.data.blobs import BlobStore
from vhtui.supervision.logfile import LogWriter
from vhtui.engine.metadata import MetadataSink
from vhtui.home import Home
from vhtui.settings import Settings
from vhtui.store import datums as datum_rows
from vhtui.store import executions as execution_rows
from vhtui.store import open_database
from vhtui.store import projects as project_rows

REPO = Path(__file__).resolve().parents[2]
SEED_ROOT = Path("/tmp/vhtui-seeded")
T0 = 1793181600.0  # 2026-10-27 12:00 UTC


def _execution(db: Any, project_id: int, step: str, status: str, start: float, seconds: float | None,
               parameters: dict[str, Any], inputs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    row = execution_rows.create(db, project_id, {
        "step": step, "runner": "local", "image": "python:3.11", "command": f"set -e\npython {step}.py\n",
        "commands": [f"python {step}.py"],
        "parameters": parameters, "code_version": {"type": "git", "commit": "4f2c9e1a7b3d5f60c1e2", "branch": "main",
                                                   "dirty": False},
        "environment": {}, "spec": {"env_mode": "venv", "gpus": 0}, "title": extra.pop("title", None),
    }, inputs or [])
    fields = {"status": status, "queued_at": start - 0.2, "started_at": start, "heartbeat_at": start}
    if seconds is not None:
        fields.update(ended_at=start + seconds, exit_code=extra.pop("exit_code", 0))
    fields.update(extra)
    with db.write() as conn:
        conn.execute("UPDATE executions SET created_at = ?, uid = ? WHERE id = ?",
                     (start - 0.5, f"00000000-0000-4000-8000-{row['id']:012d}", row["id"]))
    execution_rows.update(db, row["id"], only_if_active=False, **fields)
    return execution_rows.get(db, row["id"])  # type: ignore[return-value]


def _output(db: Any, blobs: BlobStore, tmp: Path, execution: dict[str, Any], name: str, content: bytes,
            datum_id: str, **extra: Any) -> dict[str, Any]:
    path = tmp / datum_id  # one file per output: stored blobs share the inode of what they took
    path.write_bytes(content)
    sha256, size = blobs.add_file(path, take=True)
    datum = {"id": datum_id, "project_id": execution["project_id"], "name": name, "sha256": sha256, "size": size,
             "kind": "output", "producer_execution_id": execution["id"], "created_at": execution["ended_at"] or T0,
             "tags": extra.get("tags", []), "properties": extra.get("properties", {})}
    datum_rows.insert(db, datum)
    for alias in extra.get("aliases", []):
        datum_rows.set_alias(db, execution["project_id"], alias, datum_id)
    return datum


def _log(home: Home, execution_id: int, lines: list[tuple[str, str]]) -> None:
    writer = LogWriter(home.log_path(execution_id))
    for stream, text in lines:
        writer.write(stream, text.encode() + b"\n")
    writer.close()


def _metadata(home: Home, execution_id: int, events: list[dict[str, Any]], start: float) -> None:
    sink = MetadataSink(home.database, execution_id)
    for index, event in enumerate(events):
        line = json.dumps(event).encode() + b"\n"
        sink.feed([(line, 0, len(line))], start + index)
        sink.flush()
    sink.close()


def build(root: Path = SEED_ROOT) -> tuple[Context, Path]:
    """A fresh seeded store and project under `root`; returns the context and the project's root."""
    shutil.rmtree(root, ignore_errors=True)
    project_root = root / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", project_root)
    home = Home(root / "home")
    home.root.mkdir(parents=True)
    (root / "lab-gpu.token").write_text("seeded-token-0123456789")  # an agent that is down: the runners screen
    (home.root / "runners.json").write_text(json.dumps({"lab-gpu": {  # shows how an unreachable one reads
        "url": "http://127.0.0.1:9", "token_file": str(root / "lab-gpu.token"), "ca_file": None}}))
    db = open_database(home.database)
    project_id = project_rows.ensure(db, project_root, name="quickstart")
    other = project_rows.ensure(db, root / "vision-experiments", name="vision-experiments")
    blobs = BlobStore(home.blobs)
    scratch = root / "scratch"
    scratch.mkdir()

    pre = _execution(db, project_id, "preprocess", "complete", T0, 1.4, {"samples": 200, "noise": 0.1},
                     title="synthetic data")
    dataset = _output(db, blobs, scratch, pre, "dataset.csv", b"x,y\n0.1,2.3\n0.5,3.4\n", "d5e7a1c0-0000-4000-8000-000000000001",
                      aliases=["latest-dataset"], tags=["synthetic"], properties={"samples": 200})
    _log(home, pre["id"], [("stdout", '{"samples": 200, "noise": 0.1}'), ("stdout", "wrote 200 samples")])
    _metadata(home, pre["id"], [{"samples": 200, "noise": 0.1}], T0)

    def train(status: str, start: float, seconds: float | None, lr: float, epochs: int, **extra: Any) -> dict[str, Any]:
        inputs = [{"name": "dataset", "position": 0, "uri": f"datum://{dataset['id']}", "datum_id": dataset["id"],
                   "filename": "dataset.csv", "sha256": dataset["sha256"], "size": dataset["size"]}]
        execution = _execution(db, project_id, "train", status, start, seconds,
                               {"epochs": epochs, "learning_rate": lr, "optimizer": "sgd", "verbose": False},
                               inputs, **extra)
        events, lines = [], []
        loss = 3.0
        for epoch in range(1, epochs + 1):
            loss *= 1 - lr
            event = {"epoch": epoch, "loss": round(loss, 5), "accuracy": round(1 - loss / 4, 4)}
            events.append(event)
            lines.append(("stdout", json.dumps(event)))
            if epoch % 4 == 0:
                lines.append(("stderr", f"\x1b[33mwarning\x1b[0m: epoch {epoch} gradient norm is large"))
        if status == "error":
            lines.append(("stderr", "Traceback (most recent call last):"))
            lines.append(("stderr", "RuntimeError: loss is NaN"))
        _log(home, execution["id"], lines)
        _metadata(home, execution["id"], events, start)
        return execution

    good = train("complete", T0 + 60, 12.5, 0.3, 12, title="first model")
    model = _output(db, blobs, scratch, good, "model.json", b'{"w": 2.98, "b": 2.01}', "a11ce000-0000-4000-8000-000000000002",
                    aliases=["latest-model"], properties={"final_loss": 0.04})
    _output(db, blobs, scratch, good, "metrics.json", b'{"loss": 0.04}', "a11ce000-0000-4000-8000-000000000003")
    train("error", T0 + 120, 3.2, 0.9, 3, exit_code=1, reason="exit code 1")
    better = train("complete", T0 + 180, 20.1, 0.15, 20, title="slower learning rate")
    better_model = _output(db, blobs, scratch, better, "model.json", b'{"w": 3.01, "b": 1.99}',
                           "a11ce000-0000-4000-8000-000000000004")
    train("stopped", T0 + 240, 4.0, 0.05, 5, reason="stopped by request", exit_code=-15)
    evaluate = _execution(db, project_id, "evaluate", "complete", T0 + 300, 0.8, {}, [
        {"name": "model", "position": 0, "uri": f"datum://{model['id']}", "datum_id": model["id"],
         "filename": "model.json", "sha256": model["sha256"], "size": model["size"]},
        {"name": "dataset", "position": 0, "uri": f"datum://{dataset['id']}", "datum_id": dataset["id"],
         "filename": "dataset.csv", "sha256": dataset["sha256"], "size": dataset["size"]},
    ], title="score it")
    _output(db, blobs, scratch, evaluate, "evaluation.json", b'{"mae": 0.081}', "e7a10000-0000-4000-8000-000000000005")
    _log(home, evaluate["id"], [("stdout", '{"mae": 0.081, "n": 200}')])
    _metadata(home, evaluate["id"], [{"mae": 0.081, "n": 200}], T0 + 300)
    _execution(db, project_id, "train", "crashed", T0 + 360, 1.0, {"epochs": 8, "learning_rate": 0.3,
               "optimizer": "momentum", "verbose": True}, reason="its supervisor (pid 4242) died, last heartbeat 3s ago",
               exit_code=None)
    with db.write() as conn:  # the other project has history too, for the projects list
        conn.execute("UPDATE projects SET uid = 'p-1' WHERE id = ?", (project_id,))
        conn.execute("UPDATE projects SET uid = 'p-2' WHERE id = ?", (other,))
    shutil.rmtree(scratch)
    _deployments(db, project_id, [model, better_model])
    settings = Settings(max_parallel=4, gpus="none")
    return Context(home=home, db=db, settings=settings), project_root


def _deployments(db: Any, project_id: int, models: list[dict[str, Any]]) -> None:
    """Deployment `predict-api`: v1 serves #2's model (production), v2 serves #4's (staging), with a
    minute of traffic, vh_metadata and mirroring, ending at T0 + 600 (the screens' fixed clock)."""
    from array import array

    from vhtui.store import deployments as deployment_rows

    spec = {"image": "python:3.11", "description": "linear model behind HTTP", "wsgi": None,
            "server_command": ["python serve.py"], "port": 8000, "resources": None,
            "files": [{"name": "model", "path": "model.json"}]}
    deployment = deployment_rows.ensure_deployment(db, project_id, "predict-api")
    versions = []
    for index, model in enumerate(models):
        code = {"type": "git", "commit": ["4f2c9e1a7b3d5f60c1e2", "9b1e77c0d2a4e6f80a13"][index], "branch": "main",
                "dirty": False}
        version = deployment_rows.create_version(db, deployment["id"], f"v{index + 1}", code, "venv", [
            {"name": "predict", "spec": spec, "files": [{"name": "model", "path": "model.json", "datum_id": model["id"],
                                                         "uri": f"datum://{model['id']}"}]}])
        endpoint = deployment_rows.endpoints_of(db, version["id"])[0]
        deployment_rows.update_endpoint(db, endpoint["id"], status="running", port=41001 + index, started_at=T0 + 500)
        versions.append((version, endpoint))
        buckets = {}
        for second in range(60):
            count = 20 + (second * 7 + index * 3) % 9
            base = 3.0 + index * 1.5 + (second % 10) * 0.2
            latencies = array("f", [base + (k % 5) * 0.4 for k in range(count)])
            buckets[(endpoint["id"], int(T0) + 541 + second)] = (count, int(index == 1 and second % 20 == 0), latencies)
        deployment_rows.add_request_stats(db, buckets)
        deployment_rows.add_metadata(db, endpoint["id"], [
            (T0 + 541 + k, {"prediction": round((2.98 + index * 0.03) * (k % 12) / 10 + 2.0, 4),
                            "confidence": round(0.9 - index * 0.05 + (k % 7) * 0.01, 3)}) for k in range(60)])
    deployment_rows.set_alias(db, deployment["id"], "production", versions[0][0]["id"])
    deployment_rows.set_alias(db, deployment["id"], "staging", versions[1][0]["id"])
    deployment_rows.set_mirror(db, deployment["id"], "production", "staging")
    deployment_rows.add_mirror_stats(db, {(deployment["id"], "production", "staging", int(T0) + 599): (1240, 1178)})
    with db.write() as conn:  # fixed times, so the pictures never change
        conn.execute("UPDATE deployments SET created_at = ?", (T0 + 400,))
        conn.execute("UPDATE deployment_versions SET created_at = ?", (T0 + 400,))
        conn.execute("UPDATE deployment_aliases SET updated_at = ?", (T0 + 500,))
