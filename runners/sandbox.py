"""A local run's own `/valohai`: a private mount namespace per run, made by bubblewrap.

Real Valohai scripts write `/valohai/outputs/x` and read `/valohai/config/execution.json`. A local
run sees the host as it is (the user's files, GPUs, the layered venv), plus a `/valohai` that exists
in its own mount namespace only: nothing is ever created at `/valohai` on the host, and no root is
needed. bubblewrap (Debian's `bubblewrap`) builds that namespace: unprivileged through a user
namespace, or directly when vhtui runs as root. It is a small audited tool that does exactly this,
where hand-made `unshare` and bind mounts would have to rebuild a root directory themselves.

Inside, inputs and the run's config are mounted read-only (so the files there may be links to
stored content), the store itself is hidden behind an empty folder, the run has its own process
namespace (it cannot reach the store through another process's /proc entry, and nothing it starts
outlives it), and a minimal /dev holds only the GPU devices. As root it keeps Docker's default
capabilities, none of those that could undo a mount. Where bubblewrap is missing or the kernel
forbids namespaces, `unavailable()` says why and the local runner runs as before, at real paths.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from runners import VALOHAI_FOLDERS as FOLDERS

ROOT = "/valohai"
_READ_ONLY = ("inputs", "config")
_SKIPPED = {"proc", "dev", "sys", "tmp", ROOT.strip("/")}  # made anew or bound below
_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd", "/dev/infiniband")
# Docker's default set for a root container, less MKNOD (there is no device cgroup here)
_ROOT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                      "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")


def wrap(command: Sequence[str], folders: dict[str, Path], hidden: Sequence[Path] = (),
         reachable: Sequence[Path] = ()) -> list[str]:
    """The argv that runs `command` with `folders` (repository, inputs, outputs, config) at
    /valohai/*, `hidden` folders emptied and `reachable` ones (inside a hidden one) kept."""
    args = [_bwrap(), "--tmpfs", "/"]
    for entry in sorted(os.scandir("/"), key=lambda e: e.name):
        if entry.name in _SKIPPED:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry.path), entry.path]
        else:
            args += ["--bind", entry.path, entry.path]
    args += ["--ro-bind", "/sys", "/sys", "--dev", "/dev", "--proc", "/proc", "--bind", "/tmp", "/tmp"]
    for pattern in _DEVICES:
        for device in sorted(glob.glob(pattern)):
            args += ["--dev-bind", device, device]
    for path in hidden:
        args += ["--tmpfs", str(path)]
    for path in reachable:
        if path.exists():
            args += ["--bind", str(path), str(path)]
    args += ["--dir", ROOT]
    for name, seen_at in FOLDERS.items():
        args += ["--ro-bind" if name in _READ_ONLY else "--bind", str(folders[name]), seen_at]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"] + [arg for cap in _ROOT_CAPABILITIES for arg in ("--cap-add", f"CAP_{cap}")]
    args += ["--unshare-pid", "--die-with-parent", "--chdir", FOLDERS["repository"], "--"]
    # bubblewrap's own process ignores a stop's SIGTERM (it would die and leave the command
    # behind); the command gets SIGTERM's default handling back, so it can trap it as before
    return args + [_env(), "--default-signal=TERM", *command]


def ignore_stop_signal() -> None:
    """Between fork and exec of bubblewrap: see `wrap`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


PROBE_FILE = "sandbox-probe.json"


@functools.cache
def unavailable(remember_in: Path | None = None) -> str | None:
    """None when a sandbox can be made here; otherwise why not, in a few words.

    The answer is a real sandbox made around `true` (about 15 ms, twice that on a busy machine),
    asked once per process and, with `remember_in` (a folder runs never see), remembered there
    until the machine boots again or bubblewrap changes, so a launch does not pay for it.
    """
    if remember_in is None:
        return _probe()
    key = _probe_key()
    path = remember_in / PROBE_FILE
    try:
        remembered = json.loads(path.read_text())
        if remembered["key"] == key:
            return remembered["problem"]  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    problem = _probe()
    try:
        remember_in.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{PROBE_FILE}.{os.getpid()}")
        scratch.write_text(json.dumps({"key": key, "problem": problem}))
        scratch.replace(path)
    except OSError:
        pass  # asked again next time
    return problem


def _probe_key() -> str:
    """What the probe's answer depends on: this boot (sysctls), this user, bubblewrap and env."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "?"
    parts = [boot, str(os.geteuid())]
    for tool in ("bwrap", "env"):
        found = shutil.which(tool)
        parts.append(f"{found}@{os.stat(found).st_mtime_ns}" if found else "-")
    return ":".join(parts)


def _probe() -> str | None:
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed"
    if not _env():
        return "env is not installed"
    with tempfile.TemporaryDirectory(prefix="vhtui-sandbox-probe-") as scratch:
        folders = {name: Path(scratch) for name in FOLDERS}
        try:
            result = subprocess.run(wrap(["true"], folders), capture_output=True, text=True, timeout=30,
                                    stdin=subprocess.DEVNULL, preexec_fn=ignore_stop_signal)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap cannot run: {exc}"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"bubblewrap cannot make a namespace here ({lines[-1] if lines else f'exit {result.returncode}'})"
    return None


@functools.cache
def _bwrap() -> str:
    return shutil.which("bwrap") or "bwrap"


@functools.cache
def _env() -> str:
    """coreutils' env, which can reset a signal's handling (8.31 or later)."""
    path = shutil.which("env")
    if not path:
        return ""
    probe = subprocess.run([path, "--default-signal=TERM", "true"], capture_output=True)
    return path if probe.returncode == 0 else ""
