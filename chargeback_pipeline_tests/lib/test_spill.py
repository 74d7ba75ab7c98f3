"""Hours finished in request_id buckets on disk give exactly what one in-memory pass gives."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from functools import partial

import orjson
import polars as pl
import pytest

from chargeback_pipeline.lib.hour_summary import token_totals
from chargeback_pipeline.lib.ingest import ingest_hour, ingest_slices
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.lib.spill import BucketSpill, FrameParts, collect_parts, group_parts
from chargeback_pipeline.settings import PROJECT_ROOT
from chargeback_pipeline.store import LocalEnvelopeStore, read_hour, read_store_slice
from chargeback_pipeline.store.base import hour_slices

HOUR = "2024-08-06-13:00"
AT = datetime(2024, 8, 6, 13, 5, tzinfo=UTC)
SCHEMA = {"request_id": pl.String(), "n": pl.Int64()}


def test_every_row_of_a_key_lands_in_one_bucket_on_disk_as_in_memory(tmp_path):
    rows = pl.DataFrame({"request_id": [f"r{n % 900}" for n in range(50_000)], "n": range(50_000)})
    on_disk = BucketSpill("request_id", 7, SCHEMA, tmp_path, pending_rows=60)
    in_memory = BucketSpill("request_id", 7, SCHEMA, None, pending_rows=60)
    for start in range(0, 50_000, 5_000):
        on_disk.add(rows.slice(start, 5_000))
        in_memory.add(rows.slice(start, 5_000))
    buckets = [parts.collect() for parts in on_disk.bucket_parts()]
    assert len(buckets) == 7 and sum(b.height for b in buckets) == 50_000
    keys = [set(bucket["request_id"]) for bucket in buckets]
    assert all(a.isdisjoint(b) for i, a in enumerate(keys) for b in keys[i + 1 :])
    assert len(list(tmp_path.rglob("*.arrow"))) == 7 * 10  # a write per 5 k rows (> 7 x 500)
    for disk, memory in zip(buckets, (p.collect() for p in in_memory.bucket_parts()), strict=True):
        assert disk.sort("n").equals(memory.sort("n"))


def test_a_failed_bucket_write_is_raised_to_the_caller(tmp_path):
    """Buckets are written in a thread: a write that fails there still fails the hour."""
    spill = BucketSpill("request_id", 3, SCHEMA, tmp_path / "spill", pending_rows=10)
    shutil.rmtree(tmp_path / "spill")
    (tmp_path / "spill").write_text("a file where the bucket folders were")
    with pytest.raises(OSError):
        spill.add(pl.DataFrame({"request_id": [f"r{n}" for n in range(1_500)], "n": range(1_500)}))
        spill.bucket_parts()


def test_frame_parts_read_back_what_was_kept_and_skip_empty_frames(tmp_path):
    parts = FrameParts(SCHEMA, tmp_path / "parts")
    parts.extend([pl.DataFrame({"request_id": ["a"], "n": [1]}), pl.DataFrame(schema=SCHEMA)])
    parts.append(pl.DataFrame({"request_id": ["b", "c"], "n": [2, 3]}))
    assert parts.rows == 3 and len(list((tmp_path / "parts").iterdir())) == 2
    assert parts.collect()["n"].to_list() == [1, 2, 3]
    assert FrameParts(SCHEMA).collect().schema == pl.Schema(SCHEMA)


def test_parts_on_disk_and_in_memory_are_collected_in_order(tmp_path):
    kept = [
        FrameParts(SCHEMA, tmp_path / "a"),
        FrameParts(SCHEMA),
        FrameParts(SCHEMA, tmp_path / "b"),
    ]
    for index, part in enumerate(kept):
        for start in (0, 10):
            part.append(
                pl.DataFrame({"request_id": [f"r{index}"] * 3, "n": range(start, start + 3)})
            )
    collected = collect_parts(kept)
    in_memory = collected.filter(pl.col("request_id") == "r1")
    on_disk = collected.filter(pl.col("request_id") != "r1")
    assert collected.height == 18 and collected.schema == pl.Schema(SCHEMA)
    assert in_memory["n"].to_list() == [0, 1, 2, 10, 11, 12]
    assert on_disk["request_id"].to_list() == ["r0"] * 6 + ["r2"] * 6
    assert on_disk["n"].to_list() == [0, 1, 2, 10, 11, 12] * 2
    assert collect_parts([FrameParts(SCHEMA, tmp_path / "c")]).is_empty()


def test_an_hour_finished_in_many_buckets_on_disk_equals_one_pass_in_memory(tmp_path, example):
    store = LocalEnvelopeStore(tmp_path / "store")
    for n in range(90):
        call = n % 70  # r000-r019 arrive twice
        envelope = example("chat_completion" if call % 3 else "embeddings")
        envelope["request_id"] = f"r{call:03d}"
        envelope["timestamp"] = "2024-08-06T13:05:00Z"
        if n == 80:
            envelope["elapsed_ms"] = 999_999  # r010 again, different: a conflict
        store.write_envelope(orjson.dumps(envelope), AT, "x" if n < 45 else "y")
    store.write_envelope(b"not json", AT, "y")
    deployments = load_reference(PROJECT_ROOT / "dbt_like_sql" / "seeds").deployments
    whole = ingest_hour(read_hour(store, HOUR), HOUR, deployments, b"k")
    slices = hour_slices(store.list_hour(HOUR), 30_000)
    read = partial(read_store_slice, str(tmp_path / "store"), "envelopes")
    spill = tmp_path / "spill"
    hour_bytes = sum(part.end - part.start for part in slices)
    bucketed = ingest_slices(
        read,
        slices,
        HOUR,
        deployments,
        b"k",
        spill=spill,
        bucket_bytes=hour_bytes // 5,
        finish_rows=20,  # groups of one or two buckets
    )
    assert len(list((spill / "parsed").iterdir())) == 6
    assert bucketed.usage_rows == whole.usage_rows == 70
    assert bucketed.usage_events.equals(whole.usage_events)
    assert bucketed.quarantined.equals(whole.quarantined)
    assert bucketed.quarantined["reason"].str.starts_with("conflicting_duplicate").sum() == 1
    assert (bucketed.duplicates_dropped, bucketed.envelopes_read) == (19, 91)
    assert token_totals(bucketed.usage_summary) == token_totals(whole.usage_summary)
    assert bucketed.usage_failures.is_empty()


def test_parts_are_grouped_in_order_up_to_a_row_count():
    sizes = [5, 3, 4, 12, 0, 2, 9]
    parts = []
    for size in sizes:
        part = FrameParts(SCHEMA)
        part.append(pl.DataFrame({"request_id": ["r"] * size, "n": list(range(size))}))
        parts.append(part)
    groups = group_parts(parts, 10)
    assert [[part.rows for part in group] for group in groups] == [[5, 3], [4], [12, 0, 2], [9]]
    assert [part for group in groups for part in group] == parts
    halves = group_parts(parts[:3], 100, threads=2)
    assert [[part.rows for part in group] for group in halves] == [[5], [3, 4]]
    assert group_parts(parts[:1], 100, threads=2) == [parts[:1]]
    assert group_parts([], 100, threads=2) == []


def test_every_thread_finishes_as_many_groups():
    """2.2 groups' worth of rows on two threads: two groups, not a third that one thread
    would finish alone; 2.6 groups' worth on one thread: three."""
    parts = []
    for size in [10] * 22:
        part = FrameParts(SCHEMA)
        part.append(pl.DataFrame({"request_id": ["r"] * size, "n": list(range(size))}))
        parts.append(part)
    sizes = [sum(p.rows for p in group) for group in group_parts(parts, 100, threads=2)]
    assert sizes == [110, 110]
    assert len(group_parts(parts[:13], 50)) == 3
    assert len(group_parts(parts, 70, threads=2)) == 4
