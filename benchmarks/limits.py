"""Limits and failure paths: how soon vhtui ends what it must end, against baselines from the same run.

    .venv/bin/python -m benchmarks.limits            # three rounds each, a 4 s grace, 8 x 50,000-event floods
    .venv/bin/python -m benchmarks.limits --quick    # one round, a 2 s grace, 4 x 5,000-event floods
    .venv/bin/python -m benchmarks.limits --only stop --only endpoint

These are the timings the test suite checks only as behaviour (tests/test_runners.py,
tests/test_reliability.py, tests/test_deploy.py say what happens; this says how soon):

  1. stop: `vhtui exec stop` of a command that ignores SIGTERM, from the stop request to the final
     status in the store, against the grace period; and of one that exits on SIGTERM, against the
     same command sent SIGTERM directly;
  2. limits: a time-limit and a no-output-timeout, from the moment the limit is reached to the final
     status, against `timeout` enforcing the same limit on the same command run directly;
  3. endpoint: a request through the router to a version whose server was just killed, and to it
     once it is marked crashed, against a request to a live version; and how soon it is marked;
  4. floods: N executions printing metadata at once, launch to all final, against one alone.

Every run uses the local runner with `--env current`, its own temporary $VHTUI_HOME, and the CLI
as a user runs it. Figures are printed, never asserted: the exit status is 1 only when a benchmark
could not run or a result was wrong (a wrong status, a lost event).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.deploy import Bench
from benchmarks.engine import FINAL, VHTUI, Report, Row, Sandbox, info, median, ms, run_benchmarks

STEPS = """\
- step:
    name: stubborn
    image: python:3.12
    command: python stubborn.py
- step:
    name: obedient
    image: python:3.12
    command: python obedient.py
- step:
    name: too-long
    image: busybox
    time-limit: {limit}
    command:
      - echo begin
      - sleep 60
- step:
    name: too-quiet
    image: busybox
    no-output-timeout: {limit}
    command:
      - echo once
      - sleep 60
- step:
    name: flood
    image: python:3.12
    command: python flood.py {{parameters}}
    parameters:
      - name: events
        type: integer
"""

STUBBORN = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""

OBEDIENT = """\
import time
print("ready", flush=True)
time.sleep(120)
"""

FLOOD = """\
import argparse, json
p = argparse.ArgumentParser(); p.add_argument("--events", type=int)
for i in range(p.parse_args().events):
    print(json.dumps({"i": i, "loss": 1.0 / (i + 1)}))
"""

LIMIT_S = 2  # time-limit and no-output-timeout: Valohai's are whole seconds


class LimitsSandbox(Sandbox):
    """A Sandbox whose executions are launched and then watched (they do not simply complete)."""

    def __init__(self) -> None:
        super().__init__("limits")
        self.write("valohai.yaml", STEPS.format(limit=LIMIT_S))
        self.write("stubborn.py", STUBBORN)
        self.write("obedient.py", OBEDIENT)
        self.write("flood.py", FLOOD)

    def start(self, step: str, *args: str, **env: str) -> int:
        """`vhtui run STEP --env current`: its counter, once the CLI has returned."""
        out = subprocess.run([*VHTUI, "run", step, *args, "--env", "current"], cwd=self.project,
                             env=dict(self.env, **env), capture_output=True, text=True, check=True).stdout
        return int(out.split()[-1])

    def row(self, counter: int) -> sqlite3.Row:
        return self.query("SELECT * FROM executions WHERE counter = ?", (counter,))[0]

    def watch(self, what: str, condition: Callable[[], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {timeout:.0f} s")
            time.sleep(0.005)
        return value

    def final(self, counter: int) -> sqlite3.Row:
        return self.watch(f"final status of #{counter}",
                          lambda: row if (row := self.row(counter))["status"] in FINAL else None)

    def printed(self, counter: int, line: bytes) -> None:
        log = self.home / "executions" / str(self.row(counter)["id"]) / "output.log"
        self.watch(f"{line!r} from #{counter}", lambda: log.exists() and line in log.read_bytes().splitlines())

    def stop(self, counter: int) -> float:
        """`vhtui exec stop N` (it returns once the execution is final): its wall time."""
        began = time.perf_counter()
        subprocess.run([*VHTUI, "exec", "stop", str(counter)], cwd=self.project, env=self.env,
                       capture_output=True, check=True)
        return time.perf_counter() - began


def expect(row: sqlite3.Row, status: str, reason: str) -> None:
    if row["status"] != status or reason not in (row["reason"] or ""):
        raise RuntimeError(f"#{row['counter']} ended {row['status']} ({row['reason']}), not {status} ({reason})")


def offset(measured: float, baseline: float) -> str:
    return f"{(measured - baseline) * 1000:+.0f} ms"


def direct(script: str, cwd: Path, end: Callable[[subprocess.Popen[bytes]], None]) -> float:
    """The baseline: `script` run directly, once it says "ready" ended by `end`; seconds until it exits."""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=cwd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    began = time.perf_counter()
    end(proc)
    proc.wait()
    return time.perf_counter() - began


# --- 1. stop --------------------------------------------------------------------------------------

def bench_stop(report: Report, quick: bool) -> None:
    grace = 2.0 if quick else 4.0
    rounds = 1 if quick else 3
    sb = LimitsSandbox()
    try:
        killed, cli, obeyed = [], [], []
        for _ in range(rounds):
            counter = sb.start("stubborn", VHTUI_STOP_GRACE=f"{grace:g}")
            sb.printed(counter, b"ready")
            cli.append(sb.stop(counter))
            row = sb.final(counter)
            expect(row, "stopped", "stopped by request")
            killed.append(row["ended_at"] - row["stop_requested_at"])
            counter = sb.start("obedient", VHTUI_STOP_GRACE=f"{grace:g}")
            sb.printed(counter, b"ready")
            sb.stop(counter)
            row = sb.final(counter)
            expect(row, "stopped", "stopped by request")
            obeyed.append(row["ended_at"] - row["stop_requested_at"])
        sent = [direct(OBEDIENT, sb.project, lambda p: p.send_signal(signal.SIGTERM)) for _ in range(rounds)]
        info(f"ignoring SIGTERM: stop request -> final {', '.join(f'{s:.3f}' for s in killed)} s, "
             f"`vhtui exec stop` {', '.join(f'{s:.3f}' for s in cli)} s (grace {grace:g} s)")
        info(f"exiting on SIGTERM: stop request -> final {', '.join(ms(s) for s in obeyed)}; "
             f"SIGTERM -> exit run directly {', '.join(ms(s) for s in sent)}")
        k, c = median(killed), median(cli)
        report.add(Row("stop", "ignores SIGTERM: request -> final", f"{k:.3f} s", f"grace {grace:g} s",
                       f"{k / grace:.2f}x, {offset(k, grace)}", "<= grace + 1 s", grace <= k <= grace + 1))
        report.add(Row("stop", "ignores SIGTERM: `vhtui exec stop` returns", f"{c:.3f} s", f"grace {grace:g} s",
                       f"{c / grace:.2f}x, {offset(c, grace)}"))
        o, s = median(obeyed), median(sent)
        report.add(Row("stop", "exits on SIGTERM: request -> final", ms(o), f"direct {ms(s)}", offset(o, s),
                       "<= 1 s", o <= 1.0))
    finally:
        sb.close()


# --- 2. time-limit and no-output-timeout --------------------------------------------------------

def bench_limits(report: Report, quick: bool) -> None:
    rounds = 1 if quick else 3
    sb = LimitsSandbox()
    try:
        over: dict[str, list[float]] = {"too-long": [], "too-quiet": []}
        reasons = {"too-long": "time limit", "too-quiet": "no output"}
        for _ in range(rounds):
            for step, late in over.items():
                row = sb.final(sb.start(step))
                expect(row, "error", reasons[step])
                late.append(row["ended_at"] - row["started_at"] - LIMIT_S)  # both print at once: the
                # limit is reached LIMIT_S after started_at (when the store says the command started)
        timed = [_timeout_latency(sb.project) for _ in range(rounds)]
        t = median(timed)
        info(f"`timeout {LIMIT_S} sleep 60` run directly: over its limit by {', '.join(ms(x) for x in timed)}")
        for step, label in (("too-long", f"time-limit {LIMIT_S} s"), ("too-quiet", f"no-output-timeout {LIMIT_S} s")):
            late = over[step]
            info(f"{label}: limit -> final {', '.join(ms(x) for x in late)}")
            m = median(late)
            report.add(Row("limits", f"{label}: limit -> final", ms(m), f"`timeout` {ms(t)}", offset(m, t),
                           "<= 1 s", m <= 1.0))
    finally:
        sb.close()


def _timeout_latency(cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["timeout", str(LIMIT_S), "sleep", "60"], cwd=cwd)
    return time.perf_counter() - began - LIMIT_S


# --- 3. a killed endpoint --------------------------------------------------------------------------

def bench_endpoint(report: Report, quick: bool) -> None:
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="vhtui-bench-limits-") as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.vhtui("deploy", "version", "create", "bench", "--endpoint", "echo", "--adhoc", "--env", "current")
            bench.vhtui("deploy", "start", "bench")
            live_url = f"http://127.0.0.1:{bench.router_port}/bench/v1/echo/"
            killed, crashed, marked = [], [], []
            with httpx.Client(timeout=120) as client:
                for _ in range(20):
                    client.get(live_url).raise_for_status()
                live = [_timed(client, live_url)[0] for _ in range(200 if quick else 1000)]
                for n in range(2, 2 + rounds):
                    version = f"v{n}"
                    bench.vhtui("deploy", "version", "create", "bench", "--endpoint", "echo", "--adhoc",
                                "--env", "current")
                    bench.vhtui("deploy", "start", "bench", version)
                    url = f"http://127.0.0.1:{bench.router_port}/bench/{version}/echo/"
                    client.get(url).raise_for_status()
                    os.killpg(_server_pgid(bench, version), signal.SIGKILL)
                    killed_at = time.perf_counter()
                    took, status = _timed(client, url)
                    if status not in (502, 503):
                        raise RuntimeError(f"a killed server's version answered {status}, not 502 or 503")
                    killed.append(took)
                    marked.append(_until_crashed(bench, version) - killed_at)
                    took, status = _timed(client, url)
                    if status != 503:
                        raise RuntimeError(f"a crashed version answered {status}, not 503")
                    crashed.append(took)
            l = median(live)
            info(f"live version through the router: p50 {ms(l)} over {len(live)} requests")
            info(f"just killed: {', '.join(ms(x) for x in killed)}; once crashed: {', '.join(ms(x) for x in crashed)}; "
                 f"kill -> marked crashed {', '.join(f'{x:.2f} s' for x in marked)}")
            k, c = median(killed), median(crashed)
            report.add(Row("endpoint", "just killed: first answer (502/503)", ms(k), f"live {ms(l)}",
                           f"{k / l:.1f}x", "< 3 s", k < 3))
            report.add(Row("endpoint", "marked crashed: answer (503)", ms(c), f"live {ms(l)}", f"{c / l:.1f}x"))
            report.add(Row("endpoint", "kill -> marked crashed", f"{median(marked):.2f} s"))
        finally:
            bench.vhtui("deploy", "stop", "--all")


def _timed(client: httpx.Client, url: str) -> tuple[float, int]:
    began = time.perf_counter()
    status = client.get(url).status_code
    return time.perf_counter() - began, status


def _endpoint(bench: Bench, version: str) -> dict[str, Any]:
    doc = json.loads(bench.vhtui("deploy", "info", "bench", version, "--json"))
    return dict(doc["versions"][0]["endpoints"][0])


def _server_pgid(bench: Bench, version: str) -> int:
    endpoint_id = _endpoint(bench, version)["endpoint_id"]
    with sqlite3.connect(Path(bench.env["VHTUI_HOME"]) / "vhtui.sqlite3") as conn:
        state = conn.execute("SELECT runner_state FROM deployment_endpoints WHERE id = ?", (endpoint_id,)).fetchone()[0]
    return int(json.loads(state)["pgid"])


def _until_crashed(bench: Bench, version: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while _endpoint(bench, version)["status"] != "crashed":
        if time.monotonic() > deadline:
            raise RuntimeError(f"version {version} not marked crashed after {timeout:.0f} s")
        time.sleep(0.01)
    return time.perf_counter()


# --- 4. parallel metadata floods -------------------------------------------------------------------

def bench_floods(report: Report, quick: bool) -> None:
    runs, events = (4, 5_000) if quick else (8, 50_000)
    sb = LimitsSandbox()
    try:
        alone = sb.launch("flood", f"--events={events}")
        _check_flood(sb.row(alone.counter), events)
        env = dict(sb.env, VHTUI_MAX_PARALLEL=str(runs))
        began = time.perf_counter()
        procs = [subprocess.Popen([*VHTUI, "run", "flood", f"--events={events}", "--env", "current"], cwd=sb.project,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(runs)]
        counters = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            if proc.returncode:
                raise RuntimeError(f"vhtui run flood failed: {err.decode()}")
            counters.append(int(out.split()[-1]))
        rows = [sb.final(counter) for counter in counters]
        wall = time.perf_counter() - began
        for row in rows:
            _check_flood(row, events)
        info(f"one flood of {events:,} events: launch -> complete {alone.total:.2f} s; {runs} at once: {wall:.2f} s "
             f"({runs * events / wall:,.0f} events/s stored, {os.cpu_count()} CPUs)")
        report.add(Row("floods", f"{runs} x {events:,} events at once: launch -> all final", f"{wall:.2f} s",
                       f"one alone {alone.total:.2f} s", f"{wall / alone.total:.2f}x for {runs}x the work",
                       "-" if quick else "< 90 s", None if quick else wall < 90))
        report.add(Row("floods", "all events stored", f"{runs}/{runs} runs", "-", "-", "all", True))
    finally:
        sb.close()


def _check_flood(row: sqlite3.Row, events: int) -> None:
    if row["status"] != "complete" or row["metadata_count"] != events:
        raise RuntimeError(f"#{row['counter']} ended {row['status']} with {row['metadata_count']} of {events} events")


BENCHMARKS: dict[str, tuple[str, Callable[[Report, bool], None]]] = {
    "stop": ("1. stop: SIGTERM, grace period, SIGKILL", bench_stop),
    "limits": ("2. time-limit and no-output-timeout", bench_limits),
    "endpoint": ("3. a killed endpoint behind the router", bench_endpoint),
    "floods": ("4. parallel metadata floods", bench_floods),
}


def main(argv: list[str] | None = None) -> int:
    return run_benchmarks("python -m benchmarks.limits", __doc__ or "", BENCHMARKS, argv,
                          "one round each, smaller floods: a smoke run")


if __name__ == "__main__":
    sys.exit(main())
