"""Alerts from failed marts checks: one webhook message per finding, sent once, no user ids.

A finding is a flagged row of cost_anomalies, an over-budget row of budget_status, or any other
failed models.yml check as a whole. Messages are `{"text": ...}` (what Slack and Teams incoming
webhooks read) plus the same facts under "chargeback"; their fields are chosen here, never copied
from a row, so no user column can reach a webhook.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson

ANOMALY_CHECK = ("cost_anomalies", "cost_anomalies_none_flagged")
BUDGET_CHECK = ("budget_status", "budget_status_none_over")


@dataclass(frozen=True)
class CheckFailure:
    """A failed asset check evaluation of a mart."""

    asset: str
    check: str
    severity: str
    failing_rows: int | None = None


@dataclass(frozen=True)
class Alert:
    """One message; `key` identifies the finding across ticks."""

    key: str
    severity: str
    text: str
    facts: Mapping[str, str | int | None]

    def payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "chargeback": {"key": self.key, "severity": self.severity, **self.facts},
        }


@dataclass(frozen=True)
class AlertState:
    """The sensor cursor: the check evaluations last looked at and the findings already sent."""

    evaluations: Mapping[str, int] = field(default_factory=dict)
    sent: frozenset[str] = frozenset()


def load_state(cursor: str | None) -> AlertState:
    """The state from a cursor; an unreadable or missing one starts afresh."""
    try:
        data = orjson.loads(cursor) if cursor else {}
        return AlertState(
            {str(k): int(v) for k, v in dict(data.get("evaluations", {})).items()},
            frozenset(str(key) for key in data.get("sent", [])),
        )
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return AlertState()


def dump_state(state: AlertState) -> str:
    return orjson.dumps(
        {"evaluations": dict(sorted(state.evaluations.items())), "sent": sorted(state.sent)}
    ).decode()


def _money(value: object) -> str:
    return f"{Decimal(str(value)):,.2f}"


def _exact(value: object) -> str | None:
    return None if value is None else str(value)


def _percent(ratio: object) -> str:
    return f"{Decimal(str(ratio)) * 100:+.1f}%"


def anomaly_alerts(con: duckdb.DuckDBPyConnection, failure: CheckFailure) -> list[Alert]:
    """One alert per flagged day and cost center (or total)."""
    rows = con.execute(
        "select strftime(day, '%Y-%m-%d'), scope, cost_center, currency, cost, trailing_7d_mean,"
        " vs_trailing_change, anomaly_threshold from cost_anomalies where is_anomaly"
        " order by day, scope, cost_center"
    ).fetchall()
    alerts = []
    for day, scope, cost_center, currency, cost, mean, change, threshold in rows:
        who = "Total spend" if scope == "total" else f"Cost center {cost_center}"
        text = (
            f"[{failure.severity}] Cost anomaly: {who} was {_money(cost)} {currency} on {day},"
            f" {_percent(change)} against its 7-day mean of {_money(mean)} {currency}"
            f" (threshold {Decimal(str(threshold)) * 100:.0f}%)."
        )
        facts = {
            "alert": "cost_anomaly",
            "check": f"{failure.asset}.{failure.check}",
            "day": day,
            "scope": scope,
            "cost_center": cost_center,
            "currency": currency,
            "cost": _exact(cost),
            "trailing_7d_mean": _exact(mean),
            "vs_trailing_change": _exact(change),
            "anomaly_threshold": _exact(threshold),
        }
        key = f"cost_anomaly/{day}/{scope}/{cost_center}/{currency}"
        alerts.append(Alert(key, failure.severity, text, facts))
    return alerts


def budget_alerts(con: duckdb.DuckDBPyConnection, failure: CheckFailure) -> list[Alert]:
    """One alert per month and cost center over its budget."""
    rows = con.execute(
        "select month, cost_center, currency, amount, spent, share_spent, forecast_linear,"
        " strftime(as_of_day, '%Y-%m-%d') from budget_status where status = 'over'"
        " order by month, cost_center"
    ).fetchall()
    alerts = []
    for month, cost_center, currency, amount, spent, share, forecast, as_of in rows:
        text = (
            f"[{failure.severity}] Budget exceeded: cost center {cost_center} has spent"
            f" {_money(spent)} {currency} of its {_money(amount)} {currency} budget for {month}"
            f" ({Decimal(str(share)) * 100:.1f}%) as of {as_of}; linear forecast"
            f" {_money(forecast)} {currency}."
        )
        facts = {
            "alert": "budget_over",
            "check": f"{failure.asset}.{failure.check}",
            "month": month,
            "cost_center": cost_center,
            "currency": currency,
            "amount": _exact(amount),
            "spent": _exact(spent),
            "share_spent": _exact(share),
            "forecast_linear": _exact(forecast),
            "as_of_day": as_of,
        }
        alerts.append(
            Alert(f"budget_over/{month}/{cost_center}/{currency}", failure.severity, text, facts)
        )
    return alerts


def check_alert(failure: CheckFailure) -> Alert:
    """Any other failed check: its name and failing row count, nothing from the rows."""
    rows = "" if failure.failing_rows is None else f" on {failure.failing_rows} rows"
    text = f"[{failure.severity}] Check {failure.asset}.{failure.check} failed{rows}."
    facts: dict[str, str | int | None] = {
        "alert": "check_failed",
        "check": f"{failure.asset}.{failure.check}",
        "failing_rows": failure.failing_rows,
    }
    return Alert(f"check/{failure.asset}/{failure.check}", failure.severity, text, facts)


_DETAILED: dict[
    tuple[str, str], Callable[[duckdb.DuckDBPyConnection, CheckFailure], list[Alert]]
] = {
    ANOMALY_CHECK: anomaly_alerts,
    BUDGET_CHECK: budget_alerts,
}


def alerts_for(failures: Sequence[CheckFailure], duckdb_path: Path) -> list[Alert]:
    """The findings behind the failures; flagged rows are read from the marts file.

    Raises duckdb.Error when the file cannot be opened (e.g. a build holds its lock): the caller
    tries again later rather than sending less.
    """
    detailed = [f for f in failures if (f.asset, f.check) in _DETAILED]
    alerts = [check_alert(f) for f in failures if (f.asset, f.check) not in _DETAILED]
    if detailed and duckdb_path.exists():
        with duckdb.connect(str(duckdb_path), read_only=True) as con:
            for failure in detailed:
                alerts += _DETAILED[(failure.asset, failure.check)](con, failure) or [
                    check_alert(failure)
                ]
    else:
        alerts += [check_alert(f) for f in detailed]
    return alerts


@dataclass(frozen=True)
class Delivery:
    """What a tick sent and the state to keep."""

    sent: list[Alert]
    failed: list[tuple[Alert, str]]
    state: AlertState


def deliver(
    alerts: Iterable[Alert],
    state: AlertState,
    evaluations: Mapping[str, int],
    post: Callable[[dict[str, Any]], object],
) -> Delivery:
    """Post each finding not sent before; keep the keys of findings that are still there.

    A finding that disappears (the check passes again) is forgotten, so it alerts again if it
    comes back. When a post fails, the evaluations are not marked seen, so the next tick retries.
    """
    current = list(alerts)
    sent: list[Alert] = []
    failed: list[tuple[Alert, str]] = []
    for alert in current:
        if alert.key in state.sent:
            continue
        try:
            post(alert.payload())
        except (OSError, ValueError) as error:
            failed.append((alert, str(error)))
        else:
            sent.append(alert)
    delivered = state.sent | {alert.key for alert in sent}
    keep = frozenset(alert.key for alert in current if alert.key in delivered)
    seen = state.evaluations if failed else dict(evaluations)
    return Delivery(sent, failed, AlertState(seen, keep))


def post_json(url: str, payload: Mapping[str, Any], timeout: float = 10.0) -> int:
    """POST the payload as JSON; an error status or no answer raises OSError (HTTPError is one)."""
    request = urllib.request.Request(
        url,
        data=orjson.dumps(payload),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)
