"""The Blob backend on Azurite: the folder store's layout; concurrent writers lose nothing."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import orjson
import pytest

from chargeback_pipeline.devtools.azurite import Azurite
from chargeback_pipeline.store import StoreError, open_store, read_hour
from chargeback_pipeline.store import base as store_base

HOUR = "2026-11-27-13:00"
IN_HOUR = datetime(2026, 11, 27, 13, 5, tzinfo=UTC)


def envelope(request_id: str, **extra: object) -> bytes:
    body = {"request_id": request_id, "timestamp": "2026-11-27T13:05:00Z", **extra}
    return orjson.dumps(body)


@pytest.fixture
def store(blob_store_env):
    from chargeback_pipeline.settings import load_settings

    settings = load_settings()
    return open_store(settings.store, settings.container)


def test_envelopes_are_appended_under_the_hour_prefix(store):
    names = {store.write_envelope(envelope(f"r{i}"), IN_HOUR, f"r{i}") for i in range(3)}
    assert len(names) == 1
    (name,) = names
    assert name.startswith("raw/2026/11/27/13/") and name.endswith(".ndjson")
    stored = list(read_hour(store, HOUR))
    assert [json.loads(s.raw)["request_id"] for s in stored] == ["r0", "r1", "r2"]
    assert [s.line for s in stored] == [1, 2, 3]


def test_large_envelope_is_its_own_blob_and_request_id_never_shapes_the_name(store, monkeypatch):
    monkeypatch.setattr(store_base, "APPEND_LIMIT_BYTES", 64)
    name = store.write_envelope(
        envelope("../../evil/%2F", pad="x" * 100), IN_HOUR, "../../evil/%2F"
    )
    assert name.startswith("raw/2026/11/27/13/") and name.endswith(".json")
    assert "evil" not in name and ".." not in name
    assert [s.source for s in read_hour(store, HOUR)] == [name]


def test_many_threads_writing_one_hour_lose_nothing(store):
    def write(worker: int) -> None:
        for i in range(25):
            request_id = f"w{worker}-{i}"
            store.write_envelope(envelope(request_id), IN_HOUR, request_id)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [json.loads(s.raw)["request_id"] for s in read_hour(store, HOUR)]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(8) for i in range(25))


def test_empty_hour_lists_nothing(store):
    assert store.list_hour("2020-01-01-00:00") == []


def test_unreachable_storage_raises_store_error(chargeback_env, azurite: Azurite):
    dead = azurite.connection_string.replace(str(azurite.port), "1")
    with pytest.raises(StoreError):
        open_store(dead, "envelopes")
