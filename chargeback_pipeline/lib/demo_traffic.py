"""Deterministic, realistic APIM usage envelopes (CONTRACT §1) for one UTC day, with the week of
history before it and an evening cost spike that the FinOps marts (cost_anomalies) look for.

Used by `chargeback demo` and by tests. Everything is drawn from seeded `random.Random` instances:
same arguments, same envelopes, byte for byte. Each call has its own generator, so forcing one call
(failure injection) leaves every other call unchanged.
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Any, NamedTuple

import orjson

from chargeback_pipeline.lib.hours import hour_key

Envelope = dict[str, Any]

SCHEMA_VERSION = "1.0"
UNMAPPED_SUBSCRIPTION = "sub-sandbox-07"
UNKNOWN_COST_CENTER = "CC-9999"
INVALID_REASONS = (
    "unknown_schema_major",
    "wrong_type",
    "missing_section",
    "negative_tokens",
    "absurd_tokens",
)
ABSURD_TOKENS = 10**12


class Deployment(NamedTuple):
    """One row of dbt_like_sql/seeds/deployments.csv (the columns the traffic needs)."""

    deployment: str
    backend_id: str
    model: str
    region: str


class Subscription(NamedTuple):
    """An APIM subscription with its product and the projects its teams tag."""

    id: str
    name: str
    product_id: str
    weight: float
    projects: tuple[str, ...]


# Mirrors dbt_like_sql/seeds/deployments.csv; the tests keep the two in step.
DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment("gpt-4o", "aoai-eastus-1", "gpt-4o-2024-08-06", "eastus"),
    Deployment("gpt-4o", "aoai-westeurope-1", "gpt-4o-2024-08-06", "westeurope"),
    Deployment("gpt-4o-mini", "aoai-eastus-1", "gpt-4o-mini-2024-07-18", "eastus"),
    Deployment("gpt-4.1", "aoai-swedencentral-1", "gpt-4.1-2025-04-14", "swedencentral"),
    Deployment("gpt-4.1-mini", "aoai-eastus-1", "gpt-4.1-mini-2025-04-14", "eastus"),
    Deployment("o4-mini", "aoai-eastus-1", "o4-mini-2025-04-16", "eastus"),
    Deployment("gpt-35-turbo-instruct", "aoai-eastus-1", "gpt-35-turbo-instruct-0914", "eastus"),
    Deployment("text-embedding-3-large", "aoai-eastus-1", "text-embedding-3-large", "eastus"),
    Deployment("text-embedding-3-small", "aoai-eastus-1", "text-embedding-3-small", "eastus"),
    Deployment("dall-e-3", "aoai-eastus-1", "dall-e-3", "eastus"),
    # The APIM pool's PTU member serves the same deployment name (the path is shared).
    Deployment("gpt-4o", "aoai-eastus-ptu", "gpt-4o-2024-08-06", "eastus"),
)
PTU = DEPLOYMENTS[-1]
_PTU_SHARE = 0.25
"""Share of the eastus gpt-4o chats the backend pool serves from the provisioned (PTU) member."""
_PTU_MS_PER_TOKEN = 9.0

# Mirrors dbt_like_sql/seeds/cost_centers.csv: (subscription, cost center, from, to exclusive).
COST_CENTER_HISTORY: tuple[tuple[str, str, date, date | None], ...] = (
    ("sub-marketing-01", "CC-4100", date(2025, 1, 1), None),
    ("sub-support-bot", "CC-2200", date(2025, 1, 1), None),
    ("sub-engineering-tools", "CC-3300", date(2025, 1, 1), None),
    ("sub-data-science", "CC-5100", date(2025, 1, 1), None),
    ("sub-hr-assistant", "CC-6100", date(2025, 1, 1), date(2026, 7, 1)),
    ("sub-hr-assistant", "CC-6200", date(2026, 7, 1), None),
)

SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(
        "sub-marketing-01",
        "Marketing analytics",
        "genai-standard",
        2.0,
        ("campaign-writer", "seo-briefs"),
    ),
    Subscription(
        "sub-support-bot",
        "Customer support bot",
        "genai-premium",
        3.5,
        ("ticket-triage", "reply-drafts"),
    ),
    Subscription(
        "sub-engineering-tools",
        "Engineering tools",
        "genai-standard",
        2.5,
        ("code-review", "test-gen", "incident-summaries"),
    ),
    Subscription(
        "sub-data-science", "Data science", "genai-premium", 1.5, ("doc-search", "churn-notes")
    ),
    Subscription(
        "sub-hr-assistant", "HR assistant", "genai-standard", 1.0, ("policy-qa", "job-posts")
    ),
    Subscription(UNMAPPED_SUBSCRIPTION, "Sandbox 07", "genai-free", 0.5, ("prototype",)),
)

PRODUCT_NAMES = {
    "genai-free": "GenAI Free",
    "genai-standard": "GenAI Standard",
    "genai-premium": "GenAI Premium",
}

_KIND_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("chat", 0.40),
    ("chat_stream", 0.11),
    ("chat_stream_passthrough", 0.04),
    ("responses", 0.11),
    ("responses_stream", 0.04),
    ("embeddings", 0.10),
    ("completions", 0.04),
    ("images", 0.05),
    ("error_429", 0.06),
    ("error_400", 0.02),
    ("error_5xx", 0.02),
    ("error_401", 0.01),
)
OPERATION_KINDS: tuple[str, ...] = tuple(kind for kind, _ in _KIND_WEIGHTS)
_KIND_CUM = tuple(itertools.accumulate(weight for _, weight in _KIND_WEIGHTS))

_GATEWAY_SERVICE = "apim-contoso-prod"
_GATEWAY_REGION = {"eastus": "East US", "westeurope": "West Europe", "swedencentral": "West Europe"}
_GA_VERSION = "2024-10-21"
_PREVIEW_VERSION = "2025-01-01-preview"
_USER_COUNT = 40
_APP_COUNT = 8
_APP_SLOTS = {
    "sub-marketing-01": (0,),
    "sub-support-bot": (1, 2),
    "sub-engineering-tools": (3, 4),
    "sub-data-science": (5,),
    "sub-hr-assistant": (6,),
    UNMAPPED_SUBSCRIPTION: (7,),
}
_MS_PER_TOKEN = {
    "gpt-4o": 14.0,
    "gpt-4o-mini": 7.0,
    "gpt-4.1": 16.0,
    "gpt-4.1-mini": 8.0,
    "o4-mini": 9.0,
    "gpt-35-turbo-instruct": 6.0,
}

# fmt: off
_TASKS = (
    "Summarise", "Draft a reply about", "Explain", "List three risks of", "Write release notes for",
    "Translate into French", "Classify the sentiment of", "Suggest a title for", "Review",
    "Outline a migration plan for", "Compare two options for", "Write a haiku about",
)
_ADJECTIVES = (
    "quarterly", "overdue", "flaky", "encrypted", "regional", "legacy", "urgent", "seasonal",
    "shared", "nightly", "duplicated", "premium", "archived", "experimental", "noisy", "green",
)
_NOUNS = (
    "invoice batch", "login page", "rain jacket", "onboarding guide", "refund request",
    "data pipeline", "parental leave policy", "build cache", "pricing page", "warehouse report",
    "support macro", "hiring plan", "churn dashboard", "espresso machine", "firewall rule",
    "sprint retro",
)
_PLACES = (
    "Oslo", "Lisbon", "Austin", "Nairobi", "Osaka", "Denver", "Gdańsk", "Porto", "Quito",
    "Tromsø", "Zürich", "São Paulo", "Kraków", "Dublin", "Montréal", "Perth",
)
_REF_PREFIXES = ("KX", "QA", "ZT", "MB", "RV", "LP", "HW", "JD")
_ANSWER_WORDS = (
    "the", "team", "should", "review", "cost", "before", "launch", "because", "customers", "expect",
    "clear", "pricing", "and", "fast", "refunds", "we", "recommend", "a", "staged", "rollout",
    "with", "weekly", "checkpoints", "risks", "include", "latency", "budget", "overrun", "stale",
    "data", "missing", "owners", "first", "then", "finally", "measure", "adoption", "across",
    "regions", "keep", "scope", "small", "document", "decisions", "in", "the", "wiki", "escalate",
    "blockers", "early", "tone", "friendly", "concise", "accurate", "policy", "requires",
    "approval", "from", "finance", "legal", "tests", "cover", "edge", "cases", "retry", "logic",
    "timeouts", "alerts", "dashboards", "quarter", "forecast", "savings", "of", "about", "percent",
)
# fmt: on
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_FILTER_OK = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
_PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": _FILTER_OK}]


class Usage(NamedTuple):
    """Token counts of one call; cached is part of prompt, reasoning part of completion."""

    prompt: int
    cached: int
    completion: int
    reasoning: int

    @property
    def total(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt + self.completion


class _Request(NamedTuple):
    deployment: Deployment
    api_version: str
    operation_id: str
    path: str
    body: str
    text: str
    max_tokens: int = 16_384


class _Completion(NamedTuple):
    id: str
    created: int
    model: str
    answer: str
    finish_reason: str


class _Exchange(NamedTuple):
    request: _Request
    status: int
    content_type: str | None
    body: str | None
    streamed: bool
    gateway_tokens: dict[str, Any] | None
    elapsed_ms: int
    usage: Usage | None = None
    backend_chosen: bool = True
    omit_gateway_tokens: bool = False


class _Caller(NamedTuple):
    user_id: str | None
    app_id: str
    ip: str


@dataclass(frozen=True)
class _Population:
    callers: dict[str, tuple[tuple[_Caller, ...], tuple[float, ...]]]
    service_callers: dict[str, tuple[_Caller, ...]]


class _Call(NamedTuple):
    envelope: Envelope
    kind: str
    fragment: str
    usage: Usage | None


@dataclass(frozen=True)
class DemoTruth:
    """What a day of demo traffic deliberately contains, for assertions on the pipeline's output."""

    duplicate_request_ids: tuple[str, ...]
    invalid_request_ids: dict[str, str]
    expected_valid_calls: int
    envelopes_emitted: int
    kind_counts: dict[str, int] = field(default_factory=dict)
    text_fragments: tuple[str, ...] = ()
    passthrough_usage: dict[str, Usage] = field(default_factory=dict)


# ---------------------------------------------------------------------------- public API


def generate_day(day: date, seed: int = 7, calls: int = 4000) -> Iterator[Envelope]:
    """Yield the day's envelopes in timestamp order, including the deliberate failures."""
    for envelope, _call, _fault in _day_emissions(day, seed, calls):
        yield envelope


def generate_day_with_truth(
    day: date, seed: int = 7, calls: int = 4000
) -> tuple[list[Envelope], DemoTruth]:
    """Return the same envelopes as `generate_day` plus what was injected on purpose."""
    envelopes: list[Envelope] = []
    duplicates: dict[str, None] = {}
    invalid: dict[str, str] = {}
    kinds: dict[str, int] = dict.fromkeys(OPERATION_KINDS, 0)
    fragments: list[str] = []
    passthrough: dict[str, Usage] = {}
    previous: _Call | None = None
    for envelope, call, fault in _day_emissions(day, seed, calls):
        envelopes.append(envelope)
        if call is previous:
            continue
        previous = call
        request_id = envelope["request_id"]
        kinds[call.kind] += 1
        fragments.append(call.fragment)
        if fault == "duplicate":
            duplicates[request_id] = None
        elif fault is not None:
            invalid[request_id] = fault
            continue
        if call.kind == "chat_stream_passthrough" and call.usage is not None:
            passthrough[request_id] = call.usage
    truth = DemoTruth(
        duplicate_request_ids=tuple(duplicates),
        invalid_request_ids=invalid,
        expected_valid_calls=calls - len(invalid),
        envelopes_emitted=len(envelopes),
        kind_counts=kinds,
        text_fragments=_spread(fragments, 24),
        passthrough_usage=passthrough,
    )
    return envelopes, truth


def generate_hour(hour_start: datetime, seed: int = 7, calls: int = 200) -> Iterator[Envelope]:
    """Yield `calls` clean envelopes for one hour; equal to that hour of `generate_day` before
    failure injection when `calls` is the day's count for the hour."""
    population = _population(seed)
    for call in _hour_calls(_utc_hour(hour_start), seed, calls, population, {}):
        yield call.envelope


HISTORY_DAYS = 7
HISTORY_HOURS = (9, 13, 17)
SPIKE_SUBSCRIPTION = "sub-data-science"
SPIKE_HOURS = (20, 21, 22, 23)


def generate_history(
    day: date, seed: int = 7, calls: int = 4000, days: int = HISTORY_DAYS
) -> Iterator[Envelope]:
    """Clean traffic for the `days` days before `day`, `calls` a day like `generate_day`, packed
    into HISTORY_HOURS: a trailing week for the cost-anomaly mart at a few hourly runs a day.

    Fewer calls would be cheaper but not comparable: the demo day would look like a spike for
    every cost center.
    """
    population = _population(seed)
    for back in range(days, 0, -1):
        past = day - timedelta(days=back)
        for hour, count in zip(HISTORY_HOURS, _split(calls, len(HISTORY_HOURS)), strict=True):
            hour_start = datetime(past.year, past.month, past.day, hour, tzinfo=UTC)
            for call in _hour_calls(hour_start, seed, count, population, {}):
                yield call.envelope


def generate_spike(day: date, seed: int = 7, calls: int = 500) -> Iterator[Envelope]:
    """Extra chat calls of one subscription (a batch job) in the last hours of `day`: the cost
    anomaly of the demo. Its own random streams, so `generate_day` is unchanged."""
    population = _population(seed)
    sub = next(s for s in SUBSCRIPTIONS if s.id == SPIKE_SUBSCRIPTION)
    for hour, count in zip(SPIKE_HOURS, _split(calls, len(SPIKE_HOURS)), strict=True):
        hour_start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        label = f"{seed}/{hour_start:%Y-%m-%dT%H}/spike"
        offsets = sorted(Random(label).randrange(3_600_000) for _ in range(count))
        for index, offset in enumerate(offsets):
            rng = Random(f"{label}/{index}")
            ts = hour_start + timedelta(milliseconds=offset)
            yield _build_call(rng, ts, population, "chat", sub).envelope


def history_hour_keys(day: date, days: int = HISTORY_DAYS) -> list[str]:
    """The partition keys `generate_history` fills, oldest first."""
    return [
        hour_key(datetime(past.year, past.month, past.day, hour, tzinfo=UTC))
        for past in (day - timedelta(days=back) for back in range(days, 0, -1))
        for hour in HISTORY_HOURS
    ]


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal counts, the larger ones first."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def hour_call_counts(calls: int) -> list[int]:
    """Split `calls` over the 24 UTC hours along a diurnal curve, at least a handful per hour."""
    if calls < 0:
        raise ValueError(f"calls must be >= 0, got {calls}")
    floor = min(5, calls // 24)
    rest = calls - 24 * floor
    weights = [_diurnal_weight(hour) for hour in range(24)]
    total = sum(weights)
    exact = [rest * weight / total for weight in weights]
    counts = [int(share) for share in exact]
    by_remainder = sorted(range(24), key=lambda hour: counts[hour] - exact[hour])
    for hour in by_remainder[: rest - sum(counts)]:
        counts[hour] += 1
    return [floor + count for count in counts]


# ---------------------------------------------------------------------------- the day


def _day_emissions(
    day: date, seed: int, calls: int
) -> Iterator[tuple[Envelope, _Call, str | None]]:
    """Yield (envelope, call, fault) for the whole day; a duplicate yields its call twice."""
    population = _population(seed)
    plan = _fault_plan(seed, day, calls)
    first = 0
    for hour, count in enumerate(hour_call_counts(calls)):
        hour_start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        hour_plan = {p - first: f for p, f in plan.items() if first <= p < first + count}
        first += count
        for index, call in enumerate(_hour_calls(hour_start, seed, count, population, hour_plan)):
            fault = hour_plan.get(index)
            if fault == "duplicate":
                yield call.envelope, call, fault
                yield orjson.loads(orjson.dumps(call.envelope)), call, fault
            elif fault is not None:
                yield _inject(call.envelope, fault), call, fault
            else:
                yield call.envelope, call, None


def _hour_calls(
    hour_start: datetime, seed: int, calls: int, population: _Population, plan: dict[int, str]
) -> Iterator[_Call]:
    """Build the hour's calls in timestamp order, forcing a plain chat where a fault needs usage."""
    hour_rng = Random(f"{seed}/{hour_start:%Y-%m-%dT%H}")
    offsets = sorted(hour_rng.randrange(3_600_000) for _ in range(calls))
    for index, offset in enumerate(offsets):
        rng = Random(f"{seed}/{hour_start:%Y-%m-%dT%H}/{index}")
        forced = "chat" if plan.get(index) in ("negative_tokens", "absurd_tokens") else None
        yield _build_call(rng, hour_start + timedelta(milliseconds=offset), population, forced)


def _fault_plan(seed: int, day: date, calls: int) -> dict[int, str]:
    """Pick which call positions of the day become invalid or redelivered (~1% in all)."""
    rng = Random(f"{seed}/{day.isoformat()}/faults")
    per_reason = max(1, calls // 2000)
    labels = [reason for reason in INVALID_REASONS for _ in range(per_reason)]
    labels += ["duplicate"] * max(1, round(calls * 0.01) - len(labels))
    positions = rng.sample(range(calls), min(calls, len(labels)))
    return dict(zip(positions, labels, strict=False))


def _inject(envelope: Envelope, reason: str) -> Envelope:
    """Return a copy of the envelope broken in the way `reason` names."""
    broken: Envelope = orjson.loads(orjson.dumps(envelope))
    if reason == "unknown_schema_major":
        broken["schema_version"] = "2.0"
    elif reason == "wrong_type":
        broken["elapsed_ms"] = str(broken["elapsed_ms"])
    elif reason == "missing_section":
        del broken["response"]
    elif reason == "negative_tokens":
        _rewrite_usage(broken, lambda usage: {**usage, "completion_tokens": -37})
    elif reason == "absurd_tokens":
        _rewrite_usage(broken, lambda usage: {**usage, "prompt_tokens": ABSURD_TOKENS})
    return broken


def _rewrite_usage(envelope: Envelope, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite the response body's usage (and total), dropping gateway counts that would mask it."""
    response = envelope["response"]
    body = orjson.loads(response["body"])
    usage = change(body["usage"])
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    body["usage"] = usage
    response["body"] = _dumps(body)
    response["body_bytes"] = _nbytes(response["body"])
    envelope["gateway_tokens"] = None


def _diurnal_weight(hour: int) -> float:
    """Relative traffic of a UTC hour: a quiet floor plus a business-hours bump around 13:30."""
    return 0.08 + math.exp(-0.5 * ((hour + 0.5 - 13.5) / 3.2) ** 2)


def _utc_hour(moment: datetime) -> datetime:
    """Return the moment as an aware UTC datetime, refusing one that is not on the hour."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if (utc.minute, utc.second, utc.microsecond) != (0, 0, 0):
        raise ValueError(f"hour_start must be on the hour, got {moment.isoformat()}")
    return utc


def _spread(items: list[str], count: int) -> tuple[str, ...]:
    """Pick up to `count` items evenly spaced through the list."""
    step = max(1, len(items) // count)
    return tuple(items[::step][:count])


# ---------------------------------------------------------------------------- who calls


@functools.lru_cache(maxsize=8)
def _population(seed: int) -> _Population:
    """Draw ~40 users and 8 apps spread over the subscriptions, with a few heavy users."""
    rng = Random(f"{seed}/population")
    apps = [_Caller(None, _guid(rng), _ip(rng)) for _ in range(_APP_COUNT)]
    users = [(_guid(rng), _ip(rng)) for _ in range(_USER_COUNT)]
    homes = [sub.id for sub in SUBSCRIPTIONS] * 2
    homes += rng.choices(
        homes, weights=[sub.weight for sub in SUBSCRIPTIONS] * 2, k=_USER_COUNT - len(homes)
    )
    callers: dict[str, tuple[tuple[_Caller, ...], tuple[float, ...]]] = {}
    service: dict[str, tuple[_Caller, ...]] = {}
    for sub in SUBSCRIPTIONS:
        sub_apps = [apps[slot] for slot in _APP_SLOTS[sub.id]]
        ranked = [
            (rank, user)
            for rank, (user, home) in enumerate(zip(users, homes, strict=True))
            if home == sub.id
        ]
        members = tuple(
            _Caller(user_id, sub_apps[rank % len(sub_apps)].app_id, ip)
            for rank, (user_id, ip) in ranked
        )
        # Zipf-like weights over the global rank make a handful of users dominate.
        weights = tuple(1.0 / (rank + 1) ** 1.1 for rank, _ in ranked)
        callers[sub.id] = (members, weights)
        service[sub.id] = tuple(sub_apps)
    return _Population(callers, service)


def _pick_caller(rng: Random, population: _Population, sub: Subscription) -> _Caller:
    """Pick a user of the subscription, or now and then its app calling on its own."""
    if rng.random() < 0.06:
        return rng.choice(population.service_callers[sub.id])
    members, weights = population.callers[sub.id]
    return rng.choices(members, weights=weights)[0]


def _tags(rng: Random, sub: Subscription, day: date) -> dict[str, str]:
    """Draw the x-chargeback-* headers: mostly the own cost center, sometimes another or none."""
    own = cost_center_on(sub.id, day)
    roll = rng.random()
    tags: dict[str, str] = {}
    if roll < 0.70 and own is not None:
        tags["cost-center"] = own
    elif 0.70 <= roll < 0.80:
        others = [cc for cc in known_cost_centers(day) if cc != own]
        tags["cost-center"] = rng.choice(others)
    elif 0.80 <= roll < 0.83:
        tags["cost-center"] = UNKNOWN_COST_CENTER
    if rng.random() < 0.9:
        tags["project"] = rng.choice(sub.projects)
    return tags


def cost_center_on(subscription_id: str, day: date) -> str | None:
    """Return the subscription's cost center in force on the day per cost_centers.csv, or None."""
    for sub_id, cost_center, start, end in COST_CENTER_HISTORY:
        if sub_id == subscription_id and start <= day and (end is None or day < end):
            return cost_center
    return None


def known_cost_centers(day: date) -> tuple[str, ...]:
    """Return the cost centers some subscription maps to on the day."""
    return tuple(
        cc
        for _, cc, start, end in COST_CENTER_HISTORY
        if start <= day and (end is None or day < end)
    )


# ---------------------------------------------------------------------------- one call


def _build_call(
    rng: Random,
    ts: datetime,
    population: _Population,
    forced_kind: str | None,
    forced_subscription: Subscription | None = None,
) -> _Call:
    """Draw one complete call: who, what operation, and the exchange with the backend."""
    kind = forced_kind or rng.choices(OPERATION_KINDS, cum_weights=_KIND_CUM)[0]
    request_id = _guid(rng)
    sub = (
        forced_subscription
        or rng.choices(SUBSCRIPTIONS, weights=[s.weight for s in SUBSCRIPTIONS])[0]
    )
    caller = _pick_caller(rng, population, sub)
    tags = _tags(rng, sub, ts.date())
    exchange = _BUILDERS[kind](rng, ts, _ref(rng))
    envelope = _assemble(request_id, ts, sub, caller, tags, exchange)
    return _Call(envelope, kind, exchange.request.text, exchange.usage)


def _assemble(
    request_id: str,
    ts: datetime,
    sub: Subscription,
    caller: _Caller,
    tags: dict[str, str],
    exchange: _Exchange,
) -> Envelope:
    """Lay the call out as the APIM policy does, key order as in the shared examples."""
    request = exchange.request
    deployment = request.deployment
    # A 401 is answered by APIM before it knows the subscription or picks a backend.
    known = exchange.status != 401
    envelope: Envelope = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "timestamp": _iso(ts),
        "elapsed_ms": exchange.elapsed_ms,
        "gateway": {"service": _GATEWAY_SERVICE, "region": _GATEWAY_REGION[deployment.region]},
        "api": {"id": "azure-openai", "operation_id": request.operation_id},
        "subscription": {"id": sub.id, "name": sub.name} if known else None,
        "product": {"id": sub.product_id, "name": PRODUCT_NAMES[sub.product_id]} if known else None,
        "caller": {"user_id": caller.user_id, "app_id": caller.app_id, "ip": caller.ip},
        "tags": tags,
        "backend": {
            "id": deployment.backend_id if exchange.backend_chosen else None,
            "deployment": deployment.deployment,
            "api_version": request.api_version,
        },
        "request": {
            "method": "POST",
            "path": request.path,
            "content_type": "application/json",
            "body": request.body,
            "body_bytes": _nbytes(request.body),
            "truncated": False,
        },
        "response": {
            "status": exchange.status,
            "content_type": exchange.content_type,
            "body": exchange.body,
            "body_bytes": None if exchange.body is None else _nbytes(exchange.body),
            "streamed": exchange.streamed,
            "truncated": False,
        },
        "gateway_tokens": exchange.gateway_tokens,
    }
    if exchange.omit_gateway_tokens:
        del envelope["gateway_tokens"]
    return envelope


# ---------------------------------------------------------------------------- operations


def _chat(rng: Random, ts: datetime, ref: str, mode: str | None) -> _Exchange:
    """A chat completion: plain JSON, buffered SSE, or passthrough SSE (no body)."""
    # The buffered-mode inbound policy injects include_usage; some older clients' calls lack it.
    include_usage = mode == "buffered" and rng.random() < 0.85
    request = _chat_request(rng, ref, mode is not None, include_usage)
    deployment = request.deployment
    usage = _chat_usage(rng, deployment, request.max_tokens)
    completion = _Completion(
        id="chatcmpl-" + _token(rng, 29),
        created=int(ts.timestamp()),
        model=deployment.model,
        answer=_answer(rng, ref, usage.completion - usage.reasoning),
        finish_reason="length" if usage.completion >= request.max_tokens else "stop",
    )
    elapsed = _latency(rng, deployment, usage)
    if mode is None:
        body = _dumps(_chat_body(rng, completion, usage))
        gateway = _gateway_exact(usage) if rng.random() < 0.9 else None
        return _Exchange(request, 200, "application/json", body, False, gateway, elapsed, usage)
    stream: str | None = None
    if mode == "buffered":
        stream = _chat_sse(rng, completion, usage if include_usage else None)
    gateway = _gateway_estimate(rng, usage)
    return _Exchange(request, 200, "text/event-stream", stream, True, gateway, elapsed, usage)


def _chat_request(rng: Random, ref: str, stream: bool, include_usage: bool) -> _Request:
    """Draw the deployment and the JSON body of a chat completion request."""
    deployment = _pick_deployment(rng, _CHAT_MIX)
    # Decided from the call's reference, not drawn from rng, so every other call stays the same.
    if deployment is DEPLOYMENTS[0] and Random(f"ptu/{ref}").random() < _PTU_SHARE:
        deployment = PTU
    version = _api_version(rng, deployment)
    text = _prompt(rng, ref)
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": _system_prompt(rng)},
            {"role": "user", "content": text},
        ]
    }
    limit = rng.choice((512, 1024, 2048, 4096))
    if deployment.deployment.startswith("o"):
        limit = 4096
        body["max_completion_tokens"] = limit
        body["reasoning_effort"] = rng.choice(("low", "medium", "high"))
    else:
        body["max_tokens"] = limit
        body["temperature"] = rng.choice((0.0, 0.2, 0.7))
    if stream:
        body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    path = f"/openai/deployments/{deployment.deployment}/chat/completions?api-version={version}"
    return _Request(deployment, version, "ChatCompletions_Create", path, _dumps(body), text, limit)


def _chat_body(rng: Random, completion: _Completion, usage: Usage) -> dict[str, Any]:
    """A non-streamed chat.completion response object."""
    return {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": "fp_" + rng.randbytes(5).hex(),
        "prompt_filter_results": _PROMPT_FILTER,
        "choices": [
            {
                "index": 0,
                "finish_reason": completion.finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "content": completion.answer},
                "content_filter_results": _FILTER_OK,
            }
        ],
        "usage": _chat_usage_body(usage),
    }


def _chat_sse(rng: Random, completion: _Completion, usage: Usage | None) -> str:
    """Azure's chat SSE: prompt-filter frame, deltas, finish, optional usage chunk, [DONE]."""
    head = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.model,
    }
    filter_frame = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": _PROMPT_FILTER,
    }
    frames = [filter_frame, _chunk(head, {"role": "assistant", "content": ""}, None)]
    pieces = _pieces(rng, completion.answer)
    frames += [_chunk(head, {"content": piece}, None) for piece in pieces]
    frames.append(_chunk(head, {}, completion.finish_reason))
    if usage is not None:
        frames.append({**head, "choices": [], "usage": _chat_usage_body(usage)})
    return "".join(f"data: {_dumps(frame)}\n\n" for frame in frames) + "data: [DONE]\n\n"


def _chunk(head: dict[str, Any], delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    """One chat.completion.chunk frame."""
    return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _chat_usage_body(usage: Usage) -> dict[str, Any]:
    """The chat/completions `usage` object with its details."""
    return {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.total,
        "prompt_tokens_details": {"cached_tokens": usage.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_output(rng: Random, answer: str, reasoning: int) -> list[dict[str, Any]]:
    """The `output` items of a Responses API answer: a reasoning item if it reasoned, a message."""
    message = {
        "type": "message",
        "id": "msg_" + rng.randbytes(12).hex(),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": answer, "annotations": []}],
    }
    if not reasoning:
        return [message]
    return [{"type": "reasoning", "id": "rs_" + rng.randbytes(12).hex(), "summary": []}, message]


def _responses(rng: Random, ts: datetime, ref: str, stream: bool) -> _Exchange:
    """A Responses API call, JSON or SSE ending in `response.completed`."""
    request = _responses_request(rng, ref, stream)
    deployment = request.deployment
    usage = _chat_usage(rng, deployment, request.max_tokens)
    answer = _answer(rng, ref, usage.completion - usage.reasoning)
    response_id = "resp_" + rng.randbytes(12).hex()
    output = responses_output(rng, answer, usage.reasoning)
    done = {
        "id": response_id,
        "object": "response",
        "created_at": int(ts.timestamp()),
        "status": "completed",
        "model": deployment.model,
        "output": output,
        "usage": _responses_usage_body(usage),
    }
    elapsed = _latency(rng, deployment, usage)
    if stream:
        body = _responses_sse(rng, done, answer)
        estimate = _gateway_estimate(rng, usage)
        return _Exchange(request, 200, "text/event-stream", body, True, estimate, elapsed, usage)
    # Like the shared example, some Responses API envelopes carry no gateway_tokens key at all.
    omit = rng.random() < 0.5
    return _Exchange(
        request,
        200,
        "application/json",
        _dumps(done),
        False,
        None if omit else _gateway_exact(usage),
        elapsed,
        usage,
        omit_gateway_tokens=omit,
    )


def _responses_request(rng: Random, ref: str, stream: bool) -> _Request:
    """Draw the deployment and the JSON body of a Responses API request."""
    deployment = _pick_deployment(rng, _RESPONSES_MIX)
    text = _prompt(rng, ref)
    body: dict[str, Any] = {"model": deployment.deployment, "input": text}
    if rng.random() < 0.5:
        body["instructions"] = _system_prompt(rng)
    if stream:
        body["stream"] = True
    return _Request(deployment, "v1", "createResponse", "/openai/v1/responses", _dumps(body), text)


def _responses_usage_body(usage: Usage) -> dict[str, Any]:
    """The Responses API `usage` object."""
    return {
        "input_tokens": usage.prompt,
        "input_tokens_details": {"cached_tokens": usage.cached},
        "output_tokens": usage.completion,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.total,
    }


def _responses_sse(rng: Random, done: dict[str, Any], answer: str) -> str:
    """The Responses API event stream from `response.created` to `response.completed`."""
    pending = {**done, "status": "in_progress", "output": [], "usage": None}
    message = done["output"][-1]
    index = len(done["output"]) - 1
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": message["id"], "output_index": index, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
    ]
    if index:
        events.append(
            ("response.output_item.added", {"output_index": 0, "item": done["output"][0]})
        )
        events.append(("response.output_item.done", {"output_index": 0, "item": done["output"][0]}))
    events.append(
        (
            "response.output_item.added",
            {"output_index": index, "item": {**message, "status": "in_progress", "content": []}},
        )
    )
    events.append(("response.content_part.added", {**at, "part": part}))
    events += [("response.output_text.delta", {**at, "delta": p}) for p in _pieces(rng, answer)]
    events.append(("response.output_text.done", {**at, "text": answer}))
    events.append(("response.content_part.done", {**at, "part": {**part, "text": answer}}))
    events.append(("response.output_item.done", {"output_index": index, "item": message}))
    events.append(("response.completed", {"response": done}))
    return "".join(
        f"event: {name}\ndata: {_dumps({'type': name, 'sequence_number': n, **payload})}\n\n"
        for n, (name, payload) in enumerate(events)
    )


def _embeddings(rng: Random, ts: datetime, ref: str) -> _Exchange:
    """An embeddings call; the vectors make the response body 20-40 KB."""
    request = _embeddings_request(rng, ref)
    deployment = request.deployment
    inputs: list[str] = orjson.loads(request.body)["input"]
    tokens = sum(len(text.split()) * 4 // 3 + 2 for text in inputs)
    pool = _vector_pool(3072 if deployment.deployment.endswith("large") else 1536)
    data = []
    for index in range(len(inputs)):
        vector = rng.choice(pool)
        shift = rng.randrange(len(vector))
        data.append(
            {"object": "embedding", "index": index, "embedding": vector[shift:] + vector[:shift]}
        )
    body = _dumps(
        {
            "object": "list",
            "data": data,
            "model": deployment.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
    usage = Usage(tokens, 0, 0, 0)
    gateway = _gateway_exact(usage) if rng.random() < 0.5 else None
    elapsed = 40 + int(rng.random() * 300) + tokens // 10
    return _Exchange(request, 200, "application/json", body, False, gateway, elapsed, usage)


def _embeddings_request(rng: Random, ref: str) -> _Request:
    """Draw the embedding deployment and its inputs (one for large, two for small)."""
    deployment = _pick_deployment(rng, _EMBEDDING_MIX)
    count = 1 if deployment.deployment.endswith("large") else 2
    inputs = [_passage(rng, ref) for _ in range(count)]
    path = f"/openai/deployments/{deployment.deployment}/embeddings?api-version={_GA_VERSION}"
    body = _dumps({"input": inputs})
    return _Request(deployment, _GA_VERSION, "embeddings_create", path, body, inputs[0])


def _completions(rng: Random, ts: datetime, ref: str) -> _Exchange:
    """A legacy completions call on gpt-35-turbo-instruct."""
    request = _completions_request(rng, ref)
    deployment = request.deployment
    prompt_tokens = len(request.text.split()) * 4 // 3 + _lognormal_int(rng, 200, 0.8, 5, 3000)
    usage = Usage(prompt_tokens, 0, _lognormal_int(rng, 120, 0.7, 5, 1500), 0)
    body = {
        "id": "cmpl-" + _token(rng, 29),
        "object": "text_completion",
        "created": int(ts.timestamp()),
        "model": deployment.model,
        "prompt_filter_results": _PROMPT_FILTER,
        "choices": [
            {
                "text": "\n\n" + _answer(rng, ref, usage.completion),
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "content_filter_results": _FILTER_OK,
            }
        ],
        "usage": {
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": usage.total,
        },
    }
    gateway = _gateway_exact(usage) if rng.random() < 0.8 else None
    elapsed = _latency(rng, deployment, usage)
    return _Exchange(request, 200, "application/json", _dumps(body), False, gateway, elapsed, usage)


def _completions_request(rng: Random, ref: str) -> _Request:
    """The JSON body of a legacy completions request."""
    deployment = _deployment("gpt-35-turbo-instruct")
    text = _prompt(rng, ref)
    body = {"prompt": text, "max_tokens": rng.choice((128, 256, 512)), "temperature": 0.2}
    path = f"/openai/deployments/{deployment.deployment}/completions?api-version={_GA_VERSION}"
    return _Request(deployment, _GA_VERSION, "Completions_Create", path, _dumps(body), text)


def _images(rng: Random, ts: datetime, ref: str) -> _Exchange:
    """A dall-e-3 image generation: no usage, 1-2 images as URL or (short, fake) base64."""
    request = _images_request(rng, ref)
    spec = orjson.loads(request.body)
    data = []
    for index in range(spec["n"]):
        image: dict[str, Any] = {"revised_prompt": f"A detailed illustration: {request.text}"}
        if spec["response_format"] == "url":
            image["url"] = (
                "https://dalleprodsec.blob.core.windows.net/private/images/"
                f"{_guid(rng)}/generated_{index:02d}.png?se={ts:%Y-%m-%d}&sig={_token(rng, 43)}"
            )
        else:
            image["b64_json"] = base64.b64encode(rng.randbytes(rng.randint(48, 96))).decode()
        image["content_filter_results"] = _FILTER_OK
        data.append(image)
    body = _dumps({"created": int(ts.timestamp()), "data": data})
    elapsed = sum(rng.randint(6000, 15000) for _ in range(spec["n"]))
    gateway = None
    return _Exchange(request, 200, "application/json", body, False, gateway, elapsed)


def _images_request(rng: Random, ref: str) -> _Request:
    """The JSON body of a dall-e-3 image generation request."""
    deployment = _deployment("dall-e-3")
    subject = f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} for {rng.choice(_PLACES)}"
    text = f"Poster of {subject}, watercolor style (ref {ref})"
    body = {
        "prompt": text,
        "n": rng.choices((1, 2), weights=(0.8, 0.2))[0],
        "size": rng.choice(("1024x1024", "1792x1024", "1024x1792")),
        "quality": rng.choice(("standard", "hd")),
        "style": rng.choice(("vivid", "natural")),
        "response_format": rng.choices(("url", "b64_json"), weights=(0.7, 0.3))[0],
    }
    path = f"/openai/deployments/dall-e-3/images/generations?api-version={_GA_VERSION}"
    return _Request(deployment, _GA_VERSION, "ImageGenerations_Create", path, _dumps(body), text)


def _error(rng: Random, ts: datetime, ref: str, status: int) -> _Exchange:
    """A failed call: APIM or Azure OpenAI error text, no usage, no gateway token counts."""
    operations = ("chat", "responses", "images") if status == 400 else _ERROR_OPERATIONS
    operation = rng.choices(operations, weights=(70, 15, 10, 5)[: len(operations)])[0]
    request = _ERROR_REQUESTS[operation](rng, ref)
    if status == 500 and rng.random() < 0.5:
        status = 503
    body, elapsed, chosen = _error_body(rng, request, status)
    return _Exchange(
        request, status, "application/json", body, False, None, elapsed, backend_chosen=chosen
    )


def _error_body(rng: Random, request: _Request, status: int) -> tuple[str, int, bool]:
    """Return the error body, the elapsed time and whether APIM had chosen a backend."""
    if status == 401:
        message = (
            "Access denied due to invalid subscription key. Make sure to provide a valid "
            "key for an active subscription."
        )
        return _dumps({"statusCode": 401, "message": message}), rng.randint(1, 12), False
    if status == 429 and rng.random() < 0.4:
        # APIM's own token-limit policy answers before any backend is called.
        message = f"Token limit is exceeded. Try again in {rng.randint(2, 50)} seconds."
        return _dumps({"statusCode": 429, "message": message}), rng.randint(2, 20), True
    if status == 429:
        message = (
            f"Requests to the {request.operation_id} Operation have exceeded the token "
            f"rate limit. Please retry after {rng.randint(1, 60)} seconds."
        )
        return _dumps({"error": {"code": "429", "message": message}}), rng.randint(20, 90), True
    if status == 400:
        return _dumps(_content_filter_error(rng)), rng.randint(150, 600), True
    if status == 500:
        message = "The server had an error while processing your request. Sorry about that!"
        error = {"error": {"code": "InternalServerError", "message": message}}
        return _dumps(error), rng.randint(300, 4000), True
    message = "The service is temporarily unable to process your request. Please try again later."
    error = {"error": {"code": "ServiceUnavailable", "message": message}}
    return _dumps(error), rng.randint(50, 1500), True


def _content_filter_error(rng: Random) -> dict[str, Any]:
    """Azure's 400 for a prompt blocked by the content filter."""
    category = rng.choice(("hate", "self_harm", "sexual", "violence"))
    results = {
        **_FILTER_OK,
        category: {"filtered": True, "severity": rng.choice(("medium", "high"))},
    }
    message = (
        "The response was filtered due to the prompt triggering Azure OpenAI's content management "
        "policy. Please modify your prompt and retry."
    )
    return {
        "error": {
            "message": message,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": results,
            },
        }
    }


# ---------------------------------------------------------------------------- numbers


def _chat_usage(rng: Random, deployment: Deployment, limit: int) -> Usage:
    """Draw chat token counts: long-tailed prompts, some cached, reasoning on o-series; the
    completion stays within the request's token limit."""
    prompt = _lognormal_int(rng, 700, 1.1, 12, 60_000)
    cached = 0
    # Azure caches prompt prefixes of at least 1,024 tokens in 128-token steps.
    if prompt >= 1024 and rng.random() < 0.4:
        cached = 1024 + 128 * rng.randint(0, (prompt - 1024) // 128)
    reasoning = 64 * rng.randint(1, 40) if deployment.deployment.startswith("o") else 0
    visible = _lognormal_int(rng, 180, 0.8, 1, limit - reasoning)
    return Usage(prompt, cached, visible + reasoning, reasoning)


def _gateway_exact(usage: Usage) -> dict[str, Any]:
    """APIM's counts when it read the usage from the response."""
    return {
        "prompt": usage.prompt,
        "completion": usage.completion,
        "total": usage.total,
        "estimated": False,
    }


def _gateway_estimate(rng: Random, usage: Usage) -> dict[str, Any]:
    """APIM's own estimate for streams: close to, but not exactly, the real usage."""
    prompt = max(1, round(usage.prompt * rng.uniform(0.92, 1.08)))
    completion = max(1, round(usage.completion * rng.uniform(0.97, 1.03)))
    return {
        "prompt": prompt,
        "completion": completion,
        "total": prompt + completion,
        "estimated": True,
    }


def _latency(rng: Random, deployment: Deployment, usage: Usage) -> int:
    """Gateway time: a base, prompt processing and a per-completion-token rate."""
    rate = (
        _PTU_MS_PER_TOKEN if deployment is PTU else _MS_PER_TOKEN.get(deployment.deployment, 10.0)
    )
    per_token = rate * rng.uniform(0.8, 1.25)
    return int(120 + rng.random() * 300 + usage.prompt * 0.03 + usage.completion * per_token)


def _lognormal_int(rng: Random, median: float, sigma: float, low: int, high: int) -> int:
    """Draw a long-tailed integer clamped to [low, high]."""
    return max(low, min(high, int(rng.lognormvariate(math.log(median), sigma))))


@functools.lru_cache(maxsize=4)
def _vector_pool(dims: int) -> tuple[list[float], ...]:
    """A few fixed unit-scale vectors; calls rotate one, which is cheap and varied enough."""
    rng = Random(f"vectors/{dims}")
    return tuple([round(rng.gauss(0.0, 0.03), 8) for _ in range(dims)] for _ in range(6))


# ---------------------------------------------------------------------------- text


def _prompt(rng: Random, ref: str) -> str:
    """A short, recognisable user prompt, unique per call through its reference."""
    return (
        f"{rng.choice(_TASKS)} the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} "
        f"for the {rng.choice(_PLACES)} team (ref {ref})."
    )


def _system_prompt(rng: Random) -> str:
    """A system message of the kind teams configure."""
    place = rng.choice(_PLACES)
    return f"You are Contoso's assistant for the {place} office. Answer briefly and cite sources."


def _passage(rng: Random, ref: str) -> str:
    """A document chunk to embed."""
    words = " ".join(rng.choices(_ANSWER_WORDS, k=rng.randint(12, 48)))
    topic = f"{rng.choice(_NOUNS)}, {rng.choice(_ADJECTIVES)}, {rng.choice(_PLACES)}"
    return f"{topic} (ref {ref}): {words}"


def _answer(rng: Random, ref: str, tokens: int) -> str:
    """Completion text of roughly `tokens` tokens (capped, the numbers come from usage)."""
    words = rng.choices(_ANSWER_WORDS, k=min(120, max(3, tokens * 3 // 4)))
    sentences = [" ".join(words[i : i + 9]).capitalize() + "." for i in range(0, len(words), 9)]
    return f"Regarding {ref}: " + " ".join(sentences)


def _pieces(rng: Random, text: str) -> list[str]:
    """Cut text into stream deltas of 1-3 words whose concatenation is the text."""
    words = text.split(" ")
    pieces = []
    start = 0
    while start < len(words):
        end = min(len(words), start + rng.randint(1, 3))
        pieces.append(" ".join(words[start:end]) + (" " if end < len(words) else ""))
        start = end
    return pieces


def _ref(rng: Random) -> str:
    """A ticket-like reference that makes a call's text findable."""
    return f"{rng.choice(_REF_PREFIXES)}-{rng.randrange(10_000, 100_000)}"


# ---------------------------------------------------------------------------- small helpers


def _guid(rng: Random) -> str:
    """A UUID4-shaped string from the generator."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _token(rng: Random, length: int) -> str:
    """A random alphanumeric identifier."""
    return "".join(rng.choices(_ALNUM, k=length))


def _ip(rng: Random) -> str:
    """An address from the documentation ranges."""
    return f"{rng.choice(('203.0.113', '198.51.100'))}.{rng.randint(1, 254)}"


def _iso(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, as APIM's context.Timestamp."""
    return f"{ts:%Y-%m-%dT%H:%M:%S}.{ts.microsecond // 1000:03d}Z"


def _dumps(obj: Any) -> str:
    """Compact JSON text, non-ASCII kept as UTF-8 like the real APIs."""
    return orjson.dumps(obj).decode()


def _nbytes(text: str) -> int:
    """UTF-8 length of a body."""
    return len(text.encode())


def _deployment(name: str) -> Deployment:
    """The first deployments.csv row of a deployment name."""
    return next(row for row in DEPLOYMENTS if row.deployment == name)


def _pick_deployment(rng: Random, mix: tuple[tuple[Deployment, float], ...]) -> Deployment:
    """Draw a deployment row from a weighted mix."""
    return rng.choices([row for row, _ in mix], weights=[weight for _, weight in mix])[0]


def _api_version(rng: Random, deployment: Deployment) -> str:
    """o-series needs a preview API version; other calls mostly use GA."""
    if deployment.deployment.startswith("o") or rng.random() < 0.2:
        return _PREVIEW_VERSION
    return _GA_VERSION


_CHAT_MIX: tuple[tuple[Deployment, float], ...] = (
    (DEPLOYMENTS[0], 15.0),
    (DEPLOYMENTS[1], 10.0),
    (DEPLOYMENTS[2], 30.0),
    (DEPLOYMENTS[3], 10.0),
    (DEPLOYMENTS[4], 20.0),
    (DEPLOYMENTS[5], 15.0),
)
_RESPONSES_MIX: tuple[tuple[Deployment, float], ...] = (
    (_deployment("o4-mini"), 40.0),
    (_deployment("gpt-4.1"), 35.0),
    (DEPLOYMENTS[0], 25.0),
)
_EMBEDDING_MIX: tuple[tuple[Deployment, float], ...] = (
    (_deployment("text-embedding-3-large"), 60.0),
    (_deployment("text-embedding-3-small"), 40.0),
)
_ERROR_OPERATIONS = ("chat", "responses", "embeddings", "images")
_ERROR_REQUESTS: dict[str, Callable[[Random, str], _Request]] = {
    "chat": lambda rng, ref: _chat_request(rng, ref, False, False),
    "responses": lambda rng, ref: _responses_request(rng, ref, False),
    "embeddings": _embeddings_request,
    "images": _images_request,
}
_BUILDERS: dict[str, Callable[[Random, datetime, str], _Exchange]] = {
    "chat": lambda rng, ts, ref: _chat(rng, ts, ref, None),
    "chat_stream": lambda rng, ts, ref: _chat(rng, ts, ref, "buffered"),
    "chat_stream_passthrough": lambda rng, ts, ref: _chat(rng, ts, ref, "passthrough"),
    "responses": lambda rng, ts, ref: _responses(rng, ts, ref, False),
    "responses_stream": lambda rng, ts, ref: _responses(rng, ts, ref, True),
    "embeddings": _embeddings,
    "completions": _completions,
    "images": _images,
    "error_429": lambda rng, ts, ref: _error(rng, ts, ref, 429),
    "error_400": lambda rng, ts, ref: _error(rng, ts, ref, 400),
    "error_5xx": lambda rng, ts, ref: _error(rng, ts, ref, 500),
    "error_401": lambda rng, ts, ref: _error(rng, ts, ref, 401),
}
