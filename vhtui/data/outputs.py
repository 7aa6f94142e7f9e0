"""Collect an execution's `outputs/` into datums, with Valohai's sidecar metadata.

Everything under outputs/ is stored when the run ends, whatever its status. A file made read-only
during the run is a live output and is stored at once. Properties come from `<file>.metadata.json`
and `valohai.metadata.jsonl` (reserved keys `valohai.tags`, `valohai.alias`,
`valohai.dataset-versions`); the sidecars themselves are not outputs.
"""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vhtui.data.blobs import sha256_of
from vhtui.data.datums import DATASET_SCHEME, DatumStore
from vhtui.store import datums as datum_rows

SIDECAR_SUFFIX = ".metadata.json"
JSONL_SIDECAR = "valohai.metadata.jsonl"


class OutputCollector:
    def __init__(self, datums: DatumStore, outputs_dir: Path, project_id: int, execution_id: int) -> None:
        self.datums = datums
        self.outputs_dir = outputs_dir
        self.project_id = project_id
        self.execution_id = execution_id
        self.stored: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) when stored
        self.errors: list[str] = []

    def collect_live(self) -> list[dict[str, Any]]:
        """Store files made read-only since the last look."""
        return self._store_all([(rel, st) for rel, st in self._files()
                                if not st.st_mode & 0o222 and self._changed(rel, st)])

    def collect_all(self) -> list[dict[str, Any]]:
        """Store every output not stored yet (or changed since it was)."""
        return self._store_all([(rel, st) for rel, st in self._files() if self._changed(rel, st)])

    def _store_all(self, files: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Hash on every core (hashing is the cost of storing), then record one by one."""
        with ThreadPoolExecutor(max_workers=max(1, min(len(files), os.cpu_count() or 1))) as pool:
            digests = list(pool.map(lambda item: _digest_or_none(self.outputs_dir / item[0]), files))
        stored = [self._store(rel, st, sha256) for (rel, st), sha256 in zip(files, digests)]
        return [d for d in stored if d]

    def _files(self) -> list[tuple[str, Any]]:
        if not self.outputs_dir.is_dir():
            return []
        out = []
        for path in sorted(self.outputs_dir.rglob("*")):
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = path.relative_to(self.outputs_dir).as_posix()
            if rel.endswith((SIDECAR_SUFFIX, ".vhtui-link")) or rel == JSONL_SIDECAR:
                continue
            out.append((rel, st))
        return out

    def _changed(self, rel: str, st: Any) -> bool:
        return self.stored.get(rel) != (st.st_size, st.st_mtime_ns)

    def _store(self, rel: str, st: Any, sha256: str | None) -> dict[str, Any] | None:
        path = self.outputs_dir / rel
        properties = self._sidecar_properties(rel)
        tags = [str(t) for t in _as_list(properties.pop("valohai.tags", []))]
        aliases = [str(a) for a in _as_list(properties.pop("valohai.alias", []))]
        versions = [_dataset_uri(v) for v in _as_list(properties.pop("valohai.dataset-versions", []))]
        try:
            datum = self.datums.add(
                path, name=rel, project_id=self.project_id, kind="output",
                producer_execution_id=self.execution_id, tags=tags, properties=properties, sha256=sha256, take=True,
            )
        except Exception as exc:  # a full disk must not stop the other outputs from being stored
            self.errors.append(str(exc))
            return None
        self.datums.blobs.share_into(datum["sha256"], path)
        self.stored[rel] = (st.st_size, path.stat().st_mtime_ns)
        for alias in aliases:
            datum_rows.set_alias(self.datums.db, self.project_id, alias, datum["id"])
        for uri in versions:
            if uri:
                dataset, _, version = uri[len(DATASET_SCHEME):].partition("/")
                if dataset and version:
                    datum_rows.add_to_dataset_version(self.datums.db, self.project_id, dataset, version, datum["id"])
        return datum

    def _sidecar_properties(self, rel: str) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        jsonl = self.outputs_dir / JSONL_SIDECAR
        if jsonl.is_file():
            for line in jsonl.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("file") == rel and isinstance(entry.get("metadata"), dict):
                    properties.update(entry["metadata"])
        sidecar = self.outputs_dir / f"{rel}{SIDECAR_SUFFIX}"
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text())
            except ValueError:
                data = None
            if isinstance(data, dict):
                properties.update(data)
        return properties


def _digest_or_none(path: Path) -> str | None:
    try:
        return sha256_of(path)
    except OSError:  # vanished or unreadable: _store reports it
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _dataset_uri(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("uri")
    return str(value) if isinstance(value, str) and value.startswith(DATASET_SCHEME) else None
