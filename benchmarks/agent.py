"""Runner agent over loopback: log latency (a line printed on the agent to the line in the store)
and upload throughput (code and inputs as one tar stream against a bare httpx upload of the same
bytes to the same server, in the same run). Figures are printed, never asserted.

    .venv/bin/python -m benchmarks.agent [--quick]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from runners import RunSpec
from runners.archive import pack
from runners.remote import RemoteRunner
from tests.agent_helper import TOKEN, Agent

STEPS = """
- step:
    name: ticks
    image: python:3.11
    command: python3 -c "import time; [print(f'tick {i} {time.time():.6f}', flush=True) or time.sleep(0.02) for i in range({parameter-value:n})]"
    parameters:
      - name: n
        type: integer
"""


def log_latency(root: Path, agent: Agent, lines: int) -> list[float]:
    """Each line carries the agent-side time it was printed; the store's log file is watched here
    and the arrival time of each line noted (same host, so the clocks agree)."""
    project = root / "project"
    project.mkdir()
    (project / "valohai.yaml").write_text(STEPS)
    env = dict(os.environ, VHTUI_HOME=str(root / "home"))
    vhtui = [sys.executable, "-m", "vhtui"]
    subprocess.run([*vhtui, "runner", "add", "box", agent.url, "--token-file", str(agent.token_file)],
                   cwd=project, env=env, check=True, capture_output=True)
    out = subprocess.run([*vhtui, "run", "ticks", "--runner", "box", "--env", "current", f"--n={lines}"],
                         cwd=project, env=env, check=True, capture_output=True, text=True).stdout
    counter = int(out.split()[-1])
    db = root / "home" / "vhtui.sqlite3"
    with sqlite3.connect(db) as conn:
        execution_id = conn.execute("SELECT id FROM executions WHERE counter = ?", (counter,)).fetchone()[0]
    log = root / "home" / "executions" / str(execution_id) / "output.log"
    latencies: list[float] = []
    seen = 0
    deadline = time.monotonic() + 120
    while len(latencies) < lines and time.monotonic() < deadline:
        if log.exists():
            data = log.read_bytes()
            now = time.time()
            for line in data[seen:].splitlines():
                if line.startswith(b"tick "):
                    latencies.append(now - float(line.split()[2]))
            seen = data.rfind(b"\n") + 1 if data else 0
        time.sleep(0.001)
    return latencies


def upload_throughput(root: Path, agent: Agent, size_mb: int) -> tuple[float, float]:
    """(bare httpx seconds, our seconds) for `size_mb` MB of inputs in 8 files. The bare upload
    sends the bundle's bytes, packed beforehand, to the same route (so the agent unpacks both);
    ours packs the folders as it sends them and then starts the run."""
    dirs = {name: root / "up" / name for name in ("repository", "inputs", "config", "outputs")}
    for path in dirs.values():
        path.mkdir(parents=True)
    (dirs["config"] / "job.sh").write_text("true\n")
    for i in range(8):
        (dirs["inputs"] / f"part{i}.bin").write_bytes(os.urandom(size_mb << 17))
    payload = b"".join(pack({k: v for k, v in dirs.items() if k != "outputs"}))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=120) as client:  # the same bytes, already packed, to the same route
        t0 = time.perf_counter()
        response = client.put(f"{agent.url}/v1/runs/bare-upload/bundle", headers=headers,
                              content=iter([payload[i:i + (1 << 20)] for i in range(0, len(payload), 1 << 20)]))
        bare = time.perf_counter() - t0
        response.raise_for_status()
    runner = RemoteRunner(agent.url, TOKEN)
    spec = RunSpec("upload-bench", dirs["config"] / "job.sh", dirs["repository"], dirs["inputs"], dirs["outputs"],
                   dirs["config"])
    t0 = time.perf_counter()
    handle = runner.start(spec)
    ours = time.perf_counter() - t0
    runner.wait(handle)
    return bare, ours


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lines, size_mb = (100, 64) if args.quick else (500, 512)
    with tempfile.TemporaryDirectory(prefix="vhtui-bench-agent-") as tmp:
        root = Path(tmp)
        agent = Agent(root / "agent").start()
        try:
            latencies = sorted(log_latency(root, agent, lines))
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            print(f"log latency, agent print to control-side log file, {len(latencies)} lines over loopback: "
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            bare, ours = upload_throughput(root, agent, size_mb)
            print(f"upload of {size_mb} MB (code + inputs, one tar stream, unpacked on the agent): {ours:.2f} s "
                  f"({size_mb / ours:.0f} MB/s); bare httpx upload of the same bytes: {bare:.2f} s "
                  f"({size_mb / bare:.0f} MB/s); ratio {bare / ours:.2f}x of its throughput (target >= 0.8x)")
        finally:
            agent.stop_all()


if __name__ == "__main__":
    main()
