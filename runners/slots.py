"""Runner slots on one machine: at most N runs at once, and GPUs handed out disjointly.

A slot is an exclusive `flock` on a file in a slots directory, held by the process that owns the
run for the run's life. The kernel drops the lock when the process dies, however it dies, so a
crash can never leak a slot or a GPU. The engine's supervisors and a runner agent's keepers use
the same slots.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any


class SlotLease:
    def __init__(self, files: list[Any], gpu_ids: list[int]) -> None:
        self.files = files
        self.gpu_ids = gpu_ids

    def release(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


def _try_lock(path: Path) -> Any | None:
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def try_acquire(slots_dir: Path, max_parallel: int, gpu_ids: list[int], gpus_needed: int) -> SlotLease | None:
    """One run slot and `gpus_needed` free GPUs, all or nothing; None when not available now."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    held: list[Any] = []
    for index in range(max_parallel):
        lock = _try_lock(slots_dir / f"run-{index}.lock")
        if lock:
            held.append(lock)
            break
    if not held:
        return None
    assigned: list[int] = []
    for gpu in gpu_ids:
        if len(assigned) == gpus_needed:
            break
        lock = _try_lock(slots_dir / f"gpu-{gpu}.lock")
        if lock:
            held.append(lock)
            assigned.append(gpu)
    if len(assigned) < gpus_needed:
        SlotLease(held, []).release()
        return None
    return SlotLease(held, assigned)


