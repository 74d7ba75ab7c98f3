"""Ingest benchmark: forwarder throughput, hour ingest vs an orjson floor and a naive baseline,
and the marts rebuild over 31 days of history.

Run with `make bench`. Prints a table and, last, one `bench:` line of figures.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from random import Random
from typing import Any

import orjson
import polars as pl
from deltalake import write_deltalake

from chargeback_pipeline import constants as c
from chargeback_pipeline.devtools.azurite import start_azurite, stop_process
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.forwarder.server import ROUTE, build_server
from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.costs import usage_costs
from chargeback_pipeline.lib.delta import (
    keep_first_detection,
    read_hour_batches,
    replace_hour_batches,
    table_uri,
)
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.lib.ingest import bucket_slices, finish_hour
from chargeback_pipeline.lib.marts import MartsBuild, build_marts
from chargeback_pipeline.lib.reference import load_reference
from chargeback_pipeline.settings import PROJECT_ROOT
from chargeback_pipeline.store import SLICE_BYTES, hour_slices, open_store, read_store_slice
from chargeback_pipeline.store.base import EnvelopeStore

HOUR_START = datetime(2026, 11, 26, 13, tzinfo=UTC)
HOUR = "2026-11-26-13:00"
PSEUDONYM_KEY = b"bench-only-pseudonym-key"
SQL_DIR = PROJECT_ROOT / "dbt_like_sql"
SEEDS = SQL_DIR / "seeds"
MAX_BYTES = 256 * 1024 * 1024
HOUR_3M6 = 3_600_000
HISTORY_DAYS = 31
HTTP_SAMPLE = 20_000
MARTS_DAY_ROWS = 110_000
MB = 1e6


# ---------------------------------------------------------------------------- the envelope mix


def make_bodies(count: int, seed: int = 3) -> list[bytes]:
    """`iter_bodies` as a list (for small counts: parse bench, tests)."""
    return list(iter_bodies(count, seed))


def iter_bodies(count: int, seed: int = 3) -> Iterator[bytes]:
    """The demo mix for one hour, a size tail (1 MB+ images, one 50 MB+ body), ~1% invalid,
    made one envelope at a time, so an hour of any size can be generated."""
    rng = Random(f"bench/{seed}/{count}")
    broken = {index: n for n, index in enumerate(rng.sample(range(count), max(3, count // 100)))}
    big_images, huge_at = max(1, count // 1000), count // 2
    for index, envelope in enumerate(generate_hour(HOUR_START, seed=seed, calls=count)):
        if big_images and _is_ok(envelope, "ImageGenerations_Create"):
            _set_body(envelope, _big_image_body(rng))
            big_images -= 1
        elif index >= huge_at and _is_ok(envelope, "embeddings_create"):
            _set_body(envelope, _huge_embeddings_body(envelope))
            huge_at = count  # only one
        elif index in broken:
            _break(envelope, broken[index])
        yield orjson.dumps(envelope)


def _is_ok(envelope: dict[str, Any], operation_id: str) -> bool:
    """A successful call of one API operation."""
    return envelope["api"]["operation_id"] == operation_id and envelope["response"]["status"] == 200


def _set_body(envelope: dict[str, Any], body: str) -> None:
    """Replace the response body, keeping body_bytes true."""
    envelope["response"]["body"] = body
    envelope["response"]["body_bytes"] = len(body.encode())


def _big_image_body(rng: Random) -> str:
    """A dall-e-3 answer with a real-sized base64 PNG (1-1.5 MB of base64)."""
    image = base64.b64encode(rng.randbytes(rng.randint(800_000, 1_100_000))).decode()
    return orjson.dumps({"created": 1795000000, "data": [{"b64_json": image}]}).decode()


def _huge_embeddings_body(envelope: dict[str, Any]) -> str:
    """An embeddings answer for ~1,700 inputs of 3,072 floats (over 50 MB), same usage."""
    usage = orjson.loads(envelope["response"]["body"])["usage"]
    vector = [round(Random(i).gauss(0.0, 0.03), 8) for i in range(3072)]
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(1700)]
    body = {"object": "list", "data": data, "model": "text-embedding-3-large", "usage": usage}
    return orjson.dumps(body).decode()


def _break(envelope: dict[str, Any], number: int) -> None:
    """Make an envelope invalid in one of three ways the pipeline must quarantine."""
    reason = number % 3
    if reason == 0:
        envelope["schema_version"] = "2.0"
    elif reason == 1:
        envelope["elapsed_ms"] = str(envelope["elapsed_ms"])
    else:
        del envelope["response"]


# ---------------------------------------------------------------------------- forwarder


@dataclass
class Forwarded:
    """What went through the forwarder: how long it took (forwarding only), how much, and the
    first envelopes kept for the HTTP sample."""

    seconds: float = 0.0
    envelopes: int = 0
    bytes: int = 0
    biggest: int = 0
    sample: list[bytes] = field(default_factory=list)


def forward_in_process(bodies: Iterable[bytes], store: EnvelopeStore, keep: int = 0) -> Forwarded:
    """Write every envelope through `forward_envelope` into a store, keeping the first `keep`."""
    done = Forwarded()
    for body in bodies:
        started = time.perf_counter()
        assert forward_envelope(body, store, MAX_BYTES).status == 202
        done.seconds += time.perf_counter() - started
        done.envelopes += 1
        done.bytes += len(body)
        done.biggest = max(done.biggest, len(body))
        if len(done.sample) < keep:
            done.sample.append(body)
    return done


def forward_over_http(bodies: list[bytes], spec: str, container: str, threads: int) -> float:
    """POST every envelope to the forwarder server on 127.0.0.1 from `threads` clients."""
    os.environ.update(
        CHARGEBACK_STORE=spec,
        CHARGEBACK_CONTAINER=container,
        CHARGEBACK_FORWARDER_KEY="",
        CHARGEBACK_MAX_ENVELOPE_BYTES=str(MAX_BYTES),
    )
    server = build_server("127.0.0.1", 0)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    port = server.server_port
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda share: _post_all(port, share), _deal(bodies, threads)))
        return time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()


def _deal(bodies: list[bytes], hands: int) -> list[list[bytes]]:
    """Split the bodies round-robin over the client threads."""
    return [bodies[i::hands] for i in range(hands)]


def _post_all(port: int, bodies: list[bytes]) -> None:
    """One keep-alive connection posting its share of the envelopes."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for body in bodies:
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            connection.request("POST", ROUTE, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 202, response.status
    finally:
        connection.close()


# ---------------------------------------------------------------------------- ingest (child)


def ingest_child(spec: str, container: str, lake: str) -> dict[str, float]:
    """Store -> usage_events, quarantined_envelopes and usage_costs Delta, as the assets do it."""
    reference = load_reference(SEEDS)
    workers = int(os.environ.get("CHARGEBACK_PARSE_WORKERS") or os.cpu_count() or 1)
    started = time.perf_counter()
    # What the ingest asset does: workers read their own slices of the hour from the store,
    # rows wait on disk in request_id buckets, which are finished as the usage_events commit
    # streams them out; each table is written in one commit.
    slices = hour_slices(open_store(spec, container).list_hour(HOUR), SLICE_BYTES)
    read = partial(read_store_slice, spec, container)
    write_events = partial(_replace, lake, c.USAGE_EVENTS, schema=tables.USAGE_EVENTS)
    with tempfile.TemporaryDirectory(prefix="bench-hour-") as spill:
        bucketed = bucket_slices(read, slices, PSEUDONYM_KEY, workers, Path(spill))
        parsed = time.perf_counter()
        outcome = finish_hour(bucketed, HOUR, reference.deployments, write_events)
    earlier = pl.DataFrame(schema=tables.QUARANTINED_ENVELOPES)
    quarantined = keep_first_detection(outcome.quarantined, earlier, datetime.now(UTC))
    _replace(lake, c.QUARANTINED_ENVELOPES, [quarantined], tables.QUARANTINED_ENVELOPES)
    # What the costs asset does: price the stored hour batch by batch into usage_costs.
    events = read_hour_batches(table_uri(lake, c.USAGE_EVENTS), HOUR, tables.USAGE_EVENTS)
    _replace(lake, c.USAGE_COSTS, (usage_costs(b, reference) for b in events), tables.USAGE_COSTS)
    finished = time.perf_counter()
    return {
        "wall_s": finished - started,
        "parse_s": parsed - started,
        "write_cost_s": finished - parsed,
        "workers": workers,
        "envelopes_read": outcome.envelopes_read,
        "usage_rows": outcome.usage_rows,
        "quarantined": outcome.quarantined.height,
        "main_rss_mb": own_peak_rss_mb(),
        # An upper bound: a child's maxrss starts from its parent's size when it was started.
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _replace(
    lake: str, table: str, frames: Iterable[pl.DataFrame], schema: dict[str, pl.DataType]
) -> None:
    replace_hour_batches(table_uri(lake, table), frames, HOUR, schema)


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started (VmHWM; ru_maxrss would count the parent that
    spawned it, which here holds every generated envelope)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args: str) -> str:
    """This script run in a fresh process with `args`; the last line it prints."""
    command = [sys.executable, __file__, *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def run_ingest(spec: str, container: str, lake: Path) -> dict[str, float]:
    """Ingest in a child process, so generating the envelopes does not count."""
    result = json.loads(run_child("--ingest-child", spec, container, str(lake)))
    # Conservative: the ingest process's peak plus every worker at its (upper-bound) peak.
    result["peak_rss_mb"] = result["main_rss_mb"] + result["workers"] * result["worker_rss_mb"]
    return result


# ---------------------------------------------------------------------------- floor and naive


def run_baseline(kind: str, spec: str, container: str) -> float:
    """`floor` or `naive` in a fresh process, as the ingest runs: a process that has already
    read the hour reuses its heap and would run later rounds faster than the first."""
    return float(run_child("--baseline-child", kind, spec, container))


def stored_objects(store: EnvelopeStore) -> Iterator[bytes]:
    """The bytes of every object the store holds for the hour, in name order."""
    for item in sorted(store.list_hour(HOUR), key=lambda found: found.name):
        yield store.read_object(item.name)


def floor(store: EnvelopeStore) -> float:
    """Read the same bytes and orjson-parse every line, nothing else (single core)."""
    started = time.perf_counter()
    for data in stored_objects(store):
        for line in data.split(b"\n"):
            if line:
                orjson.loads(line)
    return time.perf_counter() - started


def naive(store: EnvelopeStore) -> float:
    """Per-envelope json.loads, body json.loads, Python usage extraction, a pandas DataFrame."""
    import pandas as pd

    started = time.perf_counter()
    rows = [
        _naive_row(json.loads(line))
        for data in stored_objects(store)
        for line in data.split(b"\n")
        if line
    ]
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return time.perf_counter() - started


def _naive_row(envelope: dict[str, Any]) -> dict[str, Any]:
    """The obvious hand-written extraction of one envelope's usage."""
    response = envelope.get("response") or {}
    usage = _naive_usage(response) or {}
    return {
        "request_id": envelope.get("request_id"),
        "timestamp": envelope.get("timestamp"),
        "subscription_id": (envelope.get("subscription") or {}).get("id"),
        "deployment": (envelope.get("backend") or {}).get("deployment"),
        "status": response.get("status"),
        "prompt_tokens": usage.get("prompt_tokens", usage.get("input_tokens")),
        "completion_tokens": usage.get("completion_tokens", usage.get("output_tokens")),
        "total_tokens": usage.get("total_tokens"),
    }


def _naive_usage(response: dict[str, Any]) -> dict[str, Any] | None:
    """Usage from a JSON body, or from the last SSE event that carries one."""
    body = response.get("body") or ""
    if response.get("streamed"):
        usage = None
        for line in body.split("\n"):
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                event = json.loads(line[5:])
                found = event.get("usage") or (event.get("response") or {}).get("usage")
                usage = found or usage
        return usage
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("usage") if isinstance(document, dict) else None


# ---------------------------------------------------------------------------- marts


def write_history(hour_lake: Path, lake: Path, days: int) -> int:
    """`days` days before the measured hour, each a copy of (at most MARTS_DAY_ROWS of) its rows
    spread over 24 hours, so the marts figures do not depend on the hour size measured."""
    events = pl.read_delta(table_uri(str(hour_lake), c.USAGE_EVENTS)).head(MARTS_DAY_ROWS)
    quarantine = pl.read_delta(table_uri(str(hour_lake), c.QUARANTINED_ENVELOPES))
    reference = load_reference(SEEDS)
    shifted = [_shift(events, back) for back in range(1, days + 1)]
    history = pl.concat(shifted)
    lost = pl.concat([_shift(quarantine, back) for back in range(1, days + 1)])
    for table, frame in (
        (c.USAGE_EVENTS, history),
        (c.USAGE_COSTS, usage_costs(history, reference)),
        (c.QUARANTINED_ENVELOPES, lost),
    ):
        data = tables.conform(frame, _schema(table)).to_arrow()
        write_deltalake(table_uri(str(lake), table), data, mode="append", partition_by=["hour"])
    return history.height


def _shift(frame: pl.DataFrame, back: int) -> pl.DataFrame:
    """Rows moved `back` days earlier and spread over the day's hours; request ids made unique."""
    offset = pl.duration(days=-back, hours=pl.int_range(pl.len()) % 24 - HOUR_START.hour)
    has_time = "timestamp" in frame.columns
    moved = (pl.col("timestamp") if has_time else pl.lit(HOUR_START)) + offset
    return frame.with_columns(
        moved.dt.strftime("%Y-%m-%d-%H:00").alias("hour"),
        (pl.col("request_id") + f"-d{back}").alias("request_id"),
        *([moved.alias("timestamp")] if has_time else []),
    )


def _schema(table: str) -> dict[str, pl.DataType]:
    return {
        c.USAGE_EVENTS: tables.USAGE_EVENTS,
        c.USAGE_COSTS: tables.USAGE_COSTS,
        c.QUARANTINED_ENVELOPES: tables.QUARANTINED_ENVELOPES,
    }[table]


def time_marts(lake: Path, duckdb_path: Path) -> tuple[float, MartsBuild]:
    """Seconds for one `build_marts` over a lake (full on a new file, else what changed), and
    the build, which says its mode."""
    started = time.perf_counter()
    built = build_marts(SQL_DIR, str(lake), duckdb_path, reference_dir=SEEDS)
    return time.perf_counter() - started, built


def reprice_day(lake: Path) -> tuple[str, int]:
    """A day's usage_costs backfilled as the hourly assets do it, one commit per hour, with every
    call's cost doubled (a price-book fix): the marts must change. Returns the day and its rows."""
    uri = table_uri(str(lake), c.USAGE_COSTS)
    hours = pl.scan_delta(uri).select("hour").unique().collect()["hour"].sort()
    day = hours[len(hours) // 2][:10]
    rows = pl.scan_delta(uri).filter(pl.col("hour").str.starts_with(day)).collect()
    money = [name for name, dtype in tables.USAGE_COSTS.items() if dtype == tables.MONEY]
    doubled = rows.with_columns(pl.col(name) * 2 for name in money)
    for (hour,), frame in doubled.group_by("hour"):
        data = tables.conform(frame, tables.USAGE_COSTS).to_arrow()
        write_deltalake(
            uri, data, mode="overwrite", predicate=f"hour = '{hour}'", partition_by=["hour"]
        )
    return day, rows.height


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- report


def measure_size(
    count: int, folder: Path, threads: int, full: bool, blob: str | None = None, repeat: int = 1
) -> dict[str, Any]:
    """Generate, forward and ingest one size; the full size also gets HTTP, floor and naive,
    each measured `repeat` times in interleaved rounds (the medians are reported). The hour
    goes to a local folder, or to Blob Storage when `blob` is a connection string."""
    spec, container = (blob, f"bench{count}") if blob else (str(folder / f"store-{count}"), "")
    store = open_store(spec, container)
    # Generated while forwarded: an hour of any size fits in memory; only forwarding is timed.
    forwarded = forward_in_process(iter_bodies(count), store, keep=HTTP_SAMPLE if full else 0)
    result: dict[str, Any] = {"envelopes": forwarded.envelopes, "mb": forwarded.bytes / MB}
    result["biggest_mb"] = forwarded.biggest / MB
    result["in_process_s"] = forwarded.seconds
    if full:
        # Throughput needs no full hour: the first HTTP_SAMPLE envelopes over HTTP.
        result["http_n"] = len(forwarded.sample)
        http = (blob, f"http{count}") if blob else (str(folder / f"http-{count}"), "")
        result["http_s"] = forward_over_http(forwarded.sample, *http, threads)
    del forwarded
    os.sync()  # the forwarder's writes reach the disk now, not during the measured ingest
    if not full:
        result["ingest"] = run_ingest(spec, container, folder / f"lake-{count}")
        return result
    # Rounds interleave the three, so a drift in the machine's speed touches them alike.
    rounds = []
    for round_number in range(repeat):
        lake = folder / (f"lake-{count}" if round_number == 0 else f"lake-{count}-{round_number}")
        ingest = run_ingest(spec, container, lake)
        floor_s = run_baseline("floor", spec, container)
        rounds.append((ingest, floor_s, run_baseline("naive", spec, container)))
        if round_number:
            shutil.rmtree(lake)
    ingests = sorted((run for run, _, _ in rounds), key=lambda run: run["wall_s"])
    result["ingest"] = {
        **ingests[len(ingests) // 2],
        "peak_rss_mb": max(run["peak_rss_mb"] for run in ingests),
        "walls": [run["wall_s"] for run in ingests],
    }
    result["floor_s"] = statistics.median(floor_s for _, floor_s, _ in rounds)
    result["naive_s"] = statistics.median(naive_s for _, _, naive_s in rounds)
    return result


def measure_marts(folder: Path, hour_lake: Path) -> dict[str, Any]:
    """Full marts build over 1 day and over 31 days of history, then, on the 31 days, the
    refresh after one day is backfilled (only that day replaced) and a build with no change."""
    figures: dict[str, Any] = {}
    for days in (1, HISTORY_DAYS):
        lake = folder / f"history-{days}"
        figures[f"rows_{days}d"] = write_history(hour_lake, lake, days)
        figures[f"marts_{days}d_s"], _ = time_marts(lake, folder / f"marts-{days}.duckdb")
    lake, marts = folder / f"history-{HISTORY_DAYS}", folder / f"marts-{HISTORY_DAYS}.duckdb"
    figures["refresh_day"], figures["refresh_rows"] = reprice_day(lake)
    figures["refresh_s"], built = time_marts(lake, marts)
    figures["refresh_mode"] = f"{built.mode}, {len(built.days)} day(s)"
    figures["unchanged_s"], built = time_marts(lake, marts)
    figures["unchanged_mode"] = built.mode
    return figures


def print_report(
    big: dict[str, Any], small: dict[str, Any], marts: dict[str, Any], store: str
) -> None:
    """The table, then the single `bench:` line."""
    n, ingest = big["envelopes"], big["ingest"]
    wall = ingest["wall_s"]
    rows = [
        (
            "envelopes (demo mix + tail)",
            f"{n:,} / {big['mb']:.1f} MB, largest {big['biggest_mb']:.1f} MB",
        ),
        (
            "forwarder in-process",
            f"{n / big['in_process_s']:,.0f} env/s ({big['in_process_s']:.1f} s)",
        ),
        (
            "forwarder HTTP 127.0.0.1",
            f"{big['http_n'] / big['http_s']:,.0f} env/s "
            f"({big['http_n']:,} in {big['http_s']:.1f} s)",
        ),
        (
            "ingest wall (store -> 3 Delta)",
            f"{wall:.2f} s, {ingest['workers']} workers, {store}" + _spread(ingest["walls"]),
        ),
        ("  parse into request_id buckets", f"{ingest['parse_s']:.2f} s"),
        ("  finish buckets, Delta writes, costs", f"{ingest['write_cost_s']:.2f} s"),
        ("ingest throughput", f"{n / wall:,.0f} env/s, {big['mb'] / wall:.1f} MB/s"),
        ("ingest rows", f"{ingest['usage_rows']:,} usage, {ingest['quarantined']:,} quarantined"),
        ("peak RSS", _rss(ingest)),
        (f"peak RSS at {small['envelopes']:,} ({small['mb']:.0f} MB)", _rss(small["ingest"])),
        ("floor: orjson every line, 1 core", f"{big['floor_s']:.2f} s" + _median(ingest)),
        ("naive: json.loads + pandas", f"{big['naive_s']:.2f} s" + _median(ingest)),
        ("ingest / floor", f"{wall / big['floor_s']:.2f}x"),
        ("naive / ingest", f"{big['naive_s'] / wall:.2f}x"),
        (
            "3.6 M envelopes in one hour",
            f"{wall * HOUR_3M6 / n:.0f} s (extrapolated linearly from {n:,}"
            + (", not from a >= 360 k run)" if n < 360_000 else ")"),
        ),
        ("marts full build, 1 day", f"{marts['marts_1d_s']:.2f} s ({marts['rows_1d']:,} rows)"),
        (
            f"marts full build, {HISTORY_DAYS} days",
            f"{marts[f'marts_{HISTORY_DAYS}d_s']:.2f} s ({marts[f'rows_{HISTORY_DAYS}d']:,} rows)",
        ),
        (
            "one day's marts refresh",
            f"{marts['refresh_s']:.2f} s ({marts['refresh_mode']}: {marts['refresh_rows']:,} rows"
            f" of {marts['refresh_day']} re-priced in 24 hourly commits, {HISTORY_DAYS} days held)",
        ),
        (
            "marts build, lake unchanged",
            f"{marts['unchanged_s']:.2f} s ({marts['unchanged_mode']}: tests run, nothing rebuilt)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        f"bench: ingest_mb_per_s={big['mb'] / wall:.1f} envelopes_per_s={n / wall:.0f} "
        f"peak_rss_mb={ingest['peak_rss_mb']:.0f} vs_floor={wall / big['floor_s']:.2f} "
        f"vs_naive={big['naive_s'] / wall:.2f} hour_3m6_s={wall * HOUR_3M6 / n:.0f}"
    )


def _spread(walls: list[float]) -> str:
    if len(walls) < 2:
        return ""
    return f" (median of {len(walls)} runs, {min(walls):.2f}-{max(walls):.2f} s)"


def _median(ingest: dict[str, Any]) -> str:
    return f" (median of {len(ingest['walls'])} runs)" if len(ingest["walls"]) > 1 else ""


def _rss(ingest: dict[str, float]) -> str:
    return (
        f"{ingest['peak_rss_mb']:.0f} MB (ingest process {ingest['main_rss_mb']:.0f} MB "
        f"+ {ingest['workers']:.0f} parse workers <= {ingest['worker_rss_mb']:.0f} MB each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--envelopes", type=int, default=110_000, help="hour size (default ~1.1 GB of the mix)"
    )
    parser.add_argument("--threads", type=int, default=4, help="HTTP client threads")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of ingest, floor and naive (medians)"
    )
    parser.add_argument(
        "--azurite",
        action="store_true",
        help="store the hour in Azurite (started here, in memory) instead of a local folder",
    )
    parser.add_argument(
        "--ingest-child", nargs=3, metavar=("STORE", "CONTAINER", "LAKE"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--baseline-child", nargs=3, metavar=("KIND", "STORE", "CONTAINER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.ingest_child:
        print(json.dumps(ingest_child(*args.ingest_child)))
        return
    if args.baseline_child:
        kind, spec, container = args.baseline_child
        print({"floor": floor, "naive": naive}[kind](open_store(spec, container)))
        return
    azurite = start_azurite() if args.azurite else None
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-bench-") as name:
            folder = Path(name)
            blob = azurite.connection_string if azurite else None
            # The small size first (its figures stay independent of the big one).
            small_count = max(100, args.envelopes // 10)
            small = measure_size(small_count, folder, args.threads, full=False, blob=blob)
            big = measure_size(
                args.envelopes, folder, args.threads, full=True, blob=blob, repeat=args.repeat
            )
            marts = measure_marts(folder, folder / f"lake-{args.envelopes}")
    finally:
        if azurite:
            stop_process(azurite.process)
    print_report(big, small, marts, "Azurite" if azurite else "local folder")


if __name__ == "__main__":
    main()
