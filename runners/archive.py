"""Directories as a tar stream, and a tar stream back into a directory, safely.

Code, inputs and outputs travel between the control host and a runner agent as uncompressed tar
streams (model weights and datasets rarely compress, and gzip would cap the throughput at one
core's speed). The streams hold only files and folders: `pack` sends the file a link names, and
extraction refuses links, so no member can be written through one. Extraction trusts nothing:
every member is checked before anything is written, with tarfile's `data` filter as a second line,
and the caps stop a tar bomb before it fills a disk. Folders written by someone else (a job's
outputs) are packed with `contained=True`, which never follows a link out of them.
"""

from __future__ import annotations

import os
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

CHUNK = 1 << 20


class BadArchive(Exception):
    """The archive breaks a rule; the message names the member and the rule."""


@dataclass
class Caps:
    max_bytes: int = 50 << 30  # the sum of the members' sizes
    max_files: int = 200_000


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse what could write outside the destination, through a link, or make anything other
    than files and folders."""
    name = member.name
    path = PurePosixPath(name)
    if not path.parts:
        raise BadArchive(f"{name!r}: empty and '.' names are refused")
    if name.startswith("/") or path.is_absolute():
        raise BadArchive(f"{name!r}: absolute paths are refused")
    if ".." in path.parts:
        raise BadArchive(f"{name!r}: '..' in a path is refused")
    if member.issym() or member.islnk():
        raise BadArchive(f"{name!r}: links are refused ({member.linkname!r}); send the file it names")
    if not (member.isfile() or member.isdir()):
        raise BadArchive(f"{name!r}: device files, fifos and other special files are refused")


def extract(stream: IO[bytes] | ChunkReader, dest: Path, caps: Caps, tops: tuple[str, ...]) -> tuple[int, int]:
    """Unpack a tar stream into `dest`, a new or empty folder (so nothing in it is a link), whose
    members must all lie under one of the folders `tops`; return (files, bytes). Raises BadArchive
    before writing a refused member, and OSError (a full disk) as it is."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty: an archive is only unpacked into a new folder")
    files = total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                check_member(member)
                if PurePosixPath(member.name).parts[0] not in tops:
                    raise BadArchive(f"{member.name!r}: only {', '.join(tops)} may be sent")
                files += 1
                total += member.size if member.isfile() else 0
                if files > caps.max_files:
                    raise BadArchive(f"more than {caps.max_files:,} files: refused")
                if total > caps.max_bytes:
                    raise BadArchive(f"more than {caps.max_bytes:,} bytes unpacked: refused")
                try:
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as exc:
                    raise BadArchive(f"{member.name!r}: {exc}") from None
    except tarfile.ReadError as exc:
        raise BadArchive(f"not a tar archive: {exc}") from None
    return files, total


class ChunkReader:
    """A read()-able file over an iterator of byte chunks (a request or response body), for tarfile."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buf, self.pos = b"", 0

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size != 0:
            if self.pos >= len(self.buf):
                self.buf, self.pos = next(self.chunks, b""), 0
                if not self.buf:
                    break
            take = len(self.buf) - self.pos if size < 0 else min(size, len(self.buf) - self.pos)
            parts.append(self.buf[self.pos:self.pos + take])
            self.pos += take
            if size > 0:
                size -= take
        return b"".join(parts)


class Entry(NamedTuple):
    """One thing under a folder someone else wrote, as `contained_entries` found it."""

    name: str  # relative to the folder, with '/'
    kind: str  # "folder", "file", or "skipped"
    why: str = ""  # for a skipped one: what it is, in words
    path: str = ""  # for a file: the file to read, relative to the folder (a link's target inside)


def contained_entries(root: Path, seen_at: str | None = None) -> Iterator[Entry]:
    """What `root` holds, in order, without ever following a link out of it: a link to a file
    inside is that file; a link to a folder, one leaving `root`, one to nothing, and anything that
    is not a plain file or folder are skipped, each with the reason. `seen_at` is where the job saw
    `root` (/valohai/outputs): an absolute link it made there names a file inside."""
    if root.is_symlink():  # the folder itself replaced by a link (to /, say): nothing in it is its own
        return
    real_root = os.path.realpath(root)
    where = f"outside the {root.name} folder"
    for folder, subfolders, names in os.walk(root):  # never descends into a link
        subfolders.sort()
        for name in sorted(subfolders + names):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue  # removed while we looked
            if stat.S_ISDIR(mode):
                yield Entry(rel, "folder")
            elif stat.S_ISREG(mode):
                yield Entry(rel, "file", path=rel)
            elif not stat.S_ISLNK(mode):
                yield Entry(rel, "skipped", "not a plain file")
            else:
                link, target = os.readlink(path), link_target(path, real_root, seen_at)
                if not target.startswith(real_root + os.sep):
                    yield Entry(rel, "skipped", f"a link to {link}, {where}")
                elif os.path.isdir(target):
                    yield Entry(rel, "skipped", f"a link to a folder ({link}), whose files are stored under their "
                                                f"own names")
                elif not os.path.exists(target):
                    yield Entry(rel, "skipped", f"a link to {link}, which does not exist")
                elif os.path.isfile(target):
                    yield Entry(rel, "file", path=os.path.relpath(target, real_root).replace(os.sep, "/"))
                else:
                    yield Entry(rel, "skipped", f"a link to {link}, which is not a plain file")


def link_target(path: str, real_root: str, seen_at: str | None) -> str:
    """Where the link at `path` leads, as the job that made it meant it: an absolute link into the
    folder as the job saw it (`seen_at`) is read against the folder's real place `real_root`."""
    link = os.readlink(path)
    if seen_at and os.path.isabs(link) and (link == seen_at or link.startswith(seen_at.rstrip("/") + "/")):
        return os.path.realpath(os.path.join(real_root, os.path.relpath(link, seen_at)))
    return os.path.realpath(path)


def open_inside(root: Path, rel: str) -> int:
    """A read-only descriptor of the plain file `rel` under `root`, opened one name at a time with
    O_NOFOLLOW, so a link put in its way meanwhile (the job may still be running) fails the open
    instead of being followed."""
    *folders, name = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in folders:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise OSError(f"{rel} is no longer a plain file")
    return file_fd


def pack(dirs: dict[str, Path], only: Callable[[os.stat_result], bool] | None = None,
         contained: bool = False, seen_at: dict[str, str] | None = None) -> Iterator[bytes]:
    """A tar stream of each directory under its name, produced by a thread as it is consumed; it
    holds files and folders only. `only(stat)` may filter the files (for example, only the
    read-only ones). Links are sent as the files they name: anywhere (our own folders: inputs are
    links into a cache), or with `contained` only inside the folder, read as `contained_entries`
    says (a job's outputs: what it links to outside is the host's, not its own), each folder
    read as the job saw it (`seen_at`: its name -> where the job saw it)."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

    class Writer:
        def write(self, data: bytes) -> int:
            chunks.put(bytes(data))
            return len(data)

    def add_file(tar: tarfile.TarFile, fd: int, arcname: str) -> None:
        with os.fdopen(fd, "rb") as f:
            if only is None or only(os.fstat(fd)):
                tar.addfile(tar.gettarinfo(arcname=arcname, fileobj=f), f)

    def add_folder(tar: tarfile.TarFile, arcname: str, st: os.stat_result) -> None:
        if only is None and stat.S_ISDIR(st.st_mode):  # with `only`, files alone are sent
            info = tarfile.TarInfo(arcname)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, stat.S_IMODE(st.st_mode), int(st.st_mtime)
            tar.addfile(info)

    def add_contained(tar: tarfile.TarFile, root: Path, name: str) -> None:
        for entry in contained_entries(root, (seen_at or {}).get(name)):
            arcname = f"{name}/{entry.name}"
            try:  # gone, or changed since into something that is not followed: left out
                if entry.kind == "folder":
                    add_folder(tar, arcname, os.lstat(root / entry.name))
                if entry.kind != "file":
                    continue
                fd = open_inside(root, entry.path)
            except OSError:
                continue
            add_file(tar, fd, arcname)

    def add_trusted(tar: tarfile.TarFile, root: Path, name: str) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                add_file(tar, os.open(path, os.O_RDONLY), f"{name}/{path.relative_to(root)}")
            elif path.is_dir() and not path.is_symlink():
                add_folder(tar, f"{name}/{path.relative_to(root)}", path.stat())

    def produce() -> None:
        try:
            with tarfile.open(fileobj=Writer(), mode="w|", bufsize=CHUNK, format=tarfile.PAX_FORMAT) as tar:
                tar.copybufsize = CHUNK
                for name, root in dirs.items():
                    if not root.is_dir():
                        continue
                    add_folder(tar, name, root.stat())
                    (add_contained if contained else add_trusted)(tar, root, name)
            chunks.put(None)
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
            chunks.put(exc)

    threading.Thread(target=produce, name="tar-pack", daemon=True).start()
    while (item := chunks.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item
