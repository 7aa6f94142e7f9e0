"""The layered venv sees exactly what the user's `python3` sees, plus what the step installs.

Real interpreters, real venvs and real executions through the CLI; the packages are tiny wheels
written here, so nothing reaches a network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import Project

PROBE_STEP = """
- step:
    name: probe
    image: python:3.11
    command:
      - python probe.py
"""

PROBE = """
import importlib.util, json, sys
names = sys.argv[1:] or {names!r}
print(json.dumps({{"seen": {{n: importlib.util.find_spec(n) is not None for n in names}}}}))
"""


def write_wheel(directory: Path, name: str, version: str, body: str = "VALUE = 42\n") -> Path:
    """A minimal pure-Python wheel (a zip with a dist-info), so installs need no network."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", body)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return wheel


def unpack_into(site_dir: Path, wheel: Path) -> None:
    """Install a pure wheel the way pip lays it out: its contents in a site directory."""
    site_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site_dir)


def base_interpreter() -> Path:
    """The interpreter every venv here is made from (the base of the one running the tests)."""
    return Path(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable)


def site_of(python: Path, env: dict[str, str] | None = None) -> list[str]:
    code = "import json, site; print(json.dumps(site.getsitepackages()))"
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                     env=env).stdout)


def sees(python: Path, names: list[str], env: dict[str, str]) -> dict[str, bool]:
    code = PROBE.format(names=names)
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out)["seen"]


def probe_execution(project: Project, names: list[str], **env: str) -> dict[str, bool]:
    project.write("valohai.yaml", PROBE_STEP)
    project.write("probe.py", PROBE.format(names=names))
    counter = project.run("probe", **env)
    doc = project.wait(counter, timeout=120)
    log = project.logs(counter)
    assert doc["status"] == "complete", log
    return json.loads(next(line for line in log.splitlines() if line.startswith('{"seen"')))["seen"]


def a_base_only_package(base: Path) -> str | None:
    """A package in the base interpreter's global site-packages (not pip's own), if it has one."""
    for site_dir in site_of(base):
        for entry in sorted(Path(site_dir).glob("*/__init__.py")):
            name = entry.parent.name
            if name.isidentifier() and name not in ("pip", "setuptools", "pkg_resources", "_distutils_hack"):
                return name
    return None


def test_a_venv_python3_that_hides_system_packages_hides_them_from_executions(project: Project,
                                                                             tmp_path: Path) -> None:
    base = base_interpreter()
    user_venv = tmp_path / "user-venv"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(user_venv)], check=True)
    assert "include-system-site-packages = false" in (user_venv / "pyvenv.cfg").read_text()
    wheels = tmp_path / "wheels"
    # the base interpreter sees a package in its user site (PYTHONUSERBASE), the user's venv one of its own
    user_base = tmp_path / "userbase"
    purelib = sysconfig.get_path("purelib", "posix_user", {"userbase": str(user_base)})
    unpack_into(Path(purelib), write_wheel(wheels, "vhtui_base_user_pkg", "1.0"))
    unpack_into(Path(site_of(user_venv / "bin" / "python")[0]), write_wheel(wheels, "vhtui_venv_pkg", "1.0"))
    names = ["vhtui_base_user_pkg", "vhtui_venv_pkg"]
    global_only = a_base_only_package(base)  # such as requests, as in the issue, where the base has one
    if global_only:
        names.append(global_only)
    env = {"PATH": f"{user_venv / 'bin'}:/usr/bin:/bin", "PYTHONUSERBASE": str(user_base)}
    # what each interpreter itself sees: the leak is there to be had
    assert sees(base, names, env) == {**{n: True for n in names}, "vhtui_venv_pkg": False}
    assert sees(user_venv / "bin" / "python", names, env) == {**{n: False for n in names}, "vhtui_venv_pkg": True}
    # an execution sees exactly what the user's python3 (the venv) sees
    assert probe_execution(project, names, **env) == sees(user_venv / "bin" / "python", names, env)


def test_an_executions_python3_keeps_what_a_plain_interpreter_sees(project: Project, tmp_path: Path) -> None:
    """The other side: the user's python3 is the base itself; its user site is seen as it sees it."""
    base = base_interpreter()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(base)
    user_base = tmp_path / "userbase"
    purelib = sysconfig.get_path("purelib", "posix_user", {"userbase": str(user_base)})
    unpack_into(Path(purelib), write_wheel(tmp_path / "wheels", "vhtui_base_user_pkg", "1.0"))
    names = ["vhtui_base_user_pkg"] + ([pkg] if (pkg := a_base_only_package(base)) else [])
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONUSERBASE": str(user_base)}
    assert sees(base, names, env) == {n: True for n in names}
    assert probe_execution(project, names, **env) == {n: True for n in names}
