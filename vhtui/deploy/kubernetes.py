"""Kubernetes manifests for a deployment: a Deployment and a Service per version's endpoint, and
one Ingress with a path per version and per alias, the same URL scheme as the local router.

The manifests are plain dicts in the API's own field names (what `kubectl apply` reads), and the
tests check them by deserializing into the official client's models. The image is the endpoint's
`image`; the code and files are expected in it or mounted by the cluster (a version's datums are
listed in the `vhtui.dev/files` annotation), as a local path means nothing on a cluster.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vhtui.context import Context
from vhtui.deploy.versions import find_deployment
from vhtui.store import deployments as deployment_rows

DEFAULT_PORT = 8000


def k8s_name(*parts: str) -> str:
    """A DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-") or "vhtui"


def _labels(deployment: str, version: str, endpoint: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "vhtui", "vhtui.dev/deployment": k8s_name(deployment),
            "vhtui.dev/version": k8s_name(version), "vhtui.dev/endpoint": k8s_name(endpoint)}


def endpoint_manifests(deployment: str, version: dict[str, Any], endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    spec = endpoint["spec"]
    port = spec.get("port") or DEFAULT_PORT
    name = k8s_name(deployment, version["name"], endpoint["name"])
    labels = _labels(deployment, version["name"], endpoint["name"])
    prefix = f"/{deployment}/{version['name']}/{endpoint['name']}/"
    if spec.get("wsgi"):
        command = ["sh", "-c", f"exec gunicorn --bind 0.0.0.0:{port} {spec['wsgi']}"]
    else:
        command = ["sh", "-c", " && ".join(spec["server_command"])]
    container: dict[str, Any] = {
        "name": k8s_name(endpoint["name"]), "image": spec["image"], "command": command,
        "ports": [{"containerPort": port, "name": "http"}],
        "env": [{"name": "PORT", "value": str(port)}, {"name": "VH_DEFAULT_PREFIX", "value": prefix}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2},
    }
    limits = _resources(spec.get("resources") or {})
    if limits:
        container["resources"] = limits
    files = [{"name": f["name"], "path": f["path"], "datum": f"datum://{f['datum_id']}"} for f in endpoint["files"]]
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "labels": labels, "annotations": {"vhtui.dev/files": json.dumps(files),
                                                                      "vhtui.dev/code-version": json.dumps(version["code_version"])}},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": port}]}},
    ]


def _resources(resources: dict[str, Any]) -> dict[str, Any]:
    """valohai.yaml's cpu/memory min and max (memory in MB) as requests and limits."""
    out: dict[str, dict[str, str]] = {}
    for key, unit in (("cpu", ""), ("memory", "Mi")):
        for bound, field in (("min", "requests"), ("max", "limits")):
            value = (resources.get(key) or {}).get(bound)
            if value is not None:
                out.setdefault(field, {})[key] = f"{value}{unit}"
    return out


def export_manifests(ctx: Context, project_id: int, deployment_name: str) -> list[dict[str, Any]]:
    deployment = find_deployment(ctx, project_id, deployment_name)
    manifests: list[dict[str, Any]] = []
    paths = []
    versions = {v["id"]: v for v in deployment_rows.list_versions(ctx.db, deployment["id"])}
    endpoints = {v_id: deployment_rows.endpoints_of(ctx.db, v_id) for v_id in versions}
    routes = [(v["name"], v["id"]) for v in versions.values()]
    routes += [(a["name"], a["version_id"]) for a in deployment_rows.aliases_of_deployment(ctx.db, deployment["id"])]
    for version in versions.values():
        for endpoint in endpoints[version["id"]]:
            manifests += endpoint_manifests(deployment_name, version, endpoint)
    for ref, version_id in routes:
        for endpoint in endpoints[version_id]:
            paths.append({
                "path": f"/{deployment_name}/{ref}/{endpoint['name']}/", "pathType": "Prefix",
                "backend": {"service": {"name": k8s_name(deployment_name, versions[version_id]["name"], endpoint["name"]),
                                        "port": {"number": 80}}},
            })
    manifests.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": k8s_name(deployment_name), "labels": {"app.kubernetes.io/managed-by": "vhtui"}},
        "spec": {"rules": [{"http": {"paths": paths}}]},
    })
    return manifests
