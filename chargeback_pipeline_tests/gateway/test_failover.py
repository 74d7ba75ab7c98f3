"""The backend pool: PTU first, pay-as-you-go spill, circuit breakers, and a failover billed once.

A PTU backend (priority 1) answers 429; the gateway retries the call on the pay-as-you-go backend
(priority 2) before the client sees anything, so the client gets one 200, one envelope is stored,
and the hour bills that request once, at the price of the backend that served it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from random import Random

import polars as pl
import pytest

from chargeback_pipeline.cli import materialize_hours
from chargeback_pipeline.gateway.delivery import configured_delivery
from chargeback_pipeline.gateway.gateway import (
    REQUEST_ID_HEADER,
    BackendSpec,
    GatewayConfig,
    GatewayServer,
    Upstream,
    build_gateway,
)
from chargeback_pipeline.gateway.httpio import start_in_thread
from chargeback_pipeline.gateway.policy import load_subscriptions
from chargeback_pipeline.gateway.pool import Backend, BackendPool, CircuitBreaker
from chargeback_pipeline.gateway.simulator import Failures, SimulatorServer, build_simulator
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline_tests.gateway.conftest import (
    CALL_HOUR,
    UPSTREAM_KEY,
    hour_key,
    sdk,
    wait_for_stored,
)

PTU, PAYGO = "aoai-eastus-ptu", "aoai-westeurope-1"
"""Backend ids of dbt_like_sql/seeds/deployments.csv; gpt-4o at PAYGO is DataZoneStandard."""
DATA_ZONE_GPT_4O = (Decimal("2.75"), Decimal("1.375"), Decimal("11.00"))
"""price_book.csv: gpt-4o-2024-08-06 DataZoneStandard input, cached input, output per 1M."""


class ManualClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def upstream(backend_id: str, port: int = 9) -> Upstream:
    return Upstream(f"http://127.0.0.1:{port}", UPSTREAM_KEY, backend_id, timeout=10)


# --- circuit breaker and pool order -------------------------------------------------------------


def test_breaker_trips_after_n_failures_within_the_interval_and_recovers_after_the_trip() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failures=3, interval=10, trip=30, clock=clock)
    breaker.record_failure()
    clock.advance(11)  # the first failure leaves the window
    breaker.record_failure()
    breaker.record_failure()
    assert not breaker.is_open()
    breaker.record_failure()
    assert breaker.is_open()
    clock.advance(29.9)
    assert breaker.is_open()
    clock.advance(0.2)
    assert not breaker.is_open()
    breaker.record_failure()  # the count started again after the trip
    assert not breaker.is_open()


def test_breaker_honours_retry_after_unless_told_not_to() -> None:
    clock = ManualClock()
    honouring = CircuitBreaker(failures=1, trip=5, clock=clock)
    ignoring = CircuitBreaker(failures=1, trip=5, accept_retry_after=False, clock=clock)
    honouring.record_failure(retry_after=60)
    ignoring.record_failure(retry_after=60)
    clock.advance(6)
    assert honouring.is_open() and not ignoring.is_open()
    clock.advance(55)
    assert not honouring.is_open()


def test_pool_tries_priorities_in_order_and_splits_a_priority_by_weight() -> None:
    clock = ManualClock()
    ptu = Backend(upstream(PTU), 1, 1, CircuitBreaker(clock=clock))
    east = Backend(upstream("aoai-eastus-1"), 2, 3)
    west = Backend(upstream(PAYGO), 2, 1)
    pool = BackendPool([west, ptu, east], rng=Random(7))
    firsts = [pool.order()[0].id for _ in range(100)]
    assert set(firsts) == {PTU}
    spill = [pool.order()[1].id for _ in range(2000)]
    share = spill.count("aoai-eastus-1") / len(spill)
    assert 0.70 < share < 0.80  # weight 3 against 1
    assert pool.next_backend([PTU, "aoai-eastus-1"]) is west
    ptu.record_failure()
    assert [b.id for b in pool.order()][-1] != PTU and PTU not in [b.id for b in pool.order()]
    assert pool.next_backend([PAYGO, "aoai-eastus-1"]) is None  # PTU open, the rest tried


def test_pool_refuses_repeated_ids_and_bad_ranks() -> None:
    with pytest.raises(ValueError, match="repeat"):
        BackendPool([Backend(upstream(PTU)), Backend(upstream(PTU))])
    with pytest.raises(ValueError):
        Backend(upstream(PTU), priority=0)


def test_backend_spec_option_parses() -> None:
    spec = BackendSpec.parse("aoai-eastus-ptu=simulator,priority=1,weight=2,fail-rate=0.5")
    assert spec == BackendSpec(PTU, "simulator", 1, 2, 0.5, 429)
    with pytest.raises(ValueError, match="unknown option"):
        BackendSpec.parse("x=http://h,colour=red")


def test_simulator_failure_plan_fails_the_next_calls_then_a_share() -> None:
    plan = Failures(500, count=2)
    assert [plan.draw() for _ in range(3)] == [500, 500, None]
    shared = Failures(429, rate=0.25, seed=3)
    draws = [shared.draw() for _ in range(2000)]
    assert 0.2 < draws.count(429) / len(draws) < 0.3


# --- through the gateway ------------------------------------------------------------------------


@pytest.fixture
def simulators() -> Iterator[dict[str, SimulatorServer]]:
    servers = {
        backend_id: build_simulator(api_key=UPSTREAM_KEY, frame_delay=0)
        for backend_id in (PTU, PAYGO)
    }
    for backend_id, server in servers.items():
        start_in_thread(server, f"simulator-{backend_id}")
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def pooled_gateway(
    chargeback_env: Path, simulators: dict[str, SimulatorServer]
) -> Iterator[tuple[GatewayServer, ManualClock]]:
    """A gateway over PTU (priority 1) and paygo (priority 2); breakers on a manual clock."""
    clock = ManualClock()
    backends = [
        Backend(
            upstream(backend_id, simulators[backend_id].server_port),
            priority,
            1,
            CircuitBreaker(failures=1, interval=10, trip=10, clock=clock),
        )
        for backend_id, priority in ((PTU, 1), (PAYGO, 2))
    ]
    started = datetime.now(UTC)
    config = GatewayConfig(
        BackendPool(backends),
        "buffered",
        load_subscriptions(),
        configured_delivery(),
        clock=lambda: CALL_HOUR + (datetime.now(UTC) - started),
    )
    server = build_gateway("127.0.0.1", 0, config)
    start_in_thread(server, "gateway-pool")
    yield server, clock
    server.shutdown()
    server.server_close()


def chat(port: int, case: str) -> tuple[int, str]:
    """One SDK chat call (no client retries): its status and the gateway's request id."""
    raw = sdk(port).chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Name three harbours of the North Sea."}],
        extra_headers={"x-chargeback-cost-center": "CC-4100", "x-chargeback-case": case},
    )
    raw.parse()
    return raw.status_code, raw.headers[REQUEST_ID_HEADER]


@pytest.mark.slow
def test_a_throttled_ptu_call_fails_over_and_is_billed_once_at_the_paygo_price(
    pooled_gateway: tuple[GatewayServer, ManualClock], simulators: dict[str, SimulatorServer]
) -> None:
    gateway, clock = pooled_gateway
    simulators[PTU].failures.fail_next(1, 429)

    status, failover = chat(gateway.server_port, "failover")
    assert status == 200
    assert (simulators[PTU].calls, simulators[PAYGO].calls) == (1, 1)

    # The PTU breaker is open (Retry-After honoured): the next call goes straight to the spill...
    assert chat(gateway.server_port, "while-open")[0] == 200
    assert (simulators[PTU].calls, simulators[PAYGO].calls) == (1, 2)
    # ...and once the trip is over, PTU serves again.
    clock.advance(60)
    status, recovered = chat(gateway.server_port, "recovered")
    assert status == 200
    assert (simulators[PTU].calls, simulators[PAYGO].calls) == (2, 2)

    envelopes = wait_for_stored([hour_key(CALL_HOUR)], 3)
    by_request = {e["request_id"]: e for e in envelopes}
    assert len(by_request) == 3  # one envelope per client call, none for the failed try
    assert by_request[failover]["backend"] == {
        "id": PAYGO,
        "deployment": "gpt-4o",
        "api_version": "2024-10-21",
    }
    assert by_request[failover]["response"]["status"] == 200
    assert by_request[recovered]["backend"]["id"] == PTU

    assert materialize_hours([hour_key(CALL_HOUR)], show_progress=False) == []
    costs = pl.read_delta(str(Path(load_settings().lake) / "usage_costs"))
    [row] = costs.filter(pl.col("request_id") == failover).to_dicts()
    assert row["deployment_type"] == "DataZoneStandard" and row["priced"] is True
    assert row["cost_center"] == "CC-4100"
    input_price, cached_price, output_price = DATA_ZONE_GPT_4O
    uncached = row["prompt_tokens"] - row["cached_tokens"]
    expected = (
        uncached * input_price
        + row["cached_tokens"] * cached_price
        + row["completion_tokens"] * output_price
    ) / 1_000_000
    assert row["total_cost"] == expected and expected > 0
    assert costs.height == 3


def test_when_every_backend_fails_the_last_answer_reaches_the_client_once(
    pooled_gateway: tuple[GatewayServer, ManualClock], simulators: dict[str, SimulatorServer]
) -> None:
    gateway, _ = pooled_gateway
    simulators[PTU].failures.fail_next(1, 500)
    simulators[PAYGO].failures.fail_next(1, 503)
    raw = sdk(gateway.server_port).chat.completions.with_raw_response
    with pytest.raises(Exception) as failed:
        raw.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    assert getattr(failed.value, "status_code", None) == 503
    assert (simulators[PTU].calls, simulators[PAYGO].calls) == (1, 1)
    [envelope] = wait_for_stored([hour_key(CALL_HOUR)], 1)
    assert envelope["backend"]["id"] == PAYGO and envelope["response"]["status"] == 503
    # Both breakers are open now: the gateway answers 503 itself and names no backend.
    with pytest.raises(Exception) as refused:
        raw.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    assert getattr(refused.value, "status_code", None) == 503
    assert (simulators[PTU].calls, simulators[PAYGO].calls) == (1, 1)
    envelopes = wait_for_stored([hour_key(CALL_HOUR)], 2)
    assert sorted(str(e["backend"]["id"]) for e in envelopes) == ["None", PAYGO]
