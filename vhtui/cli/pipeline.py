"""`vhtui pipeline ...`: valohai.yaml's pipelines are parsed but not run yet, and any use says so.

The command exists so that `vhtui pipeline run NAME` (as Valohai's CLI spells it) gets that answer
in one line instead of argparse's "invalid choice"; it takes any arguments, `--help` included.
"""

from __future__ import annotations

from typing import Any

from vhtui.errors import VhtuiError


def add_parser(sub: Any) -> None:
    """Listed in `vhtui --help`; `vhtui.cli.main` hands its arguments to `refuse` unparsed."""
    sub.add_parser("pipeline", help="pipelines of valohai.yaml: not run yet", add_help=False)


def refuse(argv: list[str]) -> int:
    """Name the pipeline asked for, or those valohai.yaml has, and say they are not run yet."""
    from vhtui.project import CONFIG_NAME, RUNS_STEPS, load_project, not_run_yet

    try:
        config = load_project().config
    except VhtuiError:
        config = None  # no project, or a valohai.yaml that does not load: the answer is the same
    pipelines = list(config.pipelines) if config else []
    named = next((arg for arg in argv if arg in pipelines), None)
    if config and named:
        raise VhtuiError(str(not_run_yet(config, named)))
    listed = f" ({CONFIG_NAME} has {', '.join(pipelines)})" if pipelines else ""
    raise VhtuiError(f"pipelines are not run yet{listed}: {RUNS_STEPS}")
