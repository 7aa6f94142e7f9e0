"""Datums: stored files with identity (`datum://<id>`), producer, tags, properties and aliases."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from vhtui.data.blobs import BlobStore, CorruptedBlob
from vhtui.errors import NotFound, VhtuiError, quoted
from vhtui.home import Home
from vhtui.store import Database
from vhtui.store import datums as datum_rows

DATUM_SCHEME = "datum://"
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DATASET_SCHEME = "dataset://"


def new_datum_id() -> str:
    return str(uuid.uuid4())


class DatumStore:
    def __init__(self, home: Home, db: Database) -> None:
        self.db = db
        self.blobs = BlobStore(home.blobs)

    def add(
        self, path: Path, *, name: str, project_id: int | None, kind: str = "output",
        producer_execution_id: int | None = None, uri: str | None = None, sha256: str | None = None,
        tags: list[str] | None = None, properties: dict[str, Any] | None = None, take: bool = False,
    ) -> dict[str, Any]:
        """Store a file's content (once per content) and record a new datum for it (`take`: see add_file)."""
        sha256, size = self.blobs.add_file(path, sha256, take=take)
        datum = {
            "id": new_datum_id(), "project_id": project_id, "name": name, "sha256": sha256, "size": size,
            "kind": kind, "uri": uri, "producer_execution_id": producer_execution_id, "created_at": time.time(),
            "tags": tags or [], "properties": properties or {},
        }
        datum_rows.insert(self.db, datum)
        return datum

    def resolve(self, ref: str, project_id: int | None) -> dict[str, Any]:
        """A datum from `datum://<id, id prefix or alias>` (or the bare id/alias)."""
        key = ref[len(DATUM_SCHEME):] if ref.startswith(DATUM_SCHEME) else ref
        if not key:
            raise VhtuiError(f"{ref!r} names no datum")
        datum = datum_rows.get(self.db, key)
        if datum is None and project_id is not None:
            aliased = datum_rows.resolve_alias(self.db, project_id, key)
            datum = datum_rows.get(self.db, aliased) if aliased else None
        if datum is None and len(key) >= 6:
            candidates = datum_rows.find_by_prefix(self.db, key)
            if len(candidates) > 1:
                raise VhtuiError(f"datum id prefix {key!r} is ambiguous")
            datum = candidates[0] if candidates else None
        if datum is None:
            raise NotFound(f"no datum or alias {key!r}" + ("" if project_id is not None else " (no project)"))
        return datum

    def resolve_dataset(self, ref: str, project_id: int) -> list[dict[str, Any]]:
        """The datums of `dataset://<name>/<version>`."""
        name, _, version = ref[len(DATASET_SCHEME):].partition("/")
        if not name or not version:
            raise VhtuiError(f"{ref!r}: expected dataset://<name>/<version>")
        ids = datum_rows.dataset_version_datums(self.db, project_id, name, version)
        if not ids:
            raise NotFound(f"no dataset version {ref!r}")
        return [datum_rows.get(self.db, i) for i in ids]  # type: ignore[misc]

    def export(self, datum: dict[str, Any], directory: Path) -> Path:
        if directory.exists() and not directory.is_dir():
            raise VhtuiError(f"{directory} is not a folder: give a folder to write the datum into")
        target = directory / datum["name"]
        if not target.resolve().is_relative_to(directory.resolve()):
            raise VhtuiError(f"datum {datum['id']} has an unsafe name {datum['name']!r}")
        self.write(datum, target)
        return target

    def write(self, datum: dict[str, Any], target: Path) -> None:
        """Write a datum's content to `target` as an ordinary file, once it is checked to be intact."""
        try:
            self.blobs.export(datum["sha256"], target, datum["size"])
        except CorruptedBlob as exc:
            raise CorruptedBlob(f"datum {datum['id']} ({datum['name']}) is corrupted: {exc}") from None

    def delete(self, datum_id: str) -> None:
        """Forget a datum and free its content when nothing else shares it; refused while in use."""
        running = datum_rows.users_still_running(self.db, datum_id)
        if running:
            raise VhtuiError(f"datum {datum_id[:8]} is an input of running execution(s) "
                             + ", ".join(f"#{c}" for c in running))
        datum = datum_rows.get(self.db, datum_id)
        if datum is None:
            raise NotFound(f"no datum {datum_id}")
        if datum_rows.delete(self.db, datum_id):
            self.blobs.path(datum["sha256"]).unlink(missing_ok=True)

    def set_alias(self, project_id: int, alias: str, ref: str) -> dict[str, Any]:
        if not ALIAS.fullmatch(alias):
            raise VhtuiError(f"invalid alias name {quoted(alias)}: use up to 128 letters, digits, '.', '_' and '-'")
        datum = self.resolve(ref, project_id)
        datum_rows.set_alias(self.db, project_id, alias, datum["id"])
        return datum
