"""The runtime contract inside an execution, as Valohai provides it and valohai-utils reads it.

Directories `repository/`, `inputs/<name>/<file>`, `outputs/`, `config/` (parameters.json,
inputs.json, execution.json), and the `VH_*` variables that point at them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    inputs_path_seen: str,
) -> None:
    (dirs.config / "parameters.json").write_text(json.dumps(execution["parameters"], indent=2))
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
    (dirs.config / "inputs.json").write_text(json.dumps(by_name, indent=2))
    info = {
        "valohai.execution-id": execution["uid"],
        "valohai.execution-counter": execution["counter"],
        "valohai.execution-title": execution.get("title"),
        "valohai.execution-step": execution["step"],
        "valohai.execution-image": execution.get("image"),
        "valohai.execution-ctime": execution["created_at"],
        "valohai.project-id": project["uid"],
        "valohai.project-name": project["name"],
        "valohai.commit-identifier": (execution.get("code_version") or {}).get("commit")
        or "~" + str((execution.get("code_version") or {}).get("sha256", "")),
        "valohai.runner": execution["runner"],
    }
    (dirs.config / "execution.json").write_text(json.dumps(info, indent=2))
    dirs.script.write_text(execution["command"])
