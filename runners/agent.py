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
    POST   /v1/runs/{id}/stop?grace=S    SIGTERM, SIGKILL after S seconds (0 to MAX_STOP_GRACE_S)
    GET    /v1/runs/{id}/outputs         the outputs as a tar stream (?readonly=1: only read-only
                                         files, which valohai-utils marks as final); a link is sent
                                         as the file it names inside the outputs, never followed out
    DELETE /v1/runs/{id}                 forget a finished run and its files

The token file is read again whenever it changes, so a rotated token works at once and the old one
stops. Slow clients are closed (`Limits`): a request head must arrive within `header_timeout`, a
body may not pause longer than `body_timeout`, and past `max_connections` the connection waiting
longest for its head makes room, so stalled sockets never keep a real request out.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import math
import os
import queue
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import VALOHAI_FOLDERS, RunnerError, RunSpec, get_runner, sandbox
from runners.frames import HEADER, KEEPALIVE, frame
from runners.archive import BadArchive, Caps, ChunkReader, contained_entries, extract, pack
from runners.masking import SecretMask
from runners.hostinfo import host_info, visible_gpus
from runners.processes import is_running, start_time
from runners.slots import try_acquire

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
KEEPALIVE_S = 1.0
FOLDERS = ("repository", "inputs", "outputs", "config")
MAX_STOP_GRACE_S = 3600.0
MIN_TOKEN_CHARS = 16
RECORDED_STATES = ("queued", "running", "exited")  # what a keeper writes in status.json


@dataclass
class Limits:
    """How long a client may take, and how many may be connected at once."""

    header_timeout: float = 15.0  # from connecting (or the last answer) to a whole request head
    body_timeout: float = 60.0  # the longest pause inside a request body
    max_connections: int = 512


@dataclass
class AgentConfig:
    state_dir: Path
    token_file: Path
    backend: str = "local"  # the runner this host uses: local or docker
    slots: int = 1
    gpus: Any = "auto"
    caps: Caps = field(default_factory=Caps)
    limits: Limits = field(default_factory=Limits)

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

    def load(self, name: str) -> dict[str, Any] | None:
        """A record: {} when it is not there (yet), None when it is damaged (records are written
        whole, by rename, so a damaged one was never ours)."""
        try:
            doc = json.loads((self.root / name).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def read(self, name: str) -> dict[str, Any]:
        return self.load(name) or {}

    def write(self, name: str, doc: dict[str, Any]) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.root / name)

    def lost(self, reason: str) -> dict[str, Any]:
        return {"id": self.run_id, "state": "lost", "exit_code": None, "frames_size": 0, "gpus": [],
                "reason": reason, "created": None}

    def keeper(self) -> dict[str, Any] | None:
        """The keeper's record of itself ({} until it has written one); None when it is damaged,
        so that no pid read from it is ever signalled."""
        keeper = self.load("keeper.json")
        return keeper if keeper is not None and (not keeper or _is_process_record(keeper)) else None

    def status(self) -> dict[str, Any]:
        """What the client needs: state, exit code, reason, bytes of output so far. A damaged
        record makes the run lost, never the request an error."""
        if not self.root.is_dir():  # removed under a run being followed: it will never end by itself
            return self.lost("its folder on the agent was removed")
        status = self.load("status.json")
        if status is None or ("state" in status and status["state"] not in RECORDED_STATES):
            return self.lost("its status.json on the agent is damaged")
        state = status.get("state", "uploaded" if not (self.root / "spec.json").exists() else "starting")
        if state in ("starting", "queued", "running"):
            keeper = self.keeper()
            if keeper is None:
                return self.lost("its keeper.json on the agent is damaged")
            if keeper and not is_running(keeper["pid"], keeper["start"]):
                status = self.read("status.json")  # it may have finished between the two reads
                state = status.get("state", state)
                if state != "exited":
                    state, status["reason"] = "lost", "the agent's keeper for this run died"
        size = self.frames.stat().st_size if self.frames.exists() else 0
        return {"id": self.run_id, "state": state, "exit_code": status.get("exit_code"),
                "reason": status.get("reason"), "gpus": status.get("gpus", []), "frames_size": size,
                "created": status.get("created")}


def _is_process_record(doc: dict[str, Any]) -> bool:
    """What a keeper writes about itself: a pid (never init's) and its start time."""
    pid, started = doc.get("pid"), doc.get("start")
    return type(pid) is int and pid > 1 and type(started) in (int, float)


# -- the keeper: a detached process per run ---------------------------------------------------------
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
        runner = get_runner(config["backend"], envs_dir=Path(config["state_dir"]) / "envs",
                            state_dir=Path(config["state_dir"]))  # hidden: its token, the other runs' files
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
            seen_at = runner.visible_paths({"outputs": spec.outputs_dir}, spec.run_id)["outputs"]
            for entry in contained_entries(spec.outputs_dir, seen_at):  # said before the end, so the stream carries it
                if entry.kind == "skipped":
                    line = f"vhtui agent: output {entry.name} was not stored: it is {entry.why}\n"
                    append("stderr", mask.feed("stderr", line.encode(), final=True))
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


class TokenFile:
    """The agent's token, read again whenever its file changes (one stat a request), so a rotated
    token takes effect without a restart and the old one stops working at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: tuple[int, ...] | None = None
        self.token: str | None = None
        self.problem = ""

    def read(self) -> str:
        """The token now; RunnerError (one line) when the file cannot be read or is too short."""
        try:
            st = os.stat(self.path)
            seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if seen != self.seen:
                self.seen, self.token, self.problem = seen, self.path.read_text().strip(), ""
                if len(self.token) < MIN_TOKEN_CHARS:
                    self.problem = f"the token in {self.path} is too short: use at least {MIN_TOKEN_CHARS} characters"
        except OSError as exc:
            self.seen, self.problem = None, f"cannot read the token file {self.path}: {exc.strerror or exc}"
        if self.problem:
            raise RunnerError(self.problem)
        assert self.token is not None
        return self.token


class TokenGuard:
    """ASGI middleware: a bearer token on every route, compared in constant time. While the token
    file cannot be used, every request is refused (503) and the agent's log says why, once."""

    def __init__(self, app: Any, token: TokenFile) -> None:
        self.app = app
        self.token = token
        self.told = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                expected = f"Bearer {self.token.read()}".encode()
            except RunnerError as exc:
                if str(exc) != self.told:
                    self.told = str(exc)
                    warn(self.told)
                await _error(503, "the agent cannot use its token file: see the agent's log")(scope, receive, send)
                return
            self.told = ""
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await _error(401, "missing or wrong token")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def warn(message: str) -> None:
    """One line in the agent's log (its stderr)."""
    print(f"vhtui: warning: {message}", file=sys.stderr, flush=True)


class _BodyQueue:
    """A request body handed from the event loop to tarfile in a thread, with back-pressure. The
    reader ends once `end()` was called and the chunks before it are read: a body cut off midway
    (or one the reader stopped reading, for a refused archive) never leaves the thread waiting."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes] = queue.Queue(maxsize=32)
        self.ended = False
        self.reader = ChunkReader(self._until_ended())

    def _until_ended(self) -> Iterator[bytes]:
        while True:
            try:
                yield self.chunks.get(timeout=0.05)
            except queue.Empty:
                if self.ended:
                    return

    def end(self) -> None:
        self.ended = True


def _offset_param(request: Any) -> int:
    given = request.query_params.get("offset", "0")
    if not (given.isascii() and given.isdigit()):
        raise ValueError(f"offset must be a whole number of output bytes, 0 or more (not {given!r})")
    return int(given)


def _grace_param(request: Any) -> float:
    given = request.query_params.get("grace", "10")
    try:
        grace = float(given)
    except ValueError:
        grace = math.nan
    if not 0 <= grace <= MAX_STOP_GRACE_S:  # nan and the infinities fail this too
        raise ValueError(f"grace must be a number of seconds from 0 to {MAX_STOP_GRACE_S:g} (not {given!r})")
    return grace


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
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    config.runs_dir.mkdir(parents=True, exist_ok=True)
    positions: dict[str, tuple[int, int]] = {}  # run id -> last frame position served (a resume hint)

    def _sees_valohai_folders() -> bool:
        """Whether a job here sees its folders at Valohai's paths (Docker, or a sandboxed local run)."""
        return config.backend == "docker" or sandbox.unavailable(config.state_dir) is None

    def folder_of(request: Request, must_exist: bool = True) -> RunFolder:
        run_id = request.path_params["run_id"]
        if not RUN_ID.match(run_id):
            raise LookupError(f"bad run id {run_id!r}")
        folder = RunFolder(config.runs_dir, run_id)
        if must_exist and not folder.root.is_dir():
            raise FileNotFoundError(f"no run {run_id} on this agent")
        return folder

    def statuses() -> list[dict[str, Any]]:
        """Every run's status; one folder that cannot be read is reported lost, never an error."""
        runs = []
        for path in sorted(config.runs_dir.iterdir()):
            folder = RunFolder(config.runs_dir, path.name)
            try:
                if path.is_dir():
                    runs.append(folder.status())
            except Exception as exc:  # noqa: BLE001 (whatever is wrong with it, the others are listed)
                runs.append(folder.lost(f"its folder on the agent cannot be read: {exc}"))
        return runs

    async def host(request: Request) -> Any:
        info = await asyncio.to_thread(host_info, config.gpus)
        runs = await asyncio.to_thread(statuses)
        info.update(backend=config.backend, slots=config.slots,
                    running=sum(r["state"] == "running" for r in runs),
                    queued=sum(r["state"] in ("queued", "starting") for r in runs))
        info["free_slots"] = max(0, config.slots - info["running"])
        return _json(info)

    async def layout(request: Request) -> Any:
        """Fixed folders where the command sees Valohai's (Docker, or a sandboxed local run);
        otherwise each run's own folder under runs_dir."""
        if await asyncio.to_thread(_sees_valohai_folders):
            return _json({"backend": config.backend, "folders": VALOHAI_FOLDERS})
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
            finally:
                reader.end()
            files, size = await job
        except BaseException as exc:  # nothing of a refused or cut-off upload stays
            reader.end()
            await asyncio.wait([job])  # the thread must stop writing before the folder goes
            await asyncio.to_thread(shutil.rmtree, folder.root, True)
            if isinstance(exc, BadArchive):
                return _error(400, f"refused archive: {exc}")
            if isinstance(exc, ClientDisconnect):
                return _error(400, "the upload was cut off")
            if isinstance(exc, OSError):
                return _error(507, f"the agent cannot store the upload: {exc.strerror or exc}")
            raise
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
        offset = _offset_param(request)

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
                    while skip and len(data) >= HEADER.size:  # drop the output bytes the client has
                        stream, length = HEADER.unpack_from(data)
                        if len(data) < HEADER.size + length:
                            break  # the rest of this frame is still to be read
                        if length <= skip:  # the client asked from past this whole frame
                            data, skip = data[HEADER.size + length:], skip - length
                        else:  # cut the frame down to the bytes the client lacks
                            data, skip = HEADER.pack(stream, length - skip) + data[HEADER.size + skip:], 0
                    pending, data = (data, b"") if skip else (b"", data)
                    if data:
                        yield data

        return StreamingResponse(frames(), media_type="application/octet-stream")

    async def stop(request: Request) -> Any:
        folder = folder_of(request)
        grace = _grace_param(request)
        folder.write("stop.json", {"grace": grace, "at": time.time()})
        keeper = folder.keeper()
        if keeper and is_running(keeper["pid"], keeper["start"]):
            os.kill(keeper["pid"], signal.SIGTERM)
        return _json(folder.status())

    async def outputs(request: Request) -> Any:
        folder = folder_of(request)
        readonly = request.query_params.get("readonly") == "1"
        only = (lambda st: not st.st_mode & 0o222) if readonly else None  # final, as the collector reads it
        seen_at = {"outputs": VALOHAI_FOLDERS["outputs"]} if await asyncio.to_thread(_sees_valohai_folders) else None
        chunks = pack({"outputs": folder.root / "outputs"}, only, contained=True, seen_at=seen_at)  # the job wrote them
        return StreamingResponse(_iterate_in_thread(chunks), media_type="application/x-tar")

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
    return TokenGuard(Starlette(routes=routes), TokenFile(config.token_file))


async def _iterate_in_thread(chunks: Any) -> AsyncIterator[bytes]:
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


# -- the server: checked and bound before it serves, and guarded against slow clients ---------------
class AgentServer:
    """The agent's HTTP server. Everything that would stop it serving (an unusable state folder,
    token file or TLS certificate, a port it cannot listen on) is found here, before it serves,
    as a RunnerError of one line."""

    def __init__(self, config: AgentConfig, host: str = "127.0.0.1", port: int = 8750,
                 tls_cert: str | None = None, tls_key: str | None = None) -> None:
        self.config, self.host, self.tls = config, host, (tls_cert, tls_key) if tls_cert else None
        _check_state_dir(config.state_dir)
        TokenFile(config.token_file).read()
        if self.tls:
            _check_tls(*self.tls)
        self.max_connections = _fit_to_descriptors(config.limits.max_connections)
        self.socket = _listen(host, port)

    def warnings(self) -> list[str]:
        """What to tell at start-up: a token file others can read, plain HTTP beyond loopback, a
        connection limit cut down to the file descriptors this process may open."""
        said = []
        mode = stat.S_IMODE(os.stat(self.config.token_file).st_mode)
        if mode & 0o077:
            path = self.config.token_file
            said.append(f"the token file {path} can be read or changed by others (mode {mode:04o}): chmod 600 {path}")
        if not self.tls and not _is_loopback(self.host):
            said.append(f"serving on {self.host} without TLS: the token and all data cross the network in the "
                        f"clear; use --tls-cert/--tls-key, or bind 127.0.0.1 and reach it by ssh -L")
        if self.max_connections < self.config.limits.max_connections:
            said.append(f"at most {self.max_connections} connections fit in this process's file descriptors "
                        f"(ulimit -n): the connection limit is {self.max_connections}")
        return said

    def run(self) -> None:
        import uvicorn

        limits = Limits(self.config.limits.header_timeout, self.config.limits.body_timeout, self.max_connections)
        cert, key = self.tls or (None, None)
        # asyncio accepts up to `backlog` connections at once before the protocol sees one: keeping it
        # to the connection limit keeps their descriptors inside what _fit_to_descriptors counted
        config = uvicorn.Config(create_app(self.config), ssl_certfile=cert, ssl_keyfile=key, log_level="warning",
                                timeout_graceful_shutdown=1, http=guarded_protocol(limits),
                                backlog=self.max_connections)
        uvicorn.Server(config).run(sockets=[self.socket])


def _check_state_dir(path: Path) -> None:
    try:
        (path / "runs").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path / "runs"):
            pass
    except OSError as exc:
        raise RunnerError(f"cannot use the state folder {path}: {exc.strerror or exc}") from None


def _check_tls(cert: str, key: str) -> None:
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise RunnerError(f"cannot use the TLS certificate {cert} with the key {key}: {reason}") from None


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise RunnerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted agent gets its port back
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RunnerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


DESCRIPTORS_KEPT = 64  # for the agent's own files, its runs' records and a little slack


def _fit_to_descriptors(wanted: int) -> int:
    """A connection takes a descriptor, and one that follows a run's output a second: raise the
    soft limit on open files as far as needed (and allowed), and cut `wanted` to what fits, so
    accept() never fails for want of one."""
    need = 2 * wanted + DESCRIPTORS_KEPT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - DESCRIPTORS_KEPT) // 2))


def guarded_protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol with what it lacks: a deadline on the request head (counted from
    the connection, or the end of the last answer, so a client sending a byte now and then is no
    better off), a limit on pauses inside a body (only while the agent waits for the client, not
    while the client waits for the agent), and a cap on connections: past it, the connection
    waiting longest for its head is closed to make room (the newcomer, if every one is busy)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    tick = max(0.05, min(1.0, limits.header_timeout / 4, limits.body_timeout / 4))

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.waiting_since = self.quiet_since = self.loop.time()
            self.watch = self.loop.call_later(tick, self.check)
            live = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and not c.transport.is_closing()]
            if len(live) > limits.max_connections:  # (one closed just now is not gone yet: never count it)
                idle = [c for c in live if c.awaits_head()]
                min(idle, key=lambda c: c.waiting_since, default=self).transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            self.watch.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self.quiet_since = self.loop.time()
            super().data_received(data)

        def on_response_complete(self) -> None:
            self.waiting_since = self.loop.time()  # the next request's head is due from now
            super().on_response_complete()

        def awaits_head(self) -> bool:
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def awaits_body(self) -> bool:
            """The agent waits for more of the body: it has read what came (or the answer is sent)."""
            return self.conn.their_state is h11.SEND_BODY and self.cycle is not None \
                and (not self.cycle.body or self.cycle.response_complete) and not self.flow.read_paused

        def check(self) -> None:
            if self.transport.is_closing():
                return
            now = self.loop.time()
            if self.awaits_head():
                late = now - self.waiting_since > limits.header_timeout
            elif self.awaits_body():
                late = now - self.quiet_since > limits.body_timeout
            else:  # the agent is answering: the client waits for it, not the other way round
                self.quiet_since, late = now, False
            if late:
                self.transport.abort()
            else:
                self.watch = self.loop.call_later(tick, self.check)

    return GuardedH11Protocol


if __name__ == "__main__" and sys.argv[1:2] == ["keep"]:
    sys.exit(keep(Path(sys.argv[2])))
