"""Docker runner: launch overhead against `docker run --rm IMAGE true`, and log capture against
`docker logs` on the same output, measured in the same run. Figures are printed, never asserted.

    .venv/bin/python -m benchmarks.docker [--quick]
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

IMAGE = "vhtui-test/python:3.11"
STEPS = f"""
- step:
    name: noop
    image: {IMAGE}
    command: "true"
- step:
    name: flood
    image: {IMAGE}
    command: python3 -c "import sys; line = 'x' * 99 + '\\\\n'; [sys.stdout.write(line * 10000) for _ in range({{parameter-value:chunks}})]"
    parameters:
      - name: chunks
        type: integer
"""


def wait_complete(db: Path, counter: int, timeout: float = 600) -> sqlite3.Row:
    deadline = time.monotonic() + timeout
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        while time.monotonic() < deadline:
            row = conn.execute("SELECT * FROM executions WHERE counter = ?", (counter,)).fetchone()
            if row and row["status"] in ("complete", "error", "stopped", "crashed"):
                return row
            time.sleep(0.005)
    raise SystemExit(f"#{counter} did not finish")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs, chunks = (5, 20) if args.quick else (15, 200)  # chunks of 1 MB of log
    with tempfile.TemporaryDirectory(prefix="vhtui-bench-docker-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "valohai.yaml").write_text(STEPS)
        env = dict(os.environ, VHTUI_HOME=str(Path(tmp) / "home"))
        db = Path(tmp) / "home" / "vhtui.sqlite3"
        vhtui = [sys.executable, "-m", "vhtui", "run"]

        def ours(step: str, *extra: str) -> tuple[float, sqlite3.Row]:
            t0 = time.perf_counter()
            out = subprocess.run([*vhtui, step, "--runner", "docker", *extra], cwd=project, env=env,
                                 capture_output=True, text=True, check=True).stdout
            row = wait_complete(db, int(out.split()[-1]))
            return time.perf_counter() - t0, row

        def docker_run_true() -> float:
            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"], check=True)
            return time.perf_counter() - t0

        ours("noop")
        docker_run_true()  # warm both
        base, mine = [], []
        for _ in range(runs):
            base.append(docker_run_true())
            mine.append(ours("noop")[0])
        b, m = statistics.median(base), statistics.median(mine)
        print(f"launch: vhtui run --runner docker of `true` to status complete: median {m * 1000:.0f} ms; "
              f"docker run --rm {IMAGE} true: median {b * 1000:.0f} ms; ratio {m / b:.2f}x (target <= 1.5x)")

        size_mb = chunks * 10000 * 100 / 1e6
        _, row = ours("flood", f"--chunks={chunks}")
        log = Path(tmp) / "home" / "executions" / str(row["id"]) / "output.log"
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda f=open(log, "rb"): f.read(1 << 20), b""))
        captured = row["ended_at"] - row["started_at"]
        script = f"import sys; line = 'x' * 99 + '\\n'; [sys.stdout.write(line * 10000) for _ in range({chunks})]"
        t0 = time.perf_counter()  # docker's own live capture: start the container, follow its log to the end
        cid = subprocess.run(["docker", "run", "-d", "--network", "none", IMAGE, "python3", "-c", script],
                             capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["docker", "logs", "-f", cid], stdout=subprocess.DEVNULL, check=True)
        follow_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(["docker", "logs", cid], stdout=subprocess.DEVNULL, check=True)
        logs_s = time.perf_counter() - t0
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=True)
        print(f"log capture: {size_mb:.0f} MB in {captured:.2f} s from start to end ({size_mb / captured:.0f} MB/s), "
              f"{lines:,} of {chunks * 10000:,} lines stored")
        print(f"  docker run -d + docker logs -f of the same output: {follow_s:.2f} s ({size_mb / follow_s:.0f} MB/s); "
              f"ratio {follow_s / captured:.2f}x of its speed")
        print(f"  docker logs of the finished container (a file read, no container): {logs_s:.2f} s "
              f"({size_mb / logs_s:.0f} MB/s); ratio {logs_s / captured:.2f}x")

if __name__ == "__main__":
    main()
