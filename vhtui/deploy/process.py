"""A version's endpoint as a server process, owned by a small detached supervisor.

Like an execution's supervisor, it runs in its own session so it outlives the CLI or TUI that
started it. It first makes the version's environment (the layered venv over the user's `python3`
with the endpoint's `requirements.txt` installed, as Valohai builds it into the endpoint's image;
reused for the same requirements; progress in `environment.log`), then starts the endpoint's
command through the local runner on the port `deploy.ports` gives it (as `PORT`, and substituted
wherever the command names the declared port), appends its output to `output.log`, stores
`vh_metadata` lines, marks the endpoint `running` once that port listens, and on SIGTERM stops the
server's whole process group. Every start that fails says why in the endpoint's `reason`: an
install that failed, a server that exited, one that listens on another port, one that needs a
declared port another version holds, one that never listened. A supervisor that died leaves its
endpoint `crashed` (see `reconcile_endpoints`), never `running` forever.

Run as `python -m vhtui.deploy.process ENDPOINT_ID [START_TIMEOUT_S]`.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runners import Runner, RunnerError, RunSpec, get_runner
from runners.pyenv import activation_env, ensure_layered_venv
from vhtui.context import Context
from vhtui.deploy.metrics import vh_metadata_in
from vhtui.deploy.ports import (Claim, claim_port, declared_port, group_ports, is_listening, names_port,
                               port_pattern)
from vhtui.errors import VhtuiError
from vhtui.store import deployments as deployment_rows
from vhtui.supervision import owner
from vhtui.supervision.detach import start_detached
from vhtui.supervision.jobscript import render_script
from vhtui.supervision.logfile import LogReader, LogWriter

WSGI_SERVER = Path(__file__).with_name("wsgi_server.py")
READY_POLL_S = 0.05
START_TIMEOUT_S = 60.0  # from the server's start, once its environment is ready
SCAN_S = 0.5  # how often a starting server's own ports are looked up in /proc
ELSEWHERE_GRACE_S = 3.0  # a server listening elsewhere may still open its port (a metrics port first)
REQUIREMENTS = "requirements.txt"  # what Valohai installs for an endpoint
ENVIRONMENT_LOG = "environment.log"
_IN_USE = re.compile(r"in use|EADDRINUSE|Errno 98", re.IGNORECASE)
_A_PORT = re.compile(r"(?<![\d.])\d{4,5}(?![\d.])")


def server_command(spec: dict[str, Any], port: int) -> str:
    """The endpoint's command with its declared port replaced by the one it was given."""
    if spec.get("wsgi"):
        lines = [f"exec python3 {WSGI_SERVER} {spec['wsgi']}"]
    else:
        pattern = port_pattern(declared_port(spec))
        lines = [pattern.sub(str(port), line) for line in spec["server_command"]]
    return render_script(lines)


class _Stopped(Exception):
    """A stop asked for while the environment was being made."""


def prefix(deployment: str, version: str, endpoint: str) -> str:
    return f"/{deployment}/{version}/{endpoint}/"


class EndpointSupervisor:
    def __init__(self, ctx: Context, endpoint_id: int, timeout: float = START_TIMEOUT_S) -> None:
        self.ctx = ctx
        self.endpoint: dict[str, Any] = deployment_rows.get_endpoint(ctx.db, endpoint_id)  # type: ignore[assignment]
        self.version: dict[str, Any] = deployment_rows.get_version_by_id(ctx.db, self.endpoint["version_id"])  # type: ignore[assignment]
        self.deployment: dict[str, Any] = deployment_rows.get_deployment_by_id(ctx.db, self.version["deployment_id"])  # type: ignore[assignment]
        self.dir = ctx.home.endpoint_dir(self.version["id"], self.endpoint["name"])
        self.timeout = timeout
        self.stop_requested = False
        self.preparing = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        if self.preparing:  # pip may take minutes: a stop ends it (the half-made venv is removed)
            raise _Stopped

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        pid, started = owner.me()
        self._update(status="starting", pid=pid, pid_started=started)
        try:
            return self._serve()
        except _Stopped:
            self._update(status="stopped", reason=None, port=None)
            return 0
        except RunnerError as exc:  # the environment, or the server could not be started
            self._update(status="crashed", reason=str(exc), port=None)
            return 1
        except BaseException as exc:
            self._update(status="crashed", reason=f"its supervisor failed: {exc!r}", port=None)
            raise

    def _serve(self) -> int:
        spec = self.endpoint["spec"]
        for name in ("inputs", "outputs", "config"):
            (self.dir / name).mkdir(exist_ok=True)
        env = self._environment()
        claim = claim_port(self.ctx, self.endpoint, self.version, self.deployment)
        script = self.dir / "config" / "server.sh"  # the job script lives with the run's config, as executions
        script.write_text(server_command(spec, claim.port))
        env.update({
            "PORT": str(claim.port), "PYTHONUNBUFFERED": "1",
            "VH_DEFAULT_PREFIX": prefix(self.deployment["name"], self.version["name"], self.endpoint["name"]),
            "VH_DEPLOYMENT": self.deployment["name"], "VH_DEPLOYMENT_VERSION": self.version["name"],
            "VH_ENDPOINT": self.endpoint["name"], "VH_REPOSITORY_DIR": str(self.dir / "repository"),
        })
        run_spec = RunSpec(
            run_id=f"endpoint-{self.endpoint['id']}", script=script, repository_dir=self.dir / "repository",
            inputs_dir=self.dir / "inputs", outputs_dir=self.dir / "outputs", config_dir=self.dir / "config",
            env=env, options={"env_mode": "current"},  # the environment is made above, with its installs
        )
        runner = server_runner(self.ctx)
        handle = runner.start(run_spec)
        self._update(runner_state=handle.state)
        log = LogWriter(self.dir / "output.log")
        ready = False
        failure: str | None = None  # why this supervisor ends a start
        stopped = False
        deadline = time.monotonic() + self.timeout
        next_scan, elsewhere_since = 0.0, None
        for chunk in runner.stream(handle, tick=READY_POLL_S):
            if chunk.data:
                regions = log.write(chunk.stream, chunk.data)
                if chunk.stream == "stdout" and (events := vh_metadata_in(regions)):
                    now = time.time()
                    deployment_rows.add_metadata(self.ctx.db, self.endpoint["id"], [(now, e) for e in events])
            if not ready and failure is None and not stopped:
                if is_listening(claim.port):
                    ready = True
                    self._update(status="running")
                elif (now_m := time.monotonic()) >= next_scan:
                    next_scan = now_m + SCAN_S
                    elsewhere = group_ports(handle.state["pgid"])
                    elsewhere_since = (elsewhere_since or now_m) if elsewhere else None
                    if elsewhere_since is not None and now_m - elsewhere_since > ELSEWHERE_GRACE_S:
                        failure = self._elsewhere(claim, elsewhere)
                    elif now_m > deadline:
                        failure = (f"did not listen on its port {claim.port} within {self.timeout:g}s "
                                   f"({_ports_phrase(elsewhere)}){self._held_hint(claim)}")
                if failure:
                    runner.stop(handle, grace=self.ctx.settings.stop_grace)
            if self.stop_requested:
                self.stop_requested = False
                stopped = True
                if failure is None:
                    self._update(status="stopping")
                runner.stop(handle, grace=self.ctx.settings.stop_grace)
        log.close()
        code = runner.wait(handle)
        if failure:
            self._update(status="crashed", port=None, reason=failure)
        elif stopped or self.endpoint_status() == "stopping":
            self._update(status="stopped", reason=None, port=None)
        else:
            self._update(status="crashed", port=None, reason=self._exit_reason(code, ready, claim))
        return 0

    def _environment(self) -> dict[str, str]:
        """The variables that put the server in its version's environment (none for `--env current`)."""
        if self.version["env_mode"] == "current":
            return {}
        repository = self.dir / "repository"
        install = [REQUIREMENTS] if (repository / REQUIREMENTS).is_file() else []
        with open(self.dir / ENVIRONMENT_LOG, "w", buffering=1, errors="replace") as progress:
            self.preparing = True
            try:
                if self.stop_requested:
                    raise _Stopped
                venv = ensure_layered_venv("python3", repository, self.ctx.home.envs, install,
                                           output=lambda line: print(line, file=progress))
            except RunnerError as exc:
                raise RunnerError(f"{exc} (pip's output: {self.dir / ENVIRONMENT_LOG})") from None
            finally:
                self.preparing = False
        os.environ.pop("PYTHONHOME", None)  # as `activate` does; the runner starts from this environment
        return activation_env(venv, {"PATH": os.environ.get("PATH", os.defpath)})

    def _elsewhere(self, claim: Claim, ports: set[int]) -> str:
        if claim.port == claim.declared:
            how = "its declared port, also given as $PORT"
        elif claim.holder:
            how = f"given as $PORT, since its declared port {claim.declared} is held by {claim.holder}"
        elif not self.endpoint["spec"].get("wsgi") and names_port(self.endpoint["spec"], claim.declared):
            how = f"given as $PORT and in its command in place of {claim.declared}"
        else:
            how = "given as $PORT"
        return f"listens on {_numbers(ports)}, not on its port {claim.port} ({how})"

    def _held_hint(self, claim: Claim) -> str:
        return f"; its declared port {claim.declared} is held by {claim.holder}" if claim.holder else ""

    def _exit_reason(self, code: int | None, ready: bool, claim: Claim) -> str:
        last = self._last_error()
        reason = f"exited with code {code} {'while serving' if ready else 'at start'}" + (f": {last}" if last else "")
        commands = " ".join(self.endpoint["spec"].get("server_command") or [])
        if not ready and claim.holder and _IN_USE.search(self._log_text()) and not _A_PORT.search(commands):
            # it binds a port it does not name (its declared one, as on Valohai), which is taken
            return (f"listens on {claim.declared}, which {claim.holder} holds; servers that read $PORT run "
                    f"side by side (it {reason})")
        return reason

    def endpoint_status(self) -> str:
        row = deployment_rows.get_endpoint(self.ctx.db, self.endpoint["id"])
        return row["status"] if row else "stopped"

    def _lines(self) -> list[str]:
        return [line.decode(errors="replace").strip()
                for _, _, line in LogReader(self.dir / "output.log").read_lines(0) if line.strip()]

    def _log_text(self) -> str:
        return "\n".join(self._lines()[-50:])

    def _last_error(self) -> str:
        lines = self._lines()
        return lines[-1] if lines else ""

    def _update(self, **fields: Any) -> None:
        deployment_rows.update_endpoint(self.ctx.db, self.endpoint["id"], **fields)


def _numbers(ports: set[int]) -> str:
    return ", ".join(str(p) for p in sorted(ports))


def _ports_phrase(ports: set[int]) -> str:
    return f"it listens on {_numbers(ports)}" if ports else "it listens on no port"


def server_runner(ctx: Context) -> Runner:
    """Endpoint servers run as local processes on this host, each in its own /valohai as executions
    are (their files there, the rest of the store out of sight)."""
    return get_runner("local", envs_dir=ctx.home.envs, state_dir=ctx.home.root,
                      sandbox=ctx.settings.local_sandbox)


# -- control, from the CLI and the TUI ------------------------------------------------------------
def start_endpoint(ctx: Context, endpoint: dict[str, Any], timeout: float = START_TIMEOUT_S) -> None:
    """Hand an endpoint to a new detached supervisor, which records its own pid and port and
    gives the server `timeout` seconds to listen once its environment is ready."""
    deployment_rows.update_endpoint(ctx.db, endpoint["id"], status="starting", pid=None, pid_started=None,
                                    runner_state=None, port=None, reason=None, started_at=time.time())
    directory = ctx.home.endpoint_dir(endpoint["version_id"], endpoint["name"])
    (directory / ENVIRONMENT_LOG).unlink(missing_ok=True)  # what a follower reads is this start's
    start_detached("vhtui.deploy.process", [str(endpoint["id"]), repr(float(timeout))], directory / "supervisor.log",
                   ctx.home.root)


def wait_settled(ctx: Context, endpoint_ids: list[int], timeout: float,
                 progress: Callable[[dict[str, Any], str], None] | None = None) -> list[dict[str, Any]]:
    """Wait until each endpoint is running or has ended; a supervisor that died reads `crashed`.

    Time spent making an environment (installs can take minutes) does not count against
    `timeout`; `progress` is given each line of that work as it comes, with its endpoint.
    """
    deadline = time.monotonic() + timeout
    read: dict[int, int] = {}
    while True:
        reconcile_endpoints(ctx)
        rows = [deployment_rows.get_endpoint(ctx.db, i) for i in endpoint_ids]
        if progress:
            for row in rows:
                if row:
                    _follow_environment(ctx, row, read, progress)
        if any(r and r["status"] == "starting" and not r["runner_state"] for r in rows):
            deadline = max(deadline, time.monotonic() + timeout)  # still making its environment
        if all(r and r["status"] not in ("starting", "stopping") for r in rows) or time.monotonic() > deadline:
            return rows  # type: ignore[return-value]
        time.sleep(0.05)


def _follow_environment(ctx: Context, endpoint: dict[str, Any], read: dict[int, int],
                        progress: Callable[[dict[str, Any], str], None]) -> None:
    path = ctx.home.endpoint_dir(endpoint["version_id"], endpoint["name"]) / ENVIRONMENT_LOG
    try:
        with open(path, "rb") as f:
            f.seek(read.get(endpoint["id"], 0))
            data = f.read()
    except FileNotFoundError:
        return
    whole = data[:data.rfind(b"\n") + 1]
    read[endpoint["id"]] = read.get(endpoint["id"], 0) + len(whole)
    for line in whole.decode(errors="replace").splitlines():
        progress(endpoint, line)


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
        timeout = float(argv[1]) if len(argv) > 1 else START_TIMEOUT_S
        return EndpointSupervisor(ctx, int(argv[0]), timeout).run()
    except VhtuiError as exc:
        print(f"vhtui: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
