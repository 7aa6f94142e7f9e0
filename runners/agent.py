"""The runner agent: an HTTP server on a GPU host that runs executions for a remote control host.

`vhtui runner serve` starts it. Every route takes a bearer token (compared in constant time). The
agent keeps no state in memory that matters: each run is a folder under `<state>/runs/<id>/` with
its code, inputs, outputs, config, its output as frames (`output.frames`, the same 8-byte
header + payload framing Docker uses, so stdout and stderr stay apart) and its status. A run is
owned by a *keeper*: a detached process (its own session) that waits for a GPU-aware slot, runs
the command through this host's local or Docker runner and appends its output. The agent only
reads those folders, so it can be stopped, upgraded or killed mid-run and find every run again
when it comes back. Secret environment values reach the keeper through a pipe, never the disk,
and are masked in the output.

API (JSON unless said otherwise; `offset` counts output bytes, headers excluded):
    GET    /v1/host                      name, CPUs, memory, GPUs (NVML), slots, running, queued
    GET    /v1/layout                    where the command sees its folders
    GET    /v1/runs                      every run's status
    PUT    /v1/runs/{id}/bundle          a tar stream of repository/, inputs/, config/
    POST   /v1/runs/{id}                 the run spec: start it
    GET    /v1/runs/{id}                 status: queued, running, exited or lost; exit code
    GET    /v1/runs/{id}/output?offset=N frames from output byte N, followed to the end; an
                                         empty frame every second while quiet (a keepalive)
    POST   /v1/runs/{id}/stop?grace=S    SIGTERM, SIGKILL after S seconds
    GET    /v1/runs/{id}/outputs         the outputs as a tar stream (?readonly=1: only read-only
                                         files, which valohai-utils marks as final)
    DELETE /v1/runs/{id}                 forget a finished run and its files
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import RunnerError, RunSpec, get_runner
from runners.frames import HEADER, KEEPALIVE, frame
from runners.archive import BadArchive, Caps, ChunkReader, extract, pack
from runners.hostinfo import host_info, visible_gpus
from runners.processes import is_running, start_time
from runners.slots import try_acquire

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
KEEPALIVE_S = 1.0
FOLDERS = ("repository", "inputs", "outputs", "config")


@dataclass
class AgentConfig:
    state_dir: Path
    token: str
    backend: str = "local"  # the runner this host uses: local or docker
    slots: int = 1
    gpus: Any = "auto"
    caps: Caps = field(default_factory=Caps)

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"


# -- one run's folder ------------------------------------------------------------------------------
class RunFolder:
    """The files that describe one run; the keeper writes them, the agent reads them."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.root = runs_dir / run_id
        self.run_id = run_id

    @property
    def frames(self) -> Path:
        return self.root / "output.frames"

    def read(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / name).read_text())
        except (OSError, ValueError):
            return {}

    def write(self, name: str, doc: dict[str, Any]) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.root / name)

    def status(self) -> dict[str, Any]:
        """What the client needs: state, exit code, reason, bytes of output so far."""
        if not self.root.is_dir():  # removed under a run being followed: it will never end by itself
            return {"id": self.run_id, "state": "lost", "exit_code": None, "frames_size": 0, "gpus": [],
                    "reason": "its folder on the agent was removed", "created": None}
        status = self.read("status.json")
        state = status.get("state", "uploaded" if not (self.root / "spec.json").exists() else "starting")
        keeper = self.read("keeper.json")
        if state in ("starting", "queued", "running") and keeper and not is_running(keeper["pid"], keeper["start"]):
            status = self.read("status.json")  # it may have finished between the two reads
            state = status.get("state", state)
            if state != "exited":
                state, status["reason"] = "lost", "the agent's keeper for this run died"
        size = self.frames.stat().st_size if self.frames.exists() else 0
        return {"id": self.run_id, "state": state, "exit_code": status.get("exit_code"),
                "reason": status.get("reason"), "gpus": status.get("gpus", []), "frames_size": size,
                "created": status.get("created")}


# -- the keeper: a detached process per run ---------------------------------------------------------
class SecretMask:
    """Replaces secret values in output; keeps back a tail that could be the start of one."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s.encode() for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self.keep = max((len(s) for s in self.secrets), default=1) - 1
        self.tail = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes, final: bool = False) -> bytes:
        if not self.secrets:
            return data
        data = self.tail[stream] + data
        for secret in self.secrets:
            data = data.replace(secret, b"****")
        cut = len(data) if final or data.endswith(b"\n") else max(0, len(data) - self.keep)
        self.tail[stream] = data[cut:]
        return data[:cut]


def keep(run_dir: Path) -> int:
    """Own one run: wait for a slot, run it, append its output as frames, record how it ended."""
    folder = RunFolder(run_dir.parent, run_dir.name)
    request = json.loads(sys.stdin.read())  # secrets included: never written to disk
    config = request["agent"]
    folder.write("keeper.json", {"pid": os.getpid(), "start": start_time(os.getpid())})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def finish(exit_code: int | None, reason: str | None) -> int:
        folder.write("status.json", dict(folder.read("status.json"), state="exited", exit_code=exit_code,
                                         reason=reason, ended=time.time()))
        return 0

    folder.write("status.json", {"state": "queued", "created": time.time()})
    wanted = int(request.get("gpus", 0))
    gpus = visible_gpus(config["gpus"]) if wanted else []
    lease = None
    while lease is None:
        lease = try_acquire(Path(config["state_dir"]) / "slots", int(config["slots"]), gpus, wanted)
        if lease is None:
            if stop.wait(0.2):
                return finish(None, "stopped while queued")
    try:
        runner = get_runner(config["backend"], envs_dir=Path(config["state_dir"]) / "envs")
        env = dict(request["env"])
        secrets = request.get("secret_env", {})
        env.update(secrets)
        if lease.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, lease.gpu_ids))
        spec = RunSpec(run_id=folder.run_id, script=folder.root / "config" / request["script"],
                       repository_dir=folder.root / "repository", inputs_dir=folder.root / "inputs",
                       outputs_dir=folder.root / "outputs", config_dir=folder.root / "config", env=env,
                       image=request.get("image"), gpu_ids=lease.gpu_ids, cpu_limit=request.get("cpu_limit"),
                       memory_limit_mb=request.get("memory_limit_mb"), secret_env=frozenset(secrets),
                       options=request.get("options", {}))
        for name in FOLDERS:
            (folder.root / name).mkdir(exist_ok=True)
        try:
            handle = runner.start(spec)
        except RunnerError as exc:
            return finish(None, str(exc))
        folder.write("status.json", dict(folder.read("status.json"), state="running", gpus=lease.gpu_ids,
                                         started=time.time()))
        mask = SecretMask(list(secrets.values()))
        stopping = False
        with open(folder.frames, "ab", buffering=0) as out:
            def append(stream: str, data: bytes) -> None:
                if data:
                    out.write(frame(stream, data))

            for chunk in runner.stream(handle):
                append(chunk.stream, mask.feed(chunk.stream, chunk.data))
                if stop.is_set() and not stopping:
                    stopping = True
                    grace = float(folder.read("stop.json").get("grace", 10.0))
                    threading.Thread(target=runner.stop, args=(handle, grace), daemon=True).start()
            for stream in ("stdout", "stderr"):
                append(stream, mask.feed(stream, b"", final=True))
        exit_code = runner.wait(handle)
        return finish(exit_code, handle.state.get("end_reason"))
    finally:
        lease.release()


# -- the HTTP side ----------------------------------------------------------------------------------
def _json(doc: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(doc, status_code=status)


def _error(status: int, message: str) -> Any:
    return _json({"error": message}, status)


class TokenGuard:
    """ASGI middleware: a bearer token on every route, compared in constant time."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _error(401, "missing or wrong token")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _BodyQueue:
    """A request body handed from the event loop to tarfile in a thread, with back-pressure."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.reader = ChunkReader(iter(self.chunks.get, None))

    def end(self) -> None:
        try:
            self.chunks.put_nowait(None)
        except queue.Full:  # the reader stopped early (a refused archive) and will not read on
            pass


def frame_position(path: Path, offset: int, hint: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(file position of the frame holding output byte `offset`, output bytes before that frame),
    found by walking frame headers from `hint`, a known (position, bytes before) pair."""
    position, before = hint
    with open(path, "rb") as f:
        f.seek(position)
        while True:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                return position, before
            _, length = HEADER.unpack(header)
            if before + length > offset:
                return position, before
            before += length
            position += HEADER.size + length
            f.seek(position)


def create_app(config: AgentConfig) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    config.runs_dir.mkdir(parents=True, exist_ok=True)
    positions: dict[str, tuple[int, int]] = {}  # run id -> last frame position served (a resume hint)

    def folder_of(request: Request, must_exist: bool = True) -> RunFolder:
        run_id = request.path_params["run_id"]
        if not RUN_ID.match(run_id):
            raise LookupError(f"bad run id {run_id!r}")
        folder = RunFolder(config.runs_dir, run_id)
        if must_exist and not folder.root.is_dir():
            raise FileNotFoundError(f"no run {run_id} on this agent")
        return folder

    def statuses() -> list[dict[str, Any]]:
        return [RunFolder(config.runs_dir, p.name).status() for p in sorted(config.runs_dir.iterdir()) if p.is_dir()]

    async def host(request: Request) -> Any:
        info = await asyncio.to_thread(host_info, config.gpus)
        runs = await asyncio.to_thread(statuses)
        info.update(backend=config.backend, slots=config.slots,
                    running=sum(r["state"] == "running" for r in runs),
                    queued=sum(r["state"] in ("queued", "starting") for r in runs))
        info["free_slots"] = max(0, config.slots - info["running"])
        return _json(info)

    async def layout(request: Request) -> Any:
        if config.backend == "docker":
            from runners.docker import CONTAINER_DIRS

            return _json({"backend": "docker", "folders": CONTAINER_DIRS})
        return _json({"backend": config.backend, "runs_dir": str(config.runs_dir.resolve())})

    async def list_runs(request: Request) -> Any:
        return _json({"runs": await asyncio.to_thread(statuses)})

    async def upload(request: Request) -> Any:
        folder = folder_of(request, must_exist=False)
        if (folder.root / "spec.json").exists():
            return _error(409, f"run {folder.run_id} has already started")
        shutil.rmtree(folder.root, ignore_errors=True)
        folder.root.mkdir(parents=True)
        reader = _BodyQueue()
        job = asyncio.get_running_loop().run_in_executor(None, extract, reader.reader, folder.root, config.caps,
                                                         ("repository", "inputs", "config"))
        received = 0
        try:
            async for chunk in request.stream():
                if job.done():
                    break
                received += len(chunk)
                while not job.done():  # back-pressure: wait for the extracting thread
                    try:
                        reader.chunks.put_nowait(chunk)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.001)
            reader.end()
            files, size = await job
        except BadArchive as exc:
            shutil.rmtree(folder.root, ignore_errors=True)
            return _error(400, f"refused archive: {exc}")
        except OSError as exc:
            shutil.rmtree(folder.root, ignore_errors=True)
            return _error(507, f"the agent cannot store the upload: {exc.strerror or exc}")
        finally:
            reader.end()
        return _json({"files": files, "bytes": size, "received": received})

    async def start(request: Request) -> Any:
        folder = folder_of(request)
        body = await request.json()
        script = str(body.get("script", ""))
        if not script or "/" in script or not (folder.root / "config" / script).is_file():
            return _error(400, "the run spec names no script that the bundle holds")
        if (folder.root / "spec.json").exists():
            return _error(409, f"run {folder.run_id} has already started")
        public = {k: v for k, v in body.items() if k != "secret_env"}
        public["secret_env"] = sorted(body.get("secret_env", {}))  # names only on disk
        folder.write("spec.json", public)
        body["agent"] = {"state_dir": str(config.state_dir), "backend": config.backend, "slots": config.slots,
                         "gpus": config.gpus}
        log = open(folder.root / "keeper.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "runners.agent", "keep", str(folder.root)],
                                stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True, cwd=str(folder.root))
        log.close()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(body).encode())
        proc.stdin.close()
        threading.Thread(target=proc.wait, daemon=True).start()  # reap it; it outlives us if we die
        return _json({"id": folder.run_id, "state": "starting"}, 201)

    async def status(request: Request) -> Any:
        return _json(await asyncio.to_thread(folder_of(request).status))

    async def output(request: Request) -> Any:
        folder = folder_of(request)
        offset = int(request.query_params.get("offset", "0"))

        async def frames() -> AsyncIterator[bytes]:
            waited = 0
            while not folder.frames.exists():
                if folder.status()["state"] in ("exited", "lost"):
                    return
                if waited % 50 == 0:
                    yield KEEPALIVE  # a keepalive a second while the run waits for its slot
                waited += 1
                await asyncio.sleep(KEEPALIVE_S / 50)
            hint = positions.get(folder.run_id, (0, 0))
            if hint[1] > offset:
                hint = (0, 0)
            position, before = await asyncio.to_thread(frame_position, folder.frames, offset, hint)
            positions[folder.run_id] = (position, before)
            skip = offset - before  # output bytes of the first frame the client already has
            quiet_since = time.monotonic()
            idle_polls = 0
            with open(folder.frames, "rb") as f:
                f.seek(position)
                pending = b""
                while True:
                    data = f.read(1 << 20)
                    if not data:
                        idle_polls += 1  # the run's state (three small reads) is asked every 0.2 s
                        if pending == b"" and idle_polls % 10 == 0 \
                                and folder.status()["state"] in ("exited", "lost"):
                            if not f.read(1):
                                return
                            f.seek(-1, os.SEEK_CUR)
                            continue
                        if time.monotonic() - quiet_since >= KEEPALIVE_S:
                            quiet_since = time.monotonic()
                            yield KEEPALIVE
                        await asyncio.sleep(0.02)
                        continue
                    quiet_since = time.monotonic()
                    data = pending + data
                    if skip:  # cut the first frame down to the bytes the client lacks
                        stream, length = HEADER.unpack_from(data)
                        if len(data) < HEADER.size + length:
                            pending = data
                            continue
                        data = HEADER.pack(stream, length - skip) + data[HEADER.size + skip:]
                        skip = 0
                    pending = b""
                    yield data

        return StreamingResponse(frames(), media_type="application/octet-stream")

    async def stop(request: Request) -> Any:
        folder = folder_of(request)
        grace = float(request.query_params.get("grace", "10"))
        folder.write("stop.json", {"grace": grace, "at": time.time()})
        keeper = folder.read("keeper.json")
        if keeper and is_running(keeper["pid"], keeper["start"]):
            os.kill(keeper["pid"], signal.SIGTERM)
        return _json(folder.status())

    async def outputs(request: Request) -> Any:
        folder = folder_of(request)
        readonly = request.query_params.get("readonly") == "1"
        only = (lambda p: not p.stat().st_mode & 0o222) if readonly else None  # final, as the collector reads it
        return StreamingResponse(_iterate_in_thread(pack({"outputs": folder.root / "outputs"}, only)),
                                 media_type="application/x-tar")

    async def delete(request: Request) -> Any:
        folder = folder_of(request)
        if folder.status()["state"] in ("starting", "queued", "running"):
            return _error(409, f"run {folder.run_id} is still running: stop it first")
        await asyncio.to_thread(shutil.rmtree, folder.root, True)
        positions.pop(folder.run_id, None)
        return _json({"id": folder.run_id, "deleted": True})

    def guarded(handler: Any) -> Any:
        async def call(request: Request) -> Any:
            try:
                return await handler(request)
            except LookupError as exc:
                return _error(400, str(exc))
            except FileNotFoundError as exc:
                return _error(404, str(exc))
            except ValueError as exc:
                return _error(400, f"bad request: {exc}")

        return call

    routes = [
        Route("/v1/host", guarded(host)),
        Route("/v1/layout", guarded(layout)),
        Route("/v1/runs", guarded(list_runs)),
        Route("/v1/runs/{run_id}/bundle", guarded(upload), methods=["PUT"]),
        Route("/v1/runs/{run_id}", guarded(start), methods=["POST"]),
        Route("/v1/runs/{run_id}", guarded(status), methods=["GET"]),
        Route("/v1/runs/{run_id}", guarded(delete), methods=["DELETE"]),
        Route("/v1/runs/{run_id}/output", guarded(output)),
        Route("/v1/runs/{run_id}/stop", guarded(stop), methods=["POST"]),
        Route("/v1/runs/{run_id}/outputs", guarded(outputs)),
    ]
    return TokenGuard(Starlette(routes=routes), config.token)


async def _iterate_in_thread(chunks: Any) -> AsyncIterator[bytes]:
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


def serve(config: AgentConfig, host: str = "127.0.0.1", port: int = 8750, tls_cert: str | None = None,
          tls_key: str | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__" and sys.argv[1:2] == ["keep"]:
    sys.exit(keep(Path(sys.argv[2])))
