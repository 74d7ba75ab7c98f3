"""focus_costs against FOCUS 1.2: every mandatory column with its type and value rules, custom
columns prefixed x_, and the month's export as CSV and Parquet."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from chargeback_pipeline.report import export_focus
from chargeback_pipeline_tests.lib.test_finops_marts import MINI, build, usage, write_seeds

# FOCUS 1.2 Mandatory columns and the DuckDB type each must have here.
MANDATORY = {
    "BilledCost": "DECIMAL(38,12)",
    "BillingAccountId": "VARCHAR",
    "BillingAccountName": "VARCHAR",
    "BillingCurrency": "VARCHAR",
    "BillingPeriodEnd": "TIMESTAMP WITH TIME ZONE",
    "BillingPeriodStart": "TIMESTAMP WITH TIME ZONE",
    "ChargeCategory": "VARCHAR",
    "ChargeClass": "VARCHAR",
    "ChargeDescription": "VARCHAR",
    "ChargePeriodEnd": "TIMESTAMP WITH TIME ZONE",
    "ChargePeriodStart": "TIMESTAMP WITH TIME ZONE",
    "ContractedCost": "DECIMAL(38,12)",
    "EffectiveCost": "DECIMAL(38,12)",
    "InvoiceIssuerName": "VARCHAR",
    "ListCost": "DECIMAL(38,12)",
    "PricingQuantity": "DECIMAL(38,12)",
    "PricingUnit": "VARCHAR",
    "ProviderName": "VARCHAR",
    "PublisherName": "VARCHAR",
    "ServiceCategory": "VARCHAR",
    "ServiceName": "VARCHAR",
}
# Conditional and recommended columns the contract (CONTRACT.md section 3) also requires.
CONTRACTED = {
    "ChargeFrequency": "VARCHAR",
    "ConsumedQuantity": "DECIMAL(38,12)",
    "ConsumedUnit": "VARCHAR",
    "SubAccountId": "VARCHAR",
    "SubAccountName": "VARCHAR",
    "Tags": "JSON",
}
# Every column name FOCUS 1.2 defines; anything else must be a custom x_ column.
FOCUS_COLUMNS = {
    *MANDATORY,
    *CONTRACTED,
    "AvailabilityZone",
    "BillingAccountType",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ContractedUnitPrice",
    "InvoiceId",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountType",
}
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
CHARGE_FREQUENCIES = {"One-Time", "Recurring", "Usage-Based"}
SERVICE_CATEGORIES = {
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
}
# Active ISO 4217 codes a price book is likely to hold; the pattern guards the rest.
ISO_4217 = {"USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "SEK", "NOK", "DKK", "INR", "BRL"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

ROWS = [
    usage(
        "2026-03-01T00:00:00",
        "r1",
        "CC-A",
        "0.00725",
        prompt_tokens=1000,
        cached_tokens=200,
        completion_tokens=500,
        subscription_name="Team A",
    ),
    # the last instant of March stays in March's billing period
    usage("2026-03-31T23:59:59", "r2", "CC-A", "0.00075", prompt_tokens=100, completion_tokens=50),
    usage("2026-03-31T23:59:59", "r3", "CC-A", None, prompt_tokens=7, model="mystery"),
    usage(
        "2026-03-02T10:00:00",
        "r4",
        "CC-B",
        "0.08",
        model="dall-e-3",
        deployment_type="Standard",
        operation="image_generations",
        images=2,
    ),
    usage(
        "2026-04-01T00:00:00",
        "r5",
        "CC-B",
        "0.00004",
        model=MINI,
        operation="embeddings",
        prompt_tokens=2000,
    ),
]


@pytest.fixture(scope="module")
def focus(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    env = {
        "CHARGEBACK_FOCUS_BILLING_ACCOUNT_ID": "ea-1234",
        "CHARGEBACK_FOCUS_BILLING_ACCOUNT_NAME": "Contoso EA",
    }
    return build(ROWS, write_seeds(tmp_path_factory.mktemp("seeds")), env)


def column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_name = 'focus_costs' order by ordinal_position"
    ).fetchall()
    return dict(rows)


def test_every_mandatory_and_contracted_column_has_its_type(
    focus: duckdb.DuckDBPyConnection,
) -> None:
    types = column_types(focus)
    expected = MANDATORY | CONTRACTED
    assert {name: types.get(name) for name in expected} == expected


def test_custom_columns_are_prefixed(focus: duckdb.DuckDBPyConnection) -> None:
    custom = [name for name in column_types(focus) if name not in FOCUS_COLUMNS]
    assert custom and all(name.startswith("x_") for name in custom), custom


def test_categorical_values_are_allowed_ones(focus: duckdb.DuckDBPyConnection) -> None:
    rows = focus.execute(
        "select distinct ChargeCategory, ChargeClass, ChargeFrequency, ServiceCategory,"
        " ServiceName, ProviderName, PublisherName, InvoiceIssuerName, BillingAccountId,"
        " BillingAccountName from focus_costs"
    ).fetchall()
    assert rows == [
        (
            "Usage",
            None,
            "Usage-Based",
            "AI and Machine Learning",
            "Azure OpenAI",
            "Microsoft",
            "Microsoft",
            "Microsoft",
            "ea-1234",
            "Contoso EA",
        )
    ]
    category, _, frequency, service_category, *_ = rows[0]
    assert category in CHARGE_CATEGORIES
    assert frequency in CHARGE_FREQUENCIES
    assert service_category in SERVICE_CATEGORIES


def test_billing_currency_is_iso_4217(focus: duckdb.DuckDBPyConnection) -> None:
    currencies = {
        row[0] for row in focus.execute("select BillingCurrency from focus_costs").fetchall()
    }
    priced = {c for c in currencies if c is not None}
    assert priced == {"USD"}
    assert all(re.fullmatch(r"[A-Z]{3}", c) and c in ISO_4217 for c in priced)
    # null only where nothing was priced: the house rule that unpriced is never free
    assert focus.execute(
        "select count(*) from focus_costs where BillingCurrency is null"
        " and (BilledCost is not null or x_UnpricedRequests <> x_Requests)"
    ).fetchone() == (0,)


def test_periods_are_utc_ordered_and_nested(focus: duckdb.DuckDBPyConnection) -> None:
    rows = focus.execute(
        "select ChargePeriodStart, ChargePeriodEnd, BillingPeriodStart, BillingPeriodEnd"
        " from focus_costs order by 1"
    ).fetchall()
    assert rows
    for row in rows:
        # instants (the client shows them in the session's far-off zone): UTC midnights
        charge_start, charge_end, billing_start, billing_end = (m.astimezone(UTC) for m in row)
        for moment in (charge_start, charge_end, billing_start, billing_end):
            assert (moment.hour, moment.minute, moment.second) == (0, 0, 0)
        assert charge_start < charge_end
        assert billing_start <= charge_start and charge_end <= billing_end
        assert billing_start.day == 1 and billing_end.day == 1
    periods = focus.execute(
        "select distinct BillingPeriodStart, BillingPeriodEnd from focus_costs order by 1"
    ).fetchall()
    assert [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in periods] == [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)),
    ]


def test_costs_are_non_negative_decimals_that_agree(focus: duckdb.DuckDBPyConnection) -> None:
    rows = focus.execute(
        "select BilledCost, EffectiveCost, ListCost, ContractedCost, x_Requests,"
        " x_UnpricedRequests from focus_costs"
    ).fetchall()
    for billed, effective, listed, contracted, requests, unpriced in rows:
        if billed is None:
            assert unpriced == requests and effective is listed is contracted is None
            continue
        assert isinstance(billed, Decimal) and billed >= 0
        assert billed == effective == listed == contracted
    total = focus.execute("select sum(BilledCost) from focus_costs").fetchone()
    assert total == (Decimal("0.08804"),)


def test_quantities_and_units(focus: duckdb.DuckDBPyConnection) -> None:
    rows = focus.execute(
        "select x_Operation, ConsumedQuantity, ConsumedUnit, PricingQuantity, PricingUnit"
        " from focus_costs order by ChargePeriodStart, x_Operation, ConsumedQuantity"
    ).fetchall()
    assert rows == [
        ("chat_completions", Decimal(1500), "Tokens", Decimal("0.0015"), "1M Tokens"),
        ("image_generations", Decimal(2), "Images", Decimal(2), "Images"),
        ("chat_completions", Decimal(7), "Tokens", Decimal("0.000007"), "1M Tokens"),
        ("chat_completions", Decimal(150), "Tokens", Decimal("0.00015"), "1M Tokens"),
        ("embeddings", Decimal(2000), "Tokens", Decimal("0.002"), "1M Tokens"),
    ]


def test_tags_are_a_json_object_of_strings(focus: duckdb.DuckDBPyConnection) -> None:
    for (tags,) in focus.execute("select Tags::varchar from focus_costs").fetchall():
        parsed = json.loads(tags)
        assert isinstance(parsed, dict) and parsed
        assert all(isinstance(v, str) for v in parsed.values())


def test_mandatory_columns_are_not_null_where_focus_requires(
    focus: duckdb.DuckDBPyConnection,
) -> None:
    # BilledCost, the other costs and BillingCurrency are null on unpriced lines only (above)
    never_null = set(MANDATORY) - {
        "BilledCost",
        "EffectiveCost",
        "ListCost",
        "ContractedCost",
        "BillingCurrency",
        "ChargeClass",
        "BillingAccountName",
    }
    nulls = focus.execute(
        "select "
        + ", ".join(f'count(*) filter (where "{c}" is null)' for c in sorted(never_null))
        + " from focus_costs"
    ).fetchone()
    assert nulls is not None and set(nulls) == {0}


def test_billing_account_defaults_to_a_visible_placeholder(tmp_path: Path) -> None:
    con = build(ROWS[:1], write_seeds(tmp_path))
    assert con.execute(
        "select distinct BillingAccountId, BillingAccountName from focus_costs"
    ).fetchall() == [("unconfigured", None)]


def test_export_writes_the_month_as_csv_and_parquet(
    focus: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    database = tmp_path / "marts.duckdb"
    focus.execute(f"attach '{database}' as out")
    focus.execute("create table out.focus_costs as select * from focus_costs")
    focus.execute("detach out")

    csv_path, parquet_path = export_focus(database, "2026-03", tmp_path / "export")

    assert (csv_path.name, parquet_path.name) == (
        "focus_costs_2026-03.csv",
        "focus_costs_2026-03.parquet",
    )
    parquet = pl.read_parquet(parquet_path)
    assert parquet.height == 4
    assert parquet.schema["BilledCost"] == pl.Decimal(38, 12)
    assert parquet.schema["ChargePeriodStart"] == pl.Datetime("us", "UTC")
    assert parquet["BilledCost"].sum() == Decimal("0.088")
    assert parquet["Tags"].to_list()[0] == '{"cost-center":"CC-A"}'
    with csv_path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == list(parquet.columns)
    assert records[0]["ChargePeriodStart"] == "2026-03-01T00:00:00Z"
    assert all(
        ISO_UTC.match(r[c]) for r in records for c in ("ChargePeriodEnd", "BillingPeriodEnd")
    )
    assert records[0]["BilledCost"] == "0.007250000000"
    assert sum(Decimal(r["BilledCost"]) for r in records if r["BilledCost"]) == Decimal("0.088")


def test_export_defaults_to_the_latest_month_and_checks_the_month(
    focus: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    database = tmp_path / "marts.duckdb"
    focus.execute(f"attach '{database}' as out")
    focus.execute("create table out.focus_costs as select * from focus_costs")
    focus.execute("detach out")
    csv_path, parquet_path = export_focus(database, None, tmp_path)
    assert csv_path.name == "focus_costs_2026-04.csv"
    assert pl.read_parquet(parquet_path)["x_Operation"].to_list() == ["embeddings"]
    with pytest.raises(ValueError, match="YYYY-MM"):
        export_focus(database, "2026-3", tmp_path)
