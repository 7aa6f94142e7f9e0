"""`vhtui exec ...`: executions of this project: list, info, logs, metadata, outputs, stop."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from vhtui.cli.common import (STATUS_SYMBOLS, count_option, execution_by_ref, open_context, print_json, print_log,
                              print_table, project_id, short)
from vhtui.engine.documents import datum_document, duration, execution_document, iso
from vhtui.errors import VhtuiError


def cmd_list(args: argparse.Namespace) -> int:
    from vhtui.store import executions as execution_rows
    from vhtui.store.executions import STATUSES

    if args.status and args.status not in STATUSES:
        raise VhtuiError(f"unknown status {args.status!r} (one of: {', '.join(STATUSES)})")
    ctx = open_context()
    rows = execution_rows.page(ctx.db, project_id(ctx), offset=0, limit=-1 if args.limit is None else args.limit,
                               status=args.status, step=args.step)
    if args.json:
        print_json({"count": len(rows), "results": [execution_document(ctx, e) for e in rows]})
        return 0
    table = []
    for e in rows:
        took = duration(e)
        metrics = ", ".join(f"{k}={short(v)}" for k, v in list(e["metadata_summary"].items())[:3])
        table.append([f"#{e['counter']}", f"{STATUS_SYMBOLS.get(e['status'], '?')} {e['status']}", e["step"],
                      e["title"] or "", f"{took:.1f}s" if took is not None else "", e["runner"], metrics])
    print_table(table, ["#", "status", "step", "title", "duration", "runner", "metrics"])
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    ctx = open_context()
    execution = execution_by_ref(ctx, args.execution)
    if args.script:
        sys.stdout.write(execution["command"])
        return 0
    doc = execution_document(ctx, execution, full=True)
    if args.json:
        print_json(doc)
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


def cmd_logs(args: argparse.Namespace) -> int:
    ctx = open_context()
    execution = execution_by_ref(ctx, args.execution)
    print_log(ctx, execution, "stderr" if args.stderr else "stdout" if args.stdout else None, args.follow)
    return 0


def cmd_metadata(args: argparse.Namespace) -> int:
    from vhtui.store import metadata as metadata_rows

    ctx = open_context()
    execution = execution_by_ref(ctx, args.execution)
    events = metadata_rows.iter_events(ctx.db, execution["id"])
    if args.json:
        print_json([{"_seq": s, "_time": iso(t), **e} for s, t, e in events])
        return 0
    if args.csv:
        rows = list(events)
        keys: list[str] = []
        for _, _, e in rows:
            keys += [k for k in e if k not in keys]
        writer = csv.writer(sys.stdout)
        writer.writerow(["_seq", "_time", *keys])
        for s, t, e in rows:
            writer.writerow([s, iso(t), *[e.get(k, "") for k in keys]])
        return 0
    for s, t, e in events:
        print(f"{s:>6} {datetime.fromtimestamp(t).strftime('%H:%M:%S.%f')[:-3]}  {json.dumps(e)}")
    return 0


def cmd_outputs(args: argparse.Namespace) -> int:
    from vhtui.data.datums import DatumStore
    from vhtui.store import datums as datum_rows

    ctx = open_context()
    execution = execution_by_ref(ctx, args.execution)
    if args.collect:
        from vhtui.engine.supervisor import collect_leftovers
        from vhtui.store.executions import FINAL_STATUSES

        if execution["status"] not in FINAL_STATUSES:
            raise VhtuiError(f"#{execution['counter']} is {execution['status']}: its supervisor stores its outputs")
        found = collect_leftovers(ctx, execution["id"])
        print(f"#{execution['counter']}: {len(found)} output(s) stored that were not yet", file=sys.stderr)
    outputs = datum_rows.produced_by(ctx.db, execution["id"])
    if args.download:
        store = DatumStore(ctx.home, ctx.db)
        target = Path(args.download)
        for datum in outputs:
            print(store.export(datum, target))
        return 0
    if args.json:
        print_json([datum_document(ctx, d) for d in outputs])
        return 0
    print_table([[d["name"], str(d["size"]), d["sha256"][:16], f"datum://{d['id']}",
                  ",".join(datum_rows.aliases_of(ctx.db, d["id"]))] for d in outputs],
                ["name", "size", "sha256", "uri", "aliases"])
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from vhtui.engine.control import request_stop, wait_until_final

    ctx = open_context()
    execution = execution_by_ref(ctx, args.execution)
    if not request_stop(ctx, execution):
        print(f"#{execution['counter']} has already ended ({execution['status']})")
        return 0
    final = wait_until_final(ctx, execution["id"], timeout=ctx.settings.stop_grace + 30)
    print(f"#{execution['counter']} {final['status']}")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("exec", help="executions: list, info, logs, metadata, outputs, stop")
    actions = parser.add_subparsers(dest="exec_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="executions of this project, newest first")
    p.add_argument("--status")
    p.add_argument("--step")
    p.add_argument("--limit", type=count_option, help="at most this many, newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = actions.add_parser("info", help="everything recorded about one execution")
    p.add_argument("execution", metavar="N")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true")
    shown.add_argument("--script", action="store_true",
                       help="the job script as the runner runs it: the step's commands and vhtui's own lines")
    p.set_defaults(func=cmd_info)
    p = actions.add_parser("logs", help="an execution's log")
    p.add_argument("execution", metavar="N")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the execution ends")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stderr", action="store_true", help="only lines written to stderr")
    group.add_argument("--stdout", action="store_true", help="only lines written to stdout")
    p.set_defaults(func=cmd_logs)
    p = actions.add_parser("metadata", help="an execution's metadata events")
    p.add_argument("execution", metavar="N")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_metadata)
    p = actions.add_parser("outputs", help="an execution's outputs")
    p.add_argument("execution", metavar="N")
    p.add_argument("--download", metavar="DIR", help="write the outputs into DIR")
    p.add_argument("--collect", action="store_true",
                   help="first store what an ended (crashed) execution left in its outputs folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outputs)
    p = actions.add_parser("stop", help="stop an execution (SIGTERM, then SIGKILL after the grace period)")
    p.add_argument("execution", metavar="N")
    p.set_defaults(func=cmd_stop)
