"""The remote runner: runs on another host's runner agent (runners/agent.py), through httpx.

The caller's supervisor stays on the control host. This runner ships the run's code, inputs and
config to the agent as one tar stream, starts it, follows its output from a byte offset (so a cut
link or an agent restart resumes exactly where it left off: no line lost, none twice), brings the
outputs home when it ends, and can find a run again after the caller itself restarted.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runners import OutputChunk, RunHandle, RunLost, RunnerError, RunSpec, frames, register
from runners.archive import BadArchive, Caps, ChunkReader, extract, pack

READ_TIMEOUT_S = 5.0  # the agent sends a keepalive every second: this much silence is a dead link
LIVE_OUTPUTS_S = 2.0  # how often read-only (final) outputs are brought home during a run
LOST_AFTER_S = 300.0  # out of contact this long: the run is given up as lost
ACTIVE = ("uploaded", "starting", "queued", "running")


class RemoteRunner:
    kind = "remote"
    uses_host_slots = False  # the agent's host has slots of its own
    protects_inputs = True  # they are packed and sent; the command sees the agent's copy
    resumable = True

    def __init__(self, url: str, token: str, name: str | None = None, verify: Any = True,
                 lost_after: float = LOST_AFTER_S, **_: Any) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.token = token
        self.verify = verify
        self.lost_after = lost_after
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                        timeout=httpx.Timeout(30.0, read=READ_TIMEOUT_S), verify=self.verify)
        return self._client

    def call(self, method: str, path: str, **options: Any) -> Any:
        """One request; every failure becomes a one-line RunnerError naming the agent."""
        import httpx

        try:
            response = self.client.request(method, path, **options)
        except httpx.TransportError as exc:
            raise RunnerError(f"cannot reach the runner agent {self.name} at {self.url}: "
                              f"{str(exc) or type(exc).__name__}") from None
        _raise_for(response, self)
        return response

    # -- the contract -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        try:
            return {"health": "ok", **self.call("GET", "/v1/host").json()}
        except RunnerError as exc:
            return {"health": str(exc), "gpus": []}

    def preflight(self, image: str | None, gpus: int) -> None:
        host = self.health()
        if host["health"] != "ok":
            raise RunnerError(host["health"])
        if gpus > len(host["gpus"]):
            raise RunnerError(f"this step asks for {gpus} GPU(s); runner {self.name} has {len(host['gpus'])}")

    def visible_paths(self, spec_dirs: dict[str, Path], run_id: str = "") -> dict[str, str]:
        layout = self.call("GET", "/v1/layout").json()
        if layout.get("folders"):
            return {name: layout["folders"][name] for name in spec_dirs}
        return {name: f"{layout['runs_dir']}/{run_id}/{name}" for name in spec_dirs}

    def start(self, spec: RunSpec) -> RunHandle:
        bundle = pack({"repository": spec.repository_dir, "inputs": spec.inputs_dir, "config": spec.config_dir})
        self.call("PUT", f"/v1/runs/{spec.run_id}/bundle", content=bundle,
                  headers={"Content-Type": "application/x-tar"})
        public = {k: v for k, v in spec.env.items() if k not in spec.secret_env}
        self.call("POST", f"/v1/runs/{spec.run_id}", json={
            "script": spec.script.name, "env": public, "image": spec.image,
            "secret_env": {k: spec.env[k] for k in spec.secret_env if k in spec.env},
            "gpus": spec.gpus, "cpu_limit": spec.cpu_limit, "memory_limit_mb": spec.memory_limit_mb,
            "options": {k: v for k, v in spec.options.items() if k != "python"},  # the agent has its own python
        })
        return RunHandle(spec.run_id, self.kind, {"agent": self.url, "run": spec.run_id,
                                                  "outputs_dir": str(spec.outputs_dir)})

    def stream(self, handle: RunHandle, offset: int = 0, tick: float = 0.5) -> Iterator[OutputChunk]:
        """Output from byte `offset` to the end of the run, reconnecting from where it stopped."""
        handle.state["consumed"] = offset
        done = threading.Event()
        threading.Thread(target=self._sync_live_outputs, args=(handle, done), name="live-outputs",
                         daemon=True).start()
        try:
            yield from self._follow(handle, offset, tick)
        finally:
            done.set()

    def _follow(self, handle: RunHandle, position: int, tick: float) -> Iterator[OutputChunk]:
        import httpx

        path = f"/v1/runs/{handle.state['run']}/output"
        contact = time.monotonic()
        while True:
            try:
                with self.client.stream("GET", path, params={"offset": position}) as response:
                    _raise_for(response, self)
                    pending = b""
                    for data in response.iter_raw():
                        contact = time.monotonic()
                        whole, pending = frames.split(pending + data if pending else data)
                        for stream, payload in whole:
                            position += len(payload)
                            handle.state["consumed"] = position
                            yield OutputChunk(stream, payload)  # an empty one is a keepalive: a tick
                return  # the agent ends the stream once the run has ended and all is sent
            except httpx.TransportError as exc:  # a cut link, an agent restarting: resume from `position`
                if time.monotonic() - contact > self.lost_after:
                    raise RunnerError(f"lost contact with the runner agent {self.name} for "
                                      f"{self.lost_after:.0f}s: {exc}") from None
                yield OutputChunk("stdout", b"")
                time.sleep(min(tick, 1.0))

    def wait(self, handle: RunHandle, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        contact = time.monotonic()
        while True:
            try:
                status = self.call("GET", f"/v1/runs/{handle.state['run']}").json()
                contact = time.monotonic()
            except RunLost:
                raise
            except RunnerError as exc:
                if time.monotonic() - contact > self.lost_after:
                    raise RunLost(f"out of contact with the runner agent {self.name} for "
                                  f"{self.lost_after:.0f}s: {exc}") from None
                status = {"state": "unknown"}
            if status["state"] not in ACTIVE and status["state"] != "unknown":
                break
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.2)
        if status["state"] == "lost":
            raise RunLost(status.get("reason") or f"the runner agent {self.name} lost the run")
        if status.get("reason"):
            handle.state["end_reason"] = status["reason"]
        self.fetch_outputs(handle)
        self.call("DELETE", f"/v1/runs/{handle.state['run']}")
        return status["exit_code"]

    def fetch_outputs(self, handle: RunHandle, readonly: bool = False) -> None:
        """Bring the run's outputs into its outputs folder here, checked as strictly as uploads.
        `readonly`: only the files marked final (read-only), and only those not here yet."""
        import httpx

        outputs = Path(handle.state["outputs_dir"])
        params = {"readonly": "1"} if readonly else {}
        with tempfile.TemporaryDirectory(dir=outputs.parent, prefix=".incoming-") as tmp:
            try:
                with self.client.stream("GET", f"/v1/runs/{handle.state['run']}/outputs", params=params) as response:
                    _raise_for(response, self)
                    extract(ChunkReader(response.iter_raw()), Path(tmp), Caps(), tops=("outputs",))
            except BadArchive as exc:
                raise RunnerError(f"refused the outputs of the runner agent {self.name}: {exc}") from None
            except httpx.TransportError as exc:
                raise RunnerError(f"lost the runner agent {self.name} while fetching outputs: {exc}") from None
            incoming = Path(tmp) / "outputs"
            for path in sorted(incoming.rglob("*")) if incoming.exists() else []:
                target = outputs / path.relative_to(incoming)
                if path.is_file() and not (readonly and target.exists()):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)  # also over a read-only file fetched live
                    if readonly:
                        target.chmod(0o444)  # tarfile's data filter made it writable; it is final

    def _sync_live_outputs(self, handle: RunHandle, done: threading.Event) -> None:
        while not done.wait(LIVE_OUTPUTS_S):
            try:
                self.fetch_outputs(handle, readonly=True)
            except RunnerError:
                pass  # the link is down: the next round, or the final fetch, brings them

    def stop(self, handle: RunHandle, grace: float = 10.0) -> None:
        from runners.agent import MAX_STOP_GRACE_S

        try:  # the agent refuses a longer grace: a stop must never be lost to it
            self.call("POST", f"/v1/runs/{handle.state['run']}/stop", params={"grace": min(grace, MAX_STOP_GRACE_S)})
        except RunnerError:
            pass  # unreachable now: the stream keeps retrying, and the stop is asked again by the caller

    def reattach(self, state: dict[str, Any]) -> RunHandle | None:
        try:
            status = self.call("GET", f"/v1/runs/{state['run']}").json()
        except RunnerError:
            return None
        if status["state"] not in (*ACTIVE, "exited"):
            return None
        return RunHandle(state["run"], self.kind, dict(state))

    def abandon(self, state: dict[str, Any]) -> None:
        if state.get("run"):
            self.stop(RunHandle(state["run"], self.kind, state), grace=0)


def trust_store(ca_file: str) -> Any:
    """An SSL context that trusts the certificates in `ca_file` (an agent's self-signed one, say);
    RunnerError, in one line, when the file holds none."""
    import ssl

    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise RunnerError(f"cannot use the CA file {ca_file}: {reason}") from None


def _raise_for(response: Any, runner: RemoteRunner) -> None:
    if response.status_code < 400:
        return
    if response.status_code == 401:
        raise RunnerError(f"the runner agent {runner.name} refused the token (401): check its token file")
    try:
        response.read()
        message = response.json().get("error") or response.text
    except Exception:  # noqa: BLE001 (not JSON: say what came back)
        message = response.text[:200]
    error = RunLost if response.status_code == 404 else RunnerError  # the agent does not know the run
    raise error(f"runner agent {runner.name}: {message} (HTTP {response.status_code})")


register("remote", RemoteRunner)
