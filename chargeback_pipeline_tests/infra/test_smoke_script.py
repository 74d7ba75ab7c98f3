"""infra/scripts/smoke_test.py: its pure parts, the search over a real store, and a whole run
through the local gateway (`chargeback gateway`, the APIM stand-in) into Azurite."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from chargeback_pipeline.devtools.azurite import free_port, stop_process, wait_for_port
from chargeback_pipeline.store import LocalEnvelopeStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "scripts" / "smoke_test.py"
DEMO_KEY = "demo-key-marketing"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


smoke = _load()


def envelope(request_id: str, timestamp: datetime) -> bytes:
    return json.dumps({"request_id": request_id, "timestamp": timestamp.isoformat()}).encode()


def test_hour_keys_cover_every_hour_from_start_to_end() -> None:
    start = datetime(2026, 11, 27, 22, 58, tzinfo=UTC)
    end = datetime(2026, 11, 28, 0, 1, tzinfo=UTC)
    expected = ["2026-11-27-22:00", "2026-11-27-23:00", "2026-11-28-00:00"]
    assert smoke.hour_keys(start, end) == expected
    assert smoke.hour_keys(end, end) == ["2026-11-28-00:00"]


def test_completion_request_carries_the_key_and_tags_in_headers_only() -> None:
    request = smoke.completion_request(
        "https://apim.example/", "gpt-4o-mini", "2024-10-21", "secret-key", {"cost-center": "CC-1"}
    )
    assert request.full_url == (
        "https://apim.example/openai/deployments/gpt-4o-mini/chat/completions"
        "?api-version=2024-10-21"
    )
    assert request.get_method() == "POST"
    headers = {name.lower(): value for name, value in request.header_items()}
    assert headers["api-key"] == "secret-key"
    assert headers["x-chargeback-cost-center"] == "CC-1"
    assert "secret-key" not in request.full_url
    assert json.loads(request.data)["max_tokens"] <= 5


def test_search_finds_the_request_id_and_reads_only_appended_bytes(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path / "store")
    now = datetime.now(UTC)
    store.write_envelope(envelope("other-call", now), now, "other-call")
    hours = smoke.hour_keys(now, now)
    search = smoke.EnvelopeSearch(store, "smoke-call")

    assert search.scan(hours) is None
    scanned = dict(search.read)
    store.write_envelope(envelope("smoke-call", now), now, "smoke-call")
    found = search.scan(hours)

    assert found is not None and json.loads(found.raw)["request_id"] == "smoke-call"
    # The second scan started where the first stopped in the same append target.
    assert all(search.read[name] > size for name, size in scanned.items())


def test_a_request_id_inside_another_envelope_is_not_a_match(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path / "store")
    now = datetime.now(UTC)
    raw = json.dumps({"request_id": "other", "tags": {"note": "smoke-call"}}).encode()
    store.write_envelope(raw, now, "other")
    assert smoke.EnvelopeSearch(store, "smoke-call").scan(smoke.hour_keys(now, now)) is None


def test_waiting_gives_up_at_the_timeout_naming_the_request(tmp_path: Path) -> None:
    search = smoke.EnvelopeSearch(LocalEnvelopeStore(tmp_path / "store"), "never-sent")
    with pytest.raises(smoke.SmokeFailure, match="never-sent"):
        smoke.wait_for_envelope(search, datetime.now(UTC), timeout=0, sleep=lambda _: None)


@pytest.fixture
def gateway(blob_store_env: str) -> Iterator[str]:
    """`chargeback gateway` on a free loopback port, in front of its built-in simulator, storing
    envelopes in the test's Azurite container through the forwarder core; stopped by PID."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_OPENAI_")}
    process = subprocess.Popen(
        [Path(sys.executable).parent / "chargeback", "gateway", "--port", str(port)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def run_smoke(gateway_url: str, container: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The script's exit status and what it printed, as `"<status> <output>"`."""
    status = smoke.main(
        [
            *("--gateway-url", gateway_url, "--deployment", "gpt-4o-mini"),
            *("--store", os.environ["CHARGEBACK_STORE"], "--container", container),
            *("--timeout", "30", "--interval", "0.2"),
        ]
    )
    return f"{status} {capsys.readouterr().out}"


def test_a_call_through_the_gateway_is_found_in_blob_storage(
    gateway: str,
    blob_store_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(smoke.KEY_VARIABLE, DEMO_KEY)
    output = run_smoke(gateway, blob_store_env, capsys)
    assert output.startswith("0 "), output
    assert "envelope stored in raw/" in output


def test_a_refused_call_fails_the_smoke_test_with_the_status(
    gateway: str,
    blob_store_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(smoke.KEY_VARIABLE, f"not-a-key-{uuid.uuid4().hex}")
    output = run_smoke(gateway, blob_store_env, capsys)
    assert output.startswith("1 "), output
    assert "answered 401" in output
