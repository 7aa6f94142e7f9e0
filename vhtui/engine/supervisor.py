"""The supervisor: one detached process that owns one execution from queue to final status.

It waits for a slot, lays out the runtime contract, starts the run through a runner, appends the
output to the log, ingests metadata in batches, enforces time-limit, no-output-timeout,
stop-condition and stop requests, stores outputs (live ones at once, the rest at the end, whatever
the outcome) and writes the final status. A heartbeat and its pid in the store let `reconcile` tell
a dead supervisor from a quiet one.

Run as `python -m vhtui.engine.supervisor EXECUTION_ID`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from runners import ResumableRunner, RunHandle, RunLost, Runner, RunnerError, RunSpec
from runners.masking import SecretMask
from vhtui.context import Context
from vhtui.data.datums import DatumStore
from vhtui.data.inputs import InputFile, materialize
from vhtui.data.outputs import OutputCollector
from vhtui.engine import conditions, registry, secrets
from vhtui.engine.metadata import MetadataSink
from vhtui.engine.runtime import ExecutionDirs, vh_environment, write_config
from vhtui.engine.slots import SlotLease, try_acquire, visible_gpus
from vhtui.errors import StoreError, VhtuiError
from vhtui.store import executions as execution_rows
from vhtui.store import metadata as metadata_rows
from vhtui.store import projects as project_rows
from vhtui.supervision import owner
from vhtui.supervision.logfile import LogWriter, truncate_log

FLUSH_S = 0.25
FLUSH_BLOCKS = 64
CONTROL_S = 0.5
LIVE_OUTPUTS_S = 1.0


class Supervisor:
    def __init__(self, ctx: Context, execution_id: int) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.id = execution_id
        self.execution: dict[str, Any] = execution_rows.get(self.db, execution_id)  # type: ignore[assignment]
        self.project = project_rows.get(self.db, self.execution["project_id"])
        self.dirs = ExecutionDirs(ctx.home.execution_dir(execution_id))
        self.spec: dict[str, Any] = self.execution["spec"]
        self.datums = DatumStore(ctx.home, self.db)
        self.collector = OutputCollector(self.datums, self.dirs.outputs, self.execution["project_id"], execution_id)
        self.stop_reason: tuple[str, str] | None = None  # (final status, reason)
        self.runner: Runner | None = None
        self.handle: RunHandle | None = None  # the run, once started: what a failure must end
        self.failed = False
        self.reserve = self.dirs.root / ".reserve"
        self.secret_values = secrets.take(self.dirs.root)  # read once: the file is gone from here on
        self.mask = SecretMask(list(self.secret_values.values()))
        self.signalled = False
        self.last_heartbeat = 0.0
        self.saved_checkpoint: dict[str, int] | None = None

    # -- control ---------------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def _heartbeat(self, now: float, handle: RunHandle | None = None) -> None:
        if now - self.last_heartbeat >= owner.HEARTBEAT_S:
            fields: dict[str, Any] = {"heartbeat_at": time.time()}
            if handle is not None and handle.state.get("checkpoint") != self.saved_checkpoint:
                fields["runner_state"] = handle.state  # where a resumed supervisor would go on from
                self.saved_checkpoint = handle.state.get("checkpoint")
            try:
                execution_rows.update(self.db, self.id, **fields)
            except StoreError as exc:
                if exc.kind != "busy":
                    raise
                return  # a beat missed while another process holds the store; the run goes on
            self.last_heartbeat = now

    def _stop_requested(self) -> bool:
        return self.signalled or execution_rows.stop_requested(self.db, self.id)

    # -- lifecycle -------------------------------------------------------------------------
    def _claim(self, **fields: Any) -> bool:
        """Become the execution's owner: signals handled, pid and heartbeat recorded."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        pid, started = owner.me()
        return execution_rows.update(self.db, self.id, supervisor_pid=pid, supervisor_started=started,
                                     heartbeat_at=time.time(), **fields)

    def run(self) -> int:
        queued_at = time.time()
        if not self._claim(status="queued", queued_at=queued_at):
            return 0  # already final (stopped before it was ever queued)
        self.execution["queued_at"] = queued_at
        try:
            runner = registry.open_runner(self.ctx, self.execution["runner"])
        except VhtuiError as exc:
            self._finish("error", None, str(exc))
            return 1
        lease = self._wait_for_slot() if runner.uses_host_slots else SlotLease([], [])
        if lease is None:
            self._finish("stopped", None, "stopped while queued")
            return 0
        try:
            return self._run_with_slot(runner, lease.gpu_ids)
        except BaseException as exc:
            self.fail(exc)  # before the slot is released: the run must be ended first
            raise
        finally:
            lease.release()

    def _wait_for_slot(self) -> Any:
        wanted = int(self.spec.get("gpus", 0))
        gpus = visible_gpus(self.ctx.settings.gpus) if wanted else []
        while True:
            lease = try_acquire(self.ctx.home.slots, self.ctx.settings.max_parallel, gpus, wanted)
            if lease:
                return lease
            if self._stop_requested():
                return None
            self._heartbeat(time.monotonic())
            time.sleep(0.2)

    def _run_with_slot(self, runner: Runner, gpu_ids: list[int]) -> int:
        inputs = [InputFile(name=r["name"], position=r["position"], uri=r["uri"], filename=r["filename"],
                            sha256=r["sha256"], size=r["size"], datum_id=r["datum_id"])
                  for r in execution_rows.inputs_of(self.db, self.id)]
        self.dirs.create()
        self._reserve_room()
        try:
            materialize(inputs, self.datums.blobs, self.dirs.inputs, share=runner.protects_inputs)
        except Exception as exc:  # noqa: BLE001 (a full disk, a vanished cache file)
            self._finish("error", None, f"cannot lay out inputs: {exc}")
            return 1
        try:
            seen = runner.visible_paths({"repository": self.dirs.repository, "inputs": self.dirs.inputs,
                                         "outputs": self.dirs.outputs, "config": self.dirs.config},
                                        self.execution["uid"])
        except RunnerError as exc:
            self._finish("error", None, str(exc))
            return 1
        self.collector.seen_at = seen["outputs"]
        write_config(self.dirs, self.execution, self.project, inputs, seen["inputs"], self.ctx.settings.owner)
        env = vh_environment(self.execution, self.project, seen)
        env.update(self.execution["environment"])
        env.update(self.secret_values)
        resources = self.spec.get("resources") or {}
        run_spec = RunSpec(
            run_id=self.execution["uid"], script=self.dirs.script, repository_dir=self.dirs.repository,
            inputs_dir=self.dirs.inputs, outputs_dir=self.dirs.outputs, config_dir=self.dirs.config, env=env,
            image=self.execution.get("image"), gpus=int(self.spec.get("gpus", 0)), gpu_ids=gpu_ids,
            cpu_limit=(resources.get("cpu") or {}).get("max"),
            memory_limit_mb=(resources.get("memory") or {}).get("max"),
            options={"env_mode": self.spec.get("env_mode", "venv"), "python": self.spec.get("python")},
            secret_env=frozenset(self.spec.get("secret_env") or ()),
        )
        if self._stop_requested():
            self._finish("stopped", None, "stopped before it started")
            return 0
        try:
            handle = runner.start(run_spec)
            self.runner, self.handle = runner, handle
        except RunnerError as exc:
            self._finish("error", None, str(exc))
            return 1
        ride_out_busy(lambda: execution_rows.update(self.db, self.id, status="started", started_at=time.time(),
                                                    runner_state=handle.state))
        return self._follow(runner, handle)

    def resume(self) -> int:
        """Take over a remote run whose supervisor died: go on from the last checkpoint, where the
        log, the metadata and the runner's output offset last agreed."""
        self._claim()
        state = self.execution.get("runner_state") or {}
        try:
            runner = registry.open_runner(self.ctx, self.execution["runner"])
        except VhtuiError as exc:
            self._finish("crashed", None, f"its supervisor died and the runner is gone: {exc}")
            return 1
        if not runner.resumable:
            self._finish("crashed", None, f"its supervisor died, and runs on {self.execution['runner']} end with it")
            return 1
        handle = cast(ResumableRunner, runner).reattach(state)
        self.runner, self.handle = runner, handle
        if handle is None:
            self._finish("crashed", None, f"its supervisor died and runner {self.execution['runner']} "
                                          "no longer has the run")
            return 1
        checkpoint = state.get("checkpoint") or {"offset": 0, "log_size": 0, "seq": 0}
        truncate_log(self.ctx.home.log_path(self.id), checkpoint["log_size"])
        metadata_rows.truncate(self.db, self.id, checkpoint["seq"])
        return self._follow(runner, handle, checkpoint["offset"], self.execution.get("metadata_summary"))

    def _follow(self, runner: Runner, handle: RunHandle, offset: int = 0,
                summary: dict[str, Any] | None = None) -> int:
        """Pump the run's output until it ends, then conclude; a run that vanished has crashed."""
        try:
            exit_code = self._pump(runner, handle, offset, summary)
        except RunLost as exc:
            self._collect(tags=[CRASH_TAG])
            self._finish("crashed", None, f"the run was lost: {exc}")
            return 1
        return self._conclude(exit_code, handle.state.get("end_reason"), handle.state.get("no_valohai_folders"))

    def _pump(self, runner: Runner, handle: RunHandle, offset: int = 0,
              summary: dict[str, Any] | None = None) -> int | None:
        """Move output to the log and the store until the run ends; enforce limits meanwhile."""
        log = LogWriter(self.ctx.home.log_path(self.id))
        sink = MetadataSink(self.ctx.home.database, self.id, summary)
        resumable = runner.resumable
        time_limit = self.spec.get("time_limit")
        no_output = self.spec.get("no_output_timeout")
        stop_condition = self.spec.get("stop_condition")
        started = last_output = last_flush = last_control = last_live = time.monotonic()
        stopping = False
        candidates: deque[dict[str, int]] = deque(maxlen=64)  # points where the log had no partial line
        try:
            for chunk in runner.stream(handle, offset):
                now = time.monotonic()
                data = self.mask.feed(chunk.stream, chunk.data) if chunk.data else b""
                if data:
                    last_output = now
                    regions = log.write(chunk.stream, data)
                    if chunk.stream == "stdout" and regions:
                        sink.feed(regions, time.time())
                if len(sink.pending) >= FLUSH_BLOCKS or now - last_flush >= FLUSH_S:
                    if sink.flush() and stop_condition and not stopping \
                            and conditions.evaluate(stop_condition, sink.summary):
                        stopping = self._begin_stop(runner, handle, "stopped", f"stop condition met: {stop_condition}")
                    last_flush = now
                if now - last_control < CONTROL_S:
                    continue
                last_control = now
                if resumable:
                    self._checkpoint(handle, log, sink, candidates)
                self._heartbeat(now, handle if resumable else None)
                if not stopping:
                    if self._stop_requested():
                        stopping = self._begin_stop(runner, handle, "stopped", "stopped by request")
                    elif time_limit and now - started > time_limit:
                        stopping = self._begin_stop(runner, handle, "error", f"time limit of {time_limit:g}s exceeded")
                    elif no_output and now - last_output > no_output:
                        stopping = self._begin_stop(runner, handle, "error", f"no output for {no_output:g}s")
                if now - last_live >= LIVE_OUTPUTS_S:
                    try:
                        self.collector.collect_live()
                    except StoreError as exc:
                        if exc.kind != "busy":
                            raise
                    last_live = now
        finally:
            for stream in ("stdout", "stderr"):
                if rest := self.mask.feed(stream, b"", final=True):
                    log.write(stream, rest)
            sink.feed(log.close(), time.time())
            sink.close()
        return runner.wait(handle)

    @staticmethod
    def _checkpoint(handle: RunHandle, log: LogWriter, sink: MetadataSink, candidates: deque[dict[str, int]]) -> None:
        """Where a resumed supervisor would go on from: the newest point at which the log held no
        partial line and every metadata event before it is committed. Under a steady stream the
        metadata writer is always a batch behind, so points are kept until it catches up with them."""
        if not any(log.pending.values()):
            candidates.append({"offset": handle.state.get("consumed", 0), "log_size": log.offset, "seq": sink.seq})
        while candidates and candidates[0]["seq"] <= sink.committed_seq:
            handle.state["checkpoint"] = candidates.popleft()

    def _begin_stop(self, runner: Runner, handle: RunHandle, status: str, reason: str) -> bool:
        """Start stopping without blocking the pump: output must keep flowing while the run ends."""
        self.stop_reason = (status, reason)
        ride_out_busy(lambda: execution_rows.update(self.db, self.id, status="stopping"))
        grace = float(self.spec.get("stop_grace", 10.0))
        threading.Thread(target=runner.stop, args=(handle, grace), daemon=True).start()
        return True

    def _collect(self, tags: list[str] | None = None) -> None:
        """Store every output, whatever the outcome (as Valohai does); what was left out is said at
        the end of the log."""
        ride_out_busy(lambda: self.collector.collect_all(tags=tags))
        if self.collector.skipped:
            log = LogWriter(self.ctx.home.log_path(self.id))
            for rel, why in sorted(self.collector.skipped.items()):
                log.write("stderr", f"vhtui: output {rel} was not stored: it is {why}\n".encode())
            log.close()

    def _conclude(self, exit_code: int | None, end_reason: str | None = None,
                  no_valohai_folders: str | None = None) -> int:
        """`no_valohai_folders` is why the run could not see its folders at /valohai (a runner that
        could not make them says so in its state)."""
        self._collect()
        if self.stop_reason:
            status, reason = self.stop_reason
        elif exit_code == 0:
            status, reason = "complete", None
        else:
            status, reason = "error", f"exit code {exit_code}" + (f": {end_reason}" if end_reason else "")
            if no_valohai_folders and self._log_tail_mentions(b"/valohai/"):
                reason += (f"; the command uses /valohai/ paths, which this local run could not have "
                           f"({no_valohai_folders}): run it with --runner docker, or read the folders "
                           "from $VH_INPUTS_DIR, $VH_OUTPUTS_DIR and $VH_CONFIG_DIR")
        if self.collector.errors:
            reason = "; ".join(filter(None, [reason, f"some outputs were not stored: {self.collector.errors[0]}"]))
            status = "error" if status == "complete" else status
        self._finish(status, exit_code, reason)
        return 0

    def _log_tail_mentions(self, text: bytes, tail: int = 1 << 16) -> bool:
        try:
            with open(self.ctx.home.log_path(self.id), "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - tail))
                return text in log.read()
        except OSError:
            return False

    def _finish(self, status: str, exit_code: int | None, reason: str | None) -> None:
        self.reserve.unlink(missing_ok=True)
        now = time.time()
        ride_out_busy(lambda: execution_rows.update(self.db, self.id, status=status, exit_code=exit_code,
                                                    reason=reason, ended_at=now, heartbeat_at=now))

    def _reserve_room(self) -> None:
        """A little disk space set aside (a file of zeros) that a full disk gives back at the end."""
        try:
            with open(self.reserve, "wb") as f:
                f.write(bytes(RESERVE_BYTES))
        except OSError:
            self.reserve.unlink(missing_ok=True)

    def fail(self, exc: BaseException) -> None:
        """The supervisor itself failed: end the run (nothing it started may outlive it), store what
        it left in outputs/, and record why, once."""
        if self.failed:
            return
        self.failed = True
        if self.runner is not None and self.handle is not None:
            try:
                self.runner.abandon(self.handle.state)
            except Exception:  # noqa: BLE001 (ending the run is all that matters now)
                pass
        full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
            (isinstance(exc, StoreError) and exc.kind == "full")
        if full:
            self.reserve.unlink(missing_ok=True)  # room to record how it ended
            reason = f"the disk holding {self.ctx.home.root} is full; the run was ended"
        else:
            reason = str(exc) if isinstance(exc, VhtuiError) else f"supervisor failed: {type(exc).__name__}: {exc}"
        _say(reason)
        try:
            if not full:
                self.collector.collect_all(tags=[CRASH_TAG])
            self._finish("error" if full else "crashed", None, reason)
        except Exception as again:  # noqa: BLE001 (the reason is in supervisor.log, which reconcile reads)
            _say(f"could not record it: {again}")


CRASH_TAG = "from-crashed-run"  # outputs stored after their run crashed
RESERVE_BYTES = 256 << 10  # kept free for the final record, should the disk fill up during the run


def _say(line: str) -> None:
    """One line to supervisor.log, which reconcile reads when this process is gone."""
    try:
        print(f"vhtui: {line}", file=sys.stderr, flush=True)
    except OSError:
        pass


def ride_out_busy(write: Callable[[], Any]) -> Any:
    """A write of the supervisor's: another process holding the store's lock is waited out, never a
    reason to give up a live run or lose how it ended."""
    while True:
        try:
            return write()
        except StoreError as exc:
            if exc.kind != "busy":
                raise
            print(f"vhtui: {exc}; trying again", file=sys.stderr, flush=True)
            time.sleep(1.0)


def collect_leftovers(ctx: Context, execution_id: int) -> list[dict[str, Any]]:
    """Store what an ended execution left in outputs/ and is not stored yet (its supervisor died
    while collecting, say), tagged as from a crashed run; safe to repeat, and to run twice at once."""
    execution = execution_rows.get(ctx.db, execution_id)
    if execution is None:
        return []
    directory = ctx.home.execution_dir(execution_id)
    if not directory.is_dir():
        return []
    with open(directory / "collect.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        collector = OutputCollector(DatumStore(ctx.home, ctx.db), directory / "outputs", execution["project_id"],
                                    execution_id)
        collector.skip_stored()
        return collector.collect_all(tags=[CRASH_TAG])


def main(argv: list[str]) -> int:
    execution_id = int(argv[0])
    ctx = Context.open()
    if "--collect" in argv:
        collect_leftovers(ctx, execution_id)
        return 0
    supervisor = Supervisor(ctx, execution_id)
    try:
        return supervisor.resume() if "--resume" in argv else supervisor.run()
    except BaseException as exc:  # ended and recorded, then the traceback goes to supervisor.log
        supervisor.fail(exc)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
