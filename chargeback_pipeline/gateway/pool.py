"""The backend pool of the APIM policies, locally: priorities, weights and circuit breakers.

Mirrors infra/bicep/modules/apim-backends.bicep: backends are tried by priority (1 first, the PTU
deployment), by weight within a priority (the pay-as-you-go spill), and skipped while their circuit
breaker is open. A breaker opens after `failures` answers of 429 or 5xx (or no answer) within
`interval` seconds, for `trip` seconds or, when the backend sent one, its Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chargeback_pipeline.gateway.gateway import Upstream

Clock = Callable[[], float]


def is_retryable(status: int) -> bool:
    """What trips a breaker and moves the call to the next backend: throttling or a server error."""
    return status == 429 or status >= 500


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header given in seconds (Azure OpenAI's form); None otherwise."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class CircuitBreaker:
    """APIM's circuit breaker rule for one backend; thread-safe, with an injectable clock."""

    def __init__(
        self,
        failures: int = 1,
        interval: float = 10.0,
        trip: float = 10.0,
        accept_retry_after: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        if failures < 1 or interval <= 0 or trip <= 0:
            raise ValueError("failures must be >= 1, interval and trip > 0")
        self.failures, self.interval, self.trip = failures, interval, trip
        self.accept_retry_after = accept_retry_after
        self._clock = clock
        self._recent: deque[float] = deque()
        self._open_until = float("-inf")
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        """True while tripped: the pool sends nothing to this backend."""
        with self._lock:
            return self._clock() < self._open_until

    def record_failure(self, retry_after: float | None = None) -> None:
        """Count a 429/5xx/unreachable answer; trip once `failures` fall within `interval`."""
        with self._lock:
            now = self._clock()
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - self.interval:
                self._recent.popleft()
            if len(self._recent) >= self.failures:
                honoured = retry_after if self.accept_retry_after and retry_after else None
                self._open_until = now + (honoured or self.trip)
                self._recent.clear()


@dataclass(frozen=True)
class Backend:
    """One pool member: an upstream (its `backend_id` is what envelopes record), its rank, and
    its circuit breaker (None: never tripped, like a backend without circuit breaker rules)."""

    upstream: Upstream
    priority: int = 1
    weight: int = 1
    breaker: CircuitBreaker | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.priority < 1 or self.weight < 1:
            raise ValueError("priority and weight must be >= 1")

    @property
    def id(self) -> str:
        return self.upstream.backend_id or "upstream"

    def is_open(self) -> bool:
        return self.breaker is not None and self.breaker.is_open()

    def record_failure(self, retry_after: float | None = None) -> None:
        if self.breaker is not None:
            self.breaker.record_failure(retry_after)


class BackendPool:
    """Backends in the order a call tries them: priority, then weighted draw, open breakers out."""

    def __init__(self, backends: Sequence[Backend], rng: Random | None = None) -> None:
        if not backends:
            raise ValueError("a pool needs at least one backend")
        ids = [backend.id for backend in backends]
        if len(set(ids)) != len(ids):
            raise ValueError(f"backend ids repeat: {ids}")
        self.backends = tuple(backends)
        self._rng = rng or Random()
        self._lock = threading.Lock()

    @property
    def max_attempts(self) -> int:
        """One try per backend: a retry never returns to a backend this call already tried."""
        return len(self.backends)

    def order(self, exclude: Iterable[str] = ()) -> list[Backend]:
        """The available backends, best first; empty when every breaker is open."""
        skipped = set(exclude)
        ready = [b for b in self.backends if b.id not in skipped and not b.is_open()]
        ordered: list[Backend] = []
        for priority in sorted({b.priority for b in ready}):
            ordered += self._weighted([b for b in ready if b.priority == priority])
        return ordered

    def next_backend(self, tried: Iterable[str] = ()) -> Backend | None:
        """The backend for the next attempt of a call, or None when none is left."""
        ordered = self.order(tried)
        return ordered[0] if ordered else None

    def _weighted(self, group: list[Backend]) -> list[Backend]:
        """A draw without replacement, each pick in proportion to its weight."""
        left, drawn = list(group), []
        with self._lock:
            while left:
                pick = self._rng.choices(left, weights=[b.weight for b in left])[0]
                left.remove(pick)
                drawn.append(pick)
        return drawn
