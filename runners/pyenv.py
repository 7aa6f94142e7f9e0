"""Per-execution Python environments layered over the user's interpreter.

Real steps start with `pip install -r requirements.txt`, written for a throwaway container. Run
locally, that must never touch the user's own environment, yet frameworks the user already has
(torch, say) should be seen without a reinstall. So each execution runs in a virtual environment
that sees the site-packages of the `python3` the user had on PATH (including an outer venv's, made
visible with a `.pth` file, since a venv made from a venv only sees the base interpreter), keyed by
that interpreter and the requirements files, and reused: a second run with the same key installs
nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runners import RunnerError

ENV_MODES = ("venv", "current")  # a layered venv over the user's python3, or the caller's environment as is

_PROBE = (
    "import json, site, sys; print(json.dumps({'exe': sys.executable, 'prefix': sys.prefix, "
    "'base_prefix': sys.base_prefix, 'site': site.getsitepackages(), 'version': sys.version}))"
)


@dataclass(frozen=True)
class Interpreter:
    """What we learnt of the user's `python3`: enough to layer a venv over it."""

    exe: str
    prefix: str
    base_prefix: str
    site: tuple[str, ...]
    version: str

    @property
    def in_venv(self) -> bool:
        return self.prefix != self.base_prefix


def probe(python: str) -> Interpreter:
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RunnerError(f"cannot run the Python interpreter {python!r}: {exc}") from None
    data = json.loads(out)
    return Interpreter(data["exe"], data["prefix"], data["base_prefix"], tuple(data["site"]), data["version"])


def requirement_files(repository: Path) -> list[Path]:
    """The files whose content decides what a step's `pip install` would bring in."""
    names = ("requirements*.txt", "requirements/*.txt", "pyproject.toml", "setup.py", "setup.cfg")
    found: set[Path] = set()
    for pattern in names:
        found.update(p for p in repository.glob(pattern) if p.is_file())
    return sorted(found)


def environment_key(interpreter: Interpreter, repository: Path) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([interpreter.exe, interpreter.prefix, interpreter.version]).encode())
    for path in requirement_files(repository):
        digest.update(path.relative_to(repository).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def ensure_layered_venv(python: str, repository: Path, envs_dir: Path) -> Path:
    """Return a ready venv for this interpreter and these requirements, creating it once."""
    interpreter = probe(python)
    key = environment_key(interpreter, repository)
    envs_dir.mkdir(parents=True, exist_ok=True)
    venv = envs_dir / key
    with open(envs_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several supervisors may want the same env at once
        if (venv / ".vhtui-ready").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a crash
        _create(interpreter, venv)
        (venv / ".vhtui-ready").write_text(json.dumps({"python": interpreter.exe, "version": interpreter.version}))
    return venv


def _create(interpreter: Interpreter, venv: Path) -> None:
    try:
        subprocess.run(
            [interpreter.exe, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
            capture_output=True, text=True, timeout=120, check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RunnerError(f"cannot create a virtual environment at {venv}: {exc.stderr.strip()}") from None
    vpython = venv / "bin" / "python"
    if interpreter.in_venv:  # make the outer venv's packages visible, behind the new venv's own
        site_dir = Path(subprocess.run(
            [str(vpython), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip())
        site_dir.mkdir(parents=True, exist_ok=True)
        (site_dir / "_vhtui_outer_env.pth").write_text("\n".join(interpreter.site) + "\n")
    has_pip = subprocess.run([str(vpython), "-c", "import pip"], capture_output=True).returncode == 0
    if has_pip:  # a seen pip installs into this venv when run by its python: no 3 s ensurepip
        for name in ("pip", "pip3"):
            shim = venv / "bin" / name
            shim.write_text(f'#!/bin/sh\nexec "{vpython}" -m pip "$@"\n')
            shim.chmod(0o755)
    else:
        result = subprocess.run([str(vpython), "-m", "ensurepip", "--default-pip"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RunnerError(f"cannot install pip into {venv}: {result.stderr.strip()[-300:]}")


def activation_env(venv: Path, base_env: dict[str, str]) -> dict[str, str]:
    """The variables that make a shell use `venv` first, as `source bin/activate` would."""
    env = dict(base_env)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', os.defpath)}"
    env.pop("PYTHONHOME", None)
    return env
