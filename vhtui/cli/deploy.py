"""`vhtui deploy ...`: versions of endpoints, their processes, aliases, the router, compare, export."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vhtui.cli.common import open_context, print_json, print_table, project_id
from vhtui.errors import VhtuiError

def _name(kind: str) -> Callable[[str], str]:
    """A deployment, version or alias name as argparse reads it, checked before the store is opened:
    bytes that are not UTF-8, a newline or a name of 100k characters are one line, not a traceback."""
    def parse(text: str) -> str:
        from vhtui.deploy.versions import check_name

        return check_name(kind, text)
    return parse


def _port(option: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        from vhtui.deploy.router import parse_port

        return parse_port(text, option)
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def _deployment(ctx: Any, name: str) -> dict[str, Any]:
    from vhtui.deploy.process import reconcile_endpoints
    from vhtui.deploy.versions import find_deployment

    reconcile_endpoints(ctx)
    return find_deployment(ctx, project_id(ctx), name)


def _versions(ctx: Any, deployment: dict[str, Any], refs: list[str]) -> list[dict[str, Any]]:
    from vhtui.deploy.versions import find_version
    from vhtui.store import deployments as deployment_rows

    if refs:
        return [find_version(ctx, deployment, ref) for ref in refs]
    return deployment_rows.list_versions(ctx.db, deployment["id"])


def _url(ctx: Any, deployment: str, ref: str, endpoint: str) -> str:
    from vhtui.deploy.router import DEFAULT_HOST, default_port, router_url, running_router

    state = running_router(ctx) or {"host": DEFAULT_HOST, "port": default_port()}
    return f"{router_url(state)}/{deployment}/{ref}/{endpoint}/"


def cmd_version_create(args: argparse.Namespace) -> int:
    from vhtui.deploy.versions import create_version
    from vhtui.project import find_root

    ctx = open_context()
    version = create_version(ctx, find_root(), args.deployment, args.endpoint, args.file, name=args.name,
                             adhoc=args.adhoc, env_mode=args.env)
    print(version["name"])
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from vhtui.deploy.router import router_url
    from vhtui.deploy.serving import start_versions

    ctx = open_context()
    deployment = _deployment(ctx, args.deployment)
    def progress(version: dict[str, Any], endpoint: dict[str, Any], line: str) -> None:
        print(f"{version['name']}/{endpoint['name']}: {line}", flush=True)

    router, served = start_versions(ctx, _versions(ctx, deployment, args.versions), args.router_port, args.timeout,
                                    progress)
    failed = []
    for item in served:
        name = f"{item.version['name']}/{item.endpoint['name']}"
        url = f"{router_url(router)}/{args.deployment}/{name}/"
        print(f"{name}  {item.endpoint['status']}  " + (url if item.running else item.endpoint["reason"] or ""))
        if not item.running:
            failed.append(f"{name} {item.endpoint['status']}"
                          + (f" ({item.endpoint['reason']})" if item.endpoint["reason"] else ""))
    if failed:
        raise VhtuiError("did not start: " + "; ".join(failed))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from vhtui.deploy.serving import stop_everything, stop_versions

    ctx = open_context()
    router_stopped = False
    if args.all:
        ended, router_stopped = stop_everything(ctx)
    elif args.deployment:
        ended = stop_versions(ctx, _versions(ctx, _deployment(ctx, args.deployment), args.versions))
    else:
        raise VhtuiError("name a deployment (and versions), or --all")
    for endpoint in ended:
        print(f"{endpoint['name']} (endpoint {endpoint['id']}) {endpoint['status']}")
    if router_stopped:
        print("router stopped")
    return 0


def cmd_alias_set(args: argparse.Namespace) -> int:
    from vhtui.deploy.aliases import set_alias

    ctx = open_context()
    set_alias(ctx, _deployment(ctx, args.deployment), args.alias, args.version, force=args.force)
    print(f"{args.deployment}/{args.alias} -> {args.version}")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    from vhtui.deploy.aliases import set_mirror

    if not args.off and not args.target:
        raise VhtuiError("name the alias to mirror to (or --off)")
    ctx = open_context()
    set_mirror(ctx, _deployment(ctx, args.deployment), args.source, None if args.off else args.target)
    print(f"{args.source}: mirroring off" if args.off else f"{args.source}: traffic mirrored to {args.target}")
    return 0


def _deployment_document(ctx: Any, deployment: dict[str, Any]) -> dict[str, Any]:
    from vhtui.deploy.compare import version_view
    from vhtui.store import deployments as deployment_rows

    aliases = deployment_rows.aliases_of_deployment(ctx.db, deployment["id"])
    return {
        "name": deployment["name"],
        "aliases": {a["name"]: {"version": a["version"], "mirror_to": a["mirror_to"]} for a in aliases},
        "versions": [dict(version_view(ctx, v), enabled=v["enabled"])
                     for v in deployment_rows.list_versions(ctx.db, deployment["id"])],
    }


def cmd_ls(args: argparse.Namespace) -> int:
    from vhtui.deploy.process import reconcile_endpoints
    from vhtui.store import deployments as deployment_rows

    ctx = open_context()
    reconcile_endpoints(ctx)
    docs = [_deployment_document(ctx, d) for d in deployment_rows.list_deployments(ctx.db, project_id(ctx))]
    if args.json:
        print_json({"count": len(docs), "results": docs})
        return 0
    rows = []
    for doc in docs:
        for version in doc["versions"]:
            aliases = ",".join(a for a, v in doc["aliases"].items() if v["version"] == version["version"])
            for endpoint in version["endpoints"]:
                rows.append([doc["name"], version["version"], aliases, endpoint["name"], endpoint["status"],
                             str(endpoint["requests"]["requests"]), _url(ctx, doc["name"], version["version"],
                                                                         endpoint["name"])])
    print_table(rows, ["deployment", "version", "aliases", "endpoint", "status", "requests", "url"])
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    ctx = open_context()
    deployment = _deployment(ctx, args.deployment)
    doc = _deployment_document(ctx, deployment)
    if args.version:
        wanted = _versions(ctx, deployment, [args.version])[0]["name"]
        doc["versions"] = [v for v in doc["versions"] if v["version"] == wanted]
    if args.json:
        print_json(doc)
        return 0
    print(f"deployment {doc['name']}")
    for alias, target in doc["aliases"].items():
        mirror = f"  (mirrored to {target['mirror_to']})" if target["mirror_to"] else ""
        print(f"  alias {alias} -> {target['version']}{mirror}")
    for version in doc["versions"]:
        created = datetime.fromtimestamp(version["created_at"]).strftime("%Y-%m-%d %H:%M")
        print(f"version {version['version']}  created {created}  code {json.dumps(version['code_version'])}")
        for endpoint in version["endpoints"]:
            r = endpoint["requests"]
            print(f"  endpoint {endpoint['name']}: {endpoint['status']}" + (f" on port {endpoint['port']}" if endpoint["port"] else "")
                  + (f" ({endpoint['reason']})" if endpoint["reason"] else ""))
            print(f"    url       {_url(ctx, doc['name'], version['version'], endpoint['name'])}")
            print(f"    requests  {r['requests']} total, {r['errors']} errors; last {r['window_s']}s: "
                  f"{r['rate']:.2f}/s, {r['error_rate']:.1%} errors, {_latencies(r)}")
            for file in endpoint["files"]:
                producer = f"  from #{file['execution']['counter']} {file['execution']['step']}" if file["execution"] else ""
                print(f"    file      {file['name']} at {file['path']}: {file['datum']} ({file['datum_name']}){producer}")
            if endpoint["metadata"]:
                print(f"    metadata  {json.dumps(endpoint['metadata'])}")
    return 0


def _latencies(summary: dict[str, Any]) -> str:
    if summary["p50_ms"] is None:
        return "no latency yet"
    return f"p50 {summary['p50_ms']:.1f} ms, p95 {summary['p95_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"


def cmd_logs(args: argparse.Namespace) -> int:
    from vhtui.supervision.logfile import LogReader
    from vhtui.store import deployments as deployment_rows

    ctx = open_context()
    deployment = _deployment(ctx, args.deployment)
    version = _versions(ctx, deployment, [args.version])[0]
    endpoints = deployment_rows.endpoints_of(ctx.db, version["id"])
    chosen = [e for e in endpoints if args.endpoint in (None, e["name"])]
    if not chosen:
        raise VhtuiError(f"version {version['name']!r} has no endpoint {args.endpoint!r}")
    out = sys.stdout.buffer
    for endpoint in chosen:
        path = ctx.home.endpoint_dir(version["id"], endpoint["name"]) / "output.log"
        if path.exists():
            for _, _, line in LogReader(path).read_lines(0):
                out.write((f"[{endpoint['name']}] " if len(chosen) > 1 else "").encode() + line + b"\n")
    out.flush()
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vhtui.deploy.compare import compare_aliases, differences, send_to_both
    from vhtui.deploy.router import ensure_router, router_url

    ctx = open_context()
    _deployment(ctx, args.deployment)
    doc = compare_aliases(ctx, project_id(ctx), args.deployment, args.left, args.right)
    if args.request is not None:
        endpoint = args.endpoint or doc["sides"][0]["endpoints"][0]["name"]
        answers = send_to_both(router_url(ensure_router(ctx)), args.deployment, [args.left, args.right], endpoint,
                               args.request, "POST" if args.data else "GET", args.data)
        doc["request"] = {"endpoint": endpoint, "path": args.request, "answers": answers,
                          "differences": differences(answers[0]["body"], answers[1]["body"])}
    if args.json:
        print_json(doc)
        return 0
    rows: list[list[str]] = []

    def row(label: str, left: Any, right: Any) -> None:
        mark = "*" if str(left) != str(right) else ""
        rows.append([mark, label, str(left), str(right)])

    left, right = doc["sides"]
    row("version", left["version"], right["version"])
    row("code", _code(left["code_version"]), _code(right["code_version"]))
    for index, (a, b) in enumerate(zip(left["endpoints"], right["endpoints"])):
        name = a["name"]
        row(f"{name} status", a["status"], b["status"])
        for fa, fb in zip(a["files"], b["files"]):
            row(f"{name} file {fa['name']}", _file(fa), _file(fb))
        ra, rb = a["requests"], b["requests"]
        row(f"{name} requests", ra["requests"], rb["requests"])
        row(f"{name} rate /s", f"{ra['rate']:.2f}", f"{rb['rate']:.2f}")
        row(f"{name} errors", f"{ra['error_rate']:.1%}", f"{rb['error_rate']:.1%}")
        for q in ("p50_ms", "p99_ms"):
            row(f"{name} {q[:3]} ms", _ms(ra[q]), _ms(rb[q]))
        for key in dict.fromkeys([*a["metadata"], *b["metadata"]]):
            row(f"{name} {key}", a["metadata"].get(key, "—"), b["metadata"].get(key, "—"))
    print_table(rows, ["", "", left["alias"], right["alias"]])
    if doc["mirror"]:
        m = doc["mirror"]
        agreement = f"{m['agreement']:.1%}" if m["agreement"] is not None else "no traffic yet"
        print(f"\nmirroring {m['source']} -> {m['target']}: {m['mirrored']} requests, agreement {agreement}")
    if "request" in doc:
        print(f"\n{doc['request']['endpoint']}/{args.request}")
        for answer in doc["request"]["answers"]:
            print(f"  {answer['alias']}: {answer['status']} in {answer['latency_ms']:.1f} ms: {answer['body'].strip()}")
        diff = doc["request"]["differences"]
        print("  differences: " + (", ".join(diff) if diff else "none"))
    return 0


def _code(version: dict[str, Any]) -> str:
    if version.get("type") == "git":
        return version["commit"][:12] + ("+dirty" if version.get("dirty") else "")
    return f"adhoc {version.get('sha256', '')[:12]}"


def _file(file: dict[str, Any]) -> str:
    producer = f" #{file['execution']['counter']}" if file["execution"] else ""
    return f"{file['datum'][8:16]} {file['datum_name']}{producer}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def cmd_export(args: argparse.Namespace) -> int:
    import yaml

    from vhtui.deploy.kubernetes import export_manifests

    if not args.kubernetes:
        raise VhtuiError("choose an export format: --kubernetes")
    ctx = open_context()
    manifests = export_manifests(ctx, project_id(ctx), args.deployment)
    class PlainDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # labels repeat; kubectl users expect them spelled out
            return True

    text = yaml.dump_all(manifests, Dumper=PlainDumper, sort_keys=False)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise VhtuiError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"{len(manifests)} manifests written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vhtui.context import Context
    from vhtui.deploy.router import default_port, serve

    return serve(Context.open(), args.host, args.port or default_port(), args.max_body)


def add_parser(sub: Any) -> None:
    deploy = sub.add_parser("deploy", help="deployments: versions of endpoints, aliases, the router, compare, export")
    actions = deploy.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)

    version = actions.add_parser("version", help="create a version: the code now plus files from datums")
    version_actions = version.add_subparsers(dest="version_command", metavar="ACTION", required=True)
    p = version_actions.add_parser("create", help="build a version of a deployment from valohai.yaml endpoints")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("--endpoint", action="append", default=[], metavar="NAME", required=True,
                   help="an endpoint of valohai.yaml (repeatable)")
    p.add_argument("--file", action="append", default=[], metavar="[ENDPOINT.]NAME=URI",
                   help="an endpoint file from a datum: model=datum://ID or datum://ALIAS (repeatable)")
    p.add_argument("--name", help="the version's name (default v1, v2, ...)")
    p.add_argument("--adhoc", action="store_true", help="package the working tree instead of git's commit + diff")
    p.add_argument("--env", default="venv", choices=("venv", "current"), help="as for vhtui run")
    p.set_defaults(func=cmd_version_create)

    p = actions.add_parser("start", help="serve versions (all of the deployment's by default); starts the router")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("versions", nargs="*", metavar="VERSION", type=_name("version"))
    p.add_argument("--router-port", type=_port("--router-port"), help="where to start the router if it is not running")
    p.add_argument("--timeout", type=_seconds, help="seconds each server has to listen once its environment "
                                                  "is ready (default 60; installing its requirements is not counted)")
    p.set_defaults(func=cmd_start)

    p = actions.add_parser("stop", help="stop versions (all of the deployment's by default)")
    p.add_argument("deployment", nargs="?", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("versions", nargs="*", metavar="VERSION", type=_name("version"))
    p.add_argument("--all", action="store_true", help="every running endpoint of every project, and the router")
    p.set_defaults(func=cmd_stop)

    alias = actions.add_parser("alias", help="point an alias (staging, production, ...) at a version")
    alias_actions = alias.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    p = alias_actions.add_parser("set", help="move an alias, atomically")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("alias", metavar="ALIAS", type=_name("alias"))
    p.add_argument("version", metavar="VERSION", type=_name("version"))
    p.add_argument("--force", action="store_true", help="also to a version that is not serving")
    p.set_defaults(func=cmd_alias_set)

    p = actions.add_parser("mirror", help="copy an alias's traffic to another alias and count agreement")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("source", metavar="ALIAS", type=_name("alias"))
    p.add_argument("target", nargs="?", metavar="TO_ALIAS", type=_name("alias"))
    p.add_argument("--off", action="store_true")
    p.set_defaults(func=cmd_mirror)

    p = actions.add_parser("ls", help="deployments, versions, aliases and endpoint status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)
    p = actions.add_parser("info", help="everything about a deployment (or one version)")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("version", nargs="?", metavar="VERSION", type=_name("version"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = actions.add_parser("logs", help="a version's endpoint log")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("version", metavar="VERSION", type=_name("version"))
    p.add_argument("endpoint", nargs="?", metavar="ENDPOINT")
    p.set_defaults(func=cmd_logs)
    p = actions.add_parser("compare", help="two aliases side by side (and the same request to both)")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("left", metavar="ALIAS", type=_name("alias"))
    p.add_argument("right", metavar="ALIAS", type=_name("alias"))
    p.add_argument("--request", metavar="PATH", help="send this request (path and query) to both")
    p.add_argument("--data", help="a JSON body: the request is a POST")
    p.add_argument("--endpoint", help="which endpoint (default: the first)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)
    p = actions.add_parser("export", help="manifests for running the deployment elsewhere")
    p.add_argument("deployment", metavar="DEPLOYMENT", type=_name("deployment"))
    p.add_argument("--kubernetes", action="store_true", help="Deployments, Services and an Ingress")
    p.add_argument("--output", "-o", metavar="FILE")
    p.set_defaults(func=cmd_export)
    p = actions.add_parser("serve", help="run the router in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port("--port"), help="default 8700, or VHTUI_ROUTER_PORT")
    p.add_argument("--max-body", metavar="SIZE", help="the largest request body: bytes, or with K, M or G "
                                                      "(default 100M, or VHTUI_ROUTER_MAX_BODY)")
    p.set_defaults(func=cmd_serve)
