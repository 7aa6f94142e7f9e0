"""Docker's framing of a multiplexed output stream, which the runner agent uses as well.

Each frame is an 8-byte header (the stream: 1 stdout, 2 stderr, and 0 for the agent's empty
keepalive frames; three padding bytes; the payload's length, big-endian) and then the payload.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">BxxxI")
STREAM_IDS = {"stdout": 1, "stderr": 2}
STREAM_NAMES = {1: "stdout", 2: "stderr"}
KEEPALIVE = HEADER.pack(0, 0)


def frame(stream: str, payload: bytes) -> bytes:
    return HEADER.pack(STREAM_IDS[stream], len(payload)) + payload


def split(buffer: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """The whole frames at the start of `buffer` as (stream, payload), and the unfinished rest.
    Bytes are cut here from large reads: a read per frame costs more than a flood of short lines
    can afford."""
    frames = []
    start, size = 0, len(buffer)
    while size - start >= HEADER.size:
        stream, length = HEADER.unpack_from(buffer, start)
        end = start + HEADER.size + length
        if end > size:
            break
        frames.append((STREAM_NAMES.get(stream, "stdout"), buffer[start + HEADER.size:end]))
        start = end
    return frames, buffer[start:]
