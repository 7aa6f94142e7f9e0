"""Launching an execution: validate everything first, write the row, hand it to a supervisor.

Every check that can refuse a launch (the step, parameters, inputs, runner, GPUs, code packaging)
runs before anything is written to the store, so a refused launch leaves no trace there.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import RunnerError
from runners.pyenv import ENV_MODES
from vhtui.context import Context
from vhtui.data.datums import DatumStore
from vhtui.data.inputs import InputFetcher
from vhtui.engine import registry, secrets
from vhtui.engine.params import build_command, resolve_parameters
from vhtui.engine.slots import gpus_requested
from vhtui.errors import VhtuiError
from vhtui.home import Home
from vhtui.progress import Progress
from vhtui.project import Project, load_project
from vhtui.store import executions as execution_rows
from vhtui.store import projects as project_rows
from vhtui.supervision import code
from vhtui.supervision.detach import Standby, start_detached
from vhtui.supervision.jobscript import render_script


@dataclass
class LaunchRequest:
    project_root: Path
    step: str
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    title: str | None = None
    adhoc: bool = False
    runner: str | None = None
    env_mode: str = "venv"
    image: str | None = None
    cwd: Path | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # values that reach the command and nothing else
    secrets_in_argv: bool = False  # a secret's value is on our command line: no supervisor may inherit it


def choose_runner(ctx: Context, requested: str | None, environment: str | None) -> str:
    runner = requested or (ctx.settings.environments.get(environment) if environment else None) \
        or ctx.settings.default_runner
    if runner not in registry.names(ctx):
        raise VhtuiError(f"unknown runner {runner!r} (available: {', '.join(registry.names(ctx))})")
    return runner


def check_runner(ctx: Context, runner: str, image: str | None, gpus: int = 0) -> None:
    """Refuse now what the runner would refuse later: no image, no Docker engine, an agent that is
    unreachable or refuses our token, too few GPUs."""
    try:
        registry.open_runner(ctx, runner).preflight(image, gpus)
    except RunnerError as exc:
        raise VhtuiError(str(exc)) from None


def launch(
    ctx: Context, request: LaunchRequest, progress: Progress | None = None, project: Project | None = None,
    standby: Standby | None = None,
) -> dict[str, Any]:
    """Validate, record and start one execution; `project` saves a second parse when already loaded,
    `standby` (from `standby_supervisor`) is the supervisor to hand it to."""
    progress = progress or Progress()
    project = project or load_project(request.project_root)
    step = project.step(request.step)
    parameters = resolve_parameters(step, request.parameters)
    commands = build_command(step, parameters)  # shown as the step's command; the script is what runs
    script = render_script(commands)
    runner = choose_runner(ctx, request.runner, step.environment)
    gpus = gpus_requested(step.resources)
    check_runner(ctx, runner, request.image or step.image, gpus)
    if request.env_mode not in ENV_MODES:
        raise VhtuiError(f"unknown environment mode {request.env_mode!r} (use {' or '.join(ENV_MODES)})")
    python = shutil.which("python3") or sys.executable

    project_row = project_rows.find_by_path(ctx.db, project.root)
    datums = DatumStore(ctx.home, ctx.db)
    fetcher = InputFetcher(ctx.home, datums, project_row["id"] if project_row else -1,
                           request.cwd or Path.cwd(), progress)
    inputs = fetcher.resolve(step, request.inputs)

    with progress.task("Packaging code"):
        snapshot = code.snapshot(project.root, request.adhoc)
    with code.staged(snapshot, ctx.home.executions, ".launch-") as staging:
        code.copy_tree(project.root, snapshot.files, staging / "repository")
        project_id = project_rows.ensure(ctx.db, project.root)
        code_version = code.record(snapshot, datums, project_id)
        environment = {name: str(var.default) for name, var in step.environment_variables.items()
                       if var.default is not None}
        environment.update(request.environment_variables)
        environment.update(request.secrets)
        secret_names = {name for name in environment
                        if name in request.secrets or secrets.is_secret(name, ctx.settings.secret_patterns)}
        secrets.hand_over(staging, {name: environment[name] for name in secret_names})
        spec = {
            "env_mode": request.env_mode,
            "python": python,
            "gpus": gpus,
            "time_limit": step.time_limit.total_seconds() if step.time_limit else None,
            "no_output_timeout": step.no_output_timeout.total_seconds() if step.no_output_timeout else None,
            "stop_condition": step.stop_condition,
            "resources": step.resources.serialize() if step.resources else None,
            "stop_grace": ctx.settings.stop_grace,
            "secret_env": sorted(secret_names),
        }
        execution = execution_rows.create(ctx.db, project_id, {
            "step": step.name, "title": request.title, "runner": runner,
            "image": request.image or step.image, "command": script, "commands": commands, "parameters": parameters,
            "code_version": code_version, "environment": secrets.shown(environment, secret_names), "spec": spec,
        }, [f.as_row() for f in inputs])
        orphan = code.place(staging, ctx.home.execution_dir(execution["id"]))
    if orphan is not None:
        print(f"vhtui: note: the store was started anew; an old execution's folder is kept as {orphan}",
              file=sys.stderr)
    if request.secrets_in_argv and standby is not None:
        standby.cancel()  # forked from this process, it would show our command line, secrets and all
        standby = None
    start_supervisor(ctx, execution["id"], standby=standby, fresh=request.secrets_in_argv)
    return execution


def standby_supervisor(home: Home) -> Standby | None:
    """A supervisor forked ahead of a launch, importing what it needs while the launch is checked
    and recorded (None where forking is not safe); `launch` hands it the execution."""
    return Standby.start(_supervisor_main, home.root)


def start_supervisor(ctx: Context, execution_id: int, resume: bool = False, standby: Standby | None = None,
                     fresh: bool = False) -> None:
    """A detached supervisor owns the execution from here: the standby one, one forked from the
    CLI, or (`fresh`, or from the threaded TUI) a fresh interpreter."""
    args = [str(execution_id), *(["--resume"] if resume else [])]
    log = ctx.home.supervisor_log(execution_id)
    if standby is not None:
        standby.hand_over(args, log)
        return
    start_detached("vhtui.engine.supervisor", args, log, ctx.home.root,
                   main=None if fresh else (lambda given: _supervisor_main()(given)), db=ctx.db)


def start_collector(ctx: Context, execution_id: int) -> None:
    """A detached worker that stores what a crashed execution left in its outputs folder."""
    start_detached("vhtui.engine.supervisor", [str(execution_id), "--collect"], ctx.home.supervisor_log(execution_id),
                   ctx.home.root, main=lambda given: _supervisor_main()(given), db=ctx.db)


def _supervisor_main() -> Callable[[list[str]], int]:
    """The supervisor's entry point, imported in the child that runs it, not in the CLI that waits
    (with the runners of this host, which a standby would otherwise import once it has work)."""
    import runners.docker  # noqa: F401
    import runners.local  # noqa: F401
    from vhtui.engine import supervisor

    return supervisor.main
