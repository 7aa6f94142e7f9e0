"""A real runner agent for tests: `vhtui runner serve` as a subprocess on a loopback port (or in a
network namespace), with its own token and state folder, that a test can kill and restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from runners.processes import is_running

TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    def __init__(self, root: Path, host: str = "127.0.0.1", prefix: list[str] | None = None,
                 backend: str = "local", slots: int = 2, gpus: str = "0", extra: list[str] | None = None,
                 verify: str | bool = True) -> None:
        self.root = root
        self.host = host
        self.port = free_port()
        self.prefix = prefix or []  # e.g. ["ip", "netns", "exec", NAME]
        self.backend, self.slots, self.gpus = backend, slots, gpus
        self.extra = extra or []  # more `runner serve` options (caps, TLS)
        self.verify = verify  # the CA file when serving TLS
        self.token_file = root / "token"
        root.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(TOKEN)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if '--tls-cert' in self.extra else 'http'}://{self.host}:{self.port}"

    def start(self) -> Agent:
        log = open(self.root / "agent.log", "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "vhtui", "runner", "serve", "--host", self.host, "--port",
             str(self.port), "--token-file", str(self.token_file), "--state-dir", str(self.root / "state"),
             "--backend", self.backend, "--slots", str(self.slots), "--gpus", self.gpus, *self.extra],
            stdout=log, stderr=log, env=dict(os.environ, VHTUI_HOME=str(self.root / "home"),  # the host's
                                             PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"))
        deadline = time.monotonic() + 30
        while True:
            try:
                token = self.token_file.read_text().strip()
                if httpx.get(f"{self.url}/v1/host", headers={"Authorization": f"Bearer {token}"},
                             timeout=2, verify=ssl.create_default_context(cafile=self.verify)
                             if isinstance(self.verify, str) else self.verify).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the agent did not start: {(self.root / 'agent.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop_all(self) -> None:
        """Kill the agent and every run it left (keepers run in sessions of their own)."""
        self.kill()
        runs = self.root / "state" / "runs"
        for keeper in runs.glob("*/keeper.json") if runs.exists() else []:
            try:
                record = json.loads(keeper.read_text())
                if is_running(record["pid"], record["start"]) and record["start"] is not None:
                    os.killpg(record["pid"], signal.SIGKILL)  # only the keeper it names, never a reused pid
            except (ProcessLookupError, PermissionError, KeyError, ValueError, TypeError):
                pass
