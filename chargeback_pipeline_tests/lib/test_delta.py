"""Hours streamed into Delta: one commit per hour, a failed stream leaves the table as it was."""

from __future__ import annotations

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from chargeback_pipeline.lib import delta
from chargeback_pipeline.lib.delta import (
    count_hour_rows,
    read_hour_batches,
    replace_hour,
    replace_hour_batches,
)

SCHEMA = {"request_id": pl.String(), "n": pl.Int64(), "hour": pl.String()}
HOUR = "2026-11-27-13:00"


def frame(hour: str, start: int, count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": [f"r{n}" for n in range(start, start + count)],
            "n": range(start, start + count),
        }
    ).with_columns(hour=pl.lit(hour))


def test_an_hour_streamed_in_frames_is_one_commit_and_other_hours_stay(tmp_path):
    uri = str(tmp_path / "t")
    replace_hour(uri, frame("2026-11-27-12:00", 0, 3), "2026-11-27-12:00", SCHEMA)
    before = DeltaTable(uri).version()
    replace_hour_batches(uri, (frame(HOUR, s, 100) for s in range(0, 1000, 100)), HOUR, SCHEMA)
    assert DeltaTable(uri).version() == before + 1
    assert count_hour_rows(uri, HOUR) == 1000 and count_hour_rows(uri, "2026-11-27-12:00") == 3
    batches = list(read_hour_batches(uri, HOUR, SCHEMA, batch_rows=256))
    # Two files of 500 rows: equal batches (not 256 + 244) keep both write lanes busy later.
    assert [b.height for b in batches] == [250] * 4
    assert sorted(pl.concat(batches)["n"].to_list()) == list(range(1000))


def test_a_stream_that_fails_midway_leaves_the_previous_hour(tmp_path):
    uri = str(tmp_path / "t")
    replace_hour(uri, frame(HOUR, 0, 5), HOUR, SCHEMA)
    before = DeltaTable(uri).version()

    def frames():
        yield frame(HOUR, 100, 50)
        raise RuntimeError("store went away")

    with pytest.raises(RuntimeError, match="store went away"):
        replace_hour_batches(uri, frames(), HOUR, SCHEMA)
    assert DeltaTable(uri).version() == before
    assert sorted(pl.read_delta(uri)["n"].to_list()) == [0, 1, 2, 3, 4]


def test_a_missing_table_reads_as_no_batches_and_no_rows(tmp_path):
    assert list(read_hour_batches(str(tmp_path / "none"), HOUR, SCHEMA)) == []
    assert count_hour_rows(str(tmp_path / "none"), HOUR) == 0


def test_an_hour_can_stream_from_one_table_into_another(tmp_path):
    """The costs asset's shape: read usage_events batches while writing usage_costs."""
    source, target = str(tmp_path / "events"), str(tmp_path / "costs")
    replace_hour(source, frame(HOUR, 0, 700), HOUR, SCHEMA)
    doubled = (
        batch.with_columns(pl.col("n") * 2)
        for batch in read_hour_batches(source, HOUR, SCHEMA, batch_rows=100)
    )
    replace_hour_batches(target, doubled, HOUR, SCHEMA)
    assert sorted(pl.read_delta(target)["n"].to_list()) == list(range(0, 1400, 2))
    assert DeltaTable(target).version() == 0


def test_frames_reach_parquet_files_while_the_stream_is_still_running(tmp_path, monkeypatch):
    """Memory must not follow the hour: delta-rs's writer held the whole stream first."""
    monkeypatch.setattr(delta, "FILE_BYTES", 1)  # every frame closes its file
    uri = tmp_path / "t"
    seen_before_last: list[int] = []

    def frames():
        for start in range(0, 1000, 100):
            seen_before_last.append(len(list(uri.rglob("*.parquet"))))
            yield frame(HOUR, start, 100)

    replace_hour_batches(str(uri), frames(), HOUR, SCHEMA)
    # Frames are made at most two ahead of the writer, which has at most one frame in flight per
    # lane: by the time the tenth is made, the first four are files.
    assert seen_before_last[-1] >= 4
    assert count_hour_rows(str(uri), HOUR) == 1000
    assert pl.read_delta(str(uri)).filter(pl.col("hour") == HOUR).height == 1000


def test_an_hour_written_by_delta_rs_is_replaced_whole(tmp_path):
    """Tables written by earlier versions (delta-rs's own writer) keep working."""
    uri = str(tmp_path / "t")
    for hour in (HOUR, "2026-11-27-14:00"):
        write_deltalake(uri, frame(hour, 0, 4).to_arrow(), mode="append", partition_by=["hour"])
    replace_hour(uri, frame(HOUR, 10, 2), HOUR, SCHEMA)
    table = pl.read_delta(uri)
    assert sorted(table.filter(pl.col("hour") == HOUR)["n"].to_list()) == [10, 11]
    assert table.filter(pl.col("hour") == "2026-11-27-14:00").height == 4
    older = pl.concat(read_hour_batches(uri, "2026-11-27-14:00", SCHEMA, batch_rows=3))
    assert older["n"].sort().to_list() == [0, 1, 2, 3]
    assert older["hour"].unique().to_list() == ["2026-11-27-14:00"]


def test_a_row_of_another_hour_is_refused(tmp_path):
    uri = str(tmp_path / "t")
    with pytest.raises(ValueError, match="2026-11-27-14:00"):
        replace_hour(uri, frame("2026-11-27-14:00", 0, 2), HOUR, SCHEMA)
    assert not DeltaTable.is_deltatable(uri)


def test_frames_are_written_to_a_file_per_lane_in_turn(tmp_path):
    uri = str(tmp_path / "t")
    replace_hour_batches(uri, (frame(HOUR, s, 10) for s in range(0, 50, 10)), HOUR, SCHEMA)
    files = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True))["num_records"].to_list()
    assert sorted(files) == [20, 30] and delta.WRITE_LANES == 2


def test_a_file_that_fails_to_write_leaves_the_previous_hour(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    replace_hour(uri, frame(HOUR, 0, 3), HOUR, SCHEMA)
    write = delta._FileLane.write

    def full_disk_on_the_third(lane, table):
        if table["n"][0].as_py() == 20:
            raise OSError("No space left on device")
        write(lane, table)

    monkeypatch.setattr(delta._FileLane, "write", full_disk_on_the_third)
    with pytest.raises(OSError, match="No space left"):
        replace_hour_batches(uri, (frame(HOUR, s, 10) for s in range(0, 50, 10)), HOUR, SCHEMA)
    assert sorted(pl.read_delta(uri)["n"].to_list()) == [0, 1, 2]
