"""Envelope store throughput: forwarder writes and concurrent hour reads, local folder vs Azurite.

Run with `make bench-store`. Prints a table and, last, one `bench-store:` line of figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import orjson
from azure.storage.blob import ContainerClient

from chargeback_pipeline.devtools.azurite import start_azurite, stop_process
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.store import LocalEnvelopeStore, read_hour
from chargeback_pipeline.store.base import EnvelopeStore
from chargeback_pipeline.store.blob import BlobEnvelopeStore

HOUR_START = datetime(2026, 11, 26, 13, tzinfo=UTC)
HOUR = "2026-11-26-13:00"
MAX_BYTES = 256 * 1024 * 1024


def envelopes(count: int) -> list[bytes]:
    """A realistic mix for one hour (chat, streams, embeddings, images, errors)."""
    return [orjson.dumps(e) for e in generate_hour(HOUR_START, seed=3, calls=count)]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def write_all(store: EnvelopeStore, bodies: list[bytes], threads: int) -> None:
    def send(body: bytes) -> None:
        assert forward_envelope(body, store, MAX_BYTES).status == 202

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, bodies))


def read_all(store: EnvelopeStore, expected: int) -> None:
    count = sum(1 for _ in read_hour(store, HOUR))
    assert count == expected, (count, expected)


def measure(name: str, store: EnvelopeStore, bodies: list[bytes], threads: int) -> dict:
    megabytes = sum(len(b) for b in bodies) / 1e6
    write_s = timed(lambda: write_all(store, bodies, threads))
    objects = len(store.list_hour(HOUR))
    read_s = timed(lambda: read_all(store, len(bodies)))
    return {
        "store": name,
        "envelopes": len(bodies),
        "MB": round(megabytes, 1),
        "objects": objects,
        "write_env_per_s": round(len(bodies) / write_s),
        "read_env_per_s": round(len(bodies) / read_s),
        "read_MB_per_s": round(megabytes / read_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envelopes", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16, help="concurrent forwarder calls")
    args = parser.parse_args()
    bodies = envelopes(args.envelopes)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(measure("local", LocalEnvelopeStore(Path(folder)), bodies, args.threads))
    azurite = start_azurite()
    try:
        container = ContainerClient.from_connection_string(azurite.connection_string, "bench")
        store = BlobEnvelopeStore(container)
        store.ensure_container()
        rows.append(measure("azurite", store, bodies, args.threads))
    finally:
        stop_process(azurite.process)
    columns = list(rows[0])
    print("  ".join(f"{c:>16}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]!s:>16}" for c in columns))
    blob = rows[-1]
    print(
        f"bench-store: azurite_write_env_per_s={blob['write_env_per_s']} "
        f"azurite_read_env_per_s={blob['read_env_per_s']} "
        f"azurite_read_mb_per_s={blob['read_MB_per_s']} "
        f"local_write_env_per_s={rows[0]['write_env_per_s']} threads={args.threads}"
    )


if __name__ == "__main__":
    main()
