"""The job script: a step's commands as one script that a runner runs, the same on every runner."""

from __future__ import annotations

STOP_TRAP = "trap 'exit 143' TERM"  # the shell outlives a stop's SIGTERM until its command has ended


def render_script(command_lines: list[str]) -> str:
    """Valohai's joining: one shell, stopping at the first failing command; a shebang is kept.

    On a stop, SIGTERM reaches the shell and the command together. The trap (a handler, so the
    command still gets the default SIGTERM) keeps the shell waiting for the command to finish its
    grace period instead of dying first and taking the container's init with it.
    """
    lines = [line for line in command_lines if line.strip()]
    if lines and lines[0].startswith("#!"):
        from valohai_yaml.commands import join_command

        return join_command(lines, "\n") + "\n"
    return f"set -e\n{STOP_TRAP}\n" + "\n".join(lines) + "\n"
