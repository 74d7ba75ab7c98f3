"""FinOps marts on tiny hand-made lake rows and seeds: anomalies, error rates, budgets, top
consumers, model mix and PTU utilisation, with exact decimal expectations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import write_deltalake

from chargeback_pipeline.lib.demo_traffic import (
    generate_day,
    generate_history,
    generate_spike,
    history_hour_keys,
)
from chargeback_pipeline.lib.marts import (
    build_marts,
    load_budgets,
    mart_variables,
    seed_sources,
)
from chargeback_pipeline.lib.reference import ReferenceDataError
from chargeback_pipeline.lib.sql_models import (
    load_model_docs,
    load_models,
    order_models,
    run_model_tests,
    run_models,
)
from chargeback_pipeline.lib.tables import (
    QUARANTINED_ENVELOPES,
    USAGE_COSTS,
    conform,
    empty_frame,
)

PROJECT = Path(__file__).resolve().parents[2] / "dbt_like_sql"
GPT4O = "gpt-4o-2024-08-06"
MINI = "gpt-4o-mini-2024-07-18"
NEW_MARTS = (
    "cost_anomalies",
    "error_rates",
    "budget_status",
    "top_consumers",
    "model_mix",
    "ptu_utilisation",
)

PRICE_BOOK = """\
model,deployment_type,unit,effective_from,effective_to,input_per_1m,cached_input_per_1m,output_per_1m,per_unit,currency
gpt-4o-2024-08-06,GlobalStandard,token,2024-08-06,,2.50,1.25,10.00,,USD
gpt-4o-2024-08-06,Standard,token,2024-08-06,,2.75,1.375,11.00,,USD
gpt-4o-2024-08-06,ProvisionedManaged,token,2024-08-06,,0.00,0.00,0.00,,USD
gpt-4o-2024-08-06,ProvisionedManaged,ptu_hour,2026-03-01,,,,,100.00,USD
"""
DEPLOYMENTS = """\
deployment,backend_id,model,deployment_type,region,billing
gpt-4o,be-1,gpt-4o-2024-08-06,GlobalStandard,eastus,paygo
gpt-4o-ptu,be-ptu,gpt-4o-2024-08-06,ProvisionedManaged,eastus,ptu
"""
COST_CENTERS = """\
subscription_id,cost_center,owner,effective_from,effective_to
sub-a,CC-A,a@example.com,2025-01-01,
"""
BUDGETS = """\
cost_center,month,amount,currency
CC-A,2026-02,100.00,USD
CC-A,2026-03,100.00,USD
CC-B,2026-03,100.00,USD
CC-C,2026-03,1000.00,USD
CC-D,2026-03,50.00,USD
CC-A,2026-04,100.00,USD
"""


def usage(at: str, request_id: str, cost_center: str, cost: str | None, **extra: Any) -> dict:
    """A usage_costs row at `at` (UTC); `cost` None means unpriced."""
    moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
    row = {
        "request_id": request_id,
        "timestamp": moment,
        "hour": moment.strftime("%Y-%m-%d-%H:00"),
        "subscription_id": "sub-a",
        "cost_center": cost_center,
        "model": GPT4O,
        "deployment": "gpt-4o",
        "backend_id": "be-1",
        "deployment_type": "GlobalStandard",
        "billing": "paygo",
        "operation": "chat_completions",
        "status_code": 200,
        "prompt_tokens": 0,
        "cached_tokens": 0,
        "completion_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 0,
        "images": 0,
        "total_cost": None if cost is None else Decimal(cost),
        "currency": None if cost is None else "USD",
        "priced": cost is not None,
    }
    row.update(extra)
    row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    return row


def costs_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    filled = [{name: row.get(name) for name in USAGE_COSTS} for row in rows]
    return conform(pl.DataFrame(filled, schema=USAGE_COSTS), USAGE_COSTS)


def write_seeds(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "price_book.csv": PRICE_BOOK,
        "deployments.csv": DEPLOYMENTS,
        "cost_centers.csv": COST_CENTERS,
        "budgets.csv": BUDGETS,
    }.items():
        (directory / name).write_text(text)
    return directory


def build(
    rows: list[dict[str, Any]], seeds: Path, env: dict[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    """Every shipped model over the rows and seeds, in an in-memory DuckDB."""
    con = duckdb.connect()
    # a far-off session time zone must not move any day or hour
    con.execute("set TimeZone = 'Pacific/Kiritimati'")
    models = order_models(load_models(PROJECT))
    used = {source for model in models for source in model.sources}
    sources: dict[tuple[str, str], object] = {
        ("lake", "usage_costs"): costs_frame(rows),
        ("lake", "quarantined_envelopes"): empty_frame(QUARANTINED_ENVELOPES),
        **seed_sources(seeds, used),
    }
    run_models(con, models, sources, mart_variables(env or {}))
    return con


def day_rows(cost_center: str, days: range, cost: str, month: str = "2026-03") -> Iterator[dict]:
    for day in days:
        yield usage(
            f"{month}-{day:02d}T12:00:00", f"{cost_center}-{month}-{day}", cost_center, cost
        )


# --- cost_anomalies ----------------------------------------------------------------------------

ANOMALY_ROWS = [
    # CC-A: 10.00 a day but nothing on the 3rd, then 13.00 on the 8th
    *day_rows("CC-A", range(1, 8), "10.00"),
    usage("2026-03-08T23:30:00", "a-8", "CC-A", "13.00"),
    # CC-B: +50% on the 8th, but only 0.50 more: under the minimum increase
    *day_rows("CC-B", range(1, 9), "1.00"),
    usage("2026-03-08T13:00:00", "b-8-extra", "CC-B", "0.50"),
    # CC-C: new on the 8th, no history
    usage("2026-03-08T09:00:00", "c-8", "CC-C", "5.00"),
    # unpriced calls have no amount: no line of their own
    usage("2026-03-05T09:00:00", "u-5", "CC-U", None),
]
ANOMALY_ROWS = [row for row in ANOMALY_ROWS if row["request_id"] != "CC-A-2026-03-3"]


@pytest.fixture(scope="module")
def anomalies(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    return build(ANOMALY_ROWS, write_seeds(tmp_path_factory.mktemp("seeds")))


def test_anomaly_on_the_spiking_cost_center(anomalies: duckdb.DuckDBPyConnection) -> None:
    row = anomalies.execute(
        "select cost, previous_day_cost, trailing_7d_mean, day_over_day_change,"
        " vs_trailing_change, anomaly_threshold, is_anomaly from cost_anomalies"
        " where cost_center = 'CC-A' and day = date '2026-03-08'"
    ).fetchone()
    assert row == (
        Decimal("13.000000000000"),
        Decimal("10.000000000000"),
        # 60.00 / 7, exact to 1e-12 and truncated
        Decimal("8.571428571428"),
        Decimal("0.300000"),
        # (13 x 7 - 60) / 60 = 31 / 60
        Decimal("0.516667"),
        Decimal("0.2000"),
        True,
    )


def test_missing_days_count_as_zero(anomalies: duckdb.DuckDBPyConnection) -> None:
    rows = anomalies.execute(
        "select day::varchar, cost, previous_day_cost, day_over_day_change from cost_anomalies"
        " where cost_center = 'CC-A' and day between date '2026-03-03' and date '2026-03-04'"
        " order by day"
    ).fetchall()
    assert rows == [
        ("2026-03-03", Decimal("0E-12"), Decimal("10.000000000000"), Decimal("-1.000000")),
        ("2026-03-04", Decimal("10.000000000000"), Decimal("0E-12"), None),
    ]


def test_small_increase_and_short_history_are_not_flagged(
    anomalies: duckdb.DuckDBPyConnection,
) -> None:
    rows = anomalies.execute(
        "select cost_center, cost, trailing_7d_mean, vs_trailing_change, is_anomaly"
        " from cost_anomalies where day = date '2026-03-08' and cost_center in ('CC-B', 'CC-C')"
        " order by cost_center"
    ).fetchall()
    assert rows == [
        ("CC-B", Decimal("1.500000000000"), Decimal("1.000000000000"), Decimal("0.500000"), False),
        ("CC-C", Decimal("5.000000000000"), None, None, False),
    ]
    flagged = anomalies.execute(
        "select day::varchar, cost_center from cost_anomalies where is_anomaly order by all"
    ).fetchall()
    assert flagged == [("2026-03-08", "CC-A"), ("2026-03-08", "TOTAL")]


def test_total_line_sums_the_cost_centers(anomalies: duckdb.DuckDBPyConnection) -> None:
    row = anomalies.execute(
        "select scope, cost, previous_day_cost, trailing_7d_mean, vs_trailing_change"
        " from cost_anomalies where cost_center = 'TOTAL' and day = date '2026-03-08'"
    ).fetchone()
    # previous week: 6 x 10.00 (CC-A) + 7 x 1.00 (CC-B) = 67.00
    assert row == (
        "total",
        Decimal("19.500000000000"),
        Decimal("11.000000000000"),
        Decimal("9.571428571428"),
        Decimal("1.037313"),
    )
    assert anomalies.execute(
        "select count(*) from cost_anomalies where cost_center = 'CC-U'"
    ).fetchone() == (0,)


def test_threshold_comes_from_the_environment(tmp_path: Path) -> None:
    con = build(ANOMALY_ROWS, write_seeds(tmp_path), {"CHARGEBACK_ANOMALY_THRESHOLD": "0.6"})
    assert con.execute(
        "select count(*) filter (where is_anomaly), min(anomaly_threshold) from cost_anomalies"
    ).fetchone() == (1, Decimal("0.6000"))
    lowered = build(
        ANOMALY_ROWS, write_seeds(tmp_path), {"CHARGEBACK_ANOMALY_MIN_INCREASE": "0.25"}
    )
    assert lowered.execute(
        "select cost_center from cost_anomalies where is_anomaly order by 1"
    ).fetchall() == [("CC-A",), ("CC-B",), ("TOTAL",)]


@pytest.mark.parametrize("value", ["abc", "-0.1", "nan", "inf"])
def test_bad_threshold_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CHARGEBACK_ANOMALY_THRESHOLD"):
        mart_variables({"CHARGEBACK_ANOMALY_THRESHOLD": value})


def test_variables_default() -> None:
    assert mart_variables({}) == {
        "anomaly_threshold": Decimal("0.20"),
        "anomaly_min_increase": Decimal("1.00"),
        "billing_account_id": "unconfigured",
        "billing_account_name": "",
    }


# --- error_rates -------------------------------------------------------------------------------


def calls(hour: str, prefix: str, statuses: list[int], **extra: Any) -> list[dict]:
    return [
        usage(f"{hour}:{index:02d}:00", f"{prefix}-{index}", "CC-A", "0.01", status_code=status)
        | extra
        for index, status in enumerate(statuses)
    ]


def test_error_rates_per_hour_subscription_and_deployment(tmp_path: Path) -> None:
    rows = [
        # exactly 5%: not high
        *calls("2026-03-01T10", "ok", [200] * 19 + [429]),
        # 10%: high
        *calls("2026-03-01T10", "bad", [200] * 18 + [429, 503], subscription_id="sub-b"),
        *calls("2026-03-01T11", "late", [400, 200]),
    ]
    con = build(rows, write_seeds(tmp_path))
    result = con.execute(
        "select hour, hour_start, subscription_id, deployment, requests, errors, throttled,"
        " server_errors, error_rate, is_high_error_rate from error_rates order by hour, 3"
    ).fetchall()
    ten = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert [r[:2] for r in result] == [
        ("2026-03-01-10:00", ten),
        ("2026-03-01-10:00", ten),
        ("2026-03-01-11:00", ten + timedelta(hours=1)),
    ]
    assert [r[2:] for r in result] == [
        ("sub-a", "gpt-4o", 20, 1, 1, 0, Decimal("0.050000"), False),
        ("sub-b", "gpt-4o", 20, 2, 1, 1, Decimal("0.100000"), True),
        ("sub-a", "gpt-4o", 2, 1, 0, 0, Decimal("0.500000"), True),
    ]


# --- budget_status -----------------------------------------------------------------------------

BUDGET_ROWS = [
    # CC-A spends 10.05 a day from the 1st to the 10th: 100.50 of 100.00
    *day_rows("CC-A", range(1, 11), "10.05"),
    # CC-B: 3.50 a day from the 4th: the trailing week forecasts 98.00, the linear 75.95
    *day_rows("CC-B", range(4, 11), "3.50"),
    # CC-C: 3.00 a day from the 4th, with a budget of 1000.00
    *day_rows("CC-C", range(4, 11), "3.00"),
]


@pytest.fixture(scope="module")
def budgets(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    # CC-B and CC-C starting on the 4th make the total jump; anomalies are not the point here
    quiet = {"CHARGEBACK_ANOMALY_MIN_INCREASE": "1000"}
    return build(BUDGET_ROWS, write_seeds(tmp_path_factory.mktemp("seeds")), quiet)


def test_budget_status_spent_forecasts_and_status(budgets: duckdb.DuckDBPyConnection) -> None:
    rows = budgets.execute(
        "select month, cost_center, amount, spent, remaining, share_spent, as_of_day::varchar,"
        " days_elapsed, days_in_month, forecast_linear, forecast_trailing_7d, status"
        " from budget_status order by month, cost_center"
    ).fetchall()
    assert [r[:6] for r in rows] == [
        ("2026-03", "CC-A", Decimal("100.00"), Decimal("100.5"), Decimal("-0.5"), Decimal("1.005")),
        ("2026-03", "CC-B", Decimal("100.00"), Decimal("24.5"), Decimal("75.5"), Decimal("0.245")),
        ("2026-03", "CC-C", Decimal("1000"), Decimal("21"), Decimal("979"), Decimal("0.021")),
        ("2026-03", "CC-D", Decimal("50"), Decimal("0"), Decimal("50"), Decimal("0")),
    ]
    assert {r[6:9] for r in rows} == {("2026-03-10", 10, 31)}
    assert [r[9:] for r in rows] == [
        (Decimal("311.55"), Decimal("311.55"), "over"),
        (Decimal("75.95"), Decimal("98.00"), "warn"),
        (Decimal("65.10"), Decimal("84.00"), "ok"),
        (Decimal("0"), Decimal("0"), "ok"),
    ]


def test_budgets_outside_the_data_are_left_out(budgets: duckdb.DuckDBPyConnection) -> None:
    months = budgets.execute("select distinct month from budget_status").fetchall()
    assert months == [("2026-03",)]


def test_past_month_forecasts_equal_spend(tmp_path: Path) -> None:
    rows = [
        *day_rows("CC-A", range(27, 29), "30.00", "2026-02"),
        usage("2026-03-02T08:00:00", "m", "CC-B", "1.00"),
    ]
    con = build(rows, write_seeds(tmp_path))
    assert con.execute(
        "select month, cost_center, spent, days_elapsed, forecast_linear, forecast_trailing_7d,"
        " status from budget_status where month = '2026-02'"
    ).fetchall() == [("2026-02", "CC-A", Decimal("60"), 28, Decimal("60"), Decimal("60"), "ok")]


def test_budgets_file_is_optional_and_checked(tmp_path: Path) -> None:
    assert load_budgets(tmp_path / "budgets.csv").is_empty()
    path = tmp_path / "budgets.csv"
    path.write_text("cost_center,month,amount,currency\nCC-A,2026-3,10,USD\n")
    with pytest.raises(ReferenceDataError, match=r"row 1, column 'month'"):
        load_budgets(path)
    path.write_text("cost_center,month,amount,currency\nCC-A,2026-03,10,USD\nCC-A,2026-03,5,USD\n")
    with pytest.raises(ReferenceDataError, match=r"row 2, column 'month'"):
        load_budgets(path)
    path.write_text("cost_center,month,amount,currency\nCC-A,2026-03,-1,usd\n")
    with pytest.raises(ReferenceDataError, match=r"row 1, column 'amount'"):
        load_budgets(path)


# --- top_consumers and model_mix ---------------------------------------------------------------


def test_top_consumers_ranks_apps_and_user_hashes(tmp_path: Path) -> None:
    rows = [
        usage(
            f"2026-03-0{1 + index % 5}T10:00:00",
            f"u{index}",
            "CC-A",
            f"{index + 1}.00",
            user_hash=f"hash-{index:02d}",
            app_id="app-big" if index >= 6 else "app-small",
        )
        for index in range(12)
    ]
    # unpriced calls rank nowhere
    rows.append(usage("2026-03-02T10:00:00", "x", "CC-A", None, user_hash="hash-xx", app_id="a"))
    con = build(rows, write_seeds(tmp_path))
    users = con.execute(
        "select rank, consumer, requests, total_cost, share_of_cost from top_consumers"
        " where consumer_type = 'user' order by rank"
    ).fetchall()
    # 12 users, 78.00 in all: the ten most expensive are kept
    assert len(users) == 10
    assert users[0] == (1, "hash-11", 1, Decimal("12.000000000000"), Decimal("0.153846"))
    assert users[-1] == (10, "hash-02", 1, Decimal("3.000000000000"), Decimal("0.038462"))
    apps = con.execute(
        "select rank, consumer, requests, total_cost, share_of_cost, cost_centers"
        " from top_consumers where consumer_type = 'app' order by rank"
    ).fetchall()
    assert apps == [
        (1, "app-big", 6, Decimal("57.000000000000"), Decimal("0.730769"), 1),
        (2, "app-small", 6, Decimal("21.000000000000"), Decimal("0.269231"), 1),
    ]


def test_model_mix_shares_per_cost_center_and_month(tmp_path: Path) -> None:
    rows = [
        usage("2026-03-01T10:00:00", "g1", "CC-A", "1.00", prompt_tokens=100),
        usage("2026-03-02T10:00:00", "g2", "CC-A", "2.00", prompt_tokens=200),
        usage("2026-03-02T11:00:00", "m1", "CC-A", "1.00", model=MINI, completion_tokens=50),
        # unpriced: counted in requests and tokens, not in the cost
        usage("2026-03-03T11:00:00", "m2", "CC-A", None, model=MINI, completion_tokens=7),
        usage("2026-04-01T11:00:00", "g3", "CC-A", "5.00", prompt_tokens=1),
    ]
    con = build(rows, write_seeds(tmp_path))
    assert con.execute(
        "select month, model, requests, total_tokens, total_cost, currency, unpriced_requests,"
        " share_of_cost from model_mix order by month, model"
    ).fetchall() == [
        ("2026-03", GPT4O, 2, 300, Decimal("3.000000000000"), "USD", 0, Decimal("0.750000")),
        ("2026-03", MINI, 2, 57, Decimal("1.000000000000"), "USD", 1, Decimal("0.250000")),
        ("2026-04", GPT4O, 1, 1, Decimal("5.000000000000"), "USD", 0, Decimal("1.000000")),
    ]


# --- ptu_utilisation ---------------------------------------------------------------------------


def ptu_call(at: str, request_id: str, cost_center: str, **extra: Any) -> dict:
    fields = {
        "deployment": "gpt-4o-ptu",
        "backend_id": "be-ptu",
        "deployment_type": "ProvisionedManaged",
        "billing": "ptu",
    }
    return usage(at, request_id, cost_center, "0.00", **(fields | extra))


PTU_ROWS = [
    # before the reservation's price row: not billed, no PTU calls
    usage("2026-02-28T23:10:00", "early", "CC-A", "0.01"),
    ptu_call(
        "2026-03-01T10:05:00",
        "p1",
        "CC-A",
        prompt_tokens=2000,
        cached_tokens=1000,
        completion_tokens=1000,
    ),
    ptu_call("2026-03-01T10:06:00", "p2", "CC-B", prompt_tokens=800, completion_tokens=200),
    # refused before a backend was chosen: never reached the reservation
    ptu_call("2026-03-01T10:07:00", "p3", "CC-B", backend_id=None, status_code=401),
    # 11:00 idle; at 12:00 only a throttled call (no tokens): shared by requests
    ptu_call("2026-03-01T12:00:00", "p4", "CC-A", status_code=429),
    # 13:00 split three ways
    *[
        ptu_call(f"2026-03-01T13:0{i}:00", f"t{i}", cc, prompt_tokens=1)
        for i, cc in enumerate(["CC-A", "CC-B", "CC-C"])
    ],
]


@pytest.fixture(scope="module")
def ptu(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    return build(PTU_ROWS, write_seeds(tmp_path_factory.mktemp("seeds")))


def test_ptu_hours_are_allocated_by_token_share(ptu: duckdb.DuckDBPyConnection) -> None:
    rows = ptu.execute(
        "select hour, cost_center, requests, total_tokens, token_share, hourly_cost, ptu_cost,"
        " paygo_equivalent_cost, currency from ptu_utilisation order by hour, cost_center"
    ).fetchall()
    hundred = Decimal("100.000000")
    third = Decimal("33.333333333333")
    assert rows == [
        (
            "2026-03-01-00:00",
            "UNALLOCATED",
            0,
            0,
            Decimal("1.000000"),
            hundred,
            Decimal("100.000000000000"),
            Decimal("0"),
            "USD",
        ),
        *[
            (f"2026-03-01-{h:02d}:00", "UNALLOCATED", 0, 0, Decimal(1), hundred, hundred, 0, "USD")
            for h in range(1, 10)
        ],
        # (2000 - 1000) x 2.75 + 1000 x 1.375 + 1000 x 11.00 = 15,125 per million
        (
            "2026-03-01-10:00",
            "CC-A",
            1,
            3000,
            Decimal("0.750000"),
            hundred,
            Decimal("75.000000000000"),
            Decimal("0.015125000000"),
            "USD",
        ),
        (
            "2026-03-01-10:00",
            "CC-B",
            1,
            1000,
            Decimal("0.250000"),
            hundred,
            Decimal("25.000000000000"),
            Decimal("0.004400000000"),
            "USD",
        ),
        ("2026-03-01-11:00", "UNALLOCATED", 0, 0, Decimal(1), hundred, hundred, 0, "USD"),
        ("2026-03-01-12:00", "CC-A", 1, 0, Decimal(1), hundred, hundred, 0, "USD"),
        *[
            (
                "2026-03-01-13:00",
                cc,
                1,
                1,
                Decimal("0.333333"),
                hundred,
                third,
                Decimal("0.000002750000"),
                "USD",
            )
            for cc in ("CC-A", "CC-B", "CC-C")
        ],
    ]


def test_ptu_hour_before_the_price_row_is_not_billed(ptu: duckdb.DuckDBPyConnection) -> None:
    assert ptu.execute(
        "select count(*) from ptu_utilisation where hour < '2026-03-01'"
    ).fetchone() == (0,)


def test_ptu_calls_cost_nothing_per_token_in_the_chargeback(
    ptu: duckdb.DuckDBPyConnection,
) -> None:
    assert ptu.execute(
        "select sum(total_cost) from chargeback_daily where deployment_type = 'ProvisionedManaged'"
    ).fetchone() == (Decimal("0E-12"),)


# --- all new marts -----------------------------------------------------------------------------


def test_money_stays_decimal_in_the_new_marts(ptu: duckdb.DuckDBPyConnection) -> None:
    types = ptu.execute(
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_name in ?",
        [list(NEW_MARTS)],
    ).fetchall()
    assert {table for table, _, _ in types} == set(NEW_MARTS)
    floats = [(t, c) for t, c, dtype in types if dtype in ("DOUBLE", "FLOAT")]
    assert floats == []
    money = {
        (t, c): dtype
        for t, c, dtype in types
        if c in ("cost", "trailing_7d_mean", "spent", "forecast_linear", "ptu_cost", "total_cost")
    }
    assert set(money.values()) == {"DECIMAL(38,12)"}


def test_shipped_tests_flag_only_the_over_budget_and_the_anomaly(
    anomalies: duckdb.DuckDBPyConnection, budgets: duckdb.DuckDBPyConnection
) -> None:
    docs = load_model_docs(PROJECT / "models.yml")

    def failed(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
        return [
            (result.name, result.severity, result.failing_rows)
            for name in docs
            for result in run_model_tests(con, name, docs)
            if not result.passed
        ]

    assert failed(anomalies) == [("cost_anomalies_none_flagged", "warn", 2)]
    assert failed(budgets) == [("budget_status_none_over", "error", 1)]


def test_build_marts_reads_seeds_from_the_reference_dir_and_vars_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "usage_costs"), costs_frame(ANOMALY_ROWS).to_arrow())
    seeds = write_seeds(tmp_path / "seeds")
    monkeypatch.setenv("CHARGEBACK_REFERENCE_DIR", str(seeds))
    monkeypatch.setenv("CHARGEBACK_ANOMALY_THRESHOLD", "0.6")
    built = build_marts(PROJECT, str(lake), tmp_path / "marts.duckdb")
    assert {run.name: run.rows for run in built.runs}["stg_budgets"] == 6
    with duckdb.connect(str(tmp_path / "marts.duckdb"), read_only=True) as con:
        assert con.execute(
            "select cost_center from cost_anomalies where is_anomaly"
        ).fetchall() == [("TOTAL",)]
    (seeds / "budgets.csv").unlink()
    explicit = build_marts(
        PROJECT,
        str(lake),
        tmp_path / "marts.duckdb",
        reference_dir=seeds,
        variables=mart_variables({}),
    )
    assert {run.name: run.rows for run in explicit.runs}["stg_budgets"] == 0


# --- the demo traffic behind these marts -------------------------------------------------------


def test_demo_history_spike_and_ptu_traffic() -> None:
    day = date(2026, 11, 26)
    history = list(generate_history(day, calls=300))
    spike = list(generate_spike(day, calls=40))
    regular = list(generate_day(day, calls=300))

    by_day = Counter(e["timestamp"][:10] for e in history)
    assert by_day == {(day - timedelta(days=n)).isoformat(): 300 for n in range(1, 8)}
    hours = sorted({e["timestamp"][:13].replace("T", "-") + ":00" for e in history})
    assert hours == sorted(history_hour_keys(day))
    assert len(hours) == 7 * 3

    assert {e["subscription"]["id"] for e in spike} == {"sub-data-science"}
    assert {e["timestamp"][11:13] for e in spike} == {"20", "21", "22", "23"}
    assert all(
        e["request"]["path"].endswith(
            "/chat/completions?api-version=" + e["backend"]["api_version"]
        )
        for e in spike
    )

    ids = [e["request_id"] for e in history + spike + regular]
    assert len(set(ids)) == len({e["request_id"] for e in regular}) + len(history) + len(spike)
    ptu = [e for e in regular + history if e["backend"]["id"] == "aoai-eastus-ptu"]
    assert ptu and {e["backend"]["deployment"] for e in ptu} == {"gpt-4o"}
