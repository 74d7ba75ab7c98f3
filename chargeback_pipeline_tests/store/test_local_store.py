from __future__ import annotations

import json
import multiprocessing
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from chargeback_pipeline.store import base
from chargeback_pipeline.store.base import (
    StoreError,
    hour_prefix,
    read_hour,
    timestamp_prefix,
)
from chargeback_pipeline.store.local import LocalEnvelopeStore

HOUR = "2024-08-06-13:00"
IN_HOUR = datetime(2024, 8, 6, 13, 59, 59, 999999, tzinfo=UTC)
SINGLE_OBJECT = re.compile(r"\d{8}T\d{12}-[0-9a-f]{24}\.json")


def envelope(request_id: str, timestamp: datetime = IN_HOUR, padding: int = 0) -> bytes:
    """A compact one-line envelope; `padding` makes it larger without adding a newline."""
    return json.dumps(
        {"request_id": request_id, "timestamp": timestamp.isoformat(), "pad": "x" * padding},
        separators=(",", ":"),
    ).encode()


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def all_lines(root: Path) -> list[bytes]:
    lines = []
    for path in files_under(root):
        lines.extend(path.read_bytes().splitlines())
    return lines


# --- layout --------------------------------------------------------------------------------


def test_hour_prefix_from_partition_key() -> None:
    assert hour_prefix("2024-08-06-13:00") == "raw/2024/08/06/13/"


def test_hour_prefix_keeps_leading_zeros_at_midnight_on_new_year() -> None:
    assert hour_prefix("2025-01-01-00:00") == "raw/2025/01/01/00/"


def test_timestamp_prefix_of_utc_timestamp() -> None:
    assert timestamp_prefix(datetime(2024, 8, 6, 13, 0, tzinfo=UTC)) == "raw/2024/08/06/13/"


def test_timestamp_prefix_converts_positive_offset_to_utc_across_midnight() -> None:
    cest = timezone(timedelta(hours=2))
    assert timestamp_prefix(datetime(2024, 8, 6, 1, 30, tzinfo=cest)) == "raw/2024/08/05/23/"


def test_timestamp_prefix_converts_negative_offset_to_utc_across_year_end() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert timestamp_prefix(datetime(2024, 12, 31, 22, 15, tzinfo=eastern)) == "raw/2025/01/01/03/"


def test_timestamp_prefix_agrees_with_hour_prefix_of_the_same_hour() -> None:
    assert timestamp_prefix(IN_HOUR) == hour_prefix(HOUR)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "2024-08-06",
        "2024-08-06T13",
        "2024-08-06-13",
        "2024-08-06-13:30",
        "2024-8-6-13:00",
        "2024/08/06/13:00",
        " 2024-08-06-13:00",
        "2024-08-06-13:00\n",
        "2024-08-06-13:00/../..",
    ],
)
def test_hour_prefix_rejects_malformed_partition_key(key: str) -> None:
    with pytest.raises(ValueError, match="not an hourly partition key"):
        hour_prefix(key)


@pytest.mark.parametrize("key", ["2024-13-01-00:00", "2024-01-01-24:00", "2024-02-30-10:00"])
def test_hour_prefix_rejects_impossible_calendar_hour(key: str) -> None:
    with pytest.raises(ValueError):
        hour_prefix(key)


# --- writing -------------------------------------------------------------------------------


def test_small_envelope_is_appended_as_one_ndjson_line_under_its_timestamp_hour(
    tmp_path: Path,
) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raw = envelope("req-1")

    name = store.write_envelope(raw, IN_HOUR, "req-1")

    assert name.startswith("raw/2024/08/06/13/")
    assert name.endswith("-w1.ndjson")
    assert (tmp_path / name).read_bytes() == raw + b"\n"


def test_envelope_hour_comes_from_its_timestamp_not_the_arrival_time(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    long_ago = datetime(2019, 3, 4, 5, 6, tzinfo=UTC)

    name = store.write_envelope(envelope("old", long_ago), long_ago, "old")

    assert name.startswith("raw/2019/03/04/05/")


def test_envelope_with_offset_timestamp_is_stored_under_the_utc_hour(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    local = datetime(2024, 8, 6, 15, 30, tzinfo=timezone(timedelta(hours=2)))

    name = store.write_envelope(envelope("cest", local), local, "cest")

    assert name.startswith("raw/2024/08/06/13/")


def test_appended_envelopes_accumulate_as_lines(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raws = [envelope(f"req-{n}") for n in range(3)]

    for n, raw in enumerate(raws):
        store.write_envelope(raw, IN_HOUR, f"req-{n}")

    assert sorted(all_lines(tmp_path)) == sorted(raws)


def test_envelope_holding_a_newline_goes_to_its_own_json_object(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raw = b'{\n  "request_id": "pretty",\n  "timestamp": "2024-08-06T13:00:00Z"\n}'

    name = store.write_envelope(raw, IN_HOUR, "pretty")

    assert name.startswith("raw/2024/08/06/13/")
    assert SINGLE_OBJECT.fullmatch(name.rsplit("/", 1)[1])
    assert (tmp_path / name).read_bytes() == raw


def test_envelope_holding_a_carriage_return_goes_to_its_own_json_object(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raw = b'{"request_id": "cr",\r"timestamp": "2024-08-06T13:00:00Z"}'

    name = store.write_envelope(raw, IN_HOUR, "cr")

    assert name.endswith(".json")
    assert (tmp_path / name).read_bytes() == raw


def test_envelope_over_append_limit_goes_to_its_own_json_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "APPEND_LIMIT_BYTES", 200)
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raw = envelope("big", padding=300)

    name = store.write_envelope(raw, IN_HOUR, "big")

    assert name.endswith(".json")
    assert (tmp_path / name).read_bytes() == raw


def test_line_with_its_newline_must_fit_the_append_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = envelope("edge", padding=100)
    store = LocalEnvelopeStore(tmp_path, writer="w1")

    monkeypatch.setattr(base, "APPEND_LIMIT_BYTES", len(raw) + 1)
    assert store.write_envelope(raw, IN_HOUR, "edge").endswith(".ndjson")
    monkeypatch.setattr(base, "APPEND_LIMIT_BYTES", len(raw))
    assert store.write_envelope(raw, IN_HOUR, "edge").endswith(".json")


def test_own_object_write_leaves_no_partial_file(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")

    store.write_envelope(b'{"a":\n1}', IN_HOUR, "multi")

    assert [path.suffix for path in files_under(tmp_path)] == [".json"]


HOSTILE_IDS = [
    "../../etc/passwd",
    "a/b",
    "%2F..",
    "..",
    "/abs/olute",
    "..\\..\\windows",
    "x\x00y",
    "ümlaut/..",
]


@pytest.mark.parametrize("request_id", HOSTILE_IDS)
def test_hostile_request_id_never_escapes_root_nor_shapes_object_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request_id: str
) -> None:
    monkeypatch.setattr(base, "APPEND_LIMIT_BYTES", 200)
    root = tmp_path / "store"
    store = LocalEnvelopeStore(root, writer="w1")

    names = [
        store.write_envelope(envelope(request_id), IN_HOUR, request_id),
        store.write_envelope(envelope(request_id, padding=300), IN_HOUR, request_id),
        store.write_envelope(b'{\n"x": 1}', IN_HOUR, request_id),
    ]

    assert [path.name for path in tmp_path.iterdir()] == ["store"]
    hour_folder = (root / "raw/2024/08/06/13").resolve()
    for path in files_under(tmp_path):
        assert path.resolve().parent == hour_folder
        assert re.fullmatch(r"\d{8}T\d{4}-w1\.ndjson", path.name) or SINGLE_OBJECT.fullmatch(
            path.name
        )
    for name in names:
        assert name.startswith("raw/2024/08/06/13/")
        assert ".." not in name
        assert "passwd" not in name and "%2F" not in name


def test_single_object_names_differ_for_different_request_ids(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")

    first = store.write_envelope(b'{"a":\n1}', IN_HOUR, "a/b")
    second = store.write_envelope(b'{"a":\n2}', IN_HOUR, "a_b")

    assert first.rsplit("-", 1)[1] != second.rsplit("-", 1)[1]


# --- reading -------------------------------------------------------------------------------


def test_read_hour_yields_each_line_with_its_one_based_line_number_and_source(
    tmp_path: Path,
) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    folder = tmp_path / "raw/2024/08/06/13"
    folder.mkdir(parents=True)
    (folder / "20240806T1301-w1.ndjson").write_bytes(b'{"n":1}\n\n{"n":3}\n')
    (folder / "20240806T1300-w2.ndjson").write_bytes(b'{"n":"first"}\n')

    stored = [(item.source, item.line, item.raw) for item in read_hour(store, HOUR)]

    assert stored == [
        ("raw/2024/08/06/13/20240806T1300-w2.ndjson", 1, b'{"n":"first"}'),
        ("raw/2024/08/06/13/20240806T1301-w1.ndjson", 1, b'{"n":1}'),
        ("raw/2024/08/06/13/20240806T1301-w1.ndjson", 3, b'{"n":3}'),
    ]


def test_read_hour_yields_a_single_object_whole_as_line_one(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raw = b'{\n"request_id": "pretty"\n}'
    name = store.write_envelope(raw, IN_HOUR, "pretty")

    stored = [(item.source, item.line, item.raw) for item in read_hour(store, HOUR)]

    assert stored == [(name, 1, raw)]


def test_read_hour_round_trips_what_was_written(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raws = [envelope(f"req-{n}") for n in range(5)]
    for n, raw in enumerate(raws):
        store.write_envelope(raw, IN_HOUR, f"req-{n}")

    assert sorted(item.raw for item in read_hour(store, HOUR)) == sorted(raws)


def test_read_hour_ignores_other_hours_and_partial_or_foreign_files(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    folder = tmp_path / "raw/2024/08/06/13"
    folder.mkdir(parents=True)
    (folder / "x.json.partial").write_bytes(b'{"half":')
    (folder / "notes.txt").write_bytes(b"hello")
    store.write_envelope(envelope("next-hour"), IN_HOUR + timedelta(seconds=1), "next-hour")

    assert list(read_hour(store, HOUR)) == []


def test_read_hour_of_an_hour_never_written_is_empty(tmp_path: Path) -> None:
    assert list(read_hour(LocalEnvelopeStore(tmp_path / "nothing-here"), HOUR)) == []


def test_list_hour_reports_name_and_size(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")
    raw = envelope("sized")
    name = store.write_envelope(raw, IN_HOUR, "sized")

    [listed] = store.list_hour(HOUR)

    assert (listed.name, listed.size) == (name, len(raw) + 1)
    assert listed.modified.tzinfo is not None


# --- concurrency ---------------------------------------------------------------------------


def _write_many(root: str, writer: str, count: int, padding: int) -> None:
    store = LocalEnvelopeStore(Path(root), writer=writer)
    for n in range(count):
        request_id = f"{writer}-{n}"
        store.write_envelope(envelope(request_id, padding=padding), IN_HOUR, request_id)


def _write_thread(root: Path, prefix: str, count: int, padding: int) -> None:
    store = LocalEnvelopeStore(root, writer="shared")
    for n in range(count):
        request_id = f"{prefix}-{n}"
        store.write_envelope(envelope(request_id, padding=padding), IN_HOUR, request_id)


def _assert_all_lines_whole(root: Path, expected_ids: set[str]) -> None:
    lines = all_lines(root)
    parsed = [json.loads(line) for line in lines]
    assert len(parsed) == len(expected_ids)
    assert {item["request_id"] for item in parsed} == expected_ids


def test_concurrent_appends_from_threads_produce_no_torn_lines(tmp_path: Path) -> None:
    # Every thread uses the same writer name, so they all append to the same object.
    threads = [
        threading.Thread(target=_write_thread, args=(tmp_path, f"t{n}", 40, 20_000 + n))
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(list((tmp_path / "raw/2024/08/06/13").iterdir())) <= 2  # one per minute
    _assert_all_lines_whole(tmp_path, {f"t{t}-{n}" for t in range(6) for n in range(40)})


def test_concurrent_appends_from_two_processes_produce_no_torn_lines(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_many, args=(str(tmp_path), writer, 60, 30_000))
        for writer in ("proc-a", "proc-b")
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)

    assert [process.exitcode for process in processes] == [0, 0]
    assert {path.stem.split("-", 1)[1] for path in files_under(tmp_path)} == {"proc-a", "proc-b"}
    _assert_all_lines_whole(tmp_path, {f"proc-{w}-{n}" for w in "ab" for n in range(60)})


# --- failures ------------------------------------------------------------------------------


def test_root_that_is_a_file_raises_store_error_for_a_line(tmp_path: Path) -> None:
    root = tmp_path / "not-a-folder"
    root.write_text("occupied")
    store = LocalEnvelopeStore(root, writer="w1")

    with pytest.raises(StoreError, match="not-a-folder"):
        store.write_envelope(envelope("r"), IN_HOUR, "r")


def test_root_that_is_a_file_raises_store_error_for_an_own_object(tmp_path: Path) -> None:
    root = tmp_path / "not-a-folder"
    root.write_text("occupied")
    store = LocalEnvelopeStore(root, writer="w1")

    with pytest.raises(StoreError, match="cannot write"):
        store.write_envelope(b'{"a":\n1}', IN_HOUR, "r")


def test_reading_a_missing_object_raises_store_error(tmp_path: Path) -> None:
    store = LocalEnvelopeStore(tmp_path, writer="w1")

    with pytest.raises(StoreError, match=re.escape("raw/2024/08/06/13/gone.ndjson")):
        store.read_object("raw/2024/08/06/13/gone.ndjson")
