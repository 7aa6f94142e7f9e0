"""A version's endpoint as a server process, owned by a small detached supervisor.

Like an execution's supervisor, it runs in its own session so it outlives the CLI or TUI that
started it; it starts the endpoint's command through the local runner on a free loopback port
(given as `PORT`, and substituted wherever the command names the declared port), appends its
output to `output.log`, stores `vh_metadata` lines, marks the endpoint `running` once the port
accepts connections, and on SIGTERM stops the server's whole process group. A supervisor that
died leaves its endpoint `crashed` (see `reconcile_endpoints`), never `running` forever.

Run as `python -m vhtui.deploy.process ENDPOINT_ID`.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from runners import Runner, RunnerError, RunSpec, get_runner
from vhtui.context import Context
from vhtui.deploy.metrics import vh_metadata_in
from vhtui.errors import VhtuiError
from vhtui.store import deployments as deployment_rows
from vhtui.supervision import owner
from vhtui.supervision.detach import start_detached
from vhtui.supervision.jobscript import render_script
from vhtui.supervision.logfile import LogReader, LogWriter

WSGI_SERVER = Path(__file__).with_name("wsgi_server.py")
READY_POLL_S = 0.05
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A port nothing listens on now; the endpoint binds it a moment later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def server_command(spec: dict[str, Any], port: int) -> str:
    """The endpoint's command with its declared port replaced by the one it was given."""
    if spec.get("wsgi"):
        lines = [f"exec python3 {WSGI_SERVER} {spec['wsgi']}"]
    else:
        lines = list(spec["server_command"])
        if spec.get("port"):
            lines = [re.sub(rf"(?<![\d.]){spec['port']}(?!\d)", str(port), line) for line in lines]
    return render_script(lines)


def prefix(deployment: str, version: str, endpoint: str) -> str:
    return f"/{deployment}/{version}/{endpoint}/"


class EndpointSupervisor:
    def __init__(self, ctx: Context, endpoint_id: int) -> None:
        self.ctx = ctx
        self.endpoint: dict[str, Any] = deployment_rows.get_endpoint(ctx.db, endpoint_id)  # type: ignore[assignment]
        self.version: dict[str, Any] = deployment_rows.get_version_by_id(ctx.db, self.endpoint["version_id"])  # type: ignore[assignment]
        self.deployment = deployment_rows.get_deployment_by_id(ctx.db, self.version["deployment_id"])
        self.dir = ctx.home.endpoint_dir(self.version["id"], self.endpoint["name"])
        self.stop_requested = False
        self.timed_out = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        port = free_port()
        spec = self.endpoint["spec"]
        script = self.dir / "server.sh"
        script.write_text(server_command(spec, port))
        for name in ("inputs", "outputs", "config"):
            (self.dir / name).mkdir(exist_ok=True)
        env = {
            "PORT": str(port), "PYTHONUNBUFFERED": "1",
            "VH_DEFAULT_PREFIX": prefix(self.deployment["name"], self.version["name"], self.endpoint["name"]),  # type: ignore[index]
            "VH_DEPLOYMENT": self.deployment["name"], "VH_DEPLOYMENT_VERSION": self.version["name"],  # type: ignore[index]
            "VH_ENDPOINT": self.endpoint["name"], "VH_REPOSITORY_DIR": str(self.dir / "repository"),
        }
        run_spec = RunSpec(
            run_id=f"endpoint-{self.endpoint['id']}", script=script, repository_dir=self.dir / "repository",
            inputs_dir=self.dir / "inputs", outputs_dir=self.dir / "outputs", config_dir=self.dir / "config",
            env=env, options={"env_mode": self.version["env_mode"], "python": sys.executable if
                              self.version["env_mode"] == "current" else "python3"},
        )
        runner = server_runner(self.ctx)
        pid, started = owner.me()
        self._update(status="starting", port=port, pid=pid, pid_started=started)
        try:
            handle = runner.start(run_spec)
        except RunnerError as exc:
            self._update(status="crashed", reason=str(exc))
            return 1
        self._update(runner_state=handle.state)
        log = LogWriter(self.dir / "output.log")
        ready = False
        deadline = time.monotonic() + START_TIMEOUT_S
        for chunk in runner.stream(handle, tick=READY_POLL_S):
            if chunk.data:
                regions = log.write(chunk.stream, chunk.data)
                if chunk.stream == "stdout" and (events := vh_metadata_in(regions)):
                    now = time.time()
                    deployment_rows.add_metadata(self.ctx.db, self.endpoint["id"], [(now, e) for e in events])
            if not ready and port_open(port):
                ready = True
                self._update(status="running")
            if self.stop_requested:
                self._update(status="stopping")
                runner.stop(handle, grace=self.ctx.settings.stop_grace)
                self.stop_requested = False
            if not ready and time.monotonic() > deadline:
                self.stop_requested = True
                self.timed_out = True
        log.close()
        code = runner.wait(handle)
        status = self.endpoint_status()
        if status == "stopping":
            self._update(status="stopped", reason=None, port=None)
        elif self.timed_out:
            self._update(status="crashed", port=None,
                         reason=f"did not listen on its port within {START_TIMEOUT_S:.0f}s")
        else:
            when = "at start" if not ready else "while serving"
            self._update(status="crashed", port=None,
                         reason=f"exited with code {code} {when}{self._last_error()}")
        return 0

    def endpoint_status(self) -> str:
        row = deployment_rows.get_endpoint(self.ctx.db, self.endpoint["id"])
        return row["status"] if row else "stopped"

    def _last_error(self) -> str:
        lines = [line for _, _, line in LogReader(self.dir / "output.log").read_lines(0) if line.strip()]
        return f": {lines[-1].decode(errors='replace').strip()}" if lines else ""

    def _update(self, **fields: Any) -> None:
        deployment_rows.update_endpoint(self.ctx.db, self.endpoint["id"], **fields)


def server_runner(ctx: Context) -> Runner:
    """Endpoint servers run as local processes on this host."""
    return get_runner("local", envs_dir=ctx.home.envs)


# -- control, from the CLI and the TUI ------------------------------------------------------------
def start_endpoint(ctx: Context, endpoint: dict[str, Any]) -> None:
    """Hand an endpoint to a new detached supervisor, which records its own pid and port."""
    deployment_rows.update_endpoint(ctx.db, endpoint["id"], status="starting", pid=None, pid_started=None,
                                    runner_state=None, port=None, reason=None, started_at=time.time())
    directory = ctx.home.endpoint_dir(endpoint["version_id"], endpoint["name"])
    start_detached("vhtui.deploy.process", [str(endpoint["id"])], directory / "supervisor.log", ctx.home.root)


def wait_settled(ctx: Context, endpoint_ids: list[int], timeout: float) -> list[dict[str, Any]]:
    """Wait until each endpoint is running or has ended; a supervisor that died reads `crashed`."""
    deadline = time.monotonic() + timeout
    while True:
        reconcile_endpoints(ctx)
        rows = [deployment_rows.get_endpoint(ctx.db, i) for i in endpoint_ids]
        if all(r and r["status"] not in ("starting", "stopping") for r in rows) or time.monotonic() > deadline:
            return rows  # type: ignore[return-value]
        time.sleep(0.05)


def stop_endpoint(ctx: Context, endpoint: dict[str, Any]) -> None:
    if endpoint["status"] not in deployment_rows.ACTIVE_STATUSES:
        return
    if owner.alive(endpoint["pid"], endpoint["pid_started"]):
        deployment_rows.update_endpoint(ctx.db, endpoint["id"], status="stopping")
        owner.signal_owner(endpoint["pid"], endpoint["pid_started"], signal.SIGTERM)
    else:
        _abandon(ctx, endpoint, "stopped", None)


def reconcile_endpoints(ctx: Context) -> None:
    """An endpoint whose supervisor is gone is `crashed`, and what its server left is ended."""
    now = time.time()
    for endpoint in deployment_rows.active_endpoints(ctx.db):
        reason = owner.dead_owner_reason(endpoint["pid"], endpoint["pid_started"], endpoint["started_at"] or 0,
                                         None, now)
        if reason:
            _abandon(ctx, endpoint, "crashed", reason)


def _abandon(ctx: Context, endpoint: dict[str, Any], status: str, reason: str | None) -> None:
    if endpoint["runner_state"]:
        server_runner(ctx).abandon(endpoint["runner_state"])
    deployment_rows.update_endpoint(ctx.db, endpoint["id"], status=status, reason=reason, port=None)


def main(argv: list[str]) -> int:
    ctx = Context.open()
    try:
        return EndpointSupervisor(ctx, int(argv[0])).run()
    except VhtuiError as exc:
        print(f"vhtui: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
