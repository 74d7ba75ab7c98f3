"""Late arrivals: which hours' raw objects grew since the last look, with a bounded cursor.

The cursor is JSON: `{"version": 1, "since": <oldest hour covered>, "hours": {<hour>:
{"fingerprint", "bytes", "latest"}}}`, holding only hours inside the window that have objects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from chargeback_pipeline.lib.hours import hour_key

LOOKBACK_ENV = "CHARGEBACK_LATE_LOOKBACK_HOURS"
DEFAULT_LOOKBACK_HOURS = 48
CURSOR_VERSION = 1


class Listed(Protocol):
    """What a store listing says about one object (`store.base.StoredObject` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def modified(self) -> datetime: ...


@dataclass(frozen=True)
class HourState:
    """One hour's objects, summarised: exact fingerprint, total bytes, newest modification."""

    fingerprint: str
    bytes: int
    latest: datetime


@dataclass(frozen=True)
class Cursor:
    """The hours covered from `since` on, and the state of those that had objects."""

    since: str
    hours: Mapping[str, HourState]


@dataclass(frozen=True)
class Scan:
    """The hours that received envelopes since the previous cursor, and the next cursor."""

    changed: Mapping[str, HourState]
    cursor: Cursor


def lookback_hours(env: Mapping[str, str]) -> int:
    """How many hours before the current one to watch, from CHARGEBACK_LATE_LOOKBACK_HOURS."""
    value = env.get(LOOKBACK_ENV) or str(DEFAULT_LOOKBACK_HOURS)
    try:
        hours = int(value)
    except ValueError:
        hours = 0
    if hours < 1:
        raise ValueError(f"{LOOKBACK_ENV}={value!r}: expected a whole number of hours >= 1")
    return hours


def window(now: datetime, lookback: int) -> list[str]:
    """The current hour and the `lookback` hours before it, oldest first."""
    # The current hour is watched too, so its baseline exists before its first materialisation.
    return [hour_key(now - timedelta(hours=back)) for back in range(lookback, -1, -1)]


def hour_state(objects: Sequence[Listed]) -> HourState | None:
    """The summary of one hour's listing; None when the hour holds no objects."""
    if not objects:
        return None
    # Name and size only: objects are append-only, so any new envelope changes one of them.
    pairs = sorted((item.name, item.size) for item in objects)
    digest = hashlib.sha256("\n".join(f"{name}\t{size}" for name, size in pairs).encode())
    return HourState(
        fingerprint=digest.hexdigest()[:16],
        bytes=sum(size for _, size in pairs),
        latest=max(item.modified for item in objects),
    )


def received_more(before: HourState | None, now: HourState, covered: bool) -> bool:
    """Whether an hour got envelopes: it grew or has newer objects, not merely lost some."""
    if before is None:
        # An hour entering the window (first tick, longer lookback) is a baseline, not news.
        return covered
    if now.fingerprint == before.fingerprint:
        return False
    # Retention deleting objects must not trigger a re-run that would empty the hour.
    return now.bytes > before.bytes or now.latest > before.latest


def scan(previous: Cursor | None, listings: Mapping[str, Sequence[Listed]]) -> Scan:
    """Compare the listings of the window's hours with the previous cursor."""
    hours = sorted(listings)
    if not hours:
        raise ValueError("the window holds no hours")
    states = {hour: state for hour in hours if (state := hour_state(listings[hour])) is not None}
    changed = {
        hour: state
        for hour, state in states.items()
        if previous is not None
        and received_more(previous.hours.get(hour), state, covered=hour >= previous.since)
    }
    return Scan(changed=changed, cursor=Cursor(since=hours[0], hours=states))


def dump_cursor(cursor: Cursor) -> str:
    """The cursor as compact, deterministic JSON."""
    hours = {
        hour: {"fingerprint": s.fingerprint, "bytes": s.bytes, "latest": s.latest.isoformat()}
        for hour, s in sorted(cursor.hours.items())
    }
    document = {"version": CURSOR_VERSION, "since": cursor.since, "hours": hours}
    return json.dumps(document, separators=(",", ":"))


def load_cursor(text: str | None) -> Cursor | None:
    """The cursor from its JSON; None when absent or unreadable, which means start a baseline."""
    if not text:
        return None
    try:
        document = json.loads(text)
        if document["version"] != CURSOR_VERSION:
            return None
        hours = {
            str(hour): HourState(
                fingerprint=str(entry["fingerprint"]),
                bytes=int(entry["bytes"]),
                latest=datetime.fromisoformat(entry["latest"]),
            )
            for hour, entry in document["hours"].items()
        }
        since = str(document["since"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    # Naive times could not be compared with the store's; such a cursor was not written here.
    if any(state.latest.tzinfo is None for state in hours.values()):
        return None
    return Cursor(since=since, hours=hours)


def run_key(hour: str, state: HourState) -> str:
    """One run per hour and content: a repeated tick with the same content launches nothing."""
    return f"late:{hour}:{state.fingerprint}"
