"""The Docker runner: the command in a container of the step's image, on the local engine.

Code at /valohai/repository (the working directory), inputs read-only at /valohai/inputs, outputs
at /valohai/outputs, config at /valohai/config, as Valohai lays them out. The container runs as the
invoking user, so what it writes to the outputs belongs to that user, not to root. Output is read
from the engine's multiplexed stream (no TTY, so stdout and stderr stay apart) through a socket
attached before the container starts (nothing is missed, and the engine sends large frames over a
raw socket). Since such a stream is known to block after a container ends, a waiter closes it
once the container has exited. An init
(docker's tini) is PID 1 and hands a stop's SIGTERM to the command's whole process group. Containers
carry labels naming the process that started them; a runner starting up removes any whose owner
has died, so a crashed supervisor never leaks one (and so a Docker run is not resumable: it ends
with its owner).
"""

from __future__ import annotations

import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runners import OutputChunk, RunHandle, RunLost, RunnerError, RunSpec, frames, register, relay, script_argv
from runners.hostinfo import check_host_gpus, host_info
from runners.processes import is_running, start_time

CONTAINER_DIRS = {"repository": "/valohai/repository", "inputs": "/valohai/inputs",
                  "outputs": "/valohai/outputs", "config": "/valohai/config"}
RUN_LABEL = "vhtui.run"
OWNER_LABEL = "vhtui.owner"  # "pid:start time" of the process that started the container
DRAIN_S = 2.0  # after the container exits, how long the stream may stay silent before it is closed


def docker_client() -> Any:
    """A connected client, or one clear line saying why there is none."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise RunnerError("the Docker runner needs the docker package: pip install docker") from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
        return client
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:200]
        raise RunnerError(f"cannot reach the Docker engine ({reason}): start it with `sudo systemctl start "
                          "docker` (or run `dockerd`), or point DOCKER_HOST at a running one") from None


def ping_engine() -> None:
    """Is the engine up? Asked over its socket directly, since importing the docker SDK alone costs a
    launch about 150 ms; TLS and other transports go through the SDK."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if os.environ.get("DOCKER_TLS_VERIFY") or not host.startswith(("unix://", "tcp://")):
        docker_client()
        return
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(host[len("unix://"):])
        else:
            address, _, port = host[len("tcp://"):].partition(":")
            sock = socket.create_connection((address, int(port or 2375)), timeout=10)
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = sock.recv(64).split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise OSError(status.decode(errors="replace") or "no answer")
    except (OSError, ValueError) as exc:
        raise RunnerError(f"cannot reach the Docker engine at {host} ({exc}): start it with `sudo systemctl "
                          "start docker` (or run `dockerd`), or point DOCKER_HOST at a running one") from None


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
    needs_image = True
    resumable = False

    def __init__(self, user: str | None = None, network: str = "host", gpus: Any = "auto", **_: Any) -> None:
        self.user = user or f"{os.getuid()}:{os.getgid()}"
        self.network = network
        self.gpus = gpus
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    # -- the contract -------------------------------------------------------------------------
    def preflight(self, image: str | None, gpus: int) -> None:
        if not image:
            raise RunnerError("this step names no image, which the docker runner needs "
                              "(add one to the step, or use --image)")
        ping_engine()
        check_host_gpus(self.gpus, gpus)

    def health(self) -> dict[str, Any]:
        try:
            ping_engine()
        except RunnerError as exc:
            return {"health": str(exc), "gpus": []}
        return {"health": "ok", **host_info(self.gpus)}

    def start(self, spec: RunSpec) -> RunHandle:
        from docker.errors import APIError
        from docker.types import DeviceRequest, Mount

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
        mounts = [Mount(CONTAINER_DIRS[name], str(Path(path).resolve()), type="bind",
                        read_only=name in ("inputs", "config")) for name, path in dirs.items()]
        command = script_argv(spec.script, f"{CONTAINER_DIRS['config']}/{spec.script.name}")
        options: dict[str, Any] = {}
        if spec.cpu_limit:
            options["nano_cpus"] = int(spec.cpu_limit * 1e9)
        if spec.memory_limit_mb:
            options["mem_limit"] = f"{int(spec.memory_limit_mb)}m"
        if spec.gpu_ids:
            options["device_requests"] = [DeviceRequest(device_ids=[str(i) for i in spec.gpu_ids],
                                                        capabilities=[["gpu"]])]
        try:
            container = self.client.containers.create(
                spec.image, command, working_dir=CONTAINER_DIRS["repository"], environment=env, user=self.user,
                labels={RUN_LABEL: spec.run_id, OWNER_LABEL: owner_label()}, network_mode=self.network,
                mounts=mounts, detach=True, init=True, **options,
            )
            attached = self.client.api.attach_socket(container.id, params={"stdout": 1, "stderr": 1, "stream": 1})
            container.start()
        except APIError as exc:
            raise RunnerError(f"cannot start a container of {spec.image}: {exc.explanation or exc}") from None
        return RunHandle(spec.run_id, self.kind, {"container": container.id, "image": spec.image,
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
        pipe = _FramePipe(attached.read, lambda: _shut(attached), chunks)
        threading.Thread(target=pipe.read_all, name="docker-reader", daemon=True).start()
        threading.Thread(target=self._close_after_exit, args=(handle, pipe), name="docker-waiter",
                         daemon=True).start()
        yield from relay(chunks, handle, tick)

    def _close_after_exit(self, handle: RunHandle, pipe: _FramePipe) -> None:
        """docker's output stream can stay open after the container ends: close it once it is drained."""
        try:
            self.client.api.wait(handle.state["container"])
        except Exception:  # noqa: BLE001 (the container vanished: close the stream all the same)
            pass
        while not pipe.done and time.monotonic() - pipe.last_frame < DRAIN_S:
            time.sleep(0.2)  # output still arriving: a flood is read after its container ended
        pipe.close()

    def wait(self, handle: RunHandle, timeout: float | None = None) -> int | None:
        from docker.errors import NotFound
        from requests.exceptions import ConnectionError, ReadTimeout

        try:
            result = self.client.api.wait(handle.state["container"], timeout=timeout)
        except (ReadTimeout, ConnectionError):
            return None
        except NotFound:
            raise RunLost(f"its container {handle.state['container'][:12]} was removed") from None
        try:
            state = self.client.api.inspect_container(handle.state["container"])["State"]
        except Exception:  # noqa: BLE001 (removed meanwhile: the exit code is all there is)
            state = {}
        if state.get("OOMKilled"):
            limit = (handle.state.get("memory_limit_mb") or 0)
            handle.state["end_reason"] = "killed for running out of memory" + (
                f" (the step's limit is {limit} MB)" if limit else "")
        self._remove(handle.state["container"])
        return int(result.get("StatusCode", -1))

    def stop(self, handle: RunHandle, grace: float = 10.0) -> None:
        from docker.errors import APIError

        try:  # SIGTERM, then SIGKILL after the grace period, as `docker stop` does
            self.client.api.stop(handle.state["container"], timeout=max(1, math.ceil(grace)))
        except APIError:
            pass

    def abandon(self, state: dict[str, Any]) -> None:
        if state.get("container"):
            self._remove(state["container"])

    def visible_paths(self, spec_dirs: dict[str, Path], run_id: str = "") -> dict[str, str]:
        return {name: CONTAINER_DIRS[name] for name in spec_dirs}

    # -- housekeeping -------------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Remove containers whose starting process has died; return their ids."""
        removed = []
        for container in self.client.api.containers(all=True, filters={"label": RUN_LABEL}):
            if not _owner_alive(container["Labels"].get(OWNER_LABEL)):
                self._remove(container["Id"])
                removed.append(container["Id"])
        return removed

    def _remove(self, container_id: str) -> None:
        from docker.errors import APIError

        try:
            self.client.api.remove_container(container_id, force=True)
        except APIError:
            pass

    def _ensure_image(self, image: str) -> list[bytes]:
        """Pull a missing image once; its progress goes to the execution's log."""
        from docker.errors import APIError, ImageNotFound

        try:
            self.client.api.inspect_image(image)
            return []
        except ImageNotFound:
            pass
        notes = [f"Pulling image {image}...\n".encode()]
        repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        try:
            for event in self.client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
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


def _shut(attached: Any) -> None:
    """End a hijacked attach socket, waking a reader blocked on it."""
    sock = getattr(attached, "_sock", attached)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    attached.close()


register("docker", DockerRunner)
