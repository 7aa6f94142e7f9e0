"""Execution inputs: resolve what the user named into files in the content-addressed cache.

Anything fsspec reaches (local paths, `file://`, `http(s)://`, `s3://`, ...) is fetched once into
the blob store, keyed by checksum; a small index from source to checksum (with the source's size,
mtime or ETag) lets the next execution reuse it without fetching again. `datum://` and
`dataset://` name files already stored; aliases are resolved now, at launch, as Valohai does.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import posixpath
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vhtui.data.blobs import CHUNK, BlobStore, CorruptedBlob, link_or_copy, reflink_or_copy
from vhtui.data.datums import DATASET_SCHEME, DATUM_SCHEME, DatumStore
from vhtui.errors import NotFound, VhtuiError
from vhtui.home import Home
from vhtui.progress import Progress


@dataclass
class InputFile:
    name: str  # the step's input name
    position: int
    uri: str  # where it came from; a datum as datum://<id>, never an alias
    filename: str
    sha256: str
    size: int
    datum_id: str | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


class InputFetcher:
    def __init__(self, home: Home, datums: DatumStore, project_id: int, cwd: Path, progress: Progress) -> None:
        self.datums = datums
        self.blobs = datums.blobs
        self.index_dir = home.source_index
        self.project_id = project_id
        self.cwd = cwd
        self.progress = progress

    def resolve(self, step: Any, given: dict[str, list[str]]) -> list[InputFile]:
        """Every input of `step`: given values, else the step's defaults; required ones must exist."""
        unknown = sorted(set(given) - set(step.inputs))
        if unknown:
            raise VhtuiError(f"step {step.name!r} has no input {unknown[0]!r} (inputs: {', '.join(step.inputs) or 'none'})")
        files: list[InputFile] = []
        for name, spec in step.inputs.items():
            values = given.get(name)
            if values is None:
                default = spec.default
                values = [default] if isinstance(default, str) else list(default or [])
            values = [v for v in values if v]
            if not values:
                if not spec.optional:
                    raise VhtuiError(f"input {name!r} is required: give it with --{name}=<path, URL or datum://...>")
                continue
            fetched_files = [item for value in values for item in self._fetch(str(value))]
            for position, (filename, fetched) in enumerate(fetched_files):
                if getattr(spec, "filename", None) and len(values) == 1:
                    filename = spec.filename
                files.append(InputFile(name=name, position=position, filename=filename, **fetched))
        return files

    def _fetch(self, value: str) -> list[tuple[str, dict[str, Any]]]:
        if value.startswith(DATUM_SCHEME):
            datum = self.datums.resolve(value, self.project_id)
            return [(posixpath.basename(datum["name"]), self._from_datum(datum))]
        if value.startswith(DATASET_SCHEME):
            return [(posixpath.basename(d["name"]), self._from_datum(d))
                    for d in self.datums.resolve_dataset(value, self.project_id)]
        if "://" not in value or value.startswith("file://"):
            return self._fetch_local(value)
        return self._fetch_remote(value)

    def _from_datum(self, datum: dict[str, Any]) -> dict[str, Any]:
        try:
            self.blobs.verified_path(datum["sha256"], datum["size"])
        except CorruptedBlob as exc:
            raise CorruptedBlob(f"datum {datum['id']} ({datum['name']}) is corrupted: {exc}") from None
        return {"uri": f"{DATUM_SCHEME}{datum['id']}", "sha256": datum["sha256"], "size": datum["size"],
                "datum_id": datum["id"]}

    def _fetch_local(self, value: str) -> list[tuple[str, dict[str, Any]]]:
        raw = urlsplit(value).path if value.startswith("file://") else os.path.expanduser(value)
        base = Path(raw) if os.path.isabs(raw) else self.cwd / raw
        matches = sorted(glob.glob(str(base))) if glob.has_magic(str(base)) else [str(base)]
        out: list[tuple[str, dict[str, Any]]] = []
        for match in matches:
            path = Path(match)
            if path.is_dir():
                for child in sorted(p for p in path.rglob("*") if p.is_file()):
                    out.append((child.relative_to(path).as_posix(), self._cache_local(child)))
            elif path.is_file():
                out.append((path.name, self._cache_local(path)))
        if not out:
            raise NotFound(f"input file {value!r} does not exist")
        return out

    def _cache_local(self, path: Path) -> dict[str, Any]:
        real = path.resolve()
        st = real.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]
        sha256 = self._lookup(f"file://{real}", stamp)
        if sha256 is None:
            with self.progress.task(f"Hashing {path.name}", st.st_size):
                sha256, _ = self.blobs.add_file(real)
            self._remember(f"file://{real}", stamp, sha256)
        return {"uri": f"file://{real}", "sha256": sha256, "size": st.st_size}

    def _fetch_remote(self, url: str) -> list[tuple[str, dict[str, Any]]]:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(url)
            paths = fs.glob(path) if glob.has_magic(path) else [path]
            if not paths:
                raise NotFound(f"input URL {url!r} matches nothing")
            out = []
            for one in paths:
                info = fs.info(one)
                full = fs.unstrip_protocol(one) if len(paths) > 1 else url
                out.append((_url_filename(full), self._cache_remote(fs, one, full, info)))
            return out
        except VhtuiError:
            raise
        except ImportError as exc:
            raise VhtuiError(f"cannot fetch {url!r}: support for it is not installed ({exc.name})") from None
        except FileNotFoundError as exc:
            cause = exc.__cause__
            if cause is None or getattr(cause, "status", None) in (404, 410):
                raise NotFound(f"input URL {url!r} does not exist") from None
            raise VhtuiError(f"cannot fetch input {url!r}: {str(cause).splitlines()[0]}") from None
        except Exception as exc:  # network errors come in many types from many backends
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise VhtuiError(f"cannot fetch input {url!r}: {detail}") from None

    def _cache_remote(self, fs: Any, path: str, url: str, info: dict[str, Any]) -> dict[str, Any]:
        stamp = [info.get(k) for k in ("size", "ETag", "etag", "LastModified", "mtime", "last_modified")]
        size = int(info.get("size") or 0)
        sha256 = self._lookup(url, stamp)
        if sha256 is None:
            self.blobs.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.blobs.root, prefix=".fetch-")
            tmp = Path(tmp_name)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, fs.open(path, "rb") as src, \
                        self.progress.task(f"Fetching {_url_filename(url)}", size or None) as task:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        task.advance(len(chunk))
                sha256, size = self.blobs.add_file(tmp, digest.hexdigest(), take=True)
            finally:
                tmp.unlink(missing_ok=True)
            self._remember(url, stamp, sha256)
        return {"uri": url, "sha256": sha256, "size": size}

    def _index_path(self, source: str) -> Path:
        return self.index_dir / hashlib.sha256(source.encode()).hexdigest()

    def _lookup(self, source: str, stamp: list[Any]) -> str | None:
        try:
            entry = json.loads(self._index_path(source).read_text())
        except (OSError, ValueError):
            return None
        if entry.get("stamp") != stamp or not self.blobs.has(entry["sha256"]):
            return None
        try:
            self.blobs.verified_path(entry["sha256"])
        except CorruptedBlob:
            return None  # fetched or hashed again, and the good copy replaces the damaged one
        return str(entry["sha256"])

    def _remember(self, source: str, stamp: list[Any], sha256: str) -> None:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        target = self._index_path(source)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"source": source, "stamp": stamp, "sha256": sha256}))
        os.replace(tmp, target)


def _url_filename(url: str) -> str:
    name = posixpath.basename(urlsplit(url).path.rstrip("/"))
    return name or "download"


def materialize(files: list[InputFile], blobs: BlobStore, inputs_dir: Path, share: bool) -> None:
    """Lay out `inputs/<name>/<file>` for an execution, each checked to be intact first.

    `share`: the command cannot write these files (a read-only mount, or a copy shipped elsewhere),
    so they may be links to the stored content. Otherwise each is a copy-on-write clone, or a copy
    where the filesystem has none: a step that appends to its input changes its own copy, never
    what the store holds for every other run.
    """
    for f in files:
        target = inputs_dir / f.name / f.filename
        if not target.resolve().is_relative_to(inputs_dir.resolve()):
            raise VhtuiError(f"input file name {f.filename!r} would leave the inputs directory")
        try:
            source = blobs.verified_path(f.sha256, f.size)
        except CorruptedBlob as exc:
            raise CorruptedBlob(f"input {f.name}/{f.filename} ({f.uri}) is corrupted: {exc}") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        (link_or_copy if share else reflink_or_copy)(source, target)
