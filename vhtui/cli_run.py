"""`vhtui run STEP ...`: options generated from the step, launch, and the `--watch` loop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vhtui.errors import VhtuiError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise VhtuiError(message, exit_code=2)


def step_parser(step: Any) -> argparse.ArgumentParser:
    from vhtui.engine.params import option_aliases

    parser = _Parser(prog=f"vhtui run {step.name}", description=step.description or None)
    common = parser.add_argument_group("launch")
    common.add_argument("--title", help="a title for the execution")
    common.add_argument("--adhoc", action="store_true", help="package the working tree instead of a git commit")
    common.add_argument("--runner", help="where to run (default: from config, else local)")
    common.add_argument("--env", dest="env_mode", default="venv", choices=("venv", "current"),
                        help="local runner: a layered venv (default) or the current environment as it is")
    common.add_argument("--image", help="override the step's image")
    common.add_argument("--parameter-file", action="append", default=[], metavar="FILE",
                        help="parameter values from a JSON or YAML mapping")
    common.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    common.add_argument("-i", "--input", action="append", default=[], metavar="NAME=URI")
    common.add_argument("--env-var", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the command")
    common.add_argument("--follow", "-f", action="store_true", help="print the log until the execution ends")
    common.add_argument("--watch", action="store_true", help="launch again whenever a project file changes")
    taken = {opt for action in parser._actions for opt in action.option_strings}
    params = parser.add_argument_group("parameters")
    for name, parameter in step.parameters.items():
        flags = [f for f in option_aliases(name) if f not in taken]
        if not flags:
            continue
        taken.update(flags)
        help_text = f"{parameter.type}" + (f", default {parameter.default!r}" if parameter.default is not None else "")
        if parameter.description:
            help_text += f": {parameter.description}"
        if parameter.type == "flag":
            params.add_argument(*flags, dest=f"param:{name}", nargs="?", const="true", default=None, help=help_text)
            negated = [f"--no-{f[2:]}" for f in flags if f"--no-{f[2:]}" not in taken]
            if negated:
                params.add_argument(*negated, dest=f"param:{name}", action="store_const", const="false",
                                    help=argparse.SUPPRESS)
                taken.update(negated)
        elif parameter.multiple:
            params.add_argument(*flags, dest=f"param:{name}", action="append", default=None, help=help_text)
        else:
            params.add_argument(*flags, dest=f"param:{name}", default=None, help=help_text)
    inputs = parser.add_argument_group("inputs")
    for name, spec in step.inputs.items():
        flags = [f for f in option_aliases(name) if f not in taken]
        if flags:
            taken.update(flags)
            inputs.add_argument(*flags, dest=f"input:{name}", action="append", default=None,
                                help=f"path, URL, datum:// or dataset:// (default: {spec.default or 'none'})")
    return parser


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise VhtuiError(f"{what} {value!r}: expected NAME=VALUE")
        out.append((name, rest))
    return out


def build_request(step: Any, root: Path, argv: list[str]) -> tuple[Any, argparse.Namespace]:
    from vhtui.engine.launch import LaunchRequest
    from vhtui.engine.params import read_parameter_file

    args = step_parser(step).parse_args(argv)
    parameters: dict[str, Any] = {}
    for path in args.parameter_file:
        parameters.update(read_parameter_file(path))
    repeated: dict[str, list[str]] = {}
    for name, value in _pairs(args.parameter, "parameter"):
        repeated.setdefault(name, []).append(value)
    parameters.update({name: values[0] if len(values) == 1 else values for name, values in repeated.items()})
    inputs: dict[str, list[str]] = {}
    for name, value in _pairs(args.input, "input"):
        inputs.setdefault(name, []).append(value)
    for dest, value in vars(args).items():
        if value is None:
            continue
        if dest.startswith("param:"):
            parameters[dest[6:]] = value
        elif dest.startswith("input:"):
            inputs[dest[6:]] = value
    request = LaunchRequest(
        project_root=root, step=step.name, parameters=parameters, inputs=inputs, title=args.title,
        adhoc=args.adhoc, runner=args.runner, env_mode=args.env_mode, image=args.image, cwd=Path.cwd(),
        environment_variables=dict(_pairs(args.env_var, "environment variable")),
    )
    return request, args


def run_command(step_name: str, argv: list[str]) -> int:
    from vhtui.context import Context
    from vhtui.engine.launch import launch
    from vhtui.progress import for_terminal
    from vhtui.project import load_project

    project = load_project()
    step = project.step(step_name)
    if "-h" in argv or "--help" in argv:
        step_parser(step).print_help()
        return 0
    request, args = build_request(step, project.root, argv)
    ctx = Context.open()
    if args.watch:
        return _watch(ctx, project.root, request)
    execution = launch(ctx, request, for_terminal(), project)
    print(f"#{execution['counter']} {execution['step']} launched ({execution['runner']})", file=sys.stderr)
    if args.follow:
        return _follow(ctx, execution)
    print(execution["counter"])
    return 0


def _follow(ctx: Any, execution: dict[str, Any]) -> int:
    """Print the log as it grows; exit 0 if the execution completes, 1 otherwise."""
    import time

    from vhtui.supervision.logfile import LogReader
    from vhtui.engine.reconcile import reconcile
    from vhtui.store import executions as execution_rows
    from vhtui.store.executions import FINAL_STATUSES

    reader = LogReader(ctx.home.log_path(execution["id"]))
    offset = 0
    out = sys.stdout.buffer
    while True:
        row = execution_rows.get(ctx.db, execution["id"])
        for line_offset, _, line in reader.read_lines(offset):
            out.write(line + b"\n")
            offset = line_offset + len(line) + 1
        out.flush()
        if row["status"] in FINAL_STATUSES and reader.size() <= offset:  # type: ignore[index]
            detail = f": {row['reason']}" if row["reason"] else ""  # type: ignore[index]
            print(f"#{row['counter']} {row['status']}{detail}", file=sys.stderr)  # type: ignore[index]
            return 0 if row["status"] == "complete" else 1  # type: ignore[index]
        reconcile(ctx)
        time.sleep(0.2)


def _watch(ctx: Any, root: Path, request: Any) -> int:
    """Local-first iteration: launch, and on every change to the project's files, replace the run."""
    from watchfiles import watch

    from vhtui.supervision.code import watch_filter
    from vhtui.engine.control import request_stop
    from vhtui.engine.launch import launch
    from vhtui.progress import LineProgress
    from vhtui.store import executions as execution_rows

    current = None
    try:
        while True:
            try:
                current = launch(ctx, request, LineProgress())
                print(f"#{current['counter']} {current['step']} launched; watching {root} for changes", file=sys.stderr)
            except VhtuiError as exc:  # a broken edit: say so and wait for the next one
                print(f"vhtui: error: {exc}", file=sys.stderr)
            for changes in watch(root, watch_filter=watch_filter(root), debounce=300):
                names = sorted({Path(p).name for _, p in changes})
                print(f"changed: {', '.join(names[:5])}", file=sys.stderr)
                break
            if current is not None:
                row = execution_rows.get(ctx.db, current["id"])
                if row and request_stop(ctx, row):
                    print(f"#{row['counter']} stopped (replaced)", file=sys.stderr)
    except KeyboardInterrupt:
        return 0
