"""The Docker runner: the command in a container of the step's image, on the local engine.

Code at /valohai/repository (the working directory), inputs read-only at /valohai/inputs, outputs
at /valohai/outputs, config at /valohai/config, as Valohai lays them out. The container runs as the
invoking user, so what it writes to the outputs belongs to that user, not to root. A run talks to
the engine through `runners.docker_engine` (its few calls, without docker-py's import cost);
docker-py pulls a missing image.

Output is read from the engine's multiplexed stream (no TTY, so stdout and stderr stay apart)
through a socket attached before the container starts, so nothing is missed. Since such a stream
is known to block after a container ends, a waiter closes it once the container has exited. An
init (docker's tini) is PID 1 and hands a stop's SIGTERM to the command's whole process group.
Containers carry labels naming the process that started them; a runner starting up removes any
whose owner has died, so a crashed supervisor never leaks one (and so a Docker run is not
resumable: it ends with its owner).
"""

from __future__ import annotations

import math
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runners import (
    VALOHAI_FOLDERS, OutputChunk, RunHandle, RunLost, RunnerError, RunSpec, frames, register, relay, script_argv,
)
from runners.docker_engine import Engine, EngineError
from runners.hostinfo import check_host_gpus, host_info
from runners.processes import is_running, start_time

# Docker's reference grammar, in short: [host[:port]/]path[:tag][@digest], path parts in lower case
IMAGE_NAME = re.compile(r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                        r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                        r"(?:@sha256:[a-f0-9]{64})?")
RUN_LABEL = "vhtui.run"
OWNER_LABEL = "vhtui.owner"  # "pid:start time" of the process that started the container
DRAIN_S = 2.0  # after the container exits, how long the stream may stay silent before it is closed


def docker_client() -> Any:
    """docker-py's client, for what needs more than a run's few calls (pulling an image with the
    user's registry credentials), or one clear line saying why there is none."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise RunnerError("pulling an image needs the docker package: pip install docker") from None
    try:
        return docker.from_env(timeout=60)
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:200]
        raise RunnerError(f"cannot reach the Docker engine ({reason}): start it with `sudo systemctl start "
                          "docker` (or run `dockerd`), or point DOCKER_HOST at a running one") from None


def ping_engine() -> None:
    """Is the engine up? One line saying why not."""
    Engine().ping()


def owner_label() -> str:
    pid = os.getpid()
    return f"{pid}:{start_time(pid)}"


def _owner_alive(label: str | None) -> bool:
    if not label or ":" not in label:
        return False
    pid, _, started = label.partition(":")
    try:
        return is_running(int(pid), float(started) if started != "None" else None)
    except ValueError:
        return False


class DockerRunner:
    """Options: `user` ("uid:gid", default the invoking user) and `network` ("host" or "none")."""

    kind = "docker"
    uses_host_slots = True
    protects_inputs = True  # mounted read-only
    resumable = False

    def __init__(self, user: str | None = None, network: str = "host", gpus: Any = "auto", **_: Any) -> None:
        self.user = user or f"{os.getuid()}:{os.getgid()}"
        self.network = network
        self.gpus = gpus
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine()
        return self._engine

    # -- the contract -------------------------------------------------------------------------
    def preflight(self, image: str | None, gpus: int) -> None:
        if not image:
            raise RunnerError("this step names no image, which the docker runner needs "
                              "(add one to the step, or use --image)")
        if not IMAGE_NAME.fullmatch(image):
            raise RunnerError(f"{image[:200]!r} is not a valid image name (like python:3.11 or "
                              "registry.example.com/team/image:tag)")
        ping_engine()
        check_host_gpus(self.gpus, gpus)

    def health(self) -> dict[str, Any]:
        try:
            ping_engine()
        except RunnerError as exc:
            return {"health": str(exc), "gpus": []}
        return {"health": "ok", **host_info(self.gpus)}

    def start(self, spec: RunSpec) -> RunHandle:
        if not spec.image:
            raise RunnerError("this step names no image; the Docker runner needs one")
        self.sweep()
        notes = self._ensure_image(spec.image)
        env = dict(spec.env)
        env["TINI_KILL_PROCESS_GROUP"] = "1"  # the init passes a stop's SIGTERM to the whole command
        if not self.user.startswith("0:"):  # a user without a home: let pip and caches work
            env.setdefault("HOME", "/tmp")
            env.setdefault("PYTHONUSERBASE", "/tmp/.local")
            env.setdefault("PIP_USER", "1")
        dirs = {"repository": spec.repository_dir, "inputs": spec.inputs_dir, "outputs": spec.outputs_dir,
                "config": spec.config_dir}
        host: dict[str, Any] = {
            "NetworkMode": self.network, "Init": True,
            "Mounts": [{"Type": "bind", "Source": str(Path(path).resolve()), "Target": VALOHAI_FOLDERS[name],
                        "ReadOnly": name in ("inputs", "config")} for name, path in dirs.items()],
        }
        if spec.cpu_limit:
            host["NanoCpus"] = int(spec.cpu_limit * 1e9)
        if spec.memory_limit_mb:
            host["Memory"] = int(spec.memory_limit_mb) << 20
        if spec.gpu_ids:
            host["DeviceRequests"] = [{"Driver": "", "Count": 0, "DeviceIDs": [str(i) for i in spec.gpu_ids],
                                       "Capabilities": [["gpu"]], "Options": {}}]
        config = {
            "Image": spec.image, "Cmd": script_argv(spec.script, f"{VALOHAI_FOLDERS['config']}/{spec.script.name}"),
            "WorkingDir": VALOHAI_FOLDERS["repository"], "User": self.user,
            "Env": [f"{k}={v}" for k, v in env.items()], "Labels": {RUN_LABEL: spec.run_id, OWNER_LABEL: owner_label()},
            "AttachStdout": True, "AttachStderr": True, "Tty": False, "OpenStdin": False, "HostConfig": host,
        }
        try:
            container = self.engine.create(config)
            attached = self.engine.attach(container)  # before the start: no output is missed
            self.engine.start(container)
        except EngineError as exc:
            raise RunnerError(f"cannot start a container of {spec.image}: {exc}") from None
        return RunHandle(spec.run_id, self.kind, {"container": container, "image": spec.image,
                                                  "memory_limit_mb": spec.memory_limit_mb},
                         live={"notes": notes, "attached": attached})

    def stream(self, handle: RunHandle, offset: int = 0, tick: float = 0.5) -> Iterator[OutputChunk]:
        """The container's output, live from the socket attached at start."""
        live = handle.live or {}
        attached = live.pop("attached", None)
        if attached is None or offset:
            raise RunnerError("a Docker run's output can only be read once, by the process that started it")
        for note in live.get("notes", []):
            yield OutputChunk("stderr", note)
        chunks: queue.Queue[OutputChunk | BaseException | None] = queue.Queue(maxsize=64)
        pipe = _FramePipe(attached.recv, lambda: _shut(attached), chunks)
        threading.Thread(target=pipe.read_all, name="docker-reader", daemon=True).start()
        threading.Thread(target=self._close_after_exit, args=(handle, pipe), name="docker-waiter",
                         daemon=True).start()
        yield from relay(chunks, handle, tick)

    def _close_after_exit(self, handle: RunHandle, pipe: _FramePipe) -> None:
        """docker's output stream can stay open after the container ends: close it once it is drained."""
        try:
            self.engine.wait(handle.state["container"])
        except Exception:  # noqa: BLE001 (the container vanished: close the stream all the same)
            pass
        while not pipe.done and time.monotonic() - pipe.last_frame < DRAIN_S:
            time.sleep(0.2)  # output still arriving: a flood is read after its container ended
        pipe.close()

    def wait(self, handle: RunHandle, timeout: float | None = None) -> int | None:
        container = handle.state["container"]
        try:
            result = self.engine.wait(container, timeout=timeout)
        except TimeoutError:
            return None
        except EngineError as exc:
            if exc.status == 404:
                raise RunLost(f"its container {container[:12]} was removed") from None
            raise
        try:
            state = self.engine.inspect(container)["State"]
        except RunnerError:  # removed meanwhile: the exit code is all there is
            state = {}
        if state.get("OOMKilled"):
            limit = (handle.state.get("memory_limit_mb") or 0)
            handle.state["end_reason"] = "killed for running out of memory" + (
                f" (the step's limit is {limit} MB)" if limit else "")
        self._remove(container)
        return int(result.get("StatusCode", -1))

    def stop(self, handle: RunHandle, grace: float = 10.0) -> None:
        try:  # SIGTERM, then SIGKILL after the grace period, as `docker stop` does
            self.engine.stop(handle.state["container"], max(1, math.ceil(grace)))
        except RunnerError:
            pass  # it has ended already, or it is gone

    def abandon(self, state: dict[str, Any]) -> None:
        if state.get("container"):
            self._remove(state["container"])

    def visible_paths(self, spec_dirs: dict[str, Path], run_id: str = "") -> dict[str, str]:
        return {name: VALOHAI_FOLDERS[name] for name in spec_dirs}

    # -- housekeeping -------------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Remove containers whose starting process has died; return their ids."""
        removed = []
        for container in self.engine.containers(RUN_LABEL):
            if not _owner_alive(container["Labels"].get(OWNER_LABEL)):
                self._remove(container["Id"])
                removed.append(container["Id"])
        return removed

    def _remove(self, container_id: str) -> None:
        try:
            self.engine.remove(container_id)
        except RunnerError:
            pass

    def _ensure_image(self, image: str) -> list[bytes]:
        """Pull a missing image once (through docker-py, which knows the user's registry
        credentials); its progress goes to the execution's log."""
        if self.engine.has_image(image):
            return []
        from docker.errors import APIError

        notes = [f"Pulling image {image}...\n".encode()]
        repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        try:
            for event in docker_client().api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise RunnerError(f"cannot pull image {image}: {event['error']}")
                if event.get("status") and not event.get("progressDetail"):
                    notes.append(f"{event.get('id', '')} {event['status']}\n".lstrip().encode())
        except APIError as exc:
            raise RunnerError(f"cannot pull image {image}: {exc.explanation or exc}") from None
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 (no registry reachable, DNS, ...)
            raise RunnerError(f"cannot pull image {image}: {str(exc).splitlines()[0][:200]}") from None
        return notes


class _FramePipe:
    """Reads the engine's multiplexed stream as it arrives, whatever is there, and hands it on as
    chunks, with consecutive frames of one stream joined."""

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], None],
                 chunks: queue.Queue[OutputChunk | BaseException | None]) -> None:
        self._read, self._close, self._chunks = read, close, chunks
        self.last_frame = time.monotonic()
        self.done = self.closed = False

    def close(self) -> None:
        self.closed = True
        self._close()

    def read_all(self) -> None:
        pending = b""
        try:
            while data := self._read(1 << 20):
                self.last_frame = time.monotonic()
                whole, pending = frames.split(pending + data if pending else data)
                run: list[bytes] = []
                for index, (stream, payload) in enumerate(whole):
                    run.append(payload)
                    if index + 1 == len(whole) or whole[index + 1][0] != stream:
                        self._chunks.put(OutputChunk(stream, b"".join(run)))  # type: ignore[arg-type]
                        run = []
        except Exception as exc:  # noqa: BLE001 (closed by the waiter, or lost: the consumer decides)
            if not self.closed:
                self._chunks.put(exc)
        finally:
            self.done = True
            self._chunks.put(None)


def _shut(attached: socket.socket) -> None:
    """End an attach socket, waking a reader blocked on it."""
    try:
        attached.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    attached.close()


register("docker", DockerRunner)
