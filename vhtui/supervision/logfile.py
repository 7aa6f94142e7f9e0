"""An execution's log: stdout and stderr in one file, in arrival order, with each line's stream.

`output.log` holds the lines exactly as printed, so it can be appended as fast as `command > file`,
tailed, grepped and indexed by byte offset. Which stream a line came from is kept beside it in
`output.streams`: a record (byte offset, stream) at every switch between streams, which is tiny
because runs switch rarely. Only whole lines are written, so a line is never split between streams.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_RECORD = struct.Struct("<QB")
STREAM_IDS = {"stdout": 1, "stderr": 2}
STREAM_NAMES = {v: k for k, v in STREAM_IDS.items()}
MAX_PENDING = 1 << 20  # a "line" longer than this (a runaway progress bar) is written in pieces
Region = tuple[bytes, int, int]  # whole lines: buffer[start:end]


def parse_json_object(text: bytes) -> dict[str, Any] | None:
    """A log line that is a JSON object (a metadata event), else None; NaN and Infinity, as Python's
    json.dumps prints them, are read too."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def streams_path(log_path: Path) -> Path:
    return log_path.with_suffix(".streams")


class LogWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.streams_fd = os.open(streams_path(path), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self.offset = os.fstat(self.fd).st_size
        self.last_stream: str | None = None
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> list[Region]:
        """Append the whole lines that `data` completes; return where they are (for metadata).

        The common case copies nothing in Python: the lines are written straight out of `data`,
        and only an unfinished line from the previous chunk is joined to the first new one.
        """
        pending = self.pending[stream]
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            pending += data
            if len(pending) < MAX_PENDING:
                self.pending[stream] = pending
                return []
            data, pending, cut = pending + b"\n", b"", len(pending) + 1
        regions: list[Region] = []
        body = 0
        if pending:
            body = data.find(b"\n") + 1
            head = pending + data[:body]
            regions.append((head, 0, len(head)))
        if cut > body:
            regions.append((data, body, cut))
        self.pending[stream] = data[cut:]
        self._emit(stream, regions)
        return regions

    def _emit(self, stream: str, regions: list[Region]) -> None:
        if stream != self.last_stream:
            os.write(self.streams_fd, _RECORD.pack(self.offset, STREAM_IDS[stream]))
            self.last_stream = stream
        views = [memoryview(buf)[start:end] for buf, start, end in regions]
        size = sum(len(v) for v in views)
        written = os.writev(self.fd, views)
        if written < size:  # a short write (a signal, a nearly full disk): finish it
            rest = memoryview(b"".join(views))[written:]
            while rest:
                rest = rest[os.write(self.fd, rest):]
        self.offset += size

    def close(self) -> list[Region]:
        """Write what is left of unfinished lines; return stdout's rest (it may be metadata)."""
        tail: list[Region] = []
        for stream, rest in self.pending.items():
            if rest:
                line = rest + b"\n"
                self._emit(stream, [(line, 0, len(line))])
                if stream == "stdout":
                    tail = [(line, 0, len(line))]
        self.pending = {"stdout": b"", "stderr": b""}
        os.close(self.fd)
        os.close(self.streams_fd)
        return tail


def truncate_log(path: Path, size: int) -> None:
    """Cut the log back to its first `size` bytes, and its stream records with it (a resumed run
    receives the rest again)."""
    with open(path, "r+b") if path.exists() else open(path, "w+b") as f:
        f.truncate(min(size, os.fstat(f.fileno()).st_size))
    streams = streams_path(path)
    if streams.exists():
        data = streams.read_bytes()
        kept = [record for record in _RECORD.iter_unpack(data[:len(data) - len(data) % _RECORD.size])
                if record[0] < size]
        streams.write_bytes(b"".join(_RECORD.pack(*record) for record in kept))


class LogReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets: list[int] = []
        self._streams: list[int] = []
        self._records_read = 0

    def refresh(self) -> None:
        """Read stream switches recorded since the last look (stream_at answers from them)."""
        try:
            with open(streams_path(self.path), "rb") as f:
                if os.fstat(f.fileno()).st_size < self._records_read * _RECORD.size:
                    self._offsets, self._streams, self._records_read = [], [], 0  # cut back: read anew
                f.seek(self._records_read * _RECORD.size)
                data = f.read()
        except FileNotFoundError:
            return
        usable = len(data) - len(data) % _RECORD.size
        for offset, stream in _RECORD.iter_unpack(data[:usable]):
            self._offsets.append(offset)
            self._streams.append(stream)
        self._records_read += usable // _RECORD.size

    def stream_at(self, offset: int) -> str:
        index = bisect.bisect_right(self._offsets, offset) - 1
        return STREAM_NAMES.get(self._streams[index], "stdout") if index >= 0 else "stdout"

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read_lines(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, str, bytes]]:
        """(offset, stream, line without newline) for each whole line from byte `start`."""
        self.refresh()
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(start)
            offset = start
            carry = b""
            limit = end if end is not None else os.fstat(f.fileno()).st_size
            while offset + len(carry) < limit:
                chunk = f.read(min(1 << 20, limit - offset - len(carry)))
                if not chunk:
                    break
                buf = carry + chunk
                lines = buf.split(b"\n")
                carry = lines.pop()
                for line in lines:
                    yield offset, self.stream_at(offset), line
                    offset += len(line) + 1
