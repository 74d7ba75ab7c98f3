"""Servers on loopback threads (used only before any materialisation) and the SDK client."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import jsonschema
import orjson
import pytest
from openai import AzureOpenAI

from chargeback_pipeline.gateway.delivery import Deliver, configured_delivery
from chargeback_pipeline.gateway.gateway import (
    GatewayConfig,
    GatewayServer,
    Upstream,
    build_gateway,
)
from chargeback_pipeline.gateway.httpio import start_in_thread
from chargeback_pipeline.gateway.policy import load_subscriptions
from chargeback_pipeline.gateway.simulator import SimulatorServer, build_simulator
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store, read_hour
from chargeback_pipeline_tests.conftest import SHARED

API_VERSION = "2024-10-21"
KEY = "demo-key-marketing"
UPSTREAM_KEY = "upstream-secret"
FRAME_DELAY = 0.01
CALL_HOUR = datetime(2026, 11, 20, 10, 0, 7, tzinfo=UTC)
STARTED = datetime.now(UTC)


class Recorder:
    """A delivery that keeps envelopes in memory and answers like the forwarder."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []

    def __call__(self, raw: bytes) -> tuple[int, str]:
        self.envelopes.append(orjson.loads(raw))
        return 202, "stored"

    def wait_for(self, count: int, seconds: float = 10) -> list[dict[str, Any]]:
        """Delivery follows the client's answer, so wait for it."""
        deadline = time.monotonic() + seconds
        while len(self.envelopes) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.envelopes) == count, self.envelopes
        return self.envelopes


@pytest.fixture(scope="session")
def envelope_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SHARED / "envelope.schema.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    server = build_simulator(api_key=UPSTREAM_KEY, frame_delay=FRAME_DELAY)
    start_in_thread(server, "simulator")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def start_gateway(simulator: SimulatorServer) -> Iterator[Callable[..., GatewayServer]]:
    """Start gateways in front of the simulator: `start_gateway(mode, deliver=None)`; a missing
    `deliver` means the forwarder core into the test's CHARGEBACK_STORE. Calls are stamped in
    CALL_HOUR: Dagster has no partition for the running hour."""
    started: list[GatewayServer] = []

    def start(mode: str, deliver: Deliver | None = None) -> GatewayServer:
        upstream = Upstream(f"http://127.0.0.1:{simulator.server_port}", UPSTREAM_KEY, "aoai-sim")
        config = GatewayConfig(
            upstream,
            mode,
            load_subscriptions(),
            deliver or configured_delivery(),
            clock=lambda: CALL_HOUR + (datetime.now(UTC) - STARTED),
        )
        server = build_gateway("127.0.0.1", 0, config)
        start_in_thread(server, f"gateway-{mode}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def sdk(port: int, key: str = KEY, token: str | None = None) -> AzureOpenAI:
    """The official client as an application would configure it, pointed at a local port; with
    `token` it authenticates with Entra ID (a bearer token) and sends no api-key."""
    credential: dict[str, Any] = {"azure_ad_token": token} if token else {"api_key": key}
    return AzureOpenAI(
        azure_endpoint=f"http://127.0.0.1:{port}",
        api_version=API_VERSION,
        max_retries=0,
        timeout=30,
        **credential,
    )


def unsigned_jwt(claims: dict[str, str]) -> str:
    """A JWT-shaped token with no valid signature (the demo gateway does not verify it)."""

    def part(obj: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def stored_envelopes(hours: list[str]) -> list[dict[str, Any]]:
    """Every envelope the configured store holds for the hours, read as the pipeline reads."""
    settings = load_settings()
    store = open_store(settings.store, settings.container)
    return [orjson.loads(item.raw) for hour in hours for item in read_hour(store, hour)]


def wait_for_stored(hours: list[str], count: int, seconds: float = 15) -> list[dict[str, Any]]:
    """The stored envelopes once `count` have arrived (delivery follows each answer)."""
    deadline = time.monotonic() + seconds
    found = stored_envelopes(hours)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        found = stored_envelopes(hours)
    assert len(found) == count, [e["api"]["operation_id"] for e in found]
    return found


def hour_key(moment: datetime) -> str:
    """The hourly partition key of a UTC instant."""
    return f"{moment.astimezone(UTC):%Y-%m-%d-%H}:00"
