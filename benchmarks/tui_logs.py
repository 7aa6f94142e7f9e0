"""TUI log benchmarks: LogView on a 1 GB, 10-million-line log, against Textual's own Log widget.

Run from the repository root:

    .venv/bin/python -m benchmarks.tui_logs            # 1 GB, 10M lines (about 40 s on 2 cores)
    .venv/bin/python -m benchmarks.tui_logs --quick    # sizes / 10, a smoke run

Everything runs in a headless `App.run_test()`, where Textual still composes every frame (only the
write to a terminal is skipped), so "rendered" means the view's `render_line` produced the row.
Measured: mounting a LogView on the log until its last line is rendered; building the full index
in the background; scrolling to random positions (scroll call to repainted frame, and the time
spent in render_line for it); RSS growth; and following a log that a writer thread appends at
100,000 lines/s (keypress-to-repaint latency, how far the view lags behind the file).
Baselines, in the same run: Textual's `Log` (`write_lines`) on the first tenth of the same lines,
and `RichLog` on 20,000 lines, extrapolated (labelled so). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

from textual import events
from textual.app import App
from textual.strip import Strip
from textual.widgets import Log, RichLog

from benchmarks.engine import Report, Row, info, load_text, median, ms, p90
from vhtui.supervision.logfile import LogWriter
from vhtui.tui.widgets.log_view import LogView

MB = 1_000_000
SIZE = (120, 40)
LAST_LINE = "LAST LINE of the benchmark log"
_SEQ = re.compile(r"seq (\d{9})")


# --- the log -------------------------------------------------------------------------------------
def log_block(first: int, n: int = 1000) -> list[tuple[str, bytes]]:
    """n ~100-byte lines: some coloured, the last 3 of every 1000 on stderr (a warning run)."""
    stdout = []
    for i in range(first, first + n - 3):
        level = b"\x1b[32mINFO\x1b[0m " if i % 50 == 0 else b""
        stdout.append(b"seq %09d %sepoch %3d step %6d loss %.6f acc %.4f %s\n"
                      % (i, level, i // 100_000, i % 100_000, 1.0 / (i + 1), (i % 997) / 997, b"x" * 38))
    stderr = b"".join(b"seq %09d \x1b[33mWARNING\x1b[0m slow data loader, batch %d waited %d ms %s\n"
                      % (i, i, i % 300, b"y" * 34) for i in range(first + n - 3, first + n))
    return [("stdout", b"".join(stdout)), ("stderr", stderr)]


def write_log(path: Path, lines: int) -> int:
    writer = LogWriter(path)
    for first in range(0, lines, 1000):
        for stream, data in log_block(first):
            writer.write(stream, data)
    writer.write("stdout", (LAST_LINE + "\n").encode())
    writer.close()
    return path.stat().st_size


def read_first_lines(path: Path, n: int) -> list[str]:
    """What a Log-based viewer has to do first: read and decode the lines."""
    lines: list[str] = []
    with path.open("rb") as f:
        while len(lines) < n:
            chunk = f.readlines(16 << 20)
            if not chunk:
                break
            lines.extend(line.decode("utf-8", "replace").rstrip("\n") for line in chunk)
    return lines[:n]


# --- measuring -------------------------------------------------------------------------------------
def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The highest RSS seen by a sampling thread (every 5 ms) while in the `with` block."""

    def __enter__(self) -> Self:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class FrameClock:
    """Mixed into a Line API widget (first, and not a Widget itself, so that Textual still takes
    the widget's CSS and component classes): when rows were rendered, and the time spent."""

    end_marker = LAST_LINE

    def clock_reset(self) -> None:
        self.end_seen: float | None = None
        self.rendered_at = 0.0  # when a row was last rendered
        self.rendered_y = -1  # scroll_y of that render
        self.rendered_follow = False
        self.render_s = 0.0  # time spent in render_line since the last reset
        self.max_seq = -1  # the highest "seq N" rendered

    def render_line(self, y: int) -> Strip:
        started = time.perf_counter()
        strip = super().render_line(y)
        now = time.perf_counter()
        self.render_s += now - started
        self.rendered_at, self.rendered_y = now, self.scroll_offset.y
        self.rendered_follow = getattr(self, "follow", False)
        text = strip.text
        if self.end_seen is None and self.end_marker in text:
            self.end_seen = now
        if (m := _SEQ.search(text)) and int(m.group(1)) > self.max_seq:
            self.max_seq = int(m.group(1))
        return strip


class TimedLogView(FrameClock, LogView):
    pass


class TimedLog(FrameClock, Log):
    pass


class TimedRichLog(FrameClock, RichLog):
    pass


class Host(App[None]):
    """An empty screen; each benchmark mounts the widget it measures."""


async def until(condition, timeout: float = 60.0, step: float = 0.001) -> float:
    """Wait for condition(); return when it became true (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)
    return time.perf_counter()


async def random_frames(widget: FrameClock, rows: int, count: int) -> tuple[list[float], list[float]]:
    """Scroll to `count` random rows; (scroll-to-repaint latencies, render_line time per frame)."""
    rng = random.Random(42)
    latencies, render = [], []
    height = widget.scrollable_content_region.height
    for _ in range(count):
        y = rng.randrange(0, max(1, rows - height))
        widget.clock_reset()
        started = time.perf_counter()
        widget.scroll_to(y=y, animate=False)
        done = await until(lambda y=y: widget.rendered_y == y and widget.render_s > 0)
        await asyncio.sleep(0.02)  # idle a little between scrolls, as a user would
        latencies.append(done - started)
        render.append(widget.render_s)
    return latencies, render


# --- benchmarks --------------------------------------------------------------------------------------
async def bench_open(report: Report, path: Path, lines: int) -> dict[str, float]:
    """LogView on the whole log: end shown, full index, random scrolling, memory."""
    app = Host()
    async with app.run_test(size=SIZE):
        before = rss()
        with PeakRss() as peak:
            view = TimedLogView(path)
            view.clock_reset()
            started = time.perf_counter()
            await app.mount(view)
            end_shown = await until(lambda: view.end_seen is not None) - started
            indexed = await until(lambda: view.index.gap is None, step=0.01) - started
            await until(lambda: view.index.line_count == lines + 1)
        grown = rss() - before
        report.add(Row("LogView", "mount to last line rendered", ms(end_shown), target="<= 500 ms",
                       met=end_shown <= 0.5))
        report.add(Row("LogView", f"full index of {lines:,} lines (background)", ms(indexed)))
        latencies, render = await random_frames(view, view.virtual_size.height, 40)
        report.add(Row("LogView", "scroll to random position: frame (median / p90)",
                       f"{ms(median(latencies))} / {ms(p90(latencies))}", target="<= 50 ms",
                       met=p90(latencies) <= 0.05))
        report.add(Row("LogView", "  of which render_line, whole screen (median)", ms(median(render))))
        report.add(Row("LogView", "RSS growth (after / peak)", f"{grown / MB:.0f} MB / {(peak.peak - before) / MB:.0f} MB",
                       target="<= 150 MB", met=max(grown, peak.peak - before) <= 150 * MB))
        started = time.perf_counter()
        hit = view.index.search(LAST_LINE, 0)
        searched = time.perf_counter() - started
        assert hit == lines, hit
        info(f"search of the whole log for its last line: {ms(searched)} ({path.stat().st_size / MB / searched:,.0f} MB/s)")
    return {"end": end_shown, "scroll": median(latencies), "rss": grown}


async def bench_follow(report: Report, directory: Path, seconds: float) -> None:
    """A writer thread appends 100,000 lines/s; the view follows; keys are pressed meanwhile."""
    path = directory / "follow" / "output.log"
    written: list[tuple[float, int]] = []  # (time, lines written so far), one per batch
    stop = threading.Event()

    # made beforehand, so that the writer thread spends its time in write(2), as another process
    # would, and not holding the GIL the app needs
    batches = [log_block(first) for first in range(0, int(seconds * 100_000) + 100_000, 1000)]

    def writer() -> None:
        log = LogWriter(path)
        total, started = 0, time.perf_counter()
        for batch in batches:
            if stop.is_set():
                break
            for stream, data in batch:
                log.write(stream, data)
            total += 1000
            written.append((time.perf_counter(), total))
            pause = started + total / 100_000 - time.perf_counter()  # 1000 lines per 10 ms
            if pause > 0:
                time.sleep(pause)
        log.close()

    def written_at(seq: int) -> float:
        """When line `seq` had been written."""
        return next(t for t, total in written if total > seq)

    app = Host()
    async with app.run_test(size=SIZE):
        view = TimedLogView(path)
        view.clock_reset()
        await app.mount(view)
        view.focus()
        thread = threading.Thread(target=writer)
        thread.start()
        lags, key_latency = [], {"k": [], "end": []}
        try:
            started = time.perf_counter()
            next_key, key = started + 0.5, "k"
            while time.perf_counter() - started < seconds:
                await asyncio.sleep(0.05)
                now = time.perf_counter()
                if view.follow and view.max_seq >= 0 and written:
                    lags.append(now - written_at(view.max_seq))
                if now >= next_key:
                    pressed = time.perf_counter()
                    app.post_message(events.Key(key, key if len(key) == 1 else None))
                    want_follow = key == "end"
                    done = await until(lambda pressed=pressed, want=want_follow: view.rendered_at > pressed
                                       and view.rendered_follow == want
                                       and (not want or view.rendered_y == view.max_scroll_y))
                    key_latency[key].append(done - pressed)
                    key = "end" if key == "k" else "k"
                    next_key = time.perf_counter() + 0.25
        finally:
            stop.set()
            thread.join()
        rate = written[-1][1] / (written[-1][0] - written[0][0] + 0.01)
        info(f"writer: {written[-1][1]:,} lines in {written[-1][0] - written[0][0]:.1f} s ({rate:,.0f} lines/s)")
        latencies = key_latency["k"] + key_latency["end"]
        report.add(Row("LogView follow", "keypress to repaint (median / max)",
                       f"{ms(median(latencies))} / {ms(max(latencies))}", target="<= 100 ms",
                       met=max(latencies) <= 0.1))
        info(f"  'k' (scroll up, follow off): {', '.join(ms(x) for x in key_latency['k'])}")
        info(f"  'end' (follow on): {', '.join(ms(x) for x in key_latency['end'])}")
        report.add(Row("LogView follow", "view lag behind the file (median / max)",
                       f"{ms(median(lags))} / {ms(max(lags))}", target="<= 1 s", met=max(lags) <= 1.0))


async def bench_log_widget(report: Report, path: Path, lines: int, ours: dict[str, float], scale: int) -> None:
    """Textual's Log, given the first `lines` lines as strings (read and decoded first)."""
    app = Host()
    async with app.run_test(size=SIZE):
        before = rss()
        started = time.perf_counter()
        text = read_first_lines(path, lines)
        read = time.perf_counter() - started
        log = TimedLog()
        log.end_marker = f"seq {lines - 1:09d} "
        log.clock_reset()
        await app.mount(log)
        log.write_lines(text)
        end_shown = await until(lambda: log.end_seen is not None) - started
        await asyncio.sleep(1.0)  # Log measures line widths in a thread; let it finish
        grown = rss() - before
        del text
        report.add(Row(f"Log ({lines:,} lines)", "read + write_lines to last line rendered", ms(end_shown),
                       baseline=ms(ours["end"]), ratio=f"{end_shown / ours['end']:.0f}x slower"))
        info(f"  of which reading and decoding the lines: {ms(read)}")
        report.add(Row(f"Log ({lines:,} lines)", f"  EXTRAPOLATED to {lines * scale:,} lines", ms(end_shown * scale),
                       baseline=ms(ours["end"]), ratio=f"{end_shown * scale / ours['end']:.0f}x slower"))
        latencies, _ = await random_frames(log, lines, 40)
        report.add(Row(f"Log ({lines:,} lines)", "scroll to random position: frame (median)", ms(median(latencies)),
                       baseline=ms(ours["scroll"]), ratio=f"{median(latencies) / ours['scroll']:.2f}x"))
        report.add(Row(f"Log ({lines:,} lines)", "RSS growth", f"{grown / MB:.0f} MB",
                       baseline=f"{ours['rss'] / MB:.0f} MB (LogView, all lines)",
                       ratio=f"{grown / max(ours['rss'], 1):.1f}x"))
        report.add(Row(f"Log ({lines:,} lines)", f"  RSS EXTRAPOLATED to {lines * scale:,} lines", f"{grown * scale / MB:,.0f} MB",
                       baseline=f"{ours['rss'] / MB:.0f} MB", ratio=f"{grown * scale / max(ours['rss'], 1):.1f}x"))


async def bench_rich_log(report: Report, path: Path, lines: int, ours: dict[str, float], total: int) -> None:
    """RichLog on a few lines only (it is far too slow for more), extrapolated linearly."""
    app = Host()
    async with app.run_test(size=SIZE):
        text = read_first_lines(path, lines)
        log = TimedRichLog(max_lines=None)
        log.end_marker = f"seq {lines - 1:09d} "
        log.clock_reset()
        await app.mount(log)
        started = time.perf_counter()
        for line in text:
            log.write(line)
        end_shown = await until(lambda: log.end_seen is not None, timeout=600) - started
        report.add(Row(f"RichLog ({lines:,} lines)", "write to last line rendered", ms(end_shown)))
        report.add(Row(f"RichLog ({lines:,} lines)", f"  EXTRAPOLATED to {total:,} lines", f"{end_shown * total / lines:,.0f} s",
                       baseline=ms(ours["end"]), ratio=f"{end_shown * total / lines / ours['end']:,.0f}x slower"))


# --- main ----------------------------------------------------------------------------------------------
def _phase(bench, *args):
    report = Report()
    figures = asyncio.run(bench(report, *args))
    return report.rows, figures


def in_fresh_process(report: Report, title: str, bench, *args):
    """Run one benchmark in a new interpreter, so that its RSS growth is not hidden by memory an
    earlier one freed (the heap would reuse it) nor inflated by the other's leftovers."""
    print(f"\n{title} ({load_text()})", flush=True)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rows, figures = pool.apply(_phase, (bench, *args))
    report.rows.extend(rows)
    return figures


def run(report: Report, quick: bool, directory: Path) -> None:
    lines = 1_000_000 if quick else 10_000_000
    path = directory / "big" / "output.log"
    print(f"\nwriting the log: {lines:,} lines ({load_text()})", flush=True)
    started = time.perf_counter()
    size = write_log(path, lines)
    info(f"{size / MB:,.0f} MB in {time.perf_counter() - started:.1f} s")
    ours = in_fresh_process(report, "LogView on the whole log", bench_open, path, lines)
    in_fresh_process(report, "LogView following a log written at 100,000 lines/s", bench_follow, directory,
                     2.0 if quick else 4.0)
    in_fresh_process(report, f"baseline: Textual's Log on the first {lines // 10:,} lines", bench_log_widget,
                     path, lines // 10, ours, 10)
    in_fresh_process(report, "baseline: RichLog on the first 20,000 lines, extrapolated", bench_rich_log,
                     path, 20_000, ours, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tui_logs", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes / 10: a smoke run")
    args = parser.parse_args(argv)
    print(f"vhtui TUI log benchmarks{' (--quick)' if args.quick else ''}; {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}; {load_text()}", flush=True)
    report = Report()
    started = time.perf_counter()
    directory = Path(tempfile.mkdtemp(prefix="vhtui-bench-tui-logs-"))
    try:
        run(report, args.quick, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("\nsummary\n" + report.table())
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s; at the end: {load_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
