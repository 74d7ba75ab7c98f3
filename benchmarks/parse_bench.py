"""Single-core parse benchmark (issue #9): `parse_envelopes` on the ingest benchmark's envelope mix.

Run with `.venv/bin/python benchmarks/parse_bench.py [--count 20000] [--repeat 3]`. Prints the best
of the repeats for the reference path (orjson + envelope_row) and for `parse_envelopes`, in seconds
and MB/s of envelope bytes. The machine may be shared: the best run is the one to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from chargeback_pipeline.lib import parse
from chargeback_pipeline.store.base import StoredEnvelope

MB = 1e6
KEY = b"bench-only-pseudonym-key"
Parser = Callable[[Sequence[StoredEnvelope], bytes], parse.ParsedBatch]


def best_seconds(parser: Parser, stored: Sequence[StoredEnvelope], repeat: int) -> float:
    """The fastest of `repeat` runs of one parser over the envelopes."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        parser(stored, KEY)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__)
    arguments.add_argument("--count", type=int, default=20_000)
    arguments.add_argument("--repeat", type=int, default=3)
    options = arguments.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ingest_bench  # the envelope mix lives beside this file

    bodies = ingest_bench.make_bodies(options.count)
    stored = [StoredEnvelope("raw/x.ndjson", n, raw) for n, raw in enumerate(bodies, start=1)]
    size = sum(map(len, bodies)) / MB
    print(f"{options.count} envelopes, {size:.0f} MB, best of {options.repeat}, one core")
    for name, parser in (
        ("reference (orjson + envelope_row)", parse.parse_envelopes_reference),
        ("parse_envelopes", parse.parse_envelopes),
    ):
        seconds = best_seconds(parser, stored, options.repeat)
        print(f"{name:36} {seconds:6.3f} s {size / seconds:8.0f} MB/s")


if __name__ == "__main__":
    main()
