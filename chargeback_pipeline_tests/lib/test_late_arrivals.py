"""Late-arrival change detection on tiny listings: what counts as news, and a bounded cursor."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from chargeback_pipeline.lib.late_arrivals import (
    Cursor,
    dump_cursor,
    hour_state,
    load_cursor,
    lookback_hours,
    received_more,
    run_key,
    scan,
    window,
)
from chargeback_pipeline.store.base import StoredObject

H12, H13, H14 = "2026-11-27-12:00", "2026-11-27-13:00", "2026-11-27-14:00"


def obj(name: str, size: int, minute: int) -> StoredObject:
    return StoredObject(name, size, datetime(2026, 11, 27, 15, minute, tzinfo=UTC))


def first(listings: dict[str, list[StoredObject]]) -> Cursor:
    return scan(None, listings).cursor


def test_window_is_the_current_hour_and_the_lookback_before_it():
    now = datetime(2026, 11, 27, 14, 27, tzinfo=UTC)
    assert window(now, 2) == [H12, H13, H14]
    assert window(datetime(2026, 11, 27, 14, tzinfo=UTC), 1) == [H13, H14]
    assert window(datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 1) == [
        "2025-12-31-23:00",
        "2026-01-01-00:00",
    ]


def test_lookback_defaults_to_48_and_rejects_nonsense():
    assert lookback_hours({}) == 48
    assert lookback_hours({"CHARGEBACK_LATE_LOOKBACK_HOURS": "6"}) == 6
    for bad in ("0", "-3", "two", "1.5"):
        with pytest.raises(ValueError, match="CHARGEBACK_LATE_LOOKBACK_HOURS"):
            lookback_hours({"CHARGEBACK_LATE_LOOKBACK_HOURS": bad})


def test_hour_state_summarises_names_and_sizes_in_any_order():
    a, b = obj("raw/a.ndjson", 10, 1), obj("raw/b.json", 5, 7)
    state = hour_state([b, a])
    assert state == hour_state([a, b])
    assert state is not None
    assert (state.bytes, state.latest.minute) == (15, 7)
    assert hour_state([obj("raw/a.ndjson", 11, 1), b]).fingerprint != state.fingerprint
    assert hour_state([]) is None


def test_first_scan_records_a_baseline_and_reports_nothing():
    result = scan(None, {H12: [], H13: [obj("raw/a.ndjson", 10, 1)]})
    assert result.changed == {}
    assert result.cursor.since == H12
    assert set(result.cursor.hours) == {H13}


def test_new_object_append_and_first_objects_in_a_covered_hour_are_news():
    before = first({H12: [], H13: [obj("raw/a.ndjson", 10, 1)], H14: [obj("raw/c.ndjson", 3, 1)]})
    result = scan(
        before,
        {
            H12: [obj("raw/n.ndjson", 4, 9)],
            H13: [obj("raw/a.ndjson", 10, 1), obj("raw/b.ndjson", 2, 9)],
            H14: [obj("raw/c.ndjson", 8, 9)],
        },
    )
    assert sorted(result.changed) == [H12, H13, H14]
    assert result.changed[H13] == result.cursor.hours[H13]


def test_unchanged_hours_are_not_news():
    listings = {H13: [obj("raw/a.ndjson", 10, 1)], H14: []}
    result = scan(first(listings), listings)
    assert result.changed == {}
    assert result.cursor == first(listings)


def test_objects_removed_by_retention_are_not_news():
    before = first({H13: [obj("raw/a.ndjson", 10, 1), obj("raw/b.ndjson", 2, 3)], H14: []})
    result = scan(before, {H13: [obj("raw/a.ndjson", 10, 1)], H14: []})
    assert result.changed == {}
    assert result.cursor.hours[H13].bytes == 10
    emptied = scan(before, {H13: [], H14: []})
    assert emptied.changed == {}
    assert emptied.cursor.hours == {}


def test_a_removal_hiding_a_smaller_newer_object_is_still_news():
    before = first({H13: [obj("raw/a.ndjson", 10, 1), obj("raw/b.ndjson", 20, 3)]})
    result = scan(before, {H13: [obj("raw/a.ndjson", 10, 1), obj("raw/c.ndjson", 5, 30)]})
    assert list(result.changed) == [H13]


def test_hours_entering_a_longer_window_are_a_baseline_not_news():
    before = first({H13: [], H14: []})
    result = scan(before, {H12: [obj("raw/old.ndjson", 10, 1)], H13: [], H14: []})
    assert result.changed == {}
    assert set(result.cursor.hours) == {H12}
    assert result.cursor.since == H12


def test_cursor_keeps_only_the_window():
    before = first({H12: [obj("raw/a.ndjson", 1, 1)], H13: [obj("raw/b.ndjson", 1, 1)]})
    result = scan(before, {H13: [obj("raw/b.ndjson", 1, 1)], H14: [obj("raw/c.ndjson", 1, 1)]})
    assert set(result.cursor.hours) == {H13, H14}
    assert result.cursor.since == H13
    assert list(result.changed) == [H14]


def test_received_more_needs_a_different_fingerprint():
    state = hour_state([obj("raw/a.ndjson", 10, 1)])
    assert state is not None
    assert not received_more(state, state, covered=True)
    assert received_more(None, state, covered=True)
    assert not received_more(None, state, covered=False)


def test_cursor_round_trips_as_deterministic_json():
    listings = {H13: [obj("raw/a.ndjson", 10, 1)], H14: [obj("raw/b.ndjson", 3, 2)], H12: []}
    cursor = first(listings)
    text = dump_cursor(cursor)
    assert load_cursor(text) == cursor
    assert text == dump_cursor(first(dict(reversed(listings.items()))))
    document = json.loads(text)
    assert document["version"] == 1
    assert document["since"] == H12
    assert document["hours"][H13]["bytes"] == 10


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[]",
        '"text"',
        '{"version": 2, "since": "x", "hours": {}}',
        '{"version": 1, "hours": {}}',
        '{"version": 1, "since": "x", "hours": {"h": {"fingerprint": "f", "bytes": 1}}}',
        '{"version": 1, "since": "x", '
        '"hours": {"h": {"fingerprint": "f", "bytes": 1, "latest": "2026-11-27T13:00:00"}}}',
    ],
)
def test_unreadable_cursor_means_start_a_new_baseline(text):
    assert load_cursor(text) is None


def test_run_key_names_the_hour_and_its_content():
    state = hour_state([obj("raw/a.ndjson", 10, 1)])
    assert state is not None
    assert run_key(H13, state) == f"late:{H13}:{state.fingerprint}"
