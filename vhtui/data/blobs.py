"""Content-addressed file storage: each distinct content once, under its sha256.

Files come in without a second copy where the filesystem allows: a hardlink (same filesystem), a
reflink (copy-on-write filesystems), and only then a byte copy; they are linked only when nothing
will write them again (see `add_file`). Stored blobs are read-only, and each is given the same
fixed modification time when stored: a blob changed in place (by root, or after a chmod) shows a
new mtime or size, and `verified_path` then rehashes it before anything reads it, refusing one whose
content no longer matches its name.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from vhtui.errors import VhtuiError

_FICLONE = 0x40049409
CHUNK = 1 << 20
STORED_MTIME_NS = 946_684_800 * 10**9  # 2000-01-01: what every untouched blob's mtime reads


class CorruptedBlob(VhtuiError):
    """A stored content no longer matches its sha256 (changed in place): it is never served."""


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def reflink_or_copy(src: Path, dst: Path) -> None:
    """Copy-on-write clone where the filesystem supports it, else a plain copy."""
    with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        try:
            fcntl.ioctl(fdst.fileno(), _FICLONE, fsrc.fileno())
            return
        except OSError:
            pass
        shutil.copyfileobj(fsrc, fdst, CHUNK)


def link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` hold `src`'s content, sharing storage when possible."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        reflink_or_copy(src, dst)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def add_file(self, src: Path, sha256: str | None = None, take: bool = False) -> tuple[str, int]:
        """Store `src`'s content (hashing it unless told); return (sha256, size).

        `take` says the file is ours and will not change again (an output after its run, a download):
        it is then linked, not copied. A user's file is never linked, since editing it in place would
        change the stored content, and its permissions are never touched.
        """
        sha256 = sha256 or sha256_of(src)
        size = src.stat().st_size
        final = self.path(sha256)
        if final.exists():
            try:
                self.verified_path(sha256, size)
                return sha256, size
            except CorruptedBlob:
                pass  # changed in place: this good copy takes its place
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{sha256}.{os.getpid()}.tmp")
        try:
            (link_or_copy if take else reflink_or_copy)(src, tmp)
            os.chmod(tmp, 0o444)
            os.utime(tmp, ns=(STORED_MTIME_NS, STORED_MTIME_NS))
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise VhtuiError(_storage_error(src, exc)) from None
        return sha256, size

    def verified_path(self, sha256: str, size: int | None = None) -> Path:
        """The blob's path once it is known to hold its content: cheaply (size and the fixed mtime)
        when untouched, else by rehashing it; CorruptedBlob when it changed."""
        path = self.path(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorruptedBlob(f"the stored content {sha256[:16]} is missing from {self.root}") from None
        if st.st_mtime_ns == STORED_MTIME_NS and (size is None or st.st_size == size):
            return path
        if (size is not None and st.st_size != size) or sha256_of(path) != sha256:
            raise CorruptedBlob(f"the stored content {sha256[:16]} was changed in place "
                                "(it no longer matches its sha256)")
        try:
            os.utime(path, ns=(STORED_MTIME_NS, STORED_MTIME_NS))  # verified: cheap again next time
        except OSError:
            pass
        return path

    def share_into(self, sha256: str, dst: Path) -> None:
        """Replace `dst` by a link to the stored blob, so identical content is kept once."""
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.vhtui-link")
        try:
            os.link(self.path(sha256), tmp)
            os.replace(tmp, dst)
        except OSError:
            tmp.unlink(missing_ok=True)  # another filesystem: two copies, both intact

    def export(self, sha256: str, dst: Path, size: int | None = None) -> None:
        """Write a stored blob to `dst` as an ordinary, writable file of the user's."""
        source = self.verified_path(sha256, size)
        tmp = dst.with_name(f".{dst.name}.vhtui-part")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            reflink_or_copy(source, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # it was never made
            if exc.errno == errno.ENOSPC:
                raise VhtuiError(f"no space left on the device while writing {dst}") from None
            raise VhtuiError(f"cannot write {dst}: {exc.strerror}") from None


def _storage_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device while storing {path}"
    return f"cannot store {path}: {exc.strerror}"
