"""Crafted and damaged checkpoint files."""

import os
from pathlib import Path


class Payload:
    """Pickles as a call of os.system: loading it with pickle would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def flip_bytes(path: Path, needle: bytes, count: int = 64) -> None:
    """Invert ``count`` bytes of ``path`` where ``needle`` (raw tensor data) starts."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0
    data[at : at + count] = bytes(b ^ 0xFF for b in data[at : at + count])
    path.write_bytes(bytes(data))
