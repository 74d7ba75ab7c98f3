"""Hour slices: parse workers read byte ranges of the stored objects themselves; together the
slices yield exactly the envelopes and line numbers of reading each object whole."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest.mock import patch

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback_pipeline.store import LocalEnvelopeStore, base, open_store, read_hour
from chargeback_pipeline.store.base import hour_slices, read_slice

HOUR = "2026-11-27-13:00"
IN_HOUR = datetime(2026, 11, 27, 13, 5, tzinfo=UTC)


def sliced(store, slice_bytes: int) -> list[tuple[str, int, bytes]]:
    """Every envelope read slice by slice, line numbers shifted as parse_slices does."""
    found, shifts = [], {}
    for part in hour_slices(store.list_hour(HOUR), slice_bytes):
        envelopes, lines = read_slice(store, part)
        shift = shifts.get(part.name, 0)
        shifts[part.name] = shift + lines
        found.extend((item.source, item.line + shift, item.raw) for item in envelopes)
    return found


def whole(store) -> list[tuple[str, int, bytes]]:
    return [(item.source, item.line, item.raw) for item in read_hour(store, HOUR)]


lines = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"x")), st.just(b"")
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(
    lines=lines,
    trailing_newline=st.booleans(),
    slice_bytes=st.integers(1, 300),
    line_guess=st.integers(0, 80),
)
def test_slices_give_the_lines_of_the_whole_object(
    tmp_path_factory, lines, trailing_newline, slice_bytes, line_guess
):
    root = tmp_path_factory.mktemp("store")
    name = "raw/2026/11/27/13/20261127T1305-w.ndjson"
    (root / name).parent.mkdir(parents=True)
    (root / name).write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))
    store = LocalEnvelopeStore(root)
    # A small guess makes slices read the rest of their last line in a second request.
    with patch.object(base, "LINE_GUESS", line_guess):
        assert sliced(store, slice_bytes) == whole(store)


def test_single_envelope_objects_are_never_cut(tmp_path):
    store = LocalEnvelopeStore(tmp_path)
    multi_line = orjson.dumps({"request_id": "big", "timestamp": "2026-11-27T13:05:00Z"})
    store.write_envelope(multi_line.replace(b",", b",\n"), IN_HOUR, "big")
    for n in range(5):
        raw = orjson.dumps({"request_id": f"r{n}", "timestamp": "2026-11-27T13:05:00Z"})
        store.write_envelope(raw, IN_HOUR, f"r{n}")
    assert sliced(store, 7) == whole(store)
    assert len(whole(store)) == 6


def test_a_line_longer_than_the_slice_is_read_once(tmp_path):
    store = LocalEnvelopeStore(tmp_path)
    long = orjson.dumps(
        {"request_id": "long", "pad": "x" * 5000, "timestamp": "2026-11-27T13:05:00Z"}
    )
    for n, raw in enumerate([b'{"request_id":"a"}', long, b'{"request_id":"b"}']):
        store.write_envelope(raw, IN_HOUR, str(n))
    assert sliced(store, 1000) == whole(store)


def test_a_line_longer_than_the_read_ahead_is_read_whole(tmp_path):
    store = LocalEnvelopeStore(tmp_path)
    long = orjson.dumps({"request_id": "long", "pad": "x" * (base.LINE_GUESS * 3)})
    for n, raw in enumerate([b'{"request_id":"a"}', long, b'{"request_id":"b"}']):
        store.write_envelope(raw, IN_HOUR, str(n))
    assert sliced(store, 1000) == whole(store)
    assert [raw for _, _, raw in sliced(store, 1000)][1] == long


@pytest.mark.slow
def test_slices_of_an_append_blob_on_azurite(blob_store_env):
    from chargeback_pipeline.settings import load_settings

    settings_ = load_settings()
    store = open_store(settings_.store, settings_.container)
    for n in range(30):
        raw = orjson.dumps(
            {"request_id": f"r{n}", "pad": "y" * (n * 37), "timestamp": "2026-11-27T13:05:00Z"}
        )
        store.write_envelope(raw, IN_HOUR, f"r{n}")
    assert sliced(store, 500) == whole(store)
    assert len(whole(store)) == 30


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1}\n{"b":2}\n',
        b'{"a":1}\n\n  \n\t\r\n{"b":2}',
        b"\n\n\n",
        b"",
        b"x",
        b" x \n\x0b\x0c\n\x00\n \x1f\n\xa0\n\x85\n",
        b"\r\n" * 3 + b"y\r\n",
    ],
)
def test_compiled_line_views_are_the_python_ones(data):
    assert base.compiled_line_views is not None
    for start in range(len(data) + 1):
        for stop in range(start, len(data) + 1):
            found, newlines = base.compiled_line_views("o", data, start, stop, base.StoredEnvelope)
            expected, expected_newlines = base.python_line_views("o", data, start, stop)
            assert [(e.source, e.line, bytes(e.raw)) for e in found] == [
                (e.source, e.line, bytes(e.raw)) for e in expected
            ]
            assert newlines == expected_newlines
            assert all(type(e) is base.StoredEnvelope for e in found)


def test_compiled_line_views_refuse_bounds_outside_the_data():
    with pytest.raises(ValueError):
        base.compiled_line_views("o", b"ab", 0, 3, base.StoredEnvelope)
    with pytest.raises(TypeError):
        base.compiled_line_views("o", b"ab", 0, 2, dict)
