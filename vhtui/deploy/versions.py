"""Building a deployment version: the code as it is now, plus each endpoint's files as datums.

Everything that can refuse a version (an unknown endpoint, a file the endpoint does not declare or
one it declares but was not given, a datum that does not exist, an unsafe path) is checked before
anything is written, as launches do. Each endpoint gets its own copy of the code with its files
where `valohai.yaml` says (`files: - path:`), so two versions never share a working directory.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from runners.pyenv import ENV_MODES
from vhtui.context import Context
from vhtui.data.datums import DatumStore
from vhtui.supervision import code
from vhtui.errors import NotFound, VhtuiError, quoted
from vhtui.project import load_project
from vhtui.store import deployments as deployment_rows
from vhtui.store import projects as project_rows

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # safe as one segment of a URL path


def check_name(kind: str, name: str) -> str:
    """A deployment, version or alias name: one segment of every URL the router serves."""
    if not NAME.fullmatch(name):
        raise VhtuiError(f"invalid {kind} name {quoted(name)}: use up to 128 letters, digits, '.', '_' and '-'")
    return name


def endpoint_spec(endpoint: Any) -> dict[str, Any]:
    """What a version keeps of an endpoint: enough to start and export it without valohai.yaml."""
    command = endpoint.server_command
    return {
        "image": endpoint.image, "description": endpoint.description, "wsgi": endpoint.wsgi,
        "server_command": [command] if isinstance(command, str) else list(command or []),
        "port": int(endpoint.port) if endpoint.port not in (None, "") else None,
        "resources": endpoint.resources,
        "files": [{"name": f.name, "path": f.path} for f in endpoint.files],
    }


def parse_file_args(values: list[str], endpoints: list[str]) -> dict[tuple[str, str], str]:
    """`--file model=datum://x` (the only endpoint) or `--file predict.model=datum://x`."""
    out: dict[tuple[str, str], str] = {}
    for value in values:
        key, sep, uri = value.partition("=")
        if not sep or not key or not uri:
            raise VhtuiError(f"--file {value!r}: expected NAME=datum://ID (or ENDPOINT.NAME=...)")
        endpoint, dot, name = key.rpartition(".")
        if not dot:
            if len(endpoints) > 1:
                raise VhtuiError(f"--file {value!r}: name the endpoint too (ENDPOINT.{key}=...)")
            endpoint, name = endpoints[0], key
        out[(endpoint, name)] = uri
    return out


def create_version(
    ctx: Context, project_root: Path, deployment: str, endpoint_names: list[str], file_args: list[str],
    name: str | None = None, adhoc: bool = False, env_mode: str = "venv",
) -> dict[str, Any]:
    check_name("deployment", deployment)
    if name is not None:
        check_name("version", name)
    if env_mode not in ENV_MODES:
        raise VhtuiError(f"unknown environment mode {env_mode!r} (use {' or '.join(ENV_MODES)})")
    if not endpoint_names:
        raise VhtuiError("name at least one endpoint (--endpoint NAME)")
    project = load_project(project_root)
    known = project.config.endpoints
    for endpoint_name in endpoint_names:
        if endpoint_name not in known:
            raise NotFound(f"no endpoint {endpoint_name!r} in valohai.yaml (endpoints: {', '.join(sorted(known)) or 'none'})")
    given = parse_file_args(file_args, endpoint_names)
    project_row = project_rows.find_by_path(ctx.db, project.root)
    store = DatumStore(ctx.home, ctx.db)
    endpoints = []
    for endpoint_name in endpoint_names:
        spec = endpoint_spec(known[endpoint_name])
        declared = {f["name"]: f["path"] for f in spec["files"]}
        files = []
        for file_name, path in declared.items():
            uri = given.pop((endpoint_name, file_name), None)
            if uri is None:
                raise VhtuiError(f"endpoint {endpoint_name!r} needs its file {file_name!r}: "
                                 f"--file {file_name}=datum://ID")
            if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
                raise VhtuiError(f"endpoint {endpoint_name!r}: file path {path!r} must stay inside the code")
            datum = store.resolve(uri, project_row["id"] if project_row else None)
            files.append({"name": file_name, "path": path, "datum_id": datum["id"], "uri": uri})
        endpoints.append({"name": endpoint_name, "spec": spec, "files": files})
    if given:
        (endpoint_name, file_name), _ = next(iter(given.items()))
        raise NotFound(f"endpoint {endpoint_name!r} declares no file {file_name!r}")

    existing = deployment_rows.get_deployment(ctx.db, project_row["id"], deployment) if project_row else None
    if name and existing and deployment_rows.get_version(ctx.db, existing["id"], name):
        raise VhtuiError(f"deployment {deployment!r} already has a version {name!r}")  # before anything is written
    snapshot = code.snapshot(project.root, adhoc)
    with code.staged(snapshot, ctx.home.deployments, ".version-") as staging:
        for endpoint in endpoints:
            repository = staging / endpoint["name"] / "repository"
            code.copy_tree(project.root, snapshot.files, repository)
            for file in endpoint["files"]:
                datum = store.resolve(file["datum_id"], None)
                target = repository / file["path"]
                store.write(datum, target)  # replaces a file of that name in the code
        project_id = project_rows.ensure(ctx.db, project.root)
        code_version = code.record(snapshot, store, project_id)
        deployment_row = deployment_rows.ensure_deployment(ctx.db, project_id, deployment)
        version_name = name or deployment_rows.next_version_name(ctx.db, deployment_row["id"])
        version = deployment_rows.create_version(ctx.db, deployment_row["id"], version_name, code_version,
                                                  env_mode, endpoints)
        code.place(staging, ctx.home.version_dir(version["id"]))
    return version


def find_deployment(ctx: Context, project_id: int, name: str) -> dict[str, Any]:
    row = deployment_rows.get_deployment(ctx.db, project_id, name)
    if row is None:
        known = ", ".join(d["name"] for d in deployment_rows.list_deployments(ctx.db, project_id)) or "none"
        raise NotFound(f"no deployment {name!r} in this project (deployments: {known})")
    return row


def find_version(ctx: Context, deployment: dict[str, Any], ref: str) -> dict[str, Any]:
    """A version by name, or the version an alias points to."""
    version = deployment_rows.get_version(ctx.db, deployment["id"], ref)
    if version is None:
        for alias in deployment_rows.aliases_of_deployment(ctx.db, deployment["id"]):
            if alias["name"] == ref:
                version = deployment_rows.get_version_by_id(ctx.db, alias["version_id"])
    if version is None:
        raise NotFound(f"deployment {deployment['name']!r} has no version or alias {ref!r}")
    return version
