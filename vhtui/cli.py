"""The command line: every action of the workbench, scriptable; no argument opens the TUI.

Errors the user can fix are one line on stderr and a non-zero exit code, never a traceback.
Listings and `info` take `--json`: one JSON document with Valohai's API field names.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from vhtui.errors import NotFound, VhtuiError

STATUS_SYMBOLS = {"created": "·", "queued": "…", "started": "▶", "stopping": "■", "complete": "✔",
                  "error": "✖", "stopped": "■", "crashed": "☠"}


# -- helpers --------------------------------------------------------------------------------
def _context():  # type: ignore[no-untyped-def]
    from vhtui.context import Context
    from vhtui.engine.reconcile import reconcile

    ctx = Context.open()
    reconcile(ctx)
    return ctx


def _project_id(ctx: Any) -> int:
    from vhtui.project import find_root
    from vhtui.store import projects as project_rows

    root = find_root()
    row = project_rows.find_by_path(ctx.db, root)
    if row is None:
        raise NotFound(f"no executions yet in the project at {root}")
    return int(row["id"])


def _execution(ctx: Any, ref: str) -> dict[str, Any]:
    from vhtui.store import executions as execution_rows

    text = ref.lstrip("#")
    if not text.isdigit():
        raise VhtuiError(f"{ref!r} is not an execution number (like 3 or #3)")
    execution = execution_rows.get_by_counter(ctx.db, _project_id(ctx), int(text))
    if execution is None:
        raise NotFound(f"no execution #{text} in this project")
    return execution


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def _duration(execution: dict[str, Any]) -> float | None:
    if not execution.get("started_at"):
        return None
    return round((execution.get("ended_at") or time.time()) - execution["started_at"], 3)


def execution_document(ctx: Any, execution: dict[str, Any], full: bool = False) -> dict[str, Any]:
    """An execution in Valohai's API field names."""
    from vhtui.store import datums as datum_rows
    from vhtui.store import executions as execution_rows

    doc: dict[str, Any] = {
        "id": execution["uid"], "counter": execution["counter"], "status": execution["status"],
        "step": execution["step"], "title": execution["title"], "runner": execution["runner"],
        "ctime": _iso(execution["created_at"]), "started_at": _iso(execution["started_at"]),
        "ended_at": _iso(execution["ended_at"]), "duration": _duration(execution),
        "exit_code": execution["exit_code"], "status_detail": execution["reason"],
        "parameters": execution["parameters"], "metadata": execution["metadata_summary"],
    }
    if full:
        doc.update({
            "image": execution["image"], "command": execution["command"],
            "commit": execution["code_version"], "environment_variables": execution["environment"],
            "time_limit": execution["spec"].get("time_limit"),
            "no_output_timeout": execution["spec"].get("no_output_timeout"),
            "stop_condition": execution["spec"].get("stop_condition"),
            "runtime": {k: execution["spec"].get(k) for k in ("env_mode", "python", "gpus")},
            "queued_at": _iso(execution["queued_at"]), "metadata_count": execution["metadata_count"],
            "inputs": [
                {"name": i["name"], "filename": i["filename"], "uri": i["uri"], "datum": i["datum_id"],
                 "size": i["size"], "checksums": {"sha256": i["sha256"]}}
                for i in execution_rows.inputs_of(ctx.db, execution["id"])
            ],
            "outputs": [datum_document(ctx, d) for d in datum_rows.produced_by(ctx.db, execution["id"])],
        })
    return doc


def datum_document(ctx: Any, datum: dict[str, Any]) -> dict[str, Any]:
    from vhtui.store import datums as datum_rows

    return {
        "id": datum["id"], "name": datum["name"], "size": datum["size"], "checksums": {"sha256": datum["sha256"]},
        "uri": f"datum://{datum['id']}", "ctime": _iso(datum["created_at"]), "kind": datum["kind"],
        "output_execution": datum.get("producer_counter"), "tags": datum["tags"],
        "properties": datum["properties"], "aliases": datum_rows.aliases_of(ctx.db, datum["id"]),
    }


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


# -- commands -------------------------------------------------------------------------------
def cmd_lint(args: argparse.Namespace) -> int:
    from vhtui.project import CONFIG_NAME, find_root, lint_files

    files = args.files or [str(find_root() / CONFIG_NAME)]
    return lint_files(files, args.strict_warnings, sys.stdout, ansi_colors=sys.stdout.isatty())


def cmd_run(args: argparse.Namespace) -> int:
    from vhtui.cli_run import run_command

    return run_command(args.step, args.step_args)


def cmd_exec_list(args: argparse.Namespace) -> int:
    from vhtui.store import executions as execution_rows
    from vhtui.store.executions import STATUSES

    if args.status and args.status not in STATUSES:
        raise VhtuiError(f"unknown status {args.status!r} (one of: {', '.join(STATUSES)})")
    ctx = _context()
    rows = execution_rows.page(ctx.db, _project_id(ctx), offset=0, limit=-1 if args.limit is None else args.limit,
                               status=args.status, step=args.step)
    if args.json:
        _print_json({"count": len(rows), "results": [execution_document(ctx, e) for e in rows]})
        return 0
    table = []
    for e in rows:
        duration = _duration(e)
        metrics = ", ".join(f"{k}={_short(v)}" for k, v in list(e["metadata_summary"].items())[:3])
        table.append([f"#{e['counter']}", f"{STATUS_SYMBOLS.get(e['status'], '?')} {e['status']}", e["step"],
                      e["title"] or "", f"{duration:.1f}s" if duration is not None else "", e["runner"], metrics])
    _table(table, ["#", "status", "step", "title", "duration", "runner", "metrics"])
    return 0


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_exec_info(args: argparse.Namespace) -> int:
    ctx = _context()
    doc = execution_document(ctx, _execution(ctx, args.execution), full=True)
    if args.json:
        _print_json(doc)
        return 0
    skip = ("command", "inputs", "outputs", "parameters", "metadata", "environment_variables", "commit", "runtime")
    for key, value in doc.items():
        if key not in skip and value is not None:
            print(f"{key:>18}: {value}")
    print(f"{'commit':>18}: {json.dumps(doc['commit'])}")
    print(f"{'runtime':>18}: {json.dumps(doc['runtime'])}")
    for title in ("parameters", "metadata", "environment_variables"):
        if doc[title]:
            print(f"{title}:")
            for k, v in doc[title].items():
                print(f"  {k} = {v}")
    if doc["inputs"]:
        print("inputs:")
        for i in doc["inputs"]:
            print(f"  {i['name']}/{i['filename']}  {i['size']} B  sha256:{i['checksums']['sha256'][:16]}  {i['uri']}")
    if doc["outputs"]:
        print("outputs:")
        for o in doc["outputs"]:
            print(f"  {o['name']}  {o['size']} B  {o['uri']}")
    print("command:")
    for line in doc["command"].splitlines():
        print(f"  {line}")
    return 0


def cmd_exec_logs(args: argparse.Namespace) -> int:
    from vhtui.supervision.logfile import LogReader
    from vhtui.store import executions as execution_rows
    from vhtui.store.executions import FINAL_STATUSES

    ctx = _context()
    execution = _execution(ctx, args.execution)
    reader = LogReader(ctx.home.log_path(execution["id"]))
    wanted = "stderr" if args.stderr else "stdout" if args.stdout else None
    out = sys.stdout.buffer
    offset = 0
    while True:
        for line_offset, stream, line in reader.read_lines(offset):
            if wanted is None or stream == wanted:
                out.write(line + b"\n")
            offset = line_offset + len(line) + 1
        out.flush()
        if not args.follow:
            return 0
        status = execution_rows.get(ctx.db, execution["id"])["status"]  # type: ignore[index]
        if status in FINAL_STATUSES and reader.size() <= offset:
            return 0
        time.sleep(0.2)


def cmd_exec_metadata(args: argparse.Namespace) -> int:
    from vhtui.store import metadata as metadata_rows

    ctx = _context()
    execution = _execution(ctx, args.execution)
    events = metadata_rows.iter_events(ctx.db, execution["id"])
    if args.json:
        _print_json([{"_seq": s, "_time": _iso(t), **e} for s, t, e in events])
        return 0
    if args.csv:
        rows = list(events)
        keys: list[str] = []
        for _, _, e in rows:
            keys += [k for k in e if k not in keys]
        writer = csv.writer(sys.stdout)
        writer.writerow(["_seq", "_time", *keys])
        for s, t, e in rows:
            writer.writerow([s, _iso(t), *[e.get(k, "") for k in keys]])
        return 0
    for s, t, e in events:
        print(f"{s:>6} {datetime.fromtimestamp(t).strftime('%H:%M:%S.%f')[:-3]}  {json.dumps(e)}")
    return 0


def cmd_exec_outputs(args: argparse.Namespace) -> int:
    from vhtui.data.datums import DatumStore
    from vhtui.store import datums as datum_rows

    ctx = _context()
    execution = _execution(ctx, args.execution)
    outputs = datum_rows.produced_by(ctx.db, execution["id"])
    if args.download:
        store = DatumStore(ctx.home, ctx.db)
        target = Path(args.download)
        for datum in outputs:
            print(store.export(datum, target))
        return 0
    if args.json:
        _print_json([datum_document(ctx, d) for d in outputs])
        return 0
    _table([[d["name"], str(d["size"]), d["sha256"][:16], f"datum://{d['id']}",
             ",".join(datum_rows.aliases_of(ctx.db, d["id"]))] for d in outputs],
           ["name", "size", "sha256", "uri", "aliases"])
    return 0


def cmd_exec_stop(args: argparse.Namespace) -> int:
    from vhtui.engine.control import request_stop, wait_until_final

    ctx = _context()
    execution = _execution(ctx, args.execution)
    if not request_stop(ctx, execution):
        print(f"#{execution['counter']} has already ended ({execution['status']})")
        return 0
    final = wait_until_final(ctx, execution["id"], timeout=ctx.settings.stop_grace + 30)
    print(f"#{execution['counter']} {final['status']}")
    return 0


def cmd_data_ls(args: argparse.Namespace) -> int:
    from vhtui.store import datums as datum_rows

    ctx = _context()
    project_id = _project_id(ctx)
    rows = [d for d in datum_rows.list_for_project(ctx.db, project_id) if args.all or d["kind"] != "code"]
    if args.json:
        _print_json({"count": len(rows), "results": [datum_document(ctx, d) for d in rows]})
        return 0
    _table([[f"datum://{d['id']}", d["name"], str(d["size"]),
             f"#{d['producer_counter']}" if d.get("producer_counter") else "",
             ",".join(datum_rows.aliases_of(ctx.db, d["id"]))] for d in rows],
           ["uri", "name", "size", "producer", "aliases"])
    return 0


def cmd_data_get(args: argparse.Namespace) -> int:
    from vhtui.data.datums import DatumStore

    ctx = _context()
    store = DatumStore(ctx.home, ctx.db)
    print(store.export(store.resolve(args.datum, _project_id(ctx)), Path(args.directory)))
    return 0


def cmd_data_alias(args: argparse.Namespace) -> int:
    from vhtui.data.datums import DatumStore

    ctx = _context()
    datum = DatumStore(ctx.home, ctx.db).set_alias(_project_id(ctx), args.name, args.datum)
    print(f"datum://{args.name} -> datum://{datum['id']} ({datum['name']})")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from vhtui.tui.app import run_tui

    try:
        from vhtui.project import find_root

        root = find_root()
    except NotFound:
        root = None  # not in a project: open on the projects list
    return run_tui(root)


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhtui", description="A local-first, Valohai-compatible ML workbench.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("lint", help="validate valohai.yaml files as valohai-yaml's own linter does")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--strict-warnings", action="store_true", help="fail on warnings too")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("run", help="launch an execution of a step (vhtui run STEP --help for its options)",
                       add_help=False)
    p.add_argument("step", metavar="STEP")
    p.add_argument("step_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    exec_parser = sub.add_parser("exec", help="executions: list, info, logs, metadata, outputs, stop")
    exec_sub = exec_parser.add_subparsers(dest="exec_command", metavar="ACTION", required=True)
    p = exec_sub.add_parser("list", help="executions of this project, newest first")
    p.add_argument("--status")
    p.add_argument("--step")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_exec_list)
    p = exec_sub.add_parser("info", help="everything recorded about one execution")
    p.add_argument("execution", metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_exec_info)
    p = exec_sub.add_parser("logs", help="an execution's log")
    p.add_argument("execution", metavar="N")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the execution ends")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stderr", action="store_true", help="only lines written to stderr")
    group.add_argument("--stdout", action="store_true", help="only lines written to stdout")
    p.set_defaults(func=cmd_exec_logs)
    p = exec_sub.add_parser("metadata", help="an execution's metadata events")
    p.add_argument("execution", metavar="N")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_exec_metadata)
    p = exec_sub.add_parser("outputs", help="an execution's outputs")
    p.add_argument("execution", metavar="N")
    p.add_argument("--download", metavar="DIR", help="write the outputs into DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_exec_outputs)
    p = exec_sub.add_parser("stop", help="stop an execution (SIGTERM, then SIGKILL after the grace period)")
    p.add_argument("execution", metavar="N")
    p.set_defaults(func=cmd_exec_stop)

    data_parser = sub.add_parser("data", help="datums: list, get, alias")
    data_sub = data_parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = data_sub.add_parser("ls", help="datums of this project, newest first")
    p.add_argument("--all", action="store_true", help="include code snapshots")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_ls)
    p = data_sub.add_parser("get", help="write a datum into a directory")
    p.add_argument("datum", metavar="DATUM")
    p.add_argument("directory", metavar="DIR")
    p.set_defaults(func=cmd_data_get)
    p = data_sub.add_parser("alias", help="point an alias (datum://NAME) at a datum")
    p.add_argument("name", metavar="NAME")
    p.add_argument("datum", metavar="DATUM")
    p.set_defaults(func=cmd_data_alias)
    from vhtui.cli_deploy import add_parser as add_deploy_parser  # its own module: a tree of its own
    add_deploy_parser(sub)
    __import__("vhtui.cli_runner").cli_runner.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["run"] and not os.environ.get("VHTUI_IN_LAUNCHER"):
        from vhtui import launcher

        if launcher.enabled():
            code = launcher.run_remotely(arguments)
            if code is not None:
                return code
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_tui)
    try:
        return int(func(args) or 0)
    except VhtuiError as exc:
        print(f"vhtui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
