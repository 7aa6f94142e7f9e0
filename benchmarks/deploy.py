"""Deployment router: latency added by the router, and alias moves under steady load.

    .venv/bin/python -m benchmarks.deploy [--quick]

Builds a throwaway project with a small keep-alive HTTP endpoint, serves two versions of it
through `vhtui deploy` (real processes, the real router on 127.0.0.1), then:
  1. router overhead: the same endpoint called directly and through the router, in alternating
     blocks on keep-alive connections, p50 and p99 of each and the difference;
  2. alias moves: a steady 200 requests a second to an alias while the alias moves between the two
     versions every half second; every failed request is counted;
  3. big bodies: an upload and a download of 1 GiB (256 MiB with --quick), direct and through the
     router, the rate of each, and how much the router's peak memory grew (it streams them).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

VALOHAI_YAML = """\
- endpoint:
    name: echo
    image: python:3.11
    server-command: python serve.py
    port: 8000
"""

SERVE = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = os.environ["VH_DEPLOYMENT_VERSION"]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/big/"):
            left = int(self.path[5:])
            self.send_response(200)
            self.send_header("Content-Length", str(left))
            self.end_headers()
            block = b"x" * (1 << 20)
            while left:
                self.wfile.write(block[:left])
                left -= min(left, len(block))
            return
        body = json.dumps({"version": VERSION}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 1 << 16)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root / "project"
        self.root.mkdir()
        (self.root / "valohai.yaml").write_text(VALOHAI_YAML)
        (self.root / "serve.py").write_text(SERVE)
        self.router_port = free_port()
        self.env = dict(os.environ, VHTUI_HOME=str(root / "home"), VHTUI_ROUTER_PORT=str(self.router_port),
                        VHTUI_ROUTER_MAX_BODY="2G")

    def vhtui(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "vhtui", *args], cwd=self.root, env=self.env,
                                capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"vhtui {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def endpoint_port(self, version: str) -> int:
        doc = json.loads(self.vhtui("deploy", "info", "bench", version, "--json"))
        return int(doc["versions"][0]["endpoints"][0]["port"])


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def overhead(bench: Bench, requests: int) -> None:
    direct_url = f"http://127.0.0.1:{bench.endpoint_port('v1')}/"
    routed_url = f"http://127.0.0.1:{bench.router_port}/bench/live/echo/"
    direct: list[float] = []
    routed: list[float] = []
    with httpx.Client() as client:
        for url in (direct_url, routed_url) * 20:  # warm both paths
            client.get(url)
        block = 100
        for _ in range(requests // block):
            for url, samples in ((direct_url, direct), (routed_url, routed)):
                for _ in range(block):
                    started = time.perf_counter()
                    client.get(url).raise_for_status()
                    samples.append((time.perf_counter() - started) * 1000)
    d50, d99 = percentiles(direct)
    r50, r99 = percentiles(routed)
    print(f"router overhead ({len(direct)} requests each, keep-alive, one client):")
    print(f"  direct        p50 {d50:6.3f} ms   p99 {d99:6.3f} ms")
    print(f"  via router    p50 {r50:6.3f} ms   p99 {r99:6.3f} ms")
    print(f"  added         p50 {r50 - d50:+6.3f} ms   p99 {r99 - d99:+6.3f} ms   (p50 x{r50 / d50:.2f})")


def alias_moves(bench: Bench, seconds: float, rate: int = 200) -> None:
    url = f"http://127.0.0.1:{bench.router_port}/bench/live/echo/"
    failures: list[str] = []
    served: dict[str, int] = {}
    lock = threading.Lock()
    workers = 8
    start = time.monotonic() + 0.2
    total = int(seconds * rate)

    def worker(index: int) -> None:
        with httpx.Client() as client:
            for n in range(index, total, workers):  # request n is due at start + n / rate
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    response = client.get(url, timeout=10)
                    version = response.json().get("version") if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    version, response = None, exc  # type: ignore[assignment]
                with lock:
                    if version is None:
                        failures.append(str(response))
                    else:
                        served[version] = served.get(version, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    moves = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        bench.vhtui("deploy", "alias", "set", "bench", "live", "v2" if moves % 2 == 0 else "v1")
        moves += 1
    elapsed = time.monotonic() - start
    done = sum(served.values()) + len(failures)
    print(f"alias moves under load: {done} requests in {elapsed:.1f}s ({done / elapsed:.0f}/s, target {rate}/s), "
          f"{moves} moves, {len(failures)} failed; served by {dict(sorted(served.items()))}")
    for failure in failures[:5]:
        print(f"  failed: {failure}")


def with_router_memory(bench: Bench, run: Any) -> tuple[float, int]:
    """Seconds `run()` took, and how far the router's resident memory peaked above where it was (/proc)."""
    pid = httpx.get(f"http://127.0.0.1:{bench.router_port}/_vh/health").json()["pid"]
    status = Path(f"/proc/{pid}/status")

    def field(name: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(name + ":"))
        return int(line.split()[1]) * 1024

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = field("VmRSS")
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, field("VmHWM") - before


def big_bodies(bench: Bench, size: int) -> None:
    direct_url = f"http://127.0.0.1:{bench.endpoint_port('v1')}/"
    routed_url = f"http://127.0.0.1:{bench.router_port}/bench/live/echo/"
    block = b"x" * (1 << 20)

    def upload(url: str) -> None:
        body = (block[:min(len(block), size - n)] for n in range(0, size, len(block)))
        response = httpx.post(url + "upload", content=body, headers={"Content-Length": str(size)}, timeout=600)
        response.raise_for_status()

    def download(url: str) -> None:
        with httpx.stream("GET", f"{url}big/{size}", timeout=600) as response:
            assert sum(len(chunk) for chunk in response.iter_raw()) == size

    mib = size / (1 << 20)
    print(f"big bodies ({mib:.0f} MiB each way, streamed; MiB/s):")
    for name, move in (("upload", upload), ("download", download)):
        started = time.perf_counter()
        move(direct_url)
        direct = mib / (time.perf_counter() - started)
        seconds, grew = with_router_memory(bench, lambda: move(routed_url))  # noqa: B023 (called at once)
        print(f"  {name:9} direct {direct:6.0f}   via router {mib / seconds:6.0f} (x{mib / seconds / direct:.2f})   "
              f"router peak memory +{grew / (1 << 20):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vhtui-bench-deploy-") as tmp:
        bench = Bench(Path(tmp))
        try:
            for _ in ("v1", "v2"):
                bench.vhtui("deploy", "version", "create", "bench", "--endpoint", "echo", "--adhoc", "--env", "current")
            bench.vhtui("deploy", "start", "bench")
            bench.vhtui("deploy", "alias", "set", "bench", "live", "v1")
            overhead(bench, 1000 if args.quick else 5000)
            alias_moves(bench, 5 if args.quick else 20)
            big_bodies(bench, (256 if args.quick else 1024) << 20)
        finally:
            bench.vhtui("deploy", "stop", "--all")


if __name__ == "__main__":
    main()
