from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from chargeback_pipeline.forwarder.core import forward_envelope, is_authorised, split_ndjson
from chargeback_pipeline.forwarder.server import ROUTE, build_server
from chargeback_pipeline.store.base import StoredObject, StoreError, read_hour
from chargeback_pipeline.store.local import LocalEnvelopeStore

LIMIT = 10_000
# Deliberately odd spacing, key order and escapes: the stored bytes must be these bytes.
BODY = (
    b'{ "timestamp" : "2024-08-06T13:05:00.123Z",  "request_id":"req-1",'
    b'"schema_version":"1.0", "note":"caf\\u00e9 \xe2\x82\xac", "n": 1.50 }'
)


def body_with(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


class FailingDiskStore:
    """A store whose disk always fails: implements the store protocol and raises StoreError."""

    def __init__(self) -> None:
        self.attempts = 0

    def write_envelope(self, raw: bytes, timestamp: datetime, request_id: str) -> str:
        self.attempts += 1
        raise StoreError("disk full")

    def list_hour(self, hour_key: str) -> list[StoredObject]:
        return []

    def read_object(self, name: str) -> bytes:
        raise StoreError("disk full")

    def describe(self) -> str:
        return "failing disk"


@pytest.fixture
def store(tmp_path: Path) -> LocalEnvelopeStore:
    return LocalEnvelopeStore(tmp_path / "store", writer="test")


# --- core: accepted --------------------------------------------------------------------------


def test_valid_envelope_is_accepted_with_202(store: LocalEnvelopeStore) -> None:
    result = forward_envelope(BODY, store, LIMIT)

    assert (result.status, result.accepted, result.message) == (202, True, "stored")


def test_accepted_envelope_is_stored_byte_for_byte_as_received(
    store: LocalEnvelopeStore,
) -> None:
    result = forward_envelope(BODY, store, LIMIT)

    assert result.stored_as is not None
    assert (store.root / result.stored_as).read_bytes() == BODY + b"\n"


def test_accepted_envelope_is_stored_under_its_timestamp_hour(store: LocalEnvelopeStore) -> None:
    forward_envelope(BODY, store, LIMIT)

    assert [item.raw for item in read_hour(store, "2024-08-06-13:00")] == [BODY]


def test_offset_timestamp_is_stored_under_the_utc_hour(store: LocalEnvelopeStore) -> None:
    body = body_with(request_id="r", timestamp="2024-08-06T01:30:00+02:00")

    result = forward_envelope(body, store, LIMIT)

    assert result.stored_as is not None
    assert result.stored_as.startswith("raw/2024/08/05/23/")


def test_envelope_the_pipeline_will_quarantine_is_still_stored(store: LocalEnvelopeStore) -> None:
    body = body_with(request_id="r", timestamp="2024-08-06T13:00:00Z", schema_version="9.0")

    assert forward_envelope(body, store, LIMIT).status == 202


def test_multi_line_envelope_is_stored_whole_as_received(store: LocalEnvelopeStore) -> None:
    body = b'{\n  "request_id": "pretty",\n  "timestamp": "2024-08-06T13:00:00Z"\n}'

    result = forward_envelope(body, store, LIMIT)

    assert result.stored_as is not None
    assert (store.root / result.stored_as).read_bytes() == body


def test_envelope_exactly_at_the_limit_is_accepted(store: LocalEnvelopeStore) -> None:
    assert forward_envelope(BODY, store, len(BODY)).status == 202


# --- core: refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"request_id": "r",', b"\xff\xfe\x00", b"   "],
    ids=["empty", "text", "truncated", "bad-utf8", "blank"],
)
def test_body_that_is_not_json_is_refused_with_400(store: LocalEnvelopeStore, body: bytes) -> None:
    result = forward_envelope(body, store, LIMIT)

    assert (result.status, result.message) == (400, "body is not JSON")
    assert not store.root.exists()


@pytest.mark.parametrize("body", [b"[]", b'[{"request_id": "r"}]', b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_refused_with_400(
    store: LocalEnvelopeStore, body: bytes
) -> None:
    result = forward_envelope(body, store, LIMIT)

    assert (result.status, result.message) == (400, "body is not a JSON object")
    assert not store.root.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"timestamp": "2024-08-06T13:00:00Z"},
        {"request_id": "", "timestamp": "2024-08-06T13:00:00Z"},
        {"request_id": None, "timestamp": "2024-08-06T13:00:00Z"},
        {"request_id": 12345, "timestamp": "2024-08-06T13:00:00Z"},
    ],
    ids=["missing", "empty", "null", "number"],
)
def test_envelope_without_request_id_string_is_refused_with_400(
    store: LocalEnvelopeStore, fields: dict[str, object]
) -> None:
    result = forward_envelope(body_with(**fields), store, LIMIT)

    assert result.status == 400
    assert "request_id" in result.message
    assert not store.root.exists()


@pytest.mark.parametrize(
    "timestamp",
    [None, "2024-08-06T13:00:00", "2024-08-06", "yesterday", "2024-13-01T00:00:00Z", 1722949200],
    ids=["null", "no-offset", "date-only", "words", "month-13", "epoch-number"],
)
def test_envelope_without_usable_timestamp_is_refused_with_400(
    store: LocalEnvelopeStore, timestamp: object
) -> None:
    result = forward_envelope(body_with(request_id="r", timestamp=timestamp), store, LIMIT)

    assert result.status == 400
    assert "timestamp" in result.message
    assert not store.root.exists()


def test_envelope_with_no_timestamp_field_is_refused_with_400(store: LocalEnvelopeStore) -> None:
    assert forward_envelope(body_with(request_id="r"), store, LIMIT).status == 400


def test_envelope_over_the_limit_is_refused_with_413_naming_the_limit(
    store: LocalEnvelopeStore,
) -> None:
    result = forward_envelope(BODY, store, len(BODY) - 1)

    assert result.status == 413
    assert str(len(BODY) - 1) in result.message
    assert not store.root.exists()


def test_deeply_nested_json_is_answered_not_raised(store: LocalEnvelopeStore) -> None:
    depth = 100_000
    body = (
        b'{"request_id":"r","timestamp":"2024-08-06T13:00:00Z","x":'
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )

    result = forward_envelope(body, store, 10 * len(body))

    assert result.status in (202, 400)


# --- core: authentication --------------------------------------------------------------------


@pytest.mark.parametrize("presented", [None, "", "wrong-key", "s3cret-key-extra", "S3CRET-KEY"])
def test_wrong_or_missing_key_is_refused_with_401_when_a_key_is_configured(
    store: LocalEnvelopeStore, presented: str | None
) -> None:
    result = forward_envelope(BODY, store, LIMIT, presented, "s3cret-key")

    assert result.status == 401
    assert not store.root.exists()


def test_right_key_is_accepted_with_202(store: LocalEnvelopeStore) -> None:
    assert forward_envelope(BODY, store, LIMIT, "s3cret-key", "s3cret-key").status == 202


def test_authentication_is_checked_before_the_body(store: LocalEnvelopeStore) -> None:
    assert forward_envelope(b"not json", store, LIMIT, None, "s3cret-key").status == 401


def test_any_key_is_accepted_when_none_is_configured() -> None:
    assert is_authorised(None, None)
    assert is_authorised("whatever", "")


# --- core: storage failure -------------------------------------------------------------------


def test_store_failure_answers_503_so_the_sender_retries() -> None:
    failing = FailingDiskStore()

    result = forward_envelope(BODY, failing, LIMIT)

    assert (result.status, result.stored_as) == (503, None)
    assert "retry" in result.message
    assert failing.attempts == 1


def test_store_failure_on_a_real_folder_answers_503_and_stores_nothing(tmp_path: Path) -> None:
    root = tmp_path / "occupied"
    root.write_text("a file where the store folder should be")

    result = forward_envelope(BODY, LocalEnvelopeStore(root), LIMIT)

    assert result.status == 503
    assert [path.name for path in tmp_path.iterdir()] == ["occupied"]
    assert root.read_text() == "a file where the store folder should be"


def test_split_ndjson_keeps_non_empty_lines_with_their_line_numbers() -> None:
    assert split_ndjson(b'{"a":1}\n\n  \n{"b":2}\r\n{"c":3}') == [
        (1, b'{"a":1}'),
        (4, b'{"b":2}'),
        (5, b'{"c":3}'),
    ]


# --- HTTP server -----------------------------------------------------------------------------


@pytest.fixture
def server_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CHARGEBACK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CHARGEBACK_MAX_ENVELOPE_BYTES", str(LIMIT))
    monkeypatch.delenv("CHARGEBACK_FORWARDER_KEY", raising=False)
    yield from run_server()


@pytest.fixture
def keyed_server_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CHARGEBACK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CHARGEBACK_FORWARDER_KEY", "s3cret-key")
    yield from run_server()


def run_server() -> Iterator[str]:
    server = build_server("127.0.0.1", 0)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_http_post_stores_envelope_and_answers_202_json(server_url: str, tmp_path: Path) -> None:
    status, answer = post(server_url + ROUTE, BODY, {"Content-Type": "application/json"})

    assert (status, answer["status"], answer["message"]) == (202, 202, "stored")
    assert answer["stored_as"].startswith("raw/2024/08/06/13/")
    assert (tmp_path / "store" / answer["stored_as"]).read_bytes() == BODY + b"\n"


def test_http_query_string_on_the_route_is_accepted(server_url: str) -> None:
    status, _ = post(server_url + ROUTE + "?code=abc", BODY)

    assert status == 202


def test_http_post_of_non_json_answers_400_json(server_url: str, tmp_path: Path) -> None:
    status, answer = post(server_url + ROUTE, b"not json")

    assert status == 400
    assert answer == {"status": 400, "message": "body is not JSON", "stored_as": None}
    assert not (tmp_path / "store").exists()


def test_http_post_of_json_array_answers_400(server_url: str) -> None:
    status, answer = post(server_url + ROUTE, b"[]")

    assert (status, answer["message"]) == (400, "body is not a JSON object")


def test_http_content_length_over_the_limit_answers_413_without_reading(
    server_url: str, tmp_path: Path
) -> None:
    # Declared length over CHARGEBACK_MAX_ENVELOPE_BYTES, nothing sent: refused on the header.
    status, answer = post(server_url + ROUTE, b"", {"Content-Length": str(LIMIT + 1)})

    assert status == 413
    assert str(LIMIT) in answer["message"]
    assert not (tmp_path / "store").exists()


def test_http_body_over_the_limit_answers_413(server_url: str, tmp_path: Path) -> None:
    body = body_with(request_id="big", timestamp="2024-08-06T13:00:00Z", pad="x" * (LIMIT + 10))

    status, answer = post(server_url + ROUTE, body)

    assert (status, answer["status"]) == (413, 413)
    assert not (tmp_path / "store").exists()


def test_http_other_path_answers_404_naming_the_route(server_url: str, tmp_path: Path) -> None:
    status, answer = post(server_url + "/api/other", BODY)

    assert status == 404
    assert ROUTE in answer["message"]
    assert not (tmp_path / "store").exists()


def test_http_wrong_key_answers_401(keyed_server_url: str) -> None:
    status, _ = post(keyed_server_url + ROUTE, BODY, {"x-functions-key": "wrong"})

    assert status == 401


def test_http_right_key_answers_202(keyed_server_url: str) -> None:
    status, _ = post(keyed_server_url + ROUTE, BODY, {"x-functions-key": "s3cret-key"})

    assert status == 202


def test_http_answers_carry_json_content_type(server_url: str) -> None:
    request = urllib.request.Request(server_url + ROUTE, data=BODY, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
