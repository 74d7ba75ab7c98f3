"""Hostile and broken input: every envelope is billed once, quarantined with a reason, or refused.

Adds to lib/test_ingest.py, lib/test_usage.py and store/*: corrupt lines that another writer (or a
torn append) left in a store object, through a real run; more wrong types, missing sections,
majors, timestamps and counts; streams and bodies cut short; one 100 MB envelope in bounded
memory; hostile request ids end to end; unknown models and deployments reported as unpriced.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from chargeback_pipeline.cli import materialize_hours
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.ingest import HourIngest, ingest_hour
from chargeback_pipeline.lib.reference import load_deployments
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store
from chargeback_pipeline.store.base import StoredEnvelope, hour_prefix
from chargeback_pipeline_tests.conftest import EXAMPLES, REPO_ROOT, SEEDS

HOUR = "2026-11-27-13:00"
PREFIX = hour_prefix(HOUR)


def example(stem: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{stem}.json").read_text())


def with_id(envelope: dict[str, Any], request_id: str, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(envelope), "request_id": request_id, **changes}


def ingest(*raws: bytes) -> HourIngest:
    stored = [StoredEnvelope(f"{PREFIX}x.ndjson", n, raw) for n, raw in enumerate(raws, start=1)]
    return ingest_hour(stored, HOUR, load_deployments(SEEDS / "deployments.csv"), b"k")


def only_reason(envelope: dict[str, Any] | bytes) -> str:
    """The reason of the one quarantined envelope; a good envelope beside it is still billed."""
    raw = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
    outcome = ingest(orjson.dumps(with_id(example("chat_completion"), "good")), raw)
    assert outcome.usage_events["request_id"].to_list() == ["good"]
    assert outcome.quarantined["source_line"].to_list() == [2]
    return outcome.quarantined["reason"][0]


def billed_row(envelope: dict[str, Any]) -> dict[str, Any]:
    outcome = ingest(orjson.dumps(envelope))
    assert outcome.quarantined.is_empty(), outcome.quarantined["reason"].to_list()
    return outcome.usage_events.row(0, named=True)


def forward(envelope: dict[str, Any] | bytes) -> str:
    settings = load_settings()
    raw = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
    result = forward_envelope(raw, open_store(settings.store), settings.max_envelope_bytes)
    assert result.status == 202, result.message
    assert result.stored_as is not None
    return result.stored_as


def lake_table(name: str) -> pl.DataFrame:
    return pl.read_delta(str(Path(load_settings().lake) / name))


# --- corrupt lines in store objects, through a real run -----------------------------------


def test_corrupt_lines_left_in_store_objects_are_quarantined_and_the_rest_billed(
    chargeback_env: Path,
):
    chat = example("chat_completion")
    forward(with_id(chat, "via-forwarder"))
    line = orjson.dumps(with_id(chat, "beside-garbage"))
    lines = [
        orjson.dumps(with_id(chat, "before-garbage")),
        b"not json at all",
        line[: len(line) // 2],  # a torn append, ended by the next writer's newline
        b'{"schema_version": "1.0", "request_id": "latin1-\xe9", "timestamp": "x"}',
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b"\x00",
        line,
        orjson.dumps(with_id(chat, "next-hour", timestamp="2026-11-27T14:00:00Z")),
        orjson.dumps(with_id(chat, "previous-hour", timestamp="2026-11-27T12:59:59.999Z")),
        orjson.dumps(with_id(chat, "offset-in-hour", timestamp="2026-11-27T14:30:00+01:00")),
        line[:40],  # the object's last line, cut with no newline
    ]
    store = Path(load_settings().store)
    other_writer = f"{PREFIX}20261127T1359-other-writer.ndjson"
    (store / other_writer).write_bytes(b"\n".join(lines))
    torn_single = f"{PREFIX}20261127T135959000000-0123456789abcdef01234567.json"
    (store / torn_single).write_bytes(orjson.dumps(with_id(chat, "torn-single"))[:-300])

    assert materialize_hours([HOUR], show_progress=False) == []

    events = lake_table("usage_events")
    assert sorted(events["request_id"]) == [
        "before-garbage",
        "beside-garbage",
        "offset-in-hour",
        "via-forwarder",
    ]
    offset = events.filter(pl.col("request_id") == "offset-in-hour")["timestamp"][0]
    assert offset.isoformat() == "2026-11-27T13:30:00+00:00"
    quarantined = lake_table("quarantined_envelopes")
    codes = {
        (row["source"], row["source_line"]): row["reason"].split(":")[0]
        for row in quarantined.iter_rows(named=True)
    }
    assert codes == {
        (other_writer, 2): "not_json",
        (other_writer, 3): "not_json",
        (other_writer, 4): "invalid_utf8",
        (other_writer, 5): "invalid_utf8",
        (other_writer, 6): "not_json_object",
        (other_writer, 7): "not_json",
        (other_writer, 9): "outside_partition_hour",
        (other_writer, 10): "outside_partition_hour",
        (other_writer, 12): "not_json",
        (torn_single, 1): "not_json",
    }
    assert set(quarantined["hour"]) == {HOUR}
    ids = quarantined.sort("source", "source_line")["request_id"].to_list()
    assert "next-hour" in ids and "previous-hour" in ids


# --- wrong types, missing sections, unknown majors, timestamps (not in lib/test_ingest.py) ---


def _set(path: str, value: Any):
    def change(envelope: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        target = envelope
        for parent in parents:
            target = target[parent]
        target[key] = value

    return change


def _drop(path: str):
    def change(envelope: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        target = envelope
        for parent in parents:
            target = target[parent]
        del target[key]

    return change


def _usage(**counts: Any):
    def change(envelope: dict[str, Any]) -> None:
        body = orjson.loads(envelope["response"]["body"])
        body["usage"].update(counts)
        envelope["response"]["body"] = orjson.dumps(body).decode()

    return change


def _gateway_only(**counts: Any):
    """No body (passthrough), so the gateway's counts are the ones read."""

    def change(envelope: dict[str, Any]) -> None:
        envelope["response"]["body"] = None
        envelope["gateway_tokens"].update(counts)

    return change


REJECTED = {
    # wrong types, each section and each kind of value
    "request_id integer": (_set("request_id", 7), "wrong_type"),
    "schema_version number": (_set("schema_version", 1.0), "wrong_type"),
    "status as string": (_set("response.status", "200"), "wrong_type"),
    "streamed as string": (_set("response.streamed", "true"), "wrong_type"),
    "body as object": (_set("response.body", {"usage": {}}), "wrong_type"),
    "body_bytes as string": (_set("request.body_bytes", "157"), "wrong_type"),
    "subscription as string": (_set("subscription", "sub-marketing-01"), "wrong_type"),
    "caller user_id number": (_set("caller.user_id", 42), "wrong_type"),
    "tags as list": (_set("tags", ["cost-center"]), "wrong_type"),
    "tag value number": (_set("tags.cost-center", 4100), "wrong_type"),
    "backend deployment list": (_set("backend.deployment", ["gpt-4o"]), "wrong_type"),
    "gateway_tokens as list": (_set("gateway_tokens", [1850, 24]), "wrong_type"),
    "gateway count string": (_gateway_only(prompt="1850"), "wrong_type"),
    "usage count float": (_usage(prompt_tokens=1850.0), "wrong_type"),
    "usage count boolean": (_usage(completion_tokens=True), "wrong_type"),
    "cached count string": (_usage(prompt_tokens_details={"cached_tokens": "9"}), "wrong_type"),
    # missing sections and fields
    "no request": (_drop("request"), "missing_section"),
    "request null": (_set("request", None), "missing_section"),
    "no status": (_drop("response.status"), "missing_field"),
    "no schema_version": (_drop("schema_version"), "missing_field"),
    "empty request_id": (_set("request_id", ""), "missing_field"),
    # majors other than 1, and versions that only look like 1.x
    "major 10": (_set("schema_version", "10.0"), "unknown_schema_major"),
    "major 0": (_set("schema_version", "0.9"), "unknown_schema_major"),
    "v-prefixed": (_set("schema_version", "v1.0"), "unknown_schema_major"),
    "minor not a number": (_set("schema_version", "1.x"), "unknown_schema_major"),
    # timestamps
    "epoch number": (_set("timestamp", 1795784701), "bad_timestamp"),
    "date only": (_set("timestamp", "2026-11-27"), "bad_timestamp"),
    "no offset": (_set("timestamp", "2026-11-27T13:30:00"), "bad_timestamp"),
    "end of hour": (_set("timestamp", "2026-11-27T14:00:00Z"), "outside_partition_hour"),
    "offset into next hour": (
        _set("timestamp", "2026-11-27T13:30:00-01:00"),
        "outside_partition_hour",
    ),
    # negative and absurd values beyond prompt/completion tokens
    "negative cached": (_usage(prompt_tokens_details={"cached_tokens": -1}), "negative_tokens"),
    "reasoning over completion": (
        _usage(completion_tokens_details={"reasoning_tokens": 25}),
        "reasoning_exceeds_completion",
    ),
    "negative total": (_usage(total_tokens=-1874), "negative_tokens"),
    "tokens one over the cap": (_usage(prompt_tokens=10_000_001), "absurd_tokens"),
    "negative elapsed": (_set("elapsed_ms", -1), "negative_size"),
    "negative body_bytes": (_set("response.body_bytes", -828), "negative_size"),
    "status 42": (_set("response.status", 42), "bad_status"),
    "status 600": (_set("response.status", 600), "bad_status"),
    "request_id over 128 chars": (_set("request_id", "r" * 129), "bad_request_id"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_envelope_is_quarantined_with_its_reason_and_not_billed(case):
    change, code = REJECTED[case]
    envelope = with_id(example("chat_completion"), "bad")
    change(envelope)
    assert only_reason(envelope).startswith(code)


ACCEPTED = {
    "major 1 without minor": _set("schema_version", "1"),
    "last microsecond of the hour": _set("timestamp", "2026-11-27T13:59:59.999999Z"),
    "offset back into the hour": _set("timestamp", "2026-11-27T14:30:00+01:00"),
    "tokens at the cap": _usage(prompt_tokens=9_999_976, total_tokens=10_000_000),
    "request_id of 128 chars": _set("request_id", "r" * 128),
    "status 599": _set("response.status", 599),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_edge_values_inside_the_rules_are_billed(case):
    envelope = with_id(example("chat_completion"), "edge")
    ACCEPTED[case](envelope)
    assert billed_row(envelope)["request_id"] == envelope["request_id"]


# Counts that overflow the table's integer columns: one such envelope should be quarantined,
# yet polars raises while building the parsed frame and the whole hour fails, every retry.
OVERFLOWS = {
    "usage count of 2**63": (_usage(prompt_tokens=2**63, total_tokens=2**63 + 24), "tokens"),
    "gateway count of 2**63": (_set("gateway_tokens.prompt", 2**63), "tokens"),
    "elapsed_ms of 2**63": (_set("elapsed_ms", 2**63), "size"),
    "status of 2**40": (_set("response.status", 2**40), "status"),
    "timestamp overflowing UTC": (_set("timestamp", "9999-12-31T23:59:59-01:00"), "timestamp"),
}


@pytest.mark.parametrize("case", sorted(OVERFLOWS))
def test_value_overflowing_its_column_quarantines_only_that_envelope(case):
    change, _ = OVERFLOWS[case]
    stem = "chat_stream_passthrough" if "gateway" in case else "chat_completion"
    envelope = with_id(example(stem), "overflow")
    if "gateway" in case:
        envelope["response"]["body"] = None
    change(envelope)
    only_reason(envelope)


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_forwarder_refuses_a_timestamp_that_overflows_utc_with_400(tmp_path, timestamp):
    from chargeback_pipeline.store.local import LocalEnvelopeStore

    raw = orjson.dumps({"request_id": "r", "timestamp": timestamp})
    result = forward_envelope(raw, LocalEnvelopeStore(tmp_path), 1_000_000)
    assert result.status == 400


# --- streams cut mid-frame and bodies marked truncated --------------------------------------

STREAM_USAGE = (9, 3, "reported")
GATEWAY = {"prompt": 11, "completion": 5, "total": 16, "estimated": True}
NO_COUNTS = None
"""Neither a whole usage nor gateway counts: an estimate from text lengths, or none; never
`reported`."""


def stream(cut_at: str, occurrence: int = 1, crlf: bool = False, gateway: bool = True):
    """The buffered chat stream cut just before the given text (its n-th occurrence)."""
    envelope = with_id(example("chat_stream_buffered"), "stream")
    body = envelope["response"]["body"]
    at = -1
    for _ in range(occurrence):
        at = body.index(cut_at, at + 1)
    body = body[:at]
    envelope["response"]["body"] = body.replace("\n", "\r\n") if crlf else body
    envelope["response"]["truncated"] = True
    envelope["gateway_tokens"] = GATEWAY if gateway else None
    return envelope


def responses_stream(cut: bool) -> dict[str, Any]:
    completed = {
        "type": "response.completed",
        "response": {
            "model": "o4-mini-2025-04-16",
            "usage": {"input_tokens": 20, "output_tokens": 100, "total_tokens": 120},
        },
    }
    frame = f"event: response.completed\ndata: {orjson.dumps(completed).decode()}\n\n"
    body = (
        'event: response.created\ndata: {"type": "response.created", "response": '
        '{"model": "o4-mini-2025-04-16", "usage": null}}\n\n'
        'event: response.output_text.delta\ndata: {"type": "x", "delta": "hi"}\n\n'
        + (frame[: len(frame) // 2] if cut else frame)
    )
    envelope = with_id(example("responses_api"), "responses-stream", gateway_tokens=GATEWAY)
    envelope["response"].update(body=body, content_type="text/event-stream", streamed=True)
    return envelope


def truncated_json(cut_at: str, keep: int = 0, gateway: bool = True) -> dict[str, Any]:
    """The chat completion's body cut `keep` characters after the given text, marked truncated."""
    envelope = with_id(example("chat_completion"), "truncated")
    body = envelope["response"]["body"]
    envelope["response"]["body"] = body[: body.index(cut_at) + keep]
    envelope["response"]["truncated"] = True
    envelope["gateway_tokens"] = {**GATEWAY, "estimated": False} if gateway else None
    return envelope


CUT_SHORT = {
    "stream cut inside [DONE]": (stream("[DONE]"), STREAM_USAGE),
    "stream cut inside the usage frame": (
        stream('"prompt_tokens"'),
        (11, 5, "gateway"),
    ),
    "stream cut mid content frame": (stream('"Hello'), (11, 5, "gateway")),
    "CRLF stream cut after usage": (stream("[DONE]", crlf=True), STREAM_USAGE),
    "CRLF stream cut inside usage": (stream('"total_tokens"', crlf=True), (11, 5, "gateway")),
    "stream cut, no gateway counts": (stream('"prompt_tokens"', gateway=False), NO_COUNTS),
    "responses stream cut in response.completed": (responses_stream(cut=True), (11, 5, "gateway")),
    "responses stream whole": (responses_stream(cut=False), (20, 100, "reported")),
    "truncated before usage": (truncated_json('"usage"'), (11, 5, "gateway")),
    "truncated inside usage": (truncated_json('"completion_tokens"'), (11, 5, "gateway")),
    "truncated after the usage object": (
        truncated_json('"rejected_prediction_tokens": 0}}', keep=33),
        (1850, 24, "reported"),
    ),
    "truncated, no gateway counts": (truncated_json('"choices"', gateway=False), NO_COUNTS),
}


@pytest.mark.parametrize("case", sorted(CUT_SHORT))
def test_cut_short_body_uses_the_last_whole_usage_or_the_gateway_counts(case):
    envelope, expected = CUT_SHORT[case]
    row = billed_row(envelope)
    if expected is NO_COUNTS:
        assert row["token_source"] in ("estimated", "none")
    else:
        assert (row["prompt_tokens"], row["completion_tokens"], row["token_source"]) == expected


# --- one very large envelope --------------------------------------------------------------

ENVELOPE_MB = 100
MEMORY_PROBE = r"""
import json, sys
from functools import partial
from pathlib import Path

def status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])

def reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass

from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.costs import usage_costs
from chargeback_pipeline.lib.ingest import ingest_hour, ingest_slices
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.store import SLICE_BYTES, hour_slices, read_store_slice
from chargeback_pipeline.store.base import StoredEnvelope
from chargeback_pipeline.store.local import LocalEnvelopeStore

phase, store_root, raw_path, seeds, hour = sys.argv[1:]
store = LocalEnvelopeStore(Path(store_root))
reference = load_reference(Path(seeds))
if phase == "forward":
    raw = Path(raw_path).read_bytes()
    reset_peak()
    before = status_kb("VmRSS:")
    result = forward_envelope(raw, store, 256 * 1024 * 1024)
    extra = {"status": result.status, "stored_as": result.stored_as}
else:
    small = Path(raw_path).with_suffix(".small").read_bytes()
    warm = ingest_hour([StoredEnvelope("w", 1, small)], hour, reference.deployments, b"k")
    usage_costs(warm.usage_events, reference)
    reset_peak()
    before = status_kb("VmRSS:")
    # As the asset reads it: slices of the store, parse workers when there are several.
    slices = hour_slices(store.list_hour(hour), SLICE_BYTES)
    read = partial(read_store_slice, store_root, "envelopes")
    outcome = ingest_slices(read, slices, hour, reference.deployments, b"k", workers=2)
    costs = usage_costs(outcome.usage_events, reference)
    row = costs.row(0, named=True) if costs.height == 1 else {}
    extra = {
        "rows": costs.height,
        "quarantined": outcome.quarantined["reason"].to_list(),
        "prompt_tokens": row.get("prompt_tokens"),
        "response_bytes": row.get("response_bytes"),
        "priced": row.get("priced"),
    }
peak = status_kb("VmHWM:")
print(json.dumps({"before_kb": before, "peak_kb": peak, **extra}))
"""


def big_embeddings_envelope(size: int) -> tuple[bytes, int]:
    """One embeddings call whose response body makes the envelope about `size` bytes."""
    vector = "[" + ", ".join(f"{(i % 1999 - 999) / 31337:.8f}" for i in range(3072)) + "]"
    count = size // (len(vector) + 60)
    data = ", ".join(
        f'{{"object": "embedding", "index": {i}, "embedding": {vector}}}' for i in range(count)
    )
    body = (
        f'{{"object": "list", "data": [{data}], "model": "text-embedding-3-large", '
        '"usage": {"prompt_tokens": 4321, "total_tokens": 4321}}'
    )
    envelope = with_id(example("embeddings"), "big-embeddings")
    envelope["response"].update(body=body, body_bytes=len(body))
    return orjson.dumps(envelope), len(body)


def probe(phase: str, store: Path, raw_path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, phase, str(store), str(raw_path), str(SEEDS), HOUR],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


@pytest.mark.slow
def test_a_100_mb_envelope_is_forwarded_and_billed_in_bounded_memory(tmp_path: Path):
    raw, body_bytes = big_embeddings_envelope(ENVELOPE_MB * 1024 * 1024)
    raw_path = tmp_path / "big.json"
    raw_path.write_bytes(raw)
    raw_path.with_suffix(".small").write_bytes(orjson.dumps(with_id(example("embeddings"), "w")))
    size_kb = len(raw) // 1024
    del raw
    store = tmp_path / "store"

    forwarded = probe("forward", store, raw_path)
    assert forwarded["status"] == 202
    assert str(forwarded["stored_as"]).startswith(PREFIX)
    billed = probe("ingest", store, raw_path)
    assert (billed["rows"], billed["quarantined"]) == (1, [])
    assert (billed["prompt_tokens"], billed["response_bytes"]) == (4321, body_bytes)
    assert billed["priced"] is True

    for phase, figures in (("forward", forwarded), ("ingest", billed)):
        growth = figures["peak_kb"] - figures["before_kb"]
        print(
            f"{phase}: envelope {size_kb / 1024:.0f} MiB, RSS growth {growth / 1024:.0f} MiB "
            f"({growth / size_kb:.2f}x)"
        )
        assert growth < 6 * size_kb, f"{phase} grew {growth / size_kb:.1f}x the envelope"


# --- hostile request ids end to end -------------------------------------------------------

HOSTILE_IDS = ["../../escape", "a/b/../../c", "%2F..%2Fetc%2Fpasswd", "..", "/abs", "..\\..\\w"]


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_hostile_request_ids_are_billed_verbatim_and_shape_no_path(chargeback_env: Path):
    outside_before = sorted(p.name for p in chargeback_env.parent.iterdir())
    chat = example("chat_completion")
    expected = []
    for request_id in HOSTILE_IDS:
        forward(with_id(chat, request_id))
        multi_line = f"{request_id}/own-object"
        forward(json.dumps(with_id(chat, multi_line), indent=1).encode())
        expected += [request_id, multi_line]

    assert materialize_hours([HOUR], show_progress=False) == []

    assert sorted(lake_table("usage_events")["request_id"]) == sorted(expected)
    assert sorted(lake_table("usage_costs")["request_id"]) == sorted(expected)
    assert sorted(p.name for p in chargeback_env.parent.iterdir()) == outside_before
    store = Path(load_settings().store)
    for path in files_under(store):
        assert path.resolve().parent == (store / PREFIX).resolve(), path
    lake = Path(load_settings().lake).resolve()
    for path in files_under(chargeback_env):
        relative = path.resolve().relative_to(chargeback_env.resolve())
        assert relative.parts[0] in {"store", "lake", "dagster_home"}, path
        if relative.parts[0] == "lake":
            table_part = path.resolve().relative_to(lake).parts[1]
            assert table_part == "_delta_log" or table_part.startswith("hour="), path


# --- unknown models and deployments -------------------------------------------------------


def test_unknown_model_or_deployment_is_unpriced_and_listed_by_the_check(
    chargeback_env: Path, capsys: pytest.CaptureFixture[str]
):
    chat = example("chat_completion")
    body = chat["response"]["body"]
    unknown_both = with_id(chat, "unknown-deployment-and-model")
    unknown_both["backend"] = {"id": "aoai-nowhere", "deployment": "gpt-9", "api_version": "x"}
    unknown_both["response"]["body"] = body.replace("gpt-4o-2024-08-06", "gpt-9-2027-01-01")
    unknown_version = with_id(chat, "known-deployment-unknown-model")
    unknown_version["response"]["body"] = body.replace("gpt-4o-2024-08-06", "gpt-4o-2099-12-31")
    no_model = with_id(example("chat_stream_passthrough"), "unknown-deployment-no-model")
    no_model["backend"] = {"id": None, "deployment": "mystery", "api_version": None}
    for envelope in (with_id(chat, "known"), unknown_both, unknown_version, no_model):
        forward(envelope)
    capsys.readouterr()

    assert materialize_hours([HOUR], show_progress=False) == []

    costs = lake_table("usage_costs").sort("request_id")
    got = {row["request_id"]: row for row in costs.iter_rows(named=True)}
    assert got["known"]["priced"] is True
    for request_id in (
        "unknown-deployment-and-model",
        "known-deployment-unknown-model",
        "unknown-deployment-no-model",
    ):
        row = got[request_id]
        assert row["priced"] is False, request_id
        assert row["total_cost"] is None and row["currency"] is None, request_id
        assert row["total_tokens"] > 0
    assert got["unknown-deployment-no-model"]["model"] is None
    assert got["unknown-deployment-and-model"]["deployment_type"] is None
    assert got["known-deployment-unknown-model"]["deployment_type"] == "GlobalStandard"

    errors = capsys.readouterr().err
    unpriced = [line for line in errors.splitlines() if "usage_costs.unpriced_usage" in line]
    assert len(unpriced) == 1, errors
    for model in ("gpt-9-2027-01-01", "gpt-4o-2099-12-31", "None"):
        assert model in unpriced[0]
