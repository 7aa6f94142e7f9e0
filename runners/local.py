"""The local runner: the command as a process group on this machine.

The command's process group is the unit of control: stop signals the whole group, and when the
main process ends, whatever it left behind in the group is killed too, so no orphan survives an
execution. The direct child dies with its parent (PR_SET_PDEATHSIG), and the owner of the run can
kill the recorded group if the parent itself was killed.

Where it can (runners.sandbox), a run gets its own mount namespace with Valohai's `/valohai`
folders, its inputs read-only and the store out of sight; elsewhere it runs at the real paths.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runners import OutputChunk, RunHandle, RunnerError, RunSpec, register, relay, sandbox, script_argv
from runners.hostinfo import check_host_gpus, host_info
from runners.pyenv import activation_env, ensure_layered_venv

_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031
_READ_SIZE = 1 << 20
_QUEUED_CHUNKS = 16  # at most this many MB read ahead of the consumer


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: own process group, killed if the parent dies."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the owner's reconcile still kills the group
        pass


def _sandbox_leader() -> None:
    """`_die_with_parent` for bubblewrap, which must outlive a stop's SIGTERM (runners.sandbox)."""
    _die_with_parent()
    sandbox.ignore_stop_signal()


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class LocalRunner:
    """Runs a RunSpec's job script (runners.script_argv) in a new process group.

    `envs_dir` is where layered venvs are kept; `gpus` is the GPU setting ("auto" asks NVML);
    `state_dir` (the store) is hidden from a sandboxed command, `envs_dir` excepted, and keeps
    what the runner learnt of this host; `sandbox` False runs every command at the real paths
    even where a namespace could be made.
    Spec options: `env_mode` is "venv" (default: a layered venv over `python`) or "current" (the
    caller's environment as it is).
    """

    kind = "local"
    uses_host_slots = True
    resumable = False  # a local run's pipes die with its owner: it can never be adopted

    def __init__(self, envs_dir: str | Path | None = None, gpus: Any = "auto", state_dir: str | Path | None = None,
                 sandbox: bool = True, **_: Any) -> None:
        self.envs_dir = Path(envs_dir) if envs_dir else Path.home() / ".cache" / "vhtui-envs"
        self.gpus = gpus
        self.state_dir = Path(state_dir) if state_dir else None
        self.wants_sandbox = sandbox

    def sandbox_problem(self) -> str | None:
        """None when runs get their own /valohai; otherwise why they run at real paths."""
        return sandbox.unavailable(self.state_dir) if self.wants_sandbox else "turned off (local_sandbox = false)"

    @property
    def protects_inputs(self) -> bool:  # type: ignore[override]
        """Only in a sandbox: elsewhere the command could write to the very files laid out for it."""
        return self.sandbox_problem() is None

    def preflight(self, image: str | None, gpus: int) -> None:
        check_host_gpus(self.gpus, gpus)

    def health(self) -> dict[str, Any]:
        return {"health": "ok", **host_info(self.gpus), "no_own_valohai": self.sandbox_problem()}

    def start(self, spec: RunSpec) -> RunHandle:
        env = dict(os.environ)
        env.update(spec.env)
        if spec.gpu_ids:  # a step that asks for no GPUs sees what the user's environment shows
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpu_ids)
        if spec.options.get("env_mode", "venv") == "venv":
            python = spec.options.get("python") or "python3"
            venv = ensure_layered_venv(python, spec.repository_dir, self.envs_dir)
            env = activation_env(venv, env)
        sandboxed = self.sandbox_problem() is None
        if sandboxed:
            seen_as = f"{sandbox.FOLDERS['config']}/{spec.script.relative_to(spec.config_dir)}"
            folders = {"repository": spec.repository_dir, "inputs": spec.inputs_dir,
                       "outputs": spec.outputs_dir, "config": spec.config_dir}
            hidden = [self.state_dir] if self.state_dir else []
            argv = sandbox.wrap(script_argv(spec.script, seen_as), folders, hidden, [self.envs_dir])
        else:
            argv = script_argv(spec.script, str(spec.script))
        try:
            proc = subprocess.Popen(
                argv, cwd=spec.repository_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, preexec_fn=_sandbox_leader if sandboxed else _die_with_parent,
            )
        except OSError as exc:
            raise RunnerError(f"cannot start {argv[0]}: {exc.strerror}") from None
        for pipe in (proc.stdout, proc.stderr):
            try:
                fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _READ_SIZE)  # fewer wake-ups on floods
            except OSError:
                pass
        state: dict[str, Any] = {"pid": proc.pid, "pgid": proc.pid}
        if not sandboxed:
            state["no_valohai_folders"] = self.sandbox_problem()
        return RunHandle(spec.run_id, self.kind, state, live=proc)

    def stream(self, handle: RunHandle, offset: int = 0, tick: float = 0.5) -> Iterator[OutputChunk]:
        """Output as it comes. A thread drains the pipes while the caller stores what it got, so
        the command is not held up by the storing (a flood runs at nearly `command > file` speed)."""
        proc: subprocess.Popen[bytes] = handle.live
        if proc is None:
            raise RunnerError("a local run can only be streamed by the process that started it")
        if offset != handle.state.get("consumed", 0):
            raise RunnerError("a local run's output cannot be re-read from an earlier offset")
        chunks: queue.Queue[OutputChunk | BaseException | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        reader = threading.Thread(target=_drain_pipes, args=(proc, handle, chunks), name="pipe-reader", daemon=True)
        reader.start()
        yield from relay(chunks, handle, tick)
        reader.join()

    def wait(self, handle: RunHandle, timeout: float | None = None) -> int | None:
        proc: subprocess.Popen[bytes] = handle.live
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        kill_group(handle.state["pgid"])  # nothing the command started outlives it
        return code

    def stop(self, handle: RunHandle, grace: float = 10.0) -> None:
        pgid = handle.state["pgid"]
        deadline = time.monotonic() + grace
        handle.state["grace_until"] = deadline
        kill_group(pgid, signal.SIGTERM)
        while time.monotonic() < deadline:
            if handle.live is not None and handle.live.poll() is not None and not group_alive(pgid):
                return
            if handle.live is None and not group_alive(pgid):
                return
            time.sleep(0.05)
        kill_group(pgid, signal.SIGKILL)

    def abandon(self, state: dict[str, Any]) -> None:
        if state.get("pgid"):
            kill_group(int(state["pgid"]))

    def visible_paths(self, spec_dirs: dict[str, Path], run_id: str = "") -> dict[str, str]:
        if self.sandbox_problem() is None:
            return {name: sandbox.FOLDERS[name] for name in spec_dirs}
        return {name: str(path) for name, path in spec_dirs.items()}


def _drain_pipes(
    proc: subprocess.Popen[bytes], handle: RunHandle, chunks: queue.Queue[OutputChunk | BaseException | None],
) -> None:
    """Read stdout and stderr in arrival order until both close; None marks the end."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")  # type: ignore[arg-type]
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")  # type: ignore[arg-type]
    open_streams = 2
    exited_at: float | None = None
    try:
        while open_streams:
            for key, _ in selector.select(0.25):
                data = os.read(key.fileobj.fileno(), _READ_SIZE)  # type: ignore[union-attr]
                if data:
                    chunks.put(OutputChunk(key.data, data))
                else:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            elif exited_at is not None and time.monotonic() - max(exited_at, handle.state.get("grace_until", 0)) > 1.0:
                # the main process is gone but something it started holds the pipes open (during a
                # stop, that something gets the whole grace period to finish, as stop() promises)
                kill_group(handle.state["pgid"])
    except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
        chunks.put(exc)
    finally:
        selector.close()
        chunks.put(None)


register("local", LocalRunner)
