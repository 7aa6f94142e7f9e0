"""Bad input to the router's settings and the deploy commands: one line on stderr that says what is
wrong, a non-zero exit, never a traceback, and nothing stored.

Arguments go to the CLI as bytes (bytes that are not UTF-8 reach Python as surrogates, as from a
shell), and what it writes is read as bytes too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_deploy import Deployed, free_port, make_project


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """A project with deployment `solo`: one version, not started, and its alias `prod`."""
    base = tmp_path_factory.mktemp("input")
    project = make_project(base / "project", base / "home")
    project.vhtui("deploy", "version", "create", "solo", "--endpoint", "static", "--adhoc", "--env", "current")
    project.vhtui("deploy", "alias", "set", "solo", "prod", "v1", "--force")
    try:
        yield project
    finally:
        project.vhtui("deploy", "stop", "--all", check=False)  # in case a refusal was not one


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("read-only")
    if os.geteuid() == 0:  # root writes through permissions, not through a read-only mount
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


LONG = b"a" * 100_000

CASES = [
    # the router's settings, from the environment and the command line
    ("read timeout not a number", [b"serve", b"--port", b"{port}"], {"VHTUI_ROUTER_READ_TIMEOUT": "abc"},
     "VHTUI_ROUTER_READ_TIMEOUT 'abc' is not a number of seconds above 0"),
    ("read timeout negative", [b"start", b"solo"], {"VHTUI_ROUTER_READ_TIMEOUT": "-5"},
     "VHTUI_ROUTER_READ_TIMEOUT '-5' is not a number of seconds above 0"),
    ("read timeout nan", [b"serve", b"--port", b"{port}"], {"VHTUI_ROUTER_READ_TIMEOUT": "nan"},
     "VHTUI_ROUTER_READ_TIMEOUT 'nan' is not a number of seconds above 0"),
    ("body limit not a size", [b"start", b"solo"], {"VHTUI_ROUTER_MAX_BODY": "lots"},
     "VHTUI_ROUTER_MAX_BODY 'lots' is not a size"),
    ("body limit zero", [b"serve", b"--port", b"{port}", b"--max-body", b"0"], {}, "--max-body '0' is not a size"),
    ("serve port too big", [b"serve", b"--port", b"99999"], {}, "--port '99999' is not a port: use 1 to 65535"),
    ("serve port negative", [b"serve", b"--port", b"-1"], {}, "--port '-1' is not a port: use 1 to 65535"),
    ("start port too big", [b"start", b"solo", b"--router-port", b"99999"], {},
     "--router-port '99999' is not a port: use 1 to 65535"),
    ("start port negative", [b"start", b"solo", b"--router-port", b"-1"], {},
     "--router-port '-1' is not a port: use 1 to 65535"),
    ("port from the environment", [b"start", b"solo"], {"VHTUI_ROUTER_PORT": "99999"},
     "VHTUI_ROUTER_PORT '99999' is not a port: use 1 to 65535"),
    # where an export is written
    ("export into a read-only folder", [b"export", b"--kubernetes", b"solo", b"-o", b"{read_only}/solo.yaml"], {},
     "cannot write {read_only}/solo.yaml: "),
    ("export under a file", [b"export", b"--kubernetes", b"solo", b"-o", b"{file}/solo.yaml"], {},
     "cannot write {file}/solo.yaml: Not a directory"),
    # names given on the command line
    ("alias not UTF-8", [b"alias", b"set", b"solo", b"pro\xff", b"v1"], {},
     "invalid alias name 'pro\\udcff': use up to 128 letters, digits, '.', '_' and '-'"),
    ("deployment not UTF-8 (alias set)", [b"alias", b"set", b"so\xfflo", b"prod", b"v1"], {},
     "invalid deployment name 'so\\udcfflo': use up to 128 letters, digits, '.', '_' and '-'"),
    ("deployment not UTF-8 (start)", [b"start", b"so\xfflo"], {},
     "invalid deployment name 'so\\udcfflo': use up to 128 letters, digits, '.', '_' and '-'"),
    ("deployment not UTF-8 (info)", [b"info", b"\xfe\xff"], {},
     "invalid deployment name '\\udcfe\\udcff': use up to 128 letters, digits, '.', '_' and '-'"),
    ("version not UTF-8 (info)", [b"info", b"solo", b"v\xff"], {},
     "invalid version name 'v\\udcff': use up to 128 letters, digits, '.', '_' and '-'"),
    ("deployment not UTF-8 (version create)", [b"version", b"create", b"so\xfflo", b"--endpoint", b"static",
                                               b"--adhoc"], {},
     "invalid deployment name 'so\\udcfflo': use up to 128 letters, digits, '.', '_' and '-'"),
    ("alias with a space", [b"alias", b"set", b"solo", b"my alias", b"v1"], {},
     "invalid alias name 'my alias': use up to 128 letters, digits, '.', '_' and '-'"),
    ("alias ending in a newline", [b"alias", b"set", b"solo", b"prod\n", b"v1", b"--force"], {},
     "invalid alias name 'prod\\n': use up to 128 letters, digits, '.', '_' and '-'"),
    ("alias with a newline", [b"alias", b"set", b"solo", b"pr\nod", b"v1", b"--force"], {},
     "invalid alias name 'pr\\nod': use up to 128 letters, digits, '.', '_' and '-'"),
    ("alias of 100k characters", [b"alias", b"set", b"solo", LONG, b"v1", b"--force"], {},
     "invalid alias name '" + "a" * 60 + "…': use up to 128 letters"),
    ("mirror to an alias of 100k characters", [b"mirror", b"solo", b"prod", LONG], {},
     "invalid alias name '" + "a" * 60 + "…': use up to 128 letters"),
]


@pytest.mark.parametrize("argv, env, message", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input_is_one_clear_line(solo: Deployed, read_only: Path, tmp_path: Path, argv: list[bytes],
                                     env: dict[str, str], message: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    places = {"{port}": str(free_port()), "{read_only}": str(read_only), "{file}": str(a_file)}
    for placeholder, value in places.items():
        argv = [arg.replace(placeholder.encode(), os.fsencode(value)) for arg in argv]
        message = message.replace(placeholder, value)
    aliases = _aliases(solo)
    result = subprocess.run([os.fsencode(sys.executable), b"-m", b"vhtui", b"deploy", *argv], cwd=solo.root,
                            env=solo.env(**{"VHTUI_ROUTER_PORT": str(solo.router_port), **env}),
                            capture_output=True, timeout=120)
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode != 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, err[:2000]
    assert lines[0].startswith("vhtui: error: ") and message in lines[0]
    assert _aliases(solo) == aliases  # nothing was stored
    assert not (solo.home / "deployments" / "router.json").exists()  # and no router started


def _aliases(project: Deployed) -> dict[str, Any]:
    return dict(json.loads(project.vhtui("deploy", "info", "solo", "--json").stdout)["aliases"])
