"""Work handed to a pool with a bounded number of results in flight (stdlib only: the
forwarder's store and the pipeline share it)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    pool: Executor, function: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """`pool.map` keeping at most `window` results ahead of the consumer: memory stays flat."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
