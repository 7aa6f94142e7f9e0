"""Secret values kept out of a run's output: what every runner and supervisor that logs one uses."""

from __future__ import annotations

MASK = b"****"


class SecretMask:
    """Replaces secret values in output; keeps back a tail that could be the start of one."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted({s.encode() for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self.keep = max((len(s) for s in self.secrets), default=1) - 1
        self.tail = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes, final: bool = False) -> bytes:
        if not self.secrets:
            return data
        data = self.tail[stream] + data
        for secret in self.secrets:
            data = data.replace(secret, MASK)
        cut = len(data) if final or data.endswith(b"\n") else max(0, len(data) - self.keep)
        self.tail[stream] = data[cut:]
        return data[:cut]
