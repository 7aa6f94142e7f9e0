"""`vhtui run STEP ...`: options generated from the step, launch, `--follow` and the `--watch` loop.

`vhtui run` alone (or with `--help`) lists the project's steps; `vhtui run STEP --help` shows
each parameter's type, default and limits and each input's default, as the step declares them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vhtui.context import Context
from vhtui.errors import NotFound, VhtuiError

if TYPE_CHECKING:
    from vhtui.supervision.detach import Standby

METAVARS = {"integer": "INT", "float": "FLOAT", "string": "STRING", "flag": "BOOL"}
HELP_FLAGS = ("-h", "--help")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise VhtuiError(f"{message} (see vhtui run {self.prog.split()[-1]} --help)", exit_code=2)


def parameter_help(parameter: Any) -> str:
    """A parameter as the step declares it: type, default, limits, choices, then its description."""
    parts = [parameter.type + (" (repeatable)" if parameter.multiple else "")]
    if parameter.default is not None:
        parts.append(f"default {parameter.default!r}")
    if parameter.min is not None:
        parts.append(f"min {parameter.min}")
    if parameter.max is not None:
        parts.append(f"max {parameter.max}")
    if parameter.choices and parameter.type != "flag":
        parts.append("one of " + ", ".join(str(c) for c in parameter.choices))
    text = ", ".join(parts)
    return f"{text}: {parameter.description}" if parameter.description else text


def input_help(spec: Any) -> str:
    defaults = spec.default if isinstance(spec.default, list) else [spec.default] if spec.default else []
    text = "a path, URL, datum:// or dataset:// (repeatable); " + (
        f"default {', '.join(defaults)}" if defaults else "optional" if spec.optional else "required")
    return f"{text}: {spec.description}" if spec.description else text


def step_parser(step: Any) -> argparse.ArgumentParser:
    from vhtui.engine.params import option_aliases

    parser = _Parser(prog=f"vhtui run {step.name}", description=step.description or None)
    common = parser.add_argument_group("launch")
    common.add_argument("--title", metavar="TEXT", help="a title for the execution")
    common.add_argument("--adhoc", action="store_true", help="package the working tree instead of a git commit")
    common.add_argument("--runner", metavar="NAME", help="where to run: local, docker or a registered agent "
                        "(default: from config, else local)")
    common.add_argument("--env", dest="env_mode", default="venv", choices=("venv", "current"),
                        help="local runner: a layered venv (default) or the current environment as it is")
    common.add_argument("--image", metavar="IMAGE", help="override the step's image")
    common.add_argument("--parameter-file", action="append", default=[], metavar="FILE",
                        help="parameter values from a JSON or YAML mapping")
    common.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    common.add_argument("-i", "--input", action="append", default=[], metavar="NAME=URI")
    common.add_argument("--env-var", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the command")
    common.add_argument("--secret", action="append", default=[], metavar="NAME[=VALUE]",
                        help="a secret environment variable: its value reaches the command and nothing else "
                             "(NAME alone takes it from your environment, which keeps it off the command line)")
    common.add_argument("--follow", "-f", action="store_true", help="print the log until the execution ends")
    common.add_argument("--watch", action="store_true", help="launch again whenever a project file changes")
    taken = {opt for action in parser._actions for opt in action.option_strings}
    params = parser.add_argument_group("parameters")
    for name, parameter in step.parameters.items():
        flags = [f for f in option_aliases(name) if f not in taken]
        if not flags:
            continue  # a name that collides with a launch option: reachable as -p NAME=VALUE
        taken.update(flags)
        metavar = METAVARS.get(parameter.type, "VALUE")
        if parameter.type == "flag":
            params.add_argument(*flags, dest=f"param:{name}", nargs="?", const="true", default=None,
                                metavar=metavar, help=parameter_help(parameter))
            negated = [f"--no-{f[2:]}" for f in flags if f"--no-{f[2:]}" not in taken]
            if negated:
                params.add_argument(*negated, dest=f"param:{name}", action="store_const", const="false",
                                    help=argparse.SUPPRESS)
                taken.update(negated)
        else:
            params.add_argument(*flags, dest=f"param:{name}", action="append" if parameter.multiple else "store",
                                default=None, metavar=metavar, help=parameter_help(parameter))
    inputs = parser.add_argument_group("inputs")
    for name, spec in step.inputs.items():
        flags = [f for f in option_aliases(name) if f not in taken]
        if flags:
            taken.update(flags)
            inputs.add_argument(*flags, dest=f"input:{name}", action="append", default=None, metavar="URI",
                                help=input_help(spec))
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
    from vhtui.engine.secrets import is_secret

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
    environment = dict(_pairs(args.env_var, "environment variable"))
    secret_values = dict(_secrets(args.secret))
    request = LaunchRequest(
        project_root=root, step=step.name, parameters=parameters, inputs=inputs, title=args.title,
        adhoc=args.adhoc, runner=args.runner, env_mode=args.env_mode, image=args.image, cwd=Path.cwd(),
        environment_variables=environment, secrets=secret_values,
        secrets_in_argv=any("=" in value for value in args.secret) or any(map(is_secret, environment)),
    )
    return request, args


def _secrets(values: list[str]) -> list[tuple[str, str]]:
    """`--secret NAME=VALUE`, or `--secret NAME` with the value from this process's environment."""
    out = []
    for value in values:
        name, sep, secret = value.partition("=")
        if not name:
            raise VhtuiError(f"--secret {value!r}: expected NAME or NAME=VALUE")
        if not sep:
            if name not in os.environ:
                raise VhtuiError(f"--secret {name}: no variable {name} in your environment to take it from")
            secret = os.environ[name]
        out.append((name, secret))
    return out


def steps_overview() -> str:
    """What `vhtui run` alone says: the project's steps, one line each, or how to find a project."""
    from vhtui.project import CONFIG_NAME, load_project

    usage = "usage: vhtui run STEP [--PARAMETER=VALUE ...] [--INPUT=URI ...] [--follow]   (vhtui run STEP --help)"
    try:
        project = load_project()
    except NotFound:
        return (f"{usage}\n\nno {CONFIG_NAME} in {Path.cwd()} or above it: cd into a project (the folder that "
                f"holds {CONFIG_NAME}), or give its folder with `vhtui -C DIR run ...`")
    steps = project.config.steps
    if not steps:
        return f"{usage}\n\n{project.root / CONFIG_NAME} has no steps"
    width = max(len(name) for name in steps)
    lines = [usage, "", f"steps of {project.root / CONFIG_NAME}:"]
    for name, step in steps.items():
        lines.append(f"  {name:<{width}}  {step_summary(step)}")
    return "\n".join(lines)


def step_summary(step: Any, width: int = 72) -> str:
    """One line about a step: its description, else its commands joined as a shell would run them."""
    if step.description:
        text = " ".join(step.description.split())
    else:
        commands = step.command if isinstance(step.command, list) else [step.command]
        text = " && ".join(" ".join(c.split()) for c in commands if c.strip())
    return text if len(text) <= width else text[:width - 1] + "…"


def run_command(argv: list[str]) -> int:
    from vhtui.project import load_project

    if not argv or argv[0] in HELP_FLAGS:
        print(steps_overview())
        return 0 if argv else 2
    step_name, argv = argv[0], argv[1:]
    if any(flag in argv for flag in HELP_FLAGS):
        step_parser(load_project().step(step_name)).print_help()
        return 0
    if "--watch" in argv:
        return _launch(step_name, argv, None)
    from vhtui.engine.launch import standby_supervisor
    from vhtui.home import current_home

    standby = standby_supervisor(current_home())  # before the store is opened: none is open across the fork
    try:
        return _launch(step_name, argv, standby)
    finally:
        if standby is not None and not standby.handed_over:
            standby.cancel()


def _launch(step_name: str, argv: list[str], standby: Standby | None) -> int:
    from vhtui.engine.launch import launch
    from vhtui.progress import for_terminal
    from vhtui.project import load_project

    ctx = Context.open()  # first, so that the home exists to remember the file's validation
    project = load_project()
    request, args = build_request(project.step(step_name), project.root, argv)
    if args.watch:
        return _watch(ctx, project.root, request)
    execution = launch(ctx, request, for_terminal(), project, standby=standby)
    print(f"#{execution['counter']} {execution['step']} launched ({execution['runner']})", file=sys.stderr)
    if args.follow:
        return _follow(ctx, execution)
    print(execution["counter"])
    return 0


def _follow(ctx: Context, execution: dict[str, Any]) -> int:
    """Print the log as it grows; exit 0 if the execution completes, 1 otherwise. Ctrl-C stops the
    following, not the execution, and says so."""
    from vhtui.cli.common import print_log

    try:
        row = print_log(ctx, execution, follow=True)
    except KeyboardInterrupt:
        counter = execution["counter"]
        print(f"\n#{counter} goes on without you (it has its own supervisor): `vhtui exec logs {counter} "
              f"--follow` to follow it again, `vhtui exec stop {counter}` to stop it", file=sys.stderr)
        return 130
    detail = f": {row['reason']}" if row["reason"] else ""
    print(f"#{row['counter']} {row['status']}{detail}", file=sys.stderr)
    return 0 if row["status"] == "complete" else 1


def _watch(ctx: Context, root: Path, request: Any) -> int:
    """Local-first iteration: launch, and on every change to the project's files, replace the run."""
    from watchfiles import watch

    from vhtui.engine.control import request_stop
    from vhtui.engine.launch import launch
    from vhtui.progress import LineProgress
    from vhtui.store import executions as execution_rows
    from vhtui.supervision.code import watch_filter

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
