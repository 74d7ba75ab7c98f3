from typing import Any

def scan_envelope(raw: bytes | memoryview, /) -> tuple[Any, ...] | None: ...

TAIL_READ_FROM: int
