"""Retention's store operations on both backends: which hours exist, and deleting objects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from chargeback_pipeline.store import StoreError, open_store
from chargeback_pipeline.store.base import EnvelopeStore, delete_objects, hours_before
from chargeback_pipeline.store.local import LocalEnvelopeStore

HOURS = ["2025-12-31-23:00", "2026-01-01-00:00", "2026-11-27-12:00", "2026-11-27-13:00"]


def at(hour: str) -> datetime:
    return datetime.strptime(hour, "%Y-%m-%d-%H:00").replace(tzinfo=UTC)


def write(store: EnvelopeStore, hour: str, request_id: str) -> str:
    timestamp = at(hour)
    raw = orjson.dumps({"request_id": request_id, "timestamp": timestamp.isoformat()})
    return store.write_envelope(raw, timestamp, request_id)


@pytest.fixture(params=["local", "blob"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EnvelopeStore:
    if request.param == "local":
        return LocalEnvelopeStore(tmp_path / "store", writer="w1")
    from chargeback_pipeline.settings import load_settings

    request.getfixturevalue("blob_store_env")
    settings = load_settings()
    return open_store(settings.store, settings.container)


@pytest.fixture
def filled(store: EnvelopeStore) -> EnvelopeStore:
    for number, hour in enumerate(HOURS):
        write(store, hour, f"r{number}")
    return store


def test_hours_before_the_cutoff_are_listed_oldest_first(filled):
    assert filled.list_hours_before("2026-11-27-13:00") == HOURS[:3]


def test_the_cutoff_hour_itself_is_not_listed(filled):
    assert filled.list_hours_before("2026-11-27-12:00") == HOURS[:2]


def test_a_cutoff_before_everything_lists_nothing(filled):
    assert filled.list_hours_before("2025-12-31-23:00") == []


def test_a_far_cutoff_lists_every_hour(filled):
    assert filled.list_hours_before("2099-01-01-00:00") == HOURS


def test_an_empty_store_lists_no_hours(store):
    assert store.list_hours_before("2099-01-01-00:00") == []


def test_deleting_an_hours_objects_removes_it_from_listings(filled):
    hour = HOURS[2]
    names = [item.name for item in filled.list_hour(hour)]
    assert names
    assert delete_objects(filled, names) == len(names)
    assert filled.list_hour(hour) == []
    assert filled.list_hours_before("2099-01-01-00:00") == [h for h in HOURS if h != hour]
    assert [item.name for item in filled.list_hour(HOURS[3])]


def test_deleting_a_missing_object_is_not_an_error(filled):
    name = filled.list_hour(HOURS[0])[0].name
    filled.delete_object(name)
    filled.delete_object(name)
    assert filled.list_hour(HOURS[0]) == []


@pytest.mark.parametrize(
    "name", ["", "raw", "other/2026/11/27/13/x.ndjson", "raw/../../etc/passwd", "raw//x.ndjson"]
)
def test_names_outside_the_raw_prefix_are_refused(store, name):
    with pytest.raises(StoreError, match="refusing to delete"):
        store.delete_object(name)


def test_an_hour_written_again_after_deletion_is_listed_again(filled):
    hour = HOURS[1]
    delete_objects(filled, [item.name for item in filled.list_hour(hour)])
    write(filled, hour, "late")
    assert hour in filled.list_hours_before("2099-01-01-00:00")


def test_local_deletion_removes_emptied_folders_only(tmp_path):
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    first = write(store, "2026-11-27-12:00", "a")
    write(store, "2026-11-27-13:00", "b")
    store.delete_object(first)
    assert not (tmp_path / "raw/2026/11/27/12").exists()
    assert (tmp_path / "raw/2026/11/27/13").is_dir()
    store.delete_object(store.list_hour("2026-11-27-13:00")[0].name)
    assert not (tmp_path / "raw/2026").exists()
    assert (tmp_path / "raw").is_dir()


def test_walk_skips_foreign_and_impossible_folders():
    tree = {
        "raw/": ["2026", "notes", "20261"],
        "raw/2026/": ["02", "13", "11"],
        "raw/2026/02/": ["30", "01"],
        "raw/2026/02/01/": ["00", "24"],
        "raw/2026/02/30/": ["00"],
        "raw/2026/11/": ["27"],
        "raw/2026/11/27/": ["13", "14"],
    }
    opened: list[str] = []

    def children(prefix: str) -> list[str]:
        opened.append(prefix)
        return tree.get(prefix, [])

    assert hours_before(children, "2026-11-27-14:00") == ["2026-02-01-00:00", "2026-11-27-13:00"]
    assert "raw/2026/13/" not in opened


def test_walk_never_opens_folders_after_the_cutoff():
    opened: list[str] = []

    def children(prefix: str) -> list[str]:
        opened.append(prefix)
        return {"raw/": ["2025", "2026"], "raw/2025/": ["12"], "raw/2026/": ["01"]}.get(prefix, [])

    hours_before(children, "2025-12-31-00:00")
    assert not any(prefix.startswith("raw/2026") for prefix in opened)


def test_walk_rejects_a_malformed_cutoff():
    with pytest.raises(ValueError):
        hours_before(lambda prefix: [], "2026-11-27")
