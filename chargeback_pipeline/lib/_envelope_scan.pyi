from typing import Any, TypeVar

T = TypeVar("T")

def scan_envelope(raw: bytes | memoryview, /) -> tuple[Any, ...] | None: ...
def line_views(
    name: str, data: bytes, start: int, stop: int, kind: type[T], /
) -> tuple[list[T], int]: ...

TAIL_READ_FROM: int
