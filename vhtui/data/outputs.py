"""Collect an execution's `outputs/` into datums, with Valohai's sidecar metadata.

Everything under outputs/ is stored when the run ends, whatever its status. A file made read-only
during the run is a live output and is stored at once. Properties come from `<file>.metadata.json`
and `valohai.metadata.jsonl` (reserved keys `valohai.tags`, `valohai.alias`,
`valohai.dataset-versions`); the sidecars themselves are not outputs.

What is stored never changes: a live output is stored as a copy (the command may still write its
file), and only after the command has ended are output files linked into the store. Collection
never follows a link out of the outputs folder: a link to a file inside it is stored as that
file's content under the link's name; any other link, and anything that is not a plain file, is
left out and named in `skipped`, so that a job cannot bring home what it was never given (a link
to the host's /etc/shadow from a container, say).
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
from vhtui.errors import StoreError
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
        self.skipped: dict[str, str] = {}  # relative path -> why it was not stored
        self.already: set[tuple[str, str | None]] = set()  # (name, sha256) stored before this collector
        self.seen_at: str | None = None  # where the command saw the outputs folder (/valohai/outputs)

    def collect_live(self) -> list[dict[str, Any]]:
        """Store files made read-only since the last look, as copies: the run goes on."""
        return self._store_all([(rel, path, st) for rel, path, st in self._files()
                                if not st.st_mode & 0o222 and self._changed(rel, st)], ended=False)

    def collect_all(self, tags: list[str] | None = None) -> list[dict[str, Any]]:
        """Once the command has ended: store every output not stored yet (or changed since it was),
        with `tags` added to each."""
        return self._store_all([(rel, path, st) for rel, path, st in self._files() if self._changed(rel, st)],
                               ended=True, tags=tags or [])

    def skip_stored(self) -> None:
        """Leave out what this execution already stored (same name, same content): for a collector
        that starts over after its run's supervisor died."""
        self.already = {(d["name"], d["sha256"]) for d in datum_rows.produced_by(self.datums.db, self.execution_id)}

    def _store_all(self, files: list[tuple[str, Path, Any]], ended: bool,
                   tags: list[str] | None = None) -> list[dict[str, Any]]:
        """Hash on every core (hashing is the cost of storing), then record one by one."""
        with ThreadPoolExecutor(max_workers=max(1, min(len(files), os.cpu_count() or 1))) as pool:
            digests = list(pool.map(lambda item: _digest_or_none(item[1]), files))
        stored = [self._store(rel, path, st, sha256, ended, tags or [])
                  for (rel, path, st), sha256 in zip(files, digests)]
        return [d for d in stored if d]

    def _files(self) -> list[tuple[str, Path, Any]]:
        """(relative name, the file to read, its stat) of each output; links are never followed out."""
        if not self.outputs_dir.is_dir():
            return []
        root = self.outputs_dir.resolve()
        out = []
        for path in sorted(self.outputs_dir.rglob("*")):
            rel = path.relative_to(self.outputs_dir).as_posix()
            if rel.endswith((SIDECAR_SUFFIX, ".vhtui-link")) or rel == JSONL_SIDECAR:
                continue
            st = path.lstat()
            source = path
            if stat.S_ISLNK(st.st_mode):
                target = self._link_target(path, root)
                if not target.is_relative_to(root) or not target.is_file():
                    self.skipped[rel] = f"a link to {os.readlink(path)}, outside the outputs folder"
                    continue
                source, st = target, target.stat()
            elif stat.S_ISDIR(st.st_mode):
                continue
            elif not stat.S_ISREG(st.st_mode):
                self.skipped[rel] = "not a plain file"
                continue
            out.append((rel, source, st))
        return out

    def _link_target(self, path: Path, root: Path) -> Path:
        """Where a link leads as the command meant it: an absolute one into the folder as it saw
        it (`seen_at`) names a file of the real folder."""
        link = os.readlink(path)
        seen = self.seen_at
        if seen and os.path.isabs(link) and (link == seen or link.startswith(seen.rstrip("/") + "/")):
            return (root / os.path.relpath(link, seen)).resolve()
        return path.resolve()

    def _changed(self, rel: str, st: Any) -> bool:
        return self.stored.get(rel) != (st.st_size, st.st_mtime_ns)

    def _store(self, rel: str, path: Path, st: Any, sha256: str | None, ended: bool,
               extra_tags: list[str]) -> dict[str, Any] | None:
        if (rel, sha256) in self.already:
            self.stored[rel] = (st.st_size, st.st_mtime_ns)
            return None
        properties = self._sidecar_properties(rel)
        tags = [str(t) for t in _as_list(properties.pop("valohai.tags", []))] + extra_tags
        aliases = [str(a) for a in _as_list(properties.pop("valohai.alias", []))]
        versions = [_dataset_uri(v) for v in _as_list(properties.pop("valohai.dataset-versions", []))]
        try:
            datum = self.datums.add(
                path, name=rel, project_id=self.project_id, kind="output",
                producer_execution_id=self.execution_id, tags=tags, properties=properties, sha256=sha256, take=ended,
            )
        except StoreError as exc:
            if exc.kind == "busy":
                raise  # not a failure of this output: the caller tries again
            self.errors.append(str(exc))
            return None
        except Exception as exc:  # a full disk must not stop the other outputs from being stored
            self.errors.append(str(exc))
            return None
        if ended and path == self.outputs_dir / rel:
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
