"""The runtime contract inside an execution, as Valohai provides it and valohai-utils reads it.

Directories `repository/`, `inputs/<name>/<file>`, `outputs/`, `config/` (parameters, inputs and
execution, each as .json and .yaml), and the `VH_*` variables that point at them.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from vhtui.data.inputs import InputFile


class ExecutionDirs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.repository = root / "repository"
        self.inputs = root / "inputs"
        self.outputs = root / "outputs"
        self.config = root / "config"
        self.script = self.config / "command.sh"

    def create(self) -> None:
        for path in (self.inputs, self.outputs, self.config):
            path.mkdir(parents=True, exist_ok=True)


def vh_environment(execution: dict[str, Any], project: dict[str, Any], dirs: dict[str, str]) -> dict[str, str]:
    """`dirs` maps repository/inputs/outputs/config to paths as the command sees them."""
    env = {
        "VH_REPOSITORY_DIR": dirs["repository"],
        "VH_INPUTS_DIR": dirs["inputs"],
        "VH_OUTPUTS_DIR": dirs["outputs"],
        "VH_CONFIG_DIR": dirs["config"],
        "VH_JOB_ID": execution["uid"],
        "VH_EXECUTION_ID": execution["uid"],
        "VH_EXECUTION_COUNTER": str(execution["counter"]),
        "VH_PROJECT_ID": project["uid"],
        "PYTHONUNBUFFERED": "1",
    }
    spec = execution.get("spec") or {}
    for key, name in (("task_id", "VH_TASK_ID"), ("pipeline_id", "VH_PIPELINE_ID")):
        if spec.get(key):
            env[name] = str(spec[key])
    return env


def write_config(
    dirs: ExecutionDirs, execution: dict[str, Any], project: dict[str, Any], inputs: list[InputFile],
    inputs_path_seen: str, owner: str,
) -> None:
    """What Valohai leaves in config/: the same files, keys and formats; `owner` makes the
    project's name `owner/project`, as Valohai names it."""
    by_name: dict[str, dict[str, Any]] = {}
    for f in inputs:
        entry = by_name.setdefault(f.name, {"files": []})
        entry["files"].append({
            "name": f.filename,
            "path": f"{inputs_path_seen}/{f.name}/{f.filename}",
            "uri": f.uri,
            "size": f.size,
            "checksums": {"sha256": f.sha256},
            "datum_id": f.datum_id,
        })
    for name, document in (("parameters", execution["parameters"]), ("inputs", by_name),
                           ("execution", execution_info(execution, project, owner))):
        (dirs.config / f"{name}.json").write_text(json.dumps(document, indent=2))
        (dirs.config / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    dirs.script.write_text(execution["command"])


def execution_info(execution: dict[str, Any], project: dict[str, Any], owner: str) -> dict[str, Any]:
    """execution.json's keys, all of Valohai's, in its formats: times as ISO 8601, the project as
    `owner/project`, null where vhtui has no such thing (a pipeline node, an environment id)."""
    code_version = execution.get("code_version") or {}
    spec = execution.get("spec") or {}
    return {
        "valohai.commit-identifier": code_version.get("commit") or "~" + str(code_version.get("sha256", "")),
        "valohai.creator-email": None,
        "valohai.creator-id": os.getuid(),
        "valohai.creator-name": owner,
        "valohai.environment-id": None,
        "valohai.environment-name": execution["runner"],
        "valohai.environment-slug": execution["runner"],
        "valohai.execution-counter": execution["counter"],
        "valohai.execution-ctime": iso_time(execution["created_at"]),
        "valohai.execution-duration": None,
        "valohai.execution-id": execution["uid"],
        "valohai.execution-image": execution.get("image"),
        "valohai.execution-qtime": iso_time(execution.get("queued_at")),
        "valohai.execution-status": "started",
        "valohai.execution-step": execution["step"],
        "valohai.execution-tags": [],
        "valohai.execution-title": execution.get("title"),
        "valohai.pipeline-counter": None,
        "valohai.pipeline-id": spec.get("pipeline_id"),
        "valohai.pipeline-node-id": None,
        "valohai.pipeline-tags": [],
        "valohai.pipeline-title": None,
        "valohai.project-id": project["uid"],
        "valohai.project-name": f"{owner}/{project['name']}",
        "valohai.task-counter": None,
        "valohai.task-id": spec.get("task_id"),
    }


def iso_time(timestamp: float | None) -> str | None:
    """A stored time as Valohai writes one: `2024-12-30T13:58:46.832605+00:00`."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()
