"""How a command runs somewhere: the Runner contract every backend implements.

A runner knows nothing of vhtui. It is handed a `RunSpec` (a fully prepared command, its
directories and environment) and offers:

- `preflight(image, gpus)`: refuse now, in one line, what `start` would refuse later;
- `health()`: whether it can run things now, and what it offers (GPUs, CPUs, slots);
- `visible_paths(dirs, run_id)`: where the command will see its folders;
- `start(spec)` -> `RunHandle`, whose JSON-serialisable `state` the caller persists;
- `stream(handle, offset)`: the output as chunks, with empty ticks while the run is quiet;
- `wait(handle, timeout)`: the exit code; None while it is still running; `RunLost` when it is gone;
- `stop(handle, grace)`: SIGTERM or its equivalent, forced after `grace` seconds;
- `abandon(state)`: its owner died for good: end the run and clean up.

What a runner can do is said by its capabilities, never by its name:

- `uses_host_slots`: it runs on this host, so the caller takes one of this host's run slots and
  GPUs for it (runners.slots) and hands the GPUs over in `RunSpec.gpu_ids`;
- `protects_inputs`: the command cannot change the inputs folder laid out for it (it is mounted
  read-only, or shipped to another host), so the files there may be links to stored content;
- `resumable`: its runs outlive their owner: `stream` resumes from any byte offset, and
  `reattach(state)` finds a run again (the `ResumableRunner` protocol).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Stream = Literal["stdout", "stderr"]

# where Valohai shows a run its folders; so do Docker and a sandboxed local run (runners.sandbox)
VALOHAI_FOLDERS = {"repository": "/valohai/repository", "inputs": "/valohai/inputs",
                   "outputs": "/valohai/outputs", "config": "/valohai/config"}


@dataclass
class RunSpec:
    """Everything needed to run one execution's command, already resolved by the caller."""

    run_id: str
    script: Path  # the command as a script file (shebang honoured); run inside `repository_dir`
    repository_dir: Path
    inputs_dir: Path
    outputs_dir: Path
    config_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    gpus: int = 0  # how many GPUs the run asks for
    gpu_ids: list[int] = field(default_factory=list)  # those of this host it was given (uses_host_slots)
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    secret_env: frozenset[str] = frozenset()  # names whose values must never be logged
    options: dict[str, Any] = field(default_factory=dict)  # runner-specific (the local env mode, say)


@dataclass
class OutputChunk:
    """Bytes a run wrote to one stream. An empty chunk is a tick: the run is alive but quiet."""

    stream: Stream
    data: bytes


@dataclass
class RunHandle:
    """A started run. `state` is JSON-serialisable and enough for `reattach` to find it again."""

    run_id: str
    kind: str
    state: dict[str, Any]
    live: Any = None  # in-process objects (a Popen, a container); never persisted


class RunnerError(Exception):
    """A runner could not do what was asked; the message is one line meant for the user."""


class RunLost(RunnerError):
    """The run is gone (its container removed, its agent forgot it): it will never report an exit."""


# Valohai runs a step's commands with bash (`source`, arrays, `[[`); an image without it gets sh
_BASH_OR_SH = 'command -v bash >/dev/null 2>&1 && exec bash "$0"; exec sh "$0"'


def script_argv(script: Path, seen_as: str) -> list[str]:
    """How to run the job script, which the command sees at `seen_as`: by its own shebang, else
    with bash where the host (or the image) has it, else sh. The same rule on every runner."""
    with open(script, "rb") as f:
        if f.read(2) == b"#!":
            script.chmod(0o755)
            return [seen_as]
    return ["/bin/sh", "-c", _BASH_OR_SH, seen_as]


ChunkQueue = queue.Queue  # of OutputChunk, a BaseException the reader hit, or None at the end


def relay(chunks: ChunkQueue, handle: RunHandle, tick: float, skip: int = 0) -> Iterator[OutputChunk]:
    """Yield what a reader thread queues, until its None: an empty chunk whenever it is quiet for
    `tick` seconds, its error as a RunnerError. The first `skip` bytes are dropped (a replay from
    an offset); the rest are counted in `handle.state["consumed"]`."""
    while True:
        try:
            item = chunks.get(timeout=tick)
        except queue.Empty:
            yield OutputChunk("stdout", b"")
            continue
        if item is None:
            return
        if isinstance(item, BaseException):
            raise RunnerError(f"lost the run's output: {item}")
        if skip >= len(item.data):
            skip -= len(item.data)
            continue
        data, skip = item.data[skip:], 0
        handle.state["consumed"] = handle.state.get("consumed", 0) + len(data)
        yield OutputChunk(item.stream, data)


class Runner(Protocol):
    kind: str
    uses_host_slots: bool
    protects_inputs: bool
    resumable: bool

    def preflight(self, image: str | None, gpus: int) -> None:
        """Raise a one-line RunnerError for what `start` would refuse: no image where one is
        needed, an engine or agent that cannot be reached, fewer GPUs than asked for."""
        ...

    def health(self) -> dict[str, Any]:
        """{"health": "ok" or why not, "gpus": [{"index", "name", ...}], ...}: never raises."""
        ...

    def visible_paths(self, spec_dirs: dict[str, Path], run_id: str = "") -> dict[str, str]:
        """Where the command sees the repository, inputs, outputs and config directories."""
        ...

    def start(self, spec: RunSpec) -> RunHandle: ...

    def stream(self, handle: RunHandle, offset: int = 0, tick: float = 0.5) -> Iterator[OutputChunk]:
        """Yield output from byte `offset` (0 unless resumable) until the run ends; an empty chunk
        at least every `tick` s."""
        ...

    def wait(self, handle: RunHandle, timeout: float | None = None) -> int | None:
        """The exit code; None if the run is still going after `timeout` seconds; RunLost when it is
        gone. Where the runner knows why a run ended (out of memory, say), it sets
        `handle.state["end_reason"]`."""
        ...

    def stop(self, handle: RunHandle, grace: float = 10.0) -> None:
        """Ask the run to end (SIGTERM or equivalent), and force it after `grace` seconds."""
        ...

    def abandon(self, state: dict[str, Any]) -> None:
        """Its owner died and will not come back: end the run and clean up what it left."""
        ...


class ResumableRunner(Runner, Protocol):
    """A runner whose runs outlive their owner (`resumable` is True)."""

    def reattach(self, state: dict[str, Any]) -> RunHandle | None:
        """Find a run again from the state its first owner persisted; None when it is gone."""
        ...


_registry: dict[str, Callable[..., Runner]] = {}


def register(kind: str, factory: Callable[..., Runner]) -> None:
    _registry[kind] = factory


def get_runner(kind: str, **options: Any) -> Runner:
    """Build a runner of `kind`; the built-in kinds register themselves on first use."""
    if kind not in _registry and kind in ("local", "docker", "remote"):
        import importlib

        importlib.import_module(f"runners.{kind}")  # registers itself
    if kind not in _registry:
        raise RunnerError(f"unknown runner kind {kind!r} (known: local, docker, remote)")
    return _registry[kind](**options)
