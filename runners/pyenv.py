"""Per-execution Python environments layered over the user's interpreter.

Real steps start with `pip install -r requirements.txt`, written for a throwaway container. Run
locally, that must never touch the user's own environment, yet frameworks the user already has
(torch, say) should be seen without a reinstall. So each execution runs in a virtual environment
that sees exactly the site directories of the `python3` the user had on PATH, no more: the venv is
made without `--system-site-packages` (which would show the base interpreter's packages even when
the user's python3 is a venv that hides them) and a `.pth` file adds the user's own site
directories, in their order, behind the venv's. It is keyed by that interpreter and the
requirements files, and reused: a second run with the same key installs nothing. A deployment
version also asks for its requirements to be installed when the environment is made (Valohai
builds them into an endpoint's image), so the install happens once per key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runners import RunnerError

ENV_MODES = ("venv", "current")  # a layered venv over the user's python3, or the caller's environment as is

LAYOUT = "site-dirs-2"  # part of every key: environments made the old, leaky way are not reused
_PROBE = (
    "import json, site, sys; user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []; "
    "print(json.dumps({'exe': sys.executable, 'prefix': sys.prefix, 'base_prefix': sys.base_prefix, "
    "'site': user + site.getsitepackages(), 'version': sys.version}))"
)


@dataclass(frozen=True)
class Interpreter:
    """What we learnt of the user's `python3`: enough to layer a venv over it. `site` is every site
    directory it reads, in its order: the user site when it is enabled, then its prefixes'."""

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


def environment_key(interpreter: Interpreter, repository: Path, install: Sequence[str] = ()) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([LAYOUT, interpreter.exe, interpreter.prefix, interpreter.version,
                              list(interpreter.site), list(install)]).encode())
    for path in requirement_files(repository):
        digest.update(path.relative_to(repository).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def ensure_layered_venv(python: str, repository: Path, envs_dir: Path, install: Sequence[str] = (),
                        output: Callable[[str], None] | None = None) -> Path:
    """Return a ready venv for this interpreter and these requirements, creating it once.

    `install` names requirements files of `repository` to `pip install -r` into a new venv (a
    venv is ready only once they are in); `output` is told what happens, line by line.
    """
    say = output or (lambda line: None)
    interpreter = probe(python)
    key = environment_key(interpreter, repository, install)
    envs_dir.mkdir(parents=True, exist_ok=True)
    venv = envs_dir / key
    with open(envs_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several supervisors may want the same env at once
        if (venv / ".vhtui-ready").exists():
            if install:
                say(f"reusing the environment with {', '.join(install)} installed before ({venv})")
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a crash
        began = time.monotonic()
        say(f"creating an environment over {interpreter.exe} ({venv})")
        try:
            _create(interpreter, venv)
            for name in install:
                _install(venv, repository, name, say)
        except BaseException:  # a failed install, or a stop: never a venv that looks finished
            shutil.rmtree(venv, ignore_errors=True)
            raise
        (venv / ".vhtui-ready").write_text(json.dumps({"python": interpreter.exe, "version": interpreter.version,
                                                       "installed": list(install)}))
        if install:
            say(f"environment ready in {time.monotonic() - began:.1f}s")
    return venv


def _create(interpreter: Interpreter, venv: Path) -> None:
    try:
        subprocess.run(
            [interpreter.exe, "-m", "venv", "--without-pip", str(venv)],
            capture_output=True, text=True, timeout=120, check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RunnerError(f"cannot create a virtual environment at {venv}: {exc.stderr.strip()}") from None
    vpython = venv / "bin" / "python"
    site_dir = Path(subprocess.run(
        [str(vpython), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    site_dir.mkdir(parents=True, exist_ok=True)
    # addsitedir, not a bare path, so the .pth files in the user's site directories work as there;
    # checked at each start, as the interpreter itself does, since a missing one may appear later
    (site_dir / "_vhtui_outer_env.pth").write_text(
        "".join(f"import os, site; os.path.isdir({p!r}) and site.addsitedir({p!r})\n" for p in interpreter.site))
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


def _install(venv: Path, repository: Path, name: str, say: Callable[[str], None]) -> None:
    """`pip install -r name` into `venv`, its output passed on as it comes."""
    argv = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--progress-bar", "off", "-r", name]
    say(f"pip install -r {name}")
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=repository, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          env=activation_env(venv, dict(os.environ))) as proc:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip())
                say(lines[-1])
            code = proc.wait()
        except BaseException:
            proc.kill()
            raise
    if code != 0:
        raise RunnerError(f"cannot install {name}: {pip_failure(lines)}")


def pip_failure(lines: list[str]) -> str:
    """pip's own words for what failed, which name the package: its last ERROR line, and the
    requirement it was working on when that line does not name it."""
    errors = [line.split(":", 1)[1].strip() for line in lines if line.startswith("ERROR:")]
    working = [line.split(None, 1)[1] for line in lines if line.startswith(("Collecting ", "Processing "))
               and len(line.split(None, 1)) == 2]
    message = errors[-1] if errors else next((line for line in reversed(lines) if line.strip()), "pip failed")
    if working and working[-1].split()[0].lower() not in message.lower():
        message += f" (while installing {working[-1].split()[0]})"
    return message


def activation_env(venv: Path, base_env: dict[str, str]) -> dict[str, str]:
    """The variables that make a shell use `venv` first, as `source bin/activate` would."""
    env = dict(base_env)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', os.defpath)}"
    env.pop("PYTHONHOME", None)
    return env
