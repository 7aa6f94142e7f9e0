"""Engine benchmarks: launch overhead, metadata ingestion, log capture, output collection.

Run from the repository root:

    .venv/bin/python -m benchmarks.engine            # full sizes (about a minute on 2 cores)
    .venv/bin/python -m benchmarks.engine --quick    # sizes / 10, a smoke run
    .venv/bin/python -m benchmarks.engine --only log --only outputs

Each benchmark drives the real CLI as a user does (`vhtui run STEP --env current` in a directory
with a valohai.yaml, its own temporary $VHTUI_HOME), watches the store by polling SQLite directly,
and compares against a baseline measured in the same run on the same machine. Figures are printed,
never asserted: a missed target is reported in the summary, not raised (the exit status is 1 only when a
benchmark could not run or its results were wrong, e.g. a lost line).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from runners import sandbox

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VHTUI = [str(BIN / "vhtui")] if (BIN / "vhtui").exists() else [sys.executable, "-m", "vhtui"]
FINAL = ("complete", "error", "stopped", "crashed")
MB = 1_000_000
MiB = 1 << 20

PROJECT_YAML = """\
- step:
    name: noop
    image: python:3.12
    command: "true"
- step:
    name: metadata
    image: python:3.12
    command: python emit_metadata.py {parameters}
    parameters:
      - name: points
        type: integer
        default: 1000
- step:
    name: log
    image: python:3.12
    command: python emit_log.py {parameters}
    parameters:
      - name: bytes
        type: integer
        default: 1000000
- step:
    name: outputs
    image: python:3.12
    command: python write_outputs.py {parameters}
    parameters:
      - name: files
        type: integer
        default: 4
      - name: size
        type: integer
        default: 1048576
"""

# The metadata producer: JSON lines on a buffered stdout (the run's env sets PYTHONUNBUFFERED=1,
# which would make every print a write(2), so the script opens its own buffered text stream, as a
# training loop printing through a logger with a buffer would). Start and end times go to stderr,
# which is logged but never parsed as metadata.
EMIT_METADATA = '''\
import argparse, os, sys, time
p = argparse.ArgumentParser(); p.add_argument("--points", type=int, required=True)
n = p.parse_args().points
sys.stderr.write("EMIT_START %.6f\\n" % time.time()); sys.stderr.flush()
out = open(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False)
write = out.write
for i in range(n):
    write('{"step": %d, "loss": %.6f}\\n' % (i, 1.0 / (i + 1)))
out.flush()
sys.stderr.write("EMIT_END %.6f\\n" % time.time()); sys.stderr.flush()
'''

# The log producer: ~100-byte non-JSON lines in 1 MB writes, then one distinctive last line.
EMIT_LOG = '''\
import argparse, os
p = argparse.ArgumentParser(); p.add_argument("--bytes", type=int, required=True)
total = p.parse_args().bytes
chunk = "".join(("log line %05d of a chunk, no json here " % i).ljust(99, "x") + "\\n"
                for i in range(10000)).encode()
chunks = max(1, total // len(chunk))
def put(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
for _ in range(chunks):
    put(chunk)
put(b"LAST LINE: %d chunks of %d lines\\n" % (chunks, 10000))
'''

# The output producer: FILES distinct files of SIZE bytes in $VH_OUTPUTS_DIR (or --dir), from one
# random block (so generation costs writes, not getrandom); the last thing it does is print when
# it finished, so the collection phase can be told apart from generation.
WRITE_OUTPUTS = '''\
import argparse, os, time
p = argparse.ArgumentParser()
p.add_argument("--files", type=int, required=True); p.add_argument("--size", type=int, required=True)
p.add_argument("--dir", default=os.environ.get("VH_OUTPUTS_DIR"))
a = p.parse_args()
block = os.urandom(16 << 20)
for f in range(a.files):
    piece = f.to_bytes(8, "little") + block[8:]
    with open(os.path.join(a.dir, "part-%d.bin" % f), "wb", buffering=0) as fh:
        left = a.size
        while left > 0:
            view = memoryview(piece)[:left]
            while view:
                n = fh.write(view)
                view = view[n:]
                left -= n
print("OUTPUTS_WRITTEN %.6f" % time.time(), flush=True)
'''


# --- reporting ---------------------------------------------------------------------------------

@dataclass
class Row:
    benchmark: str
    metric: str
    value: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: bool | None = None  # None: information only


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        verdict = "" if row.met is None else ("  [target met]" if row.met else "  [TARGET MISSED]")
        extra = ""
        if row.baseline != "-":
            extra += f"  baseline {row.baseline}"
        if row.ratio != "-":
            extra += f"  ratio {row.ratio}"
        if row.target != "-":
            extra += f"  target {row.target}"
        print(f"  => {row.metric}: {row.value}{extra}{verdict}", flush=True)

    def table(self) -> str:
        headers = ["benchmark", "metric", "measured", "baseline", "ratio", "target", "met"]
        body = [[r.benchmark, r.metric, r.value, r.baseline, r.ratio, r.target,
                 "-" if r.met is None else ("yes" if r.met else "NO")] for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
        line = "+".join("-" * (w + 2) for w in widths)
        out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), line]
        out += [" | ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
        return "\n".join(out)


def info(text: str) -> None:
    print(f"  {text}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def write_back_dirty_pages() -> None:
    """Write dirty pages back so one phase's writeback does not slow the next one down."""
    os.sync()


# --- a sandbox: $VHTUI_HOME, a project, the store ---------------------------------------------

@dataclass
class Launched:
    counter: int
    t0: float  # perf_counter at `vhtui run` start
    t0_wall: float  # time.time() at the same moment
    returned: float  # perf_counter when `vhtui run` exited
    observed: float  # perf_counter when the final status was first read from the store
    row: dict[str, Any]
    peak_rss_kb: int  # supervisor VmHWM, last read before it exited
    cpu_s: float  # supervisor user + system CPU, last read before it exited

    def rel(self, column: str) -> float:
        """A store timestamp relative to the launch (seconds)."""
        return float(self.row[column]) - self.t0_wall

    @property
    def total(self) -> float:
        return self.observed - self.t0

    @property
    def run_s(self) -> float:
        return float(self.row["ended_at"]) - float(self.row["started_at"])


def read_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def read_cpu_s(pid: int) -> float | None:
    """User + system CPU time a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


# Bytecode: users' installs have .pyc files; this sandbox sets PYTHONDONTWRITEBYTECODE=1 and the
# editable checkout has no __pycache__, so every vhtui process would compile its modules from
# source. The benchmark gives its processes a private pycache (filled by each warm-up run) so the
# figures are a user's; the launch benchmark also shows the uncached figure as a diagnostic.
PYCACHE: Path | None = None


def python_env(env: dict[str, str], bytecode_cache: bool = True) -> dict[str, str]:
    env = dict(env)
    if bytecode_cache and PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


class Sandbox:
    def __init__(self, name: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"vhtui-bench-{name}-"))
        self.home = self.root / "home"
        self.project = self.root / "project"
        self.project.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VHTUI_") or k == "VHTUI_LAUNCHER"}
        env["VHTUI_HOME"] = str(self.home)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        self.raw_env = dict(env)  # as this shell has it (bytecode caching as the caller set it)
        self.env = python_env(env)
        self.conn: sqlite3.Connection | None = None
        self.last_id = 0
        self.write("valohai.yaml", PROJECT_YAML)

    def write(self, name: str, text: str) -> Path:
        path = self.project / name
        path.write_text(text)
        return path

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _db(self) -> sqlite3.Connection | None:
        if self.conn is None:
            path = self.home / "vhtui.sqlite3"
            if not path.exists():
                return None
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=5)
            conn.row_factory = sqlite3.Row
            self.conn = conn
        return self.conn

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        db = self._db()
        assert db is not None
        return db.execute(sql, params).fetchall()

    def baseline(self, command: str, env: dict[str, str] | None = None) -> float:
        """Wall time of a shell command run directly in the project directory."""
        t = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", command], cwd=self.project, env=env or self.env, check=True)
        return time.perf_counter() - t

    def launch(self, step: str, *args: str, poll: float = 0.002, timeout: float = 300,
               env: dict[str, str] | None = None) -> Launched:
        """`vhtui run STEP ARGS --env current`, timed from its start to a final status in the store.

        The store is polled while the CLI runs (the supervisor may finish before the CLI exits), for
        a row newer than the last launch; the CLI's exit time is taken by a thread waiting on it.
        """
        returned: list[float] = []
        t0_wall = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen([*VHTUI, "run", step, *args, "--env", "current"], cwd=self.project, env=env or self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waiter = threading.Thread(target=lambda: (proc.wait(), returned.append(time.perf_counter())), daemon=True)
        waiter.start()
        deadline = t0 + timeout
        pid: int | None = None
        peak = 0
        cpu = 0.0
        row: sqlite3.Row | None = None
        while True:
            db = self._db()
            if db is not None:
                try:
                    row = db.execute("SELECT * FROM executions WHERE id > ? ORDER BY id LIMIT 1",
                                     (self.last_id,)).fetchone()
                except sqlite3.OperationalError:  # the CLI is creating the store right now
                    row = None
            now = time.perf_counter()
            if row is not None:
                if pid is None and row["supervisor_pid"]:
                    pid = int(row["supervisor_pid"])
                if pid is not None:
                    peak = max(peak, read_hwm_kb(pid) or 0)
                    cpu = max(cpu, read_cpu_s(pid) or 0.0)
                if row["status"] in FINAL:
                    break
            if proc.poll() is not None and proc.returncode != 0:
                raise RuntimeError(f"vhtui run {step} failed ({proc.returncode}): {proc.stderr.read().decode()}")
            if now > deadline:
                if pid:
                    os.kill(pid, signal.SIGTERM)  # the supervisor stops its run and records why
                raise RuntimeError(f"vhtui run {step}: no final status after {timeout:.0f}s "
                                   f"(status {row['status'] if row else 'no row'})")
            time.sleep(poll)
        observed = now
        waiter.join(timeout=60)
        stdout = proc.stdout.read().decode()  # type: ignore[union-attr]
        stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        if proc.returncode != 0:
            raise RuntimeError(f"vhtui run {step} failed ({proc.returncode}): {stderr}")
        counter = int(stdout.strip().splitlines()[-1])
        if counter != row["counter"]:
            raise RuntimeError(f"vhtui run printed #{counter}, the store's newest is #{row['counter']}")
        self.last_id = int(row["id"])
        if pid is not None:  # it may still be finishing: its last reading counts
            peak = max(peak, read_hwm_kb(pid) or 0)
            cpu = max(cpu, read_cpu_s(pid) or 0.0)
        if row["status"] != "complete":
            raise RuntimeError(f"#{counter} ended {row['status']}: {row['reason']}")
        return Launched(counter, t0, t0_wall, returned[0] if returned else observed, observed, dict(row), peak, cpu)

    def exec_info(self, counter: int) -> dict[str, Any]:
        out = subprocess.run([*VHTUI, "exec", "info", str(counter), "--json"], cwd=self.project, env=self.env,
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def log_path(self, launched: Launched) -> Path:
        return self.home / "executions" / str(launched.row["id"]) / "output.log"

    def outputs_dir(self, launched: Launched) -> Path:
        return self.home / "executions" / str(launched.row["id"]) / "outputs"


# --- 1. launch overhead -----------------------------------------------------------------------

def bench_launch(report: Report, quick: bool) -> None:
    """A cold `vhtui run` (no resident launcher) of a no-op step, from a plain folder and from a
    committed git work tree, each against `sh -c true` measured in between; then what a local
    run's own /valohai (runners.sandbox) costs: the same launch with `local_sandbox = false`, and
    bubblewrap's namespace around `true` against `true` alone."""
    medians = {}
    configurations = [("plain folder", False, "1"), ("git work tree", True, "1")]
    if sandbox.unavailable() is None:
        configurations.append(("plain folder, no own /valohai (local_sandbox = false)", False, "0"))
    else:
        info(f"no sandbox here ({sandbox.unavailable()}): every launch below runs at real paths")
    for label, git, own_valohai in configurations:
        sb = Sandbox("launch")
        try:
            if git:
                _commit_all(sb.project)
            sb.env["VHTUI_LOCAL_SANDBOX"] = own_valohai
            medians[own_valohai, git] = _launch_overhead(report, sb, label, quick)
        finally:
            sb.close()
    if ("0", False) in medians:
        cost = medians["1", False] - medians["0", False]
        report.add(Row("launch", "own /valohai: launch with it less launch without, median", ms(cost),
                       f"without {ms(medians['0', False])}", f"{medians['1', False] / medians['0', False]:.2f}x"))
        _namespace_cost(report, quick)


def _namespace_cost(report: Report, quick: bool) -> None:
    """bubblewrap's namespace around `true`, as a local run gets it, against `true` run directly."""
    reps = 10 if quick else 40
    scratch = Path(tempfile.mkdtemp(prefix="vhtui-bench-ns-"))
    try:
        folders = {name: scratch for name in sandbox.FOLDERS}
        wrapped = sandbox.wrap(["true"], folders, hidden=[scratch])
        plain, inside = [], []
        for _ in range(reps):
            for argv, times in ((["/bin/true"], plain), (wrapped, inside)):
                t = time.perf_counter()
                subprocess.run(argv, check=True, preexec_fn=sandbox.ignore_stop_signal)
                times.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info(f"`true` in its own /valohai: median {ms(median(inside))}, p90 {ms(p90(inside))}; "
         f"directly: median {ms(median(plain))} ({reps} each, interleaved)")
    report.add(Row("launch", "own /valohai: bubblewrap around `true`, median", ms(median(inside)),
                   f"true {ms(median(plain))}", f"{median(inside) / median(plain):.0f}x"))


def _commit_all(root: Path) -> None:
    git = ["git", "-C", str(root), "-c", "user.email=bench@localhost", "-c", "user.name=bench"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "benchmark project"]):
        subprocess.run([*git, *args], check=True)


def _launch_overhead(report: Report, sb: Sandbox, label: str, quick: bool) -> float:
    """Report a configuration's launch overhead; return its median launch-to-complete time."""
    reps = 5 if quick else 15
    info(f"{label}: `vhtui run noop --env current` (command `true`), 1 warm-up + {reps} runs; "
         "baseline `/bin/sh -c true` as a subprocess, interleaved")
    sb.launch("noop")  # warm-up: creates the store, the project row, the page cache
    base: list[float] = []
    runs: list[Launched] = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", "true"], check=True)
        base.append(time.perf_counter() - t)
        runs.append(sb.launch("noop"))
    totals = [r.total for r in runs]
    b = median(base)
    info(f"baseline sh -c true: median {ms(b)}, p90 {ms(p90(base))}")
    info(f"launch -> complete in store (polled every 2 ms): median {ms(median(totals))}, p90 {ms(p90(totals))}, "
         f"min {ms(min(totals))}, max {ms(max(totals))}")
    stages = [
        ("vhtui run: start -> exit", [r.returned - r.t0 for r in runs]),
        ("vhtui run: start -> row created", [r.rel("created_at") for r in runs]),
        ("supervisor: row created -> queued (fork, imports, open store)",
         [r.rel("queued_at") - r.rel("created_at") for r in runs]),
        ("supervisor: queued -> started (slot, layout, runner start)",
         [r.rel("started_at") - r.rel("queued_at") for r in runs]),
        ("supervisor: started -> ended (run `true`, pump, collect, finish)",
         [r.rel("ended_at") - r.rel("started_at") for r in runs]),
        ("store: ended_at -> seen by poller", [r.total - r.rel("ended_at") for r in runs]),
    ]
    info("breakdown (medians; the CLI's exit overlaps the supervisor's work):")
    for name, values in stages:
        info(f"  {name:<66} {ms(median(values)):>10}  (p90 {ms(p90(values))})")
    info(f"supervisor: peak RSS (VmHWM) {max(r.peak_rss_kb for r in runs) / 1024:.1f} MiB, "
         f"CPU {ms(median([r.cpu_s for r in runs]))} (median)")
    py = sys.executable
    for name, code in (("python -c pass", "pass"),
                       ("python -c 'import vhtui.cli.run, vhtui.engine.launch'",
                        "import vhtui.cli.run, vhtui.engine.launch")):
        times = []
        subprocess.run([py, "-c", code], check=True, env=sb.env)  # fill the bytecode cache
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([py, "-c", code], check=True, env=sb.env)
            times.append(time.perf_counter() - t)
        info(f"diagnostic: {name:<66} median {ms(median(times))}")
    overhead = [t - b for t in totals]
    report.add(Row("launch", f"{label}: added overhead, median", ms(median(overhead)), f"sh -c true {ms(b)}",
                   f"{median(totals) / b:.0f}x", "< 150 ms", median(overhead) < 0.150))
    report.add(Row("launch", f"{label}: added overhead, p90", ms(p90(overhead)), f"sh -c true {ms(p90(base))}",
                   f"{p90(totals) / p90(base):.0f}x"))
    report.add(Row("launch", f"{label}: `vhtui run` returns, median", ms(median(stages[0][1]))))
    return median(totals)


def _stamps(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} ([0-9.]+)$", text, re.M)
    return float(match.group(1)) if match else None


def bench_metadata(report: Report, quick: bool) -> None:
    n = 100_000 if quick else 1_000_000
    sb = Sandbox("metadata")
    try:
        sb.write("emit_metadata.py", EMIT_METADATA)
        info(f"a run printing {n:,} JSON metadata lines; baseline: the same command > /dev/null, run directly")
        sb.launch("metadata", "--points=10")  # warm-up
        env = dict(sb.env, PYTHONUNBUFFERED="1")  # as the run's environment has it
        cmd = f"python emit_metadata.py --points={n} > /dev/null 2>{sb.root}/base.err"
        base = [sb.baseline(cmd, env) for _ in range(3)]
        err = (sb.root / "base.err").read_text()
        base_cmd = (_stamps(err, "EMIT_END") or 0) - (_stamps(err, "EMIT_START") or 0)
        b = median(base)
        info(f"baseline (direct, > /dev/null): median {b:.3f} s of 3 ({', '.join(f'{x:.3f}' for x in base)}); "
             f"the loop itself {base_cmd:.3f} s")
        run = sb.launch("metadata", f"--points={n}", poll=0.005, timeout=600)
        rows = sb.query("SELECT sum(count), min(first_seq), max(first_seq + count) - 1 FROM metadata"
                        " WHERE execution_id = ?", (run.row["id"],))[0]
        last = sb.query("SELECT data FROM metadata WHERE execution_id = ? ORDER BY first_seq DESC LIMIT 1",
                        (run.row["id"],))
        last_step = json.loads(bytes(last[0][0]).split(b"\n")[-1]).get("step") if last else None
        stored = int(rows[0])
        doc = sb.exec_info(run.counter)
        log = sb.log_path(run).read_text(errors="replace")
        started, ended = float(run.row["started_at"]), float(run.row["ended_at"])
        emit_start, emit_end = _stamps(log, "EMIT_START"), _stamps(log, "EMIT_END")
        run_s = run.run_s
        rate = stored / run_s
        info(f"run (started_at -> ended_at): {run_s:.3f} s; end to end (launch -> complete seen): {run.total:.3f} s")
        if emit_start and emit_end:
            info(f"  the loop itself inside the run: {emit_end - emit_start:.3f} s (direct: {base_cmd:.3f} s: "
                 f"{'back-pressure from the pipe' if emit_end - emit_start > 1.2 * base_cmd else 'not slowed'}); "
                 f"started_at -> loop start {emit_start - started:.3f} s; loop end -> ended_at {ended - emit_end:.3f} s "
                 "(draining, parsing and storing what was still buffered)")
        info(f"stored rows {stored:,} (seq {rows[1]}..{rows[2]}, last step {last_step}); "
             f"executions.metadata_count {run.row['metadata_count']:,}; exec info metadata_count "
             f"{doc.get('metadata_count'):,}; status {doc.get('status')}")
        info(f"supervisor: peak RSS (VmHWM) {run.peak_rss_kb / 1024:.1f} MiB, CPU {run.cpu_s:.2f} s "
             f"({run.cpu_s / run.run_s:.0%} of the run: {'CPU-bound' if run.cpu_s > 0.8 * run.run_s else 'waiting'}), "
             f"{run.cpu_s * 1e6 / max(1, stored):.1f} us of supervisor CPU per point")
        ok = stored == n and run.row["metadata_count"] == n and rows[1] == 0 and rows[2] == n - 1 \
            and last_step == n - 1 and doc.get("metadata_count") == n
        report.add(Row("metadata", f"points stored/s ({n:,} lines)", f"{rate:,.0f}/s", "-", "-", ">= 200,000/s",
                       rate >= 200_000))
        report.add(Row("metadata", "run wall time vs direct > /dev/null", f"{run_s:.2f} s", f"{b:.2f} s",
                       f"{run_s / b:.2f}x", "<= 1.5x", run_s / b <= 1.5))
        report.add(Row("metadata", "all rows stored", f"{stored:,}/{n:,}", "-", "-", "all", ok))
        report.add(Row("metadata", "supervisor peak RSS", f"{run.peak_rss_kb / 1024:.0f} MiB"))
    finally:
        sb.close()


# --- 3. log capture ---------------------------------------------------------------------------

def count_lines(path: Path) -> tuple[int, int, bytes]:
    """(lines, bytes, last line) of a file."""
    lines = size = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(16 * MiB)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            size += len(chunk)
        f.seek(max(0, size - 4096))
        tail = f.read()
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return lines, size, last


def bench_log(report: Report, quick: bool) -> None:
    total = 100 * MB if quick else 1000 * MB
    rounds = 3
    sb = Sandbox("log")
    try:
        sb.write("emit_log.py", EMIT_LOG)
        chunks = max(1, total // 1_000_000)
        expected_lines = chunks * 10_000 + 1
        expected_last = b"LAST LINE: %d chunks of 10000 lines" % chunks
        expected_bytes = chunks * 1_000_000 + len(expected_last) + 1
        info(f"a run printing {expected_bytes / MB:,.0f} MB of ~100-byte text lines ({expected_lines:,} lines); "
             f"baseline: the same command > file on the same filesystem; 1 untimed write of that size first "
             f"(a VM's first touch of fresh memory is slow), then {rounds} rounds, alternating")
        sb.launch("log", "--bytes=1000")  # warm-up
        env = dict(sb.env, PYTHONUNBUFFERED="1")
        base_file = sb.root / "baseline.log"
        sb.baseline(f"python emit_log.py --bytes={total} > {base_file}", env)
        base_file.unlink()
        base: list[float] = []
        runs: list[Launched] = []
        ok = True
        for i in range(rounds):
            write_back_dirty_pages()
            base.append(sb.baseline(f"python emit_log.py --bytes={total} > {base_file}", env))
            base_size = base_file.stat().st_size
            base_file.unlink()
            write_back_dirty_pages()
            run = sb.launch("log", f"--bytes={total}", poll=0.005, timeout=600)
            runs.append(run)
            lines, size, last = count_lines(sb.log_path(run))
            good = lines == expected_lines and size == expected_bytes and last == expected_last
            ok = ok and good and base_size == expected_bytes
            info(f"round {i + 1}: baseline {base[-1]:.3f} s ({base_size / base[-1] / MB:,.0f} MB/s); run "
                 f"{run.run_s:.3f} s ({size / run.run_s / MB:,.0f} MB/s), end to end {run.total:.3f} s; "
                 f"output.log {lines:,} lines, {size:,} bytes, last line {last[:60]!r} -> "
                 f"{'all there' if good else 'MISMATCH'}; supervisor peak RSS {run.peak_rss_kb / 1024:.1f} MiB, "
                 f"CPU {run.cpu_s:.2f} s")
            sb.log_path(run).unlink()  # keep the page cache and the disk as they were for the next round
        b = median(base)
        r = median([run.run_s for run in runs])
        speed = b / r
        info(f"medians: baseline {b:.3f} s, run {r:.3f} s; supervisor CPU {median([x.cpu_s for x in runs]):.2f} s "
             f"({median([x.cpu_s for x in runs]) * 1000 / (expected_bytes / MB) * 1000:.0f} us per MB)")
        report.add(Row("log", f"capture speed ({expected_bytes / MB:,.0f} MB)", f"{expected_bytes / r / MB:,.0f} MB/s",
                       f"{expected_bytes / b / MB:,.0f} MB/s", f"{speed:.0%}", ">= 80%", speed >= 0.8))
        report.add(Row("log", "no line lost, last line intact", f"{expected_lines:,} lines x{rounds}", "-", "-",
                       "all", ok))
        report.add(Row("log", "supervisor peak RSS", f"{max(x.peak_rss_kb for x in runs) / 1024:.0f} MiB"))
    finally:
        sb.close()


# --- 4. output collection ---------------------------------------------------------------------

def bench_outputs(report: Report, quick: bool) -> None:
    files = 4
    size = (50 if quick else 512) * MiB
    total = files * size
    rounds = 2
    sb = Sandbox("outputs")
    try:
        sb.write("write_outputs.py", WRITE_OUTPUTS)
        info(f"a run writing {files} x {size / MiB:.0f} MiB = {total / 2**30:.2f} GiB of outputs; timed: the "
             "collection phase only (the command's last line, a timestamp -> ended_at); baseline: cp -r of the same "
             "files, freshly written, to another directory on the same filesystem (1 untimed cp first, then "
             f"{rounds} timed); {rounds} runs")
        sb.launch("outputs", "--files=1", "--size=1024")  # warm-up
        src, dst = sb.root / "cp-src", sb.root / "cp-dst"
        src.mkdir()
        write_back_dirty_pages()
        subprocess.run(["python", "write_outputs.py", f"--files={files}", f"--size={size}", f"--dir={src}"],
                       cwd=sb.project, env=sb.env, check=True, stdout=subprocess.DEVNULL)
        cps = []
        for i in range(rounds + 1):
            took = sb.baseline(f"cp -r {src} {dst}")
            if i:
                cps.append(took)
            shutil.rmtree(dst)
        cp_s = statistics.mean(cps)
        t = time.perf_counter()
        for path in sorted(src.iterdir()):
            with open(path, "rb") as f:
                hashlib.file_digest(f, "sha256")
        hash_s = time.perf_counter() - t
        info(f"baseline cp -r: {', '.join(f'{x:.3f}' for x in cps)} s, mean {cp_s:.3f} s ({total / cp_s / MiB:,.0f} MiB/s); "
             f"diagnostic: sha256 of the same files in one thread {hash_s:.3f} s ({total / hash_s / MiB:,.0f} MiB/s)")
        shutil.rmtree(src)
        collects: list[float] = []
        stored_ok = True
        linked_all = True
        peak_kb = 0
        for i in range(rounds):
            write_back_dirty_pages()
            run = sb.launch("outputs", f"--files={files}", f"--size={size}", poll=0.002, timeout=600)
            log = sb.log_path(run).read_text()
            written = _stamps(log, "OUTPUTS_WRITTEN")
            if written is None:
                raise RuntimeError(f"no OUTPUTS_WRITTEN line in the log: {log[-300:]!r}")
            started, ended = float(run.row["started_at"]), float(run.row["ended_at"])
            collect_s = ended - written
            collects.append(collect_s)
            datums = sb.query("SELECT name, sha256, size FROM datums WHERE producer_execution_id = ? "
                              "AND kind = 'output' ORDER BY name", (run.row["id"],))
            out_dir = sb.outputs_dir(run)
            linked = 0
            for d in datums:
                blob = sb.home / "blobs" / d["sha256"][:2] / d["sha256"]
                if blob.exists() and blob.stat().st_ino == (out_dir / d["name"]).stat().st_ino:
                    linked += 1
            with open(out_dir / "part-0.bin", "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            doc = sb.exec_info(run.counter)
            good = len(datums) == files and sum(d["size"] for d in datums) == total \
                and digest == datums[0]["sha256"] and len(doc.get("outputs") or []) == files
            stored_ok = stored_ok and good
            linked_all = linked_all and linked == files
            peak_kb = max(peak_kb, run.peak_rss_kb)
            info(f"run {i + 1}: started_at -> files written {written - started:.3f} s (generation, not timed); "
                 f"files written -> ended_at {collect_s:.3f} s ({total / collect_s / MiB:,.0f} MiB/s); end to end "
                 f"{run.total:.3f} s; {len(datums)} output datums, {sum(d['size'] for d in datums):,} bytes, "
                 f"{linked}/{len(datums)} hardlinked to their blob, sha256 of part-0.bin "
                 f"{'matches' if digest == datums[0]['sha256'] else 'DIFFERS'}, exec info lists "
                 f"{len(doc.get('outputs') or [])} outputs; supervisor peak RSS {run.peak_rss_kb / 1024:.1f} MiB, "
                 f"CPU {run.cpu_s:.2f} s over the whole run")
            shutil.rmtree(out_dir, ignore_errors=True)  # the next run starts from the same page cache state
            shutil.rmtree(sb.home / "blobs", ignore_errors=True)
        collect_s = statistics.mean(collects)
        ratio = cp_s / collect_s
        info(f"means: collection {collect_s:.3f} s, cp -r {cp_s:.3f} s, sha256 alone {hash_s:.3f} s")
        report.add(Row("outputs", f"collection ({total / 2**30:.2f} GiB) vs cp -r", f"{collect_s:.3f} s",
                       f"cp {cp_s:.3f} s", f"{ratio:.2f}x cp speed", ">= 0.8x", ratio >= 0.8))
        report.add(Row("outputs", "hardlink path vs cp -r", f"{collect_s:.3f} s, all linked: {'yes' if linked_all else 'NO'}",
                       f"cp {cp_s:.3f} s", f"{ratio:.2f}x faster", ">= 10x", ratio >= 10 and linked_all))
        report.add(Row("outputs", "all outputs stored", f"{files}/{files} x{rounds}" if stored_ok else "MISMATCH",
                       "-", "-", "all", stored_ok))
        report.add(Row("outputs", "supervisor peak RSS", f"{peak_kb / 1024:.1f} MiB", "-", "-", "<= 100 MB",
                       peak_kb * 1024 <= 100 * MB))
    finally:
        sb.close()


def bench_inputs(report: Report, quick: bool) -> None:
    """What a run's inputs cost laid out safely: a local run gets a copy-on-write clone (a copy on
    filesystems without them), a Docker run a link under a read-only mount. Both against a link,
    what every run got before, in the same folder."""
    from vhtui.data.blobs import BlobStore, sha256_of
    from vhtui.data.inputs import InputFile, materialize

    size = (64 if quick else 512) * MiB
    root = Path(tempfile.mkdtemp(prefix="vhtui-bench-inputs-"))
    try:
        source = root / "dataset.bin"
        with open(source, "wb") as f:
            for _ in range(size // MiB):
                f.write(os.urandom(MiB))
        blobs = BlobStore(root / "blobs")
        sha256, _ = blobs.add_file(source, take=True)
        files = [InputFile(name="data", position=0, uri="file://dataset", filename="dataset.bin", sha256=sha256,
                           size=size)]
        timings: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(3):
            for share in (True, False):
                target = root / f"run-{round_}-{share}"
                write_back_dirty_pages()
                t = time.perf_counter()
                materialize(files, blobs, target, share=share)
                timings[share].append(time.perf_counter() - t)
        linked, safe = median(timings[True]), median(timings[False])
        info(f"{size // MiB} MiB input: a link {ms(linked)}, a local run's own copy {ms(safe)} (median of 3); "
             f"the copy checked intact: {sha256_of(root / 'run-0-False' / 'data' / 'dataset.bin') == sha256}")
        report.add(Row("inputs", f"{size // MiB} MiB input for a local run (own copy)", ms(safe), f"link {ms(linked)}",
                       f"+{(safe - linked) * 1000:.0f} ms"))
        report.add(Row("inputs", "for a Docker or agent run (link, read-only)", ms(linked), "-", "-"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


BENCHMARKS: dict[str, tuple[str, Callable[[Report, bool], None]]] = {
    "launch": ("1. launch overhead", bench_launch),
    "metadata": ("2. metadata ingestion", bench_metadata),
    "log": ("3. log capture", bench_log),
    "outputs": ("4. output collection", bench_outputs),
    "inputs": ("5. inputs laid out for a run", bench_inputs),
}


def run_benchmarks(prog: str, doc: str, benchmarks: dict[str, tuple[str, Callable[[Report, bool], None]]],
                   argv: list[str] | None, quick_help: str) -> int:
    """The command line every benchmark module shares: --quick, --only NAME, a summary table; exit
    status 1 only when a benchmark could not run or its results were wrong (a lost line)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--only", action="append", choices=sorted(benchmarks), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(benchmarks)}")
    args = parser.parse_args(argv)
    chosen = [name for name in benchmarks if not args.only or name in args.only]
    report = Report()
    started = time.perf_counter()
    global PYCACHE
    PYCACHE = Path(tempfile.mkdtemp(prefix="vhtui-bench-pycache-"))
    print(f"{prog}{' --quick' if args.quick else ''}: {', '.join(chosen)}; {os.cpu_count()} CPUs, python "
          f"{sys.version.split()[0]}, vhtui {VHTUI[0]}, temp dir {tempfile.gettempdir()}; {load_text()}", flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy; timings will be slower and noisier than on an idle machine", flush=True)
    try:
        for name in chosen:
            title, func = benchmarks[name]
            print(f"\n{title}  ({load_text()})", flush=True)
            t = time.perf_counter()
            try:
                func(report, args.quick)
            except Exception as exc:  # noqa: BLE001 (report and go on with the others)
                traceback.print_exc()
                report.failures.append(name)
                report.add(Row(name, "benchmark failed", f"{type(exc).__name__}: {str(exc)[:80]}", met=False))
            info(f"({time.perf_counter() - t:.1f} s)")
    finally:
        shutil.rmtree(PYCACHE, ignore_errors=True)
    print("\nsummary\n" + report.table())
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s; at the end: {load_text()}")
    wrong = any(r.target == "all" and r.met is False for r in report.rows)  # lost lines, rows or outputs
    return 1 if report.failures or wrong else 0


def main(argv: list[str] | None = None) -> int:
    return run_benchmarks("python -m benchmarks.engine", __doc__ or "", BENCHMARKS, argv, "sizes / 10: a smoke run")


if __name__ == "__main__":
    sys.exit(main())
