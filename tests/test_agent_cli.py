"""Bad input to `vhtui runner serve`, `runner add` and a damaged runners.json: one clear line on
stderr and a non-zero exit, never a traceback (and never an agent left serving)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.agent_helper import TOKEN, free_port
from tests.conftest import Project


def _garbage(tmp: Path, name: str) -> str:
    path = tmp / name
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return str(path)


def _a_file(tmp: Path, _: ExitStack) -> list[str]:
    (tmp / "a-file").write_text("x")
    return ["--state-dir", str(tmp / "a-file")]


def _read_only(tmp: Path, cleanup: ExitStack) -> list[str]:
    folder = tmp / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes through mode bits: a read-only mount it is
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
        cleanup.callback(subprocess.run, ["umount", "-l", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        cleanup.callback(folder.chmod, 0o755)
    return ["--state-dir", str(folder / "state")]


def _port_in_use(tmp: Path, cleanup: ExitStack) -> list[str]:
    taken = cleanup.enter_context(socket.socket())
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return ["--port", str(taken.getsockname()[1])]


BAD_SERVE: list[tuple[str, Callable[[Path, ExitStack], list[str]], str]] = [
    ("slots-0", lambda t, c: ["--slots", "0"], "--slots"),
    ("slots-negative", lambda t, c: ["--slots", "-3"], "--slots"),
    ("slots-not-a-number", lambda t, c: ["--slots", "many"], "--slots"),
    ("max-upload-negative", lambda t, c: ["--max-upload-mb", "-1"], "--max-upload-mb"),
    ("max-upload-nan", lambda t, c: ["--max-upload-mb", "nan"], "--max-upload-mb"),
    ("max-files-0", lambda t, c: ["--max-files", "0"], "--max-files"),
    ("port-too-big", lambda t, c: ["--port", "99999"], "--port"),
    ("port-negative", lambda t, c: ["--port", "-1"], "--port"),
    ("port-in-use", _port_in_use, "cannot listen on 127.0.0.1:"),
    ("header-timeout-0", lambda t, c: ["--header-timeout", "0"], "--header-timeout"),
    ("body-timeout-inf", lambda t, c: ["--body-timeout", "inf"], "--body-timeout"),
    ("max-connections-0", lambda t, c: ["--max-connections", "0"], "--max-connections"),
    ("tls-garbage", lambda t, c: ["--tls-cert", _garbage(t, "cert.pem"), "--tls-key", _garbage(t, "key.pem")],
     "cannot use the TLS certificate"),
    ("tls-missing", lambda t, c: ["--tls-cert", str(t / "none.pem"), "--tls-key", str(t / "none.key")],
     "cannot use the TLS certificate"),
    ("state-dir-a-file", _a_file, "cannot use the state folder"),
    ("state-dir-read-only", _read_only, "cannot use the state folder"),
    ("backend-unknown", lambda t, c: ["--backend", "kubernetes"], "unknown backend"),
]


@pytest.fixture
def cleanup() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vhtui: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("args, says", [(a, s) for _, a, s in BAD_SERVE], ids=[i for i, _, _ in BAD_SERVE])
def test_bad_input_to_runner_serve_is_one_line(tmp_path: Path, cleanup: ExitStack,
                                               args: Callable[[Path, ExitStack], list[str]], says: str) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    command = [sys.executable, "-m", "vhtui", "runner", "serve", "--token-file", str(token), "--port",
               str(free_port()), "--state-dir", str(tmp_path / "state"), *args(tmp_path, cleanup)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,  # a hang guard: it must not serve
                            env=dict(os.environ, VHTUI_HOME=str(tmp_path / "home")))
    assert says in _one_line_error(result)


def test_a_garbage_ca_file_is_refused_by_runner_add(project: Project, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    result = project.vhtui("runner", "add", "box", "https://127.0.0.1:8750", "--token-file", str(token),
                           "--ca-file", _garbage(tmp_path, "ca.pem"), check=False)
    assert "CA file" in _one_line_error(result)
    assert "box" not in project.vhtui("runner", "ls").stdout


@pytest.mark.parametrize("content", ["null", "[]", '["box"]', '{"box": {}}', '{"box": "http://x"}',
                                     '{"box": {"url": 3, "token_file": null}}'])
def test_a_runners_file_of_the_wrong_shape_is_one_line(project: Project, content: str) -> None:
    project.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (project.home / "runners.json").write_text(content)
    result = project.vhtui("runner", "ls", check=False)
    assert "runners.json" in _one_line_error(result)
