"""The command line: every action of the workbench, scriptable; no argument opens the TUI.

One module per command group (`run`, `exec`, `data`, `deploy`, `runner`, `pipeline`), what they share in
`common`. Errors the user can fix are one line on stderr and a non-zero exit code, never a
traceback; a mistyped command gets "did you mean". Listings and `info` take `--json`: one JSON
document with Valohai's API field names.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from vhtui.errors import NotFound, VhtuiError, did_you_mean

DESCRIPTION = """A local-first, Valohai-compatible ML workbench.

With no command, `vhtui` opens the workbench (the TUI) on the project around the current folder,
or on the list of projects. `vhtui run` lists this project's steps."""

_INVALID_CHOICE = re.compile(r"argument (?P<what>[^:]+): invalid choice: '(?P<given>[^']*)' \(choose from (?P<known>.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that suggest the nearest command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        found = _INVALID_CHOICE.fullmatch(message)
        if found:
            known = [k.strip("'") for k in found["known"].split(", ")]
            what = "command" if found["what"] == "COMMAND" else "action"
            message = f"no {what} {found['given']!r}" + did_you_mean(found["given"], known) + \
                f" (one of: {', '.join(known)})"
        raise VhtuiError(f"{message}; see `{self.prog} --help`", exit_code=2)


def cmd_lint(args: argparse.Namespace) -> int:
    from vhtui.project import CONFIG_NAME, find_root, lint_files

    files = args.files or [str(find_root() / CONFIG_NAME)]
    return lint_files(files, args.strict_warnings, sys.stdout, ansi_colors=sys.stdout.isatty())


def cmd_tui(args: argparse.Namespace) -> int:
    from vhtui.project import find_root
    from vhtui.tui.app import run_tui

    try:
        root = find_root()
    except NotFound:
        root = None  # not in a project: open on the projects list
    return run_tui(root)


def build_parser() -> argparse.ArgumentParser:
    from vhtui import __version__
    from vhtui.cli import data, deploy, exec, pipeline, runner

    parser = Parser(prog="vhtui", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vhtui {__version__}")
    parser.add_argument("-C", dest="directory", metavar="DIR", help="run as if started in DIR (a project's folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("lint", help="validate valohai.yaml files as valohai-yaml's own linter does")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--strict-warnings", action="store_true", help="fail on warnings too")
    p.set_defaults(func=cmd_lint)
    sub.add_parser("run", help="launch an execution of a step (`vhtui run` lists the steps, "
                               "`vhtui run STEP --help` its options)", add_help=False)
    for group in (exec, data, deploy, runner, pipeline):
        group.add_parser(sub)
    return parser


INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug of vhtui's, not the user's mistake


def _guarded(call: Callable[[], int]) -> int:
    """Run a command: a user's mistake is one line and its exit code, never a traceback; so is a
    full disk; anything else unexpected is one line naming a crash report with the traceback."""
    try:
        return int(call() or 0)
    except VhtuiError as exc:
        print(f"vhtui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            return _crashed(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vhtui: error: no space left on the disk{where}: free some space and try again", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 (the one place that turns a bug into a line and a report)
        return _crashed(exc)


def _crashed(exc: Exception) -> int:
    import time
    import traceback

    from vhtui.home import current_home

    report = current_home().crash_reports / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}.txt")
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(f"vhtui {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
        where = f" (the traceback is in {report})"
    except OSError:
        where = ""
    print(f"vhtui: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
    return INTERNAL_ERROR


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["-C"] and len(arguments) > 1:
        try:
            os.chdir(arguments[1])
        except OSError as exc:
            print(f"vhtui: error: cannot change to {arguments[1]}: {exc.strerror}", file=sys.stderr)
            return 2
        arguments = arguments[2:]
    if arguments[:1] == ["run"]:  # its options come from the step, so it parses its own arguments
        return _run(arguments[1:])
    if arguments[:1] == ["pipeline"]:  # any arguments get the same one line
        from vhtui.cli import pipeline

        return _guarded(lambda: pipeline.refuse(arguments[1:]))
    args: Any = None

    def parse() -> int:
        nonlocal args
        args = build_parser().parse_args(arguments)
        return 0

    code = _guarded(parse)
    if args is None:
        return code
    func = getattr(args, "func", cmd_tui)
    return _guarded(lambda: func(args))


def _run(arguments: list[str]) -> int:
    """`vhtui run`: through the resident launcher when one is wanted (and this is not its child)."""
    wanted = os.environ.get("VHTUI_LAUNCHER", "").lower() in ("1", "true", "yes", "on")
    if wanted and not os.environ.get("VHTUI_IN_LAUNCHER"):
        from vhtui.cli import launcher

        code = launcher.run_remotely(["run", *arguments])
        if code is not None:
            return code
    from vhtui.cli.run import run_command

    return _guarded(lambda: run_command(arguments))
