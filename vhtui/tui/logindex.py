"""Random access to the lines of a growing `output.log`, for views that show a screenful at a time.

The index is the byte offset where each line ends, in numpy blocks (8 bytes a line, 80 MB for
10 million lines), found by scanning raw chunks with numpy rather than splitting lines in Python.
Lines themselves are never held: a view reads the few it shows with `pread`, through a small cache.

A large backlog is indexed from the end first, so a 1 GB log shows its last lines at once. Until
the skipped bytes (the *gap*) are scanned, by `scan_gap()` in a worker thread and installed by
`fill_gap()`, the index holds the lines before the gap (exactly numbered from 1) and the lines
after it (addressable, but their line numbers are unknown: `line_number()` says None). Filling the
gap inserts its lines at `gap_line`; lines after it move down by that many, byte offsets never move.

The log grows by whole lines (vhtui's `LogWriter` only appends them); a last line without its
newline yet is left out until the newline arrives. The one exception: resuming a remote run cuts
the log back to a checkpoint (`truncate_log`) and it grows again from there. A file found smaller
than what was indexed, or replaced by another one, is indexed anew from its first byte, and
`generation` counts these restarts, so that what a view or a thread took from an older one (line
numbers, a gap scan, a search's answer) can be told apart and dropped.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

import numpy as np

from vhtui.supervision.logfile import LogReader

SCAN_CHUNK = 4 << 20  # bytes read and scanned at once: big enough that numpy, not Python, sets the pace
SEARCH_CHUNK = 4 << 20  # smaller, because bytes.lower() holds the GIL for the whole chunk
MARK_BYTES = 64  # compared at each refresh to notice a log rewritten in place
MERGE_BELOW = 1 << 16  # small appended blocks join the last one, so following a log keeps few blocks
_ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[@-Z\\-_])")


@dataclass(frozen=True)
class _Table:
    """One consistent snapshot of the index; replaced whole, so a search thread can hold one."""

    blocks: tuple[np.ndarray, ...] = ()  # int64 line ends (offset after the newline), ascending
    firsts: tuple[int, ...] = ()  # index of each block's first line
    count: int = 0
    gap: tuple[int, int] | None = None  # bytes [begin, end) not indexed yet
    gap_line: int | None = None  # index of the first line after the gap

    @classmethod
    def of(cls, blocks: tuple[np.ndarray, ...], gap: tuple[int, int] | None = None,
           gap_line: int | None = None) -> _Table:
        blocks = tuple(b for b in blocks if len(b))
        sizes = [len(b) for b in blocks]
        firsts = tuple(accumulate(sizes, initial=0))
        return cls(blocks, firsts[:-1], firsts[-1], gap, gap_line)

    def extend(self, new: list[np.ndarray]) -> _Table:
        blocks = list(self.blocks)
        for block in new:
            joinable = blocks and len(blocks[-1]) < MERGE_BELOW and self.gap_line != self.count
            if joinable and len(block) < MERGE_BELOW:
                blocks[-1] = np.concatenate((blocks[-1], block))
            else:
                blocks.append(block)
        return _Table.of(tuple(blocks), self.gap, self.gap_line)

    def end(self, i: int) -> int:
        """Offset just after line i's newline."""
        b = bisect.bisect_right(self.firsts, i) - 1
        return int(self.blocks[b][i - self.firsts[b]])

    def start(self, i: int) -> int:
        if i == self.gap_line:
            return self.gap[1]
        return self.end(i - 1) if i else 0

    def line_at(self, offset: int) -> int:
        """Index of the line holding byte `offset` (count when it is past the last line)."""
        b = bisect.bisect_right([int(block[-1]) for block in self.blocks], offset)
        if b == len(self.blocks):
            return self.count
        return self.firsts[b] + int(np.searchsorted(self.blocks[b], offset, side="right"))


@dataclass(frozen=True)
class GapScan:
    """The line ends found in a gap, computed off the event loop and installed by `fill_gap`."""

    gap: tuple[int, int]
    blocks: tuple[np.ndarray, ...]
    generation: int = 0


def _line_ends(fd: int, begin: int, end: int, progress: Callable[[int], None] = lambda n: None,
               cancelled: Callable[[], bool] = lambda: False) -> list[np.ndarray] | None:
    """Offsets just after each newline in bytes [begin, end); None when cancelled.

    One buffer and one mask are reused for all chunks: freed chunk-sized buffers tend to stay in
    a thread's malloc arena, so allocating them anew would leave RSS high after a big scan."""
    size = min(SCAN_CHUNK, end - begin)
    buffer = bytearray(size)
    is_newline = np.empty(size, dtype=bool)
    blocks = []
    pos = begin
    while pos < end:
        if cancelled():
            return None
        n = os.preadv(fd, [memoryview(buffer)[:min(size, end - pos)]], pos)
        if not n:
            break
        np.equal(np.frombuffer(buffer, np.uint8, count=n), 10, out=is_newline[:n])
        ends = np.flatnonzero(is_newline[:n])
        ends += pos + 1
        blocks.append(ends)
        pos += n
        progress(pos - begin)
    return blocks


class LogIndex:
    def __init__(self, path: Path, *, tail_bytes: int = 1 << 20, refresh_limit: int = 4 << 20,
                 cache_lines: int = 4096) -> None:
        """`refresh()` scans at most `refresh_limit` bytes; a larger backlog is skipped over
        (left as the gap) but for its last `tail_bytes`."""
        self.path = Path(path)
        self.tail_bytes = tail_bytes
        self.refresh_limit = refresh_limit
        self._fd: int | None = None
        self._read = lru_cache(maxsize=cache_lines)(self._pread)
        self.generation = 0
        self._start_over()

    def _start_over(self) -> None:
        """Forget everything indexed (and the open file, which may not be the log any more)."""
        self.close()
        self._streams = LogReader(self.path)
        self._table = _Table()
        self._scanned = 0
        self._mark = b""  # the last bytes scanned, which an appended-to file never changes
        self._gap_scanned = 0
        self._read.cache_clear()

    # -- growing ------------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Index the whole lines appended since the last call; return how many there are (after a
        restart, see `generation`, all of them)."""
        fd = self._open()
        if fd is not None and self._cut_or_replaced(fd):
            self._start_over()
            self.generation += 1  # after the new table: a thread that reads it first sees that table
            fd = self._open()
        if fd is None:
            return 0
        self._streams.refresh()
        size = os.fstat(fd).st_size
        if size - self._scanned > self.refresh_limit and self._table.gap is None:
            self._skip_to_tail(fd, size)
        end = min(size, self._scanned + self.refresh_limit)
        if end <= self._scanned:
            return 0
        new = _line_ends(fd, self._scanned, end)
        self._scanned = end
        self._mark = os.pread(fd, min(end, MARK_BYTES), end - min(end, MARK_BYTES))
        before = self._table.count
        self._table = self._table.extend(new)
        return self._table.count - before

    def _cut_or_replaced(self, fd: int) -> bool:
        """The open file is smaller than what was indexed, or no longer the one at the path, or its
        last scanned bytes changed (it was cut and grew past its old size between two looks)."""
        opened = os.fstat(fd)
        if opened.st_size < self._scanned:
            return True
        if os.pread(fd, len(self._mark), self._scanned - len(self._mark)) != self._mark:
            return True
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino)

    def _skip_to_tail(self, fd: int, size: int) -> None:
        """Leave all but the last `tail_bytes` of the backlog as the gap, from a line start on."""
        window = max(self._scanned, size - self.tail_bytes)
        newline = os.pread(fd, size - window, window).find(b"\n")
        if newline < 0:  # one line longer than the window: scan it in order instead
            return
        table = self._table
        begin = table.end(table.count - 1) if table.count else 0
        self._table = _Table.of(table.blocks, (begin, window + newline + 1), table.count)
        self._scanned = window + newline + 1
        self._gap_scanned = 0

    def scan_gap(self, cancelled: Callable[[], bool] = lambda: False) -> GapScan | None:
        """Find the line ends in the gap (any thread; about 1 GB/s); None if there is no gap or
        the scan was cancelled."""
        generation = self.generation
        gap = self._table.gap
        if gap is None:
            return None
        with self._own_fd() as fd:
            blocks = _line_ends(fd, *gap, progress=self._note_progress, cancelled=cancelled)
        return None if blocks is None else GapScan(gap, tuple(blocks), generation)

    def _note_progress(self, scanned: int) -> None:
        self._gap_scanned = scanned

    def fill_gap(self, scan: GapScan) -> int:
        """Install a finished scan; return how many lines were inserted at `gap_line`."""
        table = self._table
        if table.gap != scan.gap or scan.generation != self.generation:
            return 0
        k = table.firsts.index(table.gap_line) if table.gap_line < table.count else len(table.blocks)
        self._table = _Table.of(table.blocks[:k] + scan.blocks + table.blocks[k:])
        return self._table.count - table.count

    # -- state ----------------------------------------------------------------------------------------
    @property
    def line_count(self) -> int:
        return self._table.count

    @property
    def gap(self) -> tuple[int, int] | None:
        """Bytes [begin, end) not indexed yet, or None when every line up to the end is."""
        return self._table.gap

    @property
    def gap_line(self) -> int | None:
        return self._table.gap_line

    @property
    def gap_progress(self) -> float:
        gap = self._table.gap
        return 1.0 if gap is None else self._gap_scanned / max(1, gap[1] - gap[0])

    def line_number(self, i: int) -> int | None:
        """1-based number of line i in the file; None for lines after the gap."""
        gap_line = self._table.gap_line
        return i + 1 if gap_line is None or i < gap_line else None

    # -- reading --------------------------------------------------------------------------------------
    def offset(self, i: int) -> int:
        """Byte offset where line i starts."""
        return self._table.start(i)

    def line(self, i: int, limit: int | None = None) -> bytes:
        """Line i without its newline (its first `limit` bytes when given)."""
        table = self._table
        start = table.start(i)
        length = table.end(i) - 1 - start
        return self._read(start, length if limit is None else min(length, limit))

    def lines(self, i: int, n: int) -> list[bytes]:
        return [self.line(j) for j in range(i, min(i + n, self._table.count))]

    def stream_of(self, i: int) -> str:
        """'stdout' or 'stderr', from the stream switches in `output.streams`."""
        return self._streams.stream_at(self.offset(i))

    def search(self, pattern: str, start: int, backwards: bool = False) -> int | None:
        """The first line at or after `start` (the last at or before it, backwards) whose text,
        ANSI escapes left out, holds `pattern` regardless of case; None if none does.

        Reads the file in big chunks of whole lines and searches each with one `find`, so a
        gigabyte takes about a second; safe to call from a worker thread. ASCII patterns are
        matched on the bytes, others on the decoded text.
        """
        table = self._table
        if not pattern or not table.count:
            return None
        needle: bytes | str = pattern.lower().encode() if pattern.isascii() else pattern.lower()
        newline = b"\n" if isinstance(needle, bytes) else "\n"
        line = min(max(start, 0), table.count - 1)
        with self._own_fd() as fd:
            while 0 <= line < table.count:
                first, stop = self._search_chunk(table, line, backwards)
                data = os.pread(fd, table.end(stop - 1) - table.start(first), table.start(first))
                if b"\x1b" in data:
                    data = _ANSI.sub(b"", data)
                haystack = data.lower() if isinstance(needle, bytes) else data.decode("utf-8", "replace").lower()
                found = haystack.rfind(needle) if backwards else haystack.find(needle)
                if found >= 0:
                    return first + haystack.count(newline, 0, found)
                line = first - 1 if backwards else stop
        return None

    @staticmethod
    def _search_chunk(table: _Table, line: int, backwards: bool) -> tuple[int, int]:
        """Lines [first, stop) of about SEARCH_CHUNK bytes from `line` on (or back), which are
        contiguous in the file: never across the gap."""
        if backwards:
            stop = line + 1
            first = min(line, table.line_at(max(0, table.end(line) - SEARCH_CHUNK)))
            if table.gap_line is not None and first < table.gap_line < stop:
                first = table.gap_line
        else:
            first = line
            stop = max(line + 1, table.line_at(table.start(line) + SEARCH_CHUNK))
            if table.gap_line is not None and first < table.gap_line < stop:
                stop = table.gap_line
        return first, min(stop, table.count)

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        return self._fd

    @contextmanager
    def _own_fd(self) -> Iterator[int]:
        """A descriptor for work in another thread, which `close()` cannot pull from under it."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            yield fd
        finally:
            os.close(fd)

    def _pread(self, start: int, length: int) -> bytes:
        return os.pread(self._fd, length, start)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
