"""`vhtui runner ...`: serve an agent on a GPU host; register and remove agents; list every runner."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from vhtui.cli.common import open_context, print_json, print_table
from vhtui.errors import VhtuiError


def cmd_serve(args: argparse.Namespace) -> int:
    from runners import RunnerError
    from runners.agent import AgentConfig, AgentServer, Limits, warn
    from runners.archive import Caps
    from runners.hostinfo import visible_gpus
    from vhtui.home import current_home

    if args.backend not in ("local", "docker"):
        raise VhtuiError(f"unknown backend {args.backend!r}: use local or docker")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise VhtuiError("TLS needs both --tls-cert and --tls-key")
    try:
        visible_gpus(args.gpus)
    except ValueError as exc:
        raise VhtuiError(str(exc)) from None
    state = Path(args.state_dir) if args.state_dir else current_home().agent
    limits = {name: getattr(args, name) for name in ("header_timeout", "body_timeout", "max_connections")}
    config = AgentConfig(state_dir=state.resolve(), token_file=Path(args.token_file).expanduser().absolute(),
                         backend=args.backend, slots=args.slots, gpus=args.gpus,
                         caps=Caps(max_bytes=int(args.max_upload_mb * (1 << 20)), max_files=args.max_files),
                         limits=Limits(**{k: v for k, v in limits.items() if v is not None}))  # unset: defaults
    try:
        server = AgentServer(config, args.host, args.port, args.tls_cert, args.tls_key)
    except RunnerError as exc:
        raise VhtuiError(str(exc)) from None
    for warning in server.warnings():
        warn(warning)
    scheme = "https" if args.tls_cert else "http"
    print(f"vhtui runner agent on {scheme}://{args.host}:{args.port} ({args.backend} backend, "
          f"{args.slots} slot(s), state in {config.state_dir})", flush=True)
    server.run()
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from runners import RunnerError
    from runners.remote import trust_store
    from vhtui.engine import registry

    if args.ca_file:
        try:
            trust_store(args.ca_file)
        except RunnerError as exc:
            raise VhtuiError(str(exc)) from None
    registry.add(open_context(), args.name, args.url, args.token_file, args.ca_file)
    print(f"runner {args.name} -> {args.url}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from vhtui.engine import registry

    registry.remove(open_context(), args.name)
    print(f"removed runner {args.name}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from vhtui.engine import registry

    rows = registry.health_of_all(open_context())
    if args.json:
        print_json({"count": len(rows), "results": rows})
        return 0
    print_table([registry.health_columns(row) for row in rows], list(registry.HEALTH_HEADERS))
    return 0


def _whole(least: int, most: int | None = None) -> Any:
    """An argparse type: a whole number from `least` (to `most`)."""
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = least - 1
        if number < least or (most is not None and number > most):
            span = f"from {least} to {most}" if most is not None else f"{least} or more"
            raise argparse.ArgumentTypeError(f"must be a whole number {span} (not {text!r})")
        return number
    return parse


def _above_zero(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0 (not {text!r})")
    return number


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("runner", help="remote runners: serve an agent, add, ls, rm")
    actions = parser.add_subparsers(dest="runner_command", metavar="ACTION", required=True)
    p = actions.add_parser("serve", help="run the runner agent on this (GPU) host")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; reach it by ssh -L)")
    p.add_argument("--port", type=_whole(1, 65535), default=8750)
    p.add_argument("--token-file", required=True, help="file holding the bearer token (16+ characters)")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--backend", default="local", help="local or docker")
    p.add_argument("--slots", type=_whole(1), default=1, help="runs at once (default 1)")
    p.add_argument("--gpus", default="auto", help="auto (NVML), a count, or a list like 0,1")
    p.add_argument("--state-dir", help="where runs live (default $VHTUI_HOME/agent)")
    p.add_argument("--max-upload-mb", type=_above_zero, default=50 << 10, help="cap on an unpacked upload (MB)")
    p.add_argument("--max-files", type=_whole(1), default=200_000, help="cap on the files of an upload")
    p.add_argument("--header-timeout", type=_above_zero,
                   help="seconds a client may take to send a request's head (default 15)")
    p.add_argument("--body-timeout", type=_above_zero,
                   help="seconds a request body may pause (default 60)")
    p.add_argument("--max-connections", type=_whole(1),
                   help="connections at once; past it, the one waiting longest for a request is closed (default 512)")
    p.set_defaults(func=cmd_serve)
    p = actions.add_parser("add", help="register a runner agent")
    p.add_argument("name")
    p.add_argument("url")
    p.add_argument("--token-file", required=True)
    p.add_argument("--ca-file", help="CA certificate to trust for an agent's TLS certificate")
    p.set_defaults(func=cmd_add)
    p = actions.add_parser("ls", help="every runner (local, docker, agents): health, GPUs, free slots, "
                                      "running and queued")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)
    p = actions.add_parser("rm", help="forget a registered runner")
    p.add_argument("name")
    p.set_defaults(func=cmd_rm)
