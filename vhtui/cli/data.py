"""`vhtui data ...`: datums of this project: list, get, alias."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vhtui.cli.common import open_context, print_json, print_table, project_id
from vhtui.engine.documents import datum_document


def cmd_ls(args: argparse.Namespace) -> int:
    from vhtui.store import datums as datum_rows

    ctx = open_context()
    rows = [d for d in datum_rows.list_for_project(ctx.db, project_id(ctx)) if args.all or d["kind"] != "code"]
    if args.json:
        print_json({"count": len(rows), "results": [datum_document(ctx, d) for d in rows]})
        return 0
    print_table([[f"datum://{d['id']}", d["name"], str(d["size"]),
                  f"#{d['producer_counter']}" if d.get("producer_counter") else "",
                  ",".join(datum_rows.aliases_of(ctx.db, d["id"]))] for d in rows],
                ["uri", "name", "size", "producer", "aliases"])
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from vhtui.data.datums import DatumStore

    ctx = open_context()
    store = DatumStore(ctx.home, ctx.db)
    print(store.export(store.resolve(args.datum, project_id(ctx)), Path(args.directory)))
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    from vhtui.data.datums import DatumStore

    ctx = open_context()
    datum = DatumStore(ctx.home, ctx.db).set_alias(project_id(ctx), args.name, args.datum)
    print(f"datum://{args.name} -> datum://{datum['id']} ({datum['name']})")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("data", help="datums: list, get, alias")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = actions.add_parser("ls", help="datums of this project, newest first")
    p.add_argument("--all", action="store_true", help="include code snapshots")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)
    p = actions.add_parser("get", help="write a datum into a directory")
    p.add_argument("datum", metavar="DATUM")
    p.add_argument("directory", metavar="DIR")
    p.set_defaults(func=cmd_get)
    p = actions.add_parser("alias", help="point an alias (datum://NAME) at a datum")
    p.add_argument("name", metavar="NAME")
    p.add_argument("datum", metavar="DATUM")
    p.set_defaults(func=cmd_alias)
