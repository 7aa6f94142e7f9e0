"""Code versions: what code an execution ran, recorded so it can be reproduced.

In a git work tree the version is the commit plus the uncommitted changes (tracked diffs and
untracked files, as one binary patch stored as a datum). With `--adhoc`, or outside git, it is a
tarball of the working tree honouring `.gitignore` and `.vhignore`, identified by its sha256, as
Valohai's CLI packages ad-hoc code. Either way the execution runs in its own copy of those files,
so editing the project during a run changes nothing in it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vhtui.errors import VhtuiError

if TYPE_CHECKING:
    from vhtui.data.datums import DatumStore

MAX_FILES = 10_000  # as Valohai's CLI: a project this large is almost always missing an ignore rule
MAX_BYTES = 1 << 30
IGNORED_FOLDERS = (".git", ".venv", "__pycache__", ".vhtui")  # never code, whatever the ignore files say
IGNORED_SUFFIXES = (".pyc",)


@dataclass
class CodeSnapshot:
    files: list[str]  # relative POSIX paths
    version: dict[str, Any] = field(default_factory=dict)  # recorded as the execution's code_version
    patch: bytes | None = None  # uncommitted changes, for git versions
    tarball: Path | None = None  # adhoc package


@contextmanager
def staged(snapshot: CodeSnapshot, parent: Path, prefix: str) -> Iterator[Path]:
    """A private folder under `parent` to build an execution's (or a version's) files in, which the
    caller renames into place: on failure it is removed, so a refused launch leaves nothing. The
    snapshot's tarball goes either way (record() has stored it, or it is not wanted)."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if snapshot.tarball:
            snapshot.tarball.unlink(missing_ok=True)


def place(staging: Path, target: Path) -> Path | None:
    """Rename a staged folder into place. A folder already there belongs to a store that was lost
    (its ids start again at 1): it is kept, moved aside as `orphaned-<name>-<time>`, and its new
    path returned so the caller can say so."""
    try:
        os.rename(staging, target)
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.exists():
            raise
    orphan = target.with_name(f"orphaned-{target.name}-{int(time.time())}")
    os.rename(target, orphan)
    os.rename(staging, target)
    return orphan


def record(snapshot: CodeSnapshot, datums: DatumStore, project_id: int) -> dict[str, Any]:
    """The code version an execution or a deployment version keeps: the snapshot's description,
    plus the datum holding its adhoc tarball or uncommitted patch, when there is one."""
    version = dict(snapshot.version)
    datum = None
    if snapshot.tarball:
        datum = datums.add(snapshot.tarball, name=f"code-{version['sha256'][:12]}.tar.gz",
                           project_id=project_id, kind="code", sha256=version["sha256"], take=True)
    elif snapshot.patch:
        with tempfile.NamedTemporaryFile(suffix=".patch") as f:
            f.write(snapshot.patch)
            f.flush()
            datum = datums.add(Path(f.name), name=f"uncommitted-{version['commit'][:12]}.patch",
                               project_id=project_id, kind="code", take=True)
    if datum:
        version["datum_id"] = datum["id"]
    return version


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=check)


@dataclass
class GitState:
    """What one `git status` says of the project's folder: enough to decide what else to ask."""

    commit: str | None  # None before the first commit
    branch: str
    changed: bool  # tracked files differ from HEAD
    untracked: bool  # files git does not track and does not ignore


def git_state(root: Path) -> GitState | None:
    """The project's git state in one call, or None when it is not in a git work tree."""
    try:
        result = _git(root, "status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all", "--", ".",
                      check=False)
    except OSError:  # no git at all
        return None
    if result.returncode != 0:
        return None
    commit, branch, changed, untracked = None, "", False, False
    for entry in result.stdout.split(b"\0"):
        if entry.startswith(b"# branch.oid "):
            oid = entry[13:].decode()
            commit = None if oid == "(initial)" else oid
        elif entry.startswith(b"# branch.head "):
            branch = entry[14:].decode()
        elif entry.startswith(b"? "):
            untracked = True
        elif entry[:2] in (b"1 ", b"2 ", b"u "):
            changed = True
    return GitState(commit, "HEAD" if branch == "(detached)" else branch, changed, untracked)


class AlwaysIgnored:
    """What is ignored when no ignore file says more: the same answers pathspec gives for these
    patterns, without importing and compiling it (a tenth of a cold launch)."""

    @staticmethod
    def match_file(path: str) -> bool:
        parts = path.split("/")
        folders = parts if path.endswith("/") else parts[:-1]
        return any(part in IGNORED_FOLDERS for part in folders) or parts[-1].endswith(IGNORED_SUFFIXES)


def _ignore_spec(root: Path, use_gitignore: bool) -> Any:
    """A matcher of ignored paths (`match_file`): .vhignore, and .gitignore outside git."""
    lines = []
    for name in [".vhignore"] + ([".gitignore"] if use_gitignore else []):
        path = root / name
        if path.is_file():
            lines += path.read_text(errors="replace").splitlines()
    if not lines:
        return AlwaysIgnored()
    import pathspec

    always = [f"{folder}/" for folder in IGNORED_FOLDERS] + [f"*{suffix}" for suffix in IGNORED_SUFFIXES]
    return pathspec.GitIgnoreSpec.from_lines(always + lines)


def list_files(root: Path, git: GitState | None) -> list[str]:
    """The project's files as Valohai would package them: git's view when in git, plus .vhignore."""
    if git is not None:
        out = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
        candidates = [p for p in out.decode().split("\0") if p]
        spec = _ignore_spec(root, use_gitignore=False)
    else:
        spec = _ignore_spec(root, use_gitignore=True)
        candidates = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [d for d in dirnames if not spec.match_file(prefix + d + "/")]
            candidates += [prefix + f for f in filenames]
    files = sorted(p for p in candidates
                   if not spec.match_file(p) and ((root / p).is_file() or (root / p).is_symlink()))
    if len(files) > MAX_FILES:
        raise VhtuiError(f"the project has {len(files)} files to package (limit {MAX_FILES}): "
                         "add what the step does not need to .vhignore")
    total = sum((root / p).lstat().st_size for p in files)
    if total > MAX_BYTES:
        raise VhtuiError(f"the project's code is {total >> 20} MB (limit {MAX_BYTES >> 20} MB): "
                         "add data files to .vhignore and pass them as inputs")
    return files


def snapshot(root: Path, adhoc: bool) -> CodeSnapshot:
    git = git_state(root)
    files = list_files(root, git)
    if not adhoc and git is not None and git.commit:
        return _git_snapshot(root, files, git)
    return _adhoc_snapshot(root, files, reason="adhoc" if adhoc else "no git commit")


def _git_snapshot(root: Path, files: list[str], git: GitState) -> CodeSnapshot:
    """The commit, plus a binary patch of what differs from it in the project's folder (tracked
    changes, and untracked files as additions); a clean tree costs no further git call."""
    patch = _git(root, "diff", "--binary", "HEAD", "--", ".").stdout if git.changed else b""
    if git.untracked:
        listed = set(files)
        untracked = _git(root, "ls-files", "-z", "--others", "--exclude-standard").stdout.decode().split("\0")
        for path in (p for p in untracked if p and p in listed):
            patch += _git(root, "diff", "--binary", "--no-index", "/dev/null", path, check=False).stdout
    version = {"type": "git", "commit": git.commit, "branch": git.branch, "dirty": bool(patch)}
    return CodeSnapshot(files=files, version=version, patch=patch or None)


def _adhoc_snapshot(root: Path, files: list[str], reason: str) -> CodeSnapshot:
    """A reproducible tarball: sorted names, fixed owners and times, so the same tree hashes the same."""
    import gzip
    import tarfile

    fd, name = tempfile.mkstemp(prefix="vhtui-adhoc-", suffix=".tar.gz")
    os.close(fd)
    digest = hashlib.sha256()
    with open(name, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=_HashingWriter(raw, digest), mode="wb", compresslevel=1, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in files:
                info = tar.gettarinfo(str(root / path), arcname=path)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    with open(root / path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    version = {"type": "adhoc", "sha256": digest.hexdigest(), "reason": reason, "files": len(files)}
    return CodeSnapshot(files=files, version=version, tarball=Path(name))


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: Any, digest: Any) -> None:
        self.raw, self.digest = raw, digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return self.raw.write(data)


def copy_tree(root: Path, files: list[str], target: Path) -> None:
    """Copy the snapshot's files into the execution's own repository directory."""
    for rel in files:
        src, dst = root / rel, target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def watch_filter(root: Path) -> Any:
    """A watchfiles filter that ignores what packaging ignores (.gitignore, .vhignore, caches)."""
    spec = _ignore_spec(root, use_gitignore=True)

    def accept(change: Any, path: str) -> bool:
        rel = Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else path
        return not spec.match_file(rel) and not any(part.startswith(".") for part in Path(rel).parts[:-1])

    return accept
