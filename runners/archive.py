"""Directories as a tar stream, and a tar stream back into a directory, safely.

Code, inputs and outputs travel between the control host and a runner agent as uncompressed tar
streams (model weights and datasets rarely compress, and gzip would cap the throughput at one
core's speed). Extraction trusts nothing: every member is checked before anything is written, with
tarfile's `data` filter as a second line, and the caps stop a tar bomb before it fills a disk.
"""

from __future__ import annotations

import os
import queue
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

CHUNK = 1 << 20


class BadArchive(Exception):
    """The archive breaks a rule; the message names the member and the rule."""


@dataclass
class Caps:
    max_bytes: int = 50 << 30  # the sum of the members' sizes
    max_files: int = 200_000


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Refuse what could write outside `dest` or make something other than files and folders."""
    name = member.name
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        raise BadArchive(f"{name!r}: absolute paths are refused")
    if ".." in path.parts:
        raise BadArchive(f"{name!r}: '..' in a path is refused")
    if member.ischr() or member.isblk() or member.isfifo() or not (member.isfile() or member.isdir()
                                                                     or member.issym() or member.islnk()):
        raise BadArchive(f"{name!r}: device files, fifos and other special files are refused")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        where = target if member.islnk() else path.parent / target
        if target.is_absolute() or not _inside(dest, where):
            raise BadArchive(f"{name!r}: a link that leaves the archive's tree ({member.linkname!r}) is refused")


def _inside(dest: Path, relative: PurePosixPath) -> bool:
    root = os.path.realpath(dest)
    return os.path.realpath(os.path.join(root, str(relative))).startswith(root + os.sep) or \
        os.path.realpath(os.path.join(root, str(relative))) == root


def extract(stream: IO[bytes] | ChunkReader, dest: Path, caps: Caps, tops: tuple[str, ...]) -> tuple[int, int]:
    """Unpack a tar stream into `dest`, whose members must all lie under one of the folders `tops`;
    return (files, bytes). Raises BadArchive before writing a refused member, and OSError (a full
    disk) as it is."""
    dest.mkdir(parents=True, exist_ok=True)
    files = total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                check_member(member, dest)
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


def pack(dirs: dict[str, Path], only: Any = None) -> Iterator[bytes]:
    """A tar stream of each directory under its name, produced by a thread as it is consumed.
    `only(path)` may filter the files (for example, only the read-only ones)."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

    class Writer:
        def write(self, data: bytes) -> int:
            chunks.put(bytes(data))
            return len(data)

    def produce() -> None:
        try:
            with tarfile.open(fileobj=Writer(), mode="w|", bufsize=CHUNK, format=tarfile.PAX_FORMAT,
                              dereference=True) as tar:  # inputs may be links into a cache: send the files
                tar.copybufsize = CHUNK
                for name, root in dirs.items():
                    if not root.exists():
                        continue
                    if only is None:
                        tar.add(root, arcname=name, recursive=False)  # an empty folder arrives too
                    for path in sorted(root.rglob("*")):
                        if path.is_file() and (only is None or only(path)):
                            tar.add(path, arcname=f"{name}/{path.relative_to(root)}", recursive=False)
                        elif path.is_dir() and not path.is_symlink() and only is None:
                            tar.add(path, arcname=f"{name}/{path.relative_to(root)}", recursive=False)
            chunks.put(None)
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
            chunks.put(exc)

    threading.Thread(target=produce, name="tar-pack", daemon=True).start()
    while (item := chunks.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item
