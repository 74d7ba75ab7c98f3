from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from chargeback_pipeline.lib.reference import (
    COST_CENTER_COLUMNS,
    DEPLOYMENT_COLUMNS,
    PRICE_BOOK_COLUMNS,
    ReferenceDataError,
    load_cost_centers,
    load_deployments,
    load_price_book,
    load_reference,
)

SEEDS = Path(__file__).resolve().parents[2] / "dbt_like_sql" / "seeds"

PRICE_HEADER = ",".join(PRICE_BOOK_COLUMNS)
DEPLOYMENT_HEADER = ",".join(DEPLOYMENT_COLUMNS)
COST_CENTER_HEADER = ",".join(COST_CENTER_COLUMNS)

PRICE_ROW = "gpt-4o-2024-08-06,GlobalStandard,token,2024-08-06,,2.50,1.25,10.00,,USD"
DEPLOYMENT_ROW = "gpt-4o,aoai-eastus-1,gpt-4o-2024-08-06,GlobalStandard,eastus,paygo"
COST_CENTER_ROW = "sub-a,CC-1,owner@contoso.com,2025-01-01,"


def write_csv(tmp_path: Path, name: str, header: str, *rows: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def price_book(tmp_path: Path, *rows: str) -> Path:
    return write_csv(tmp_path, "price_book.csv", PRICE_HEADER, *rows)


def deployments(tmp_path: Path, *rows: str) -> Path:
    return write_csv(tmp_path, "deployments.csv", DEPLOYMENT_HEADER, *rows)


def cost_centers(tmp_path: Path, *rows: str) -> Path:
    return write_csv(tmp_path, "cost_centers.csv", COST_CENTER_HEADER, *rows)


def price_row(**changes: str) -> str:
    values = dict(zip(PRICE_BOOK_COLUMNS, PRICE_ROW.split(","), strict=True))
    values.update(changes)
    return ",".join(values[column] for column in PRICE_BOOK_COLUMNS)


def expect_error(file: str, row: int | None, column: str) -> str:
    """The regex an error naming the file, the data row and the column must match."""
    where = re.escape(file) + (f", row {row}" if row is not None else "")
    return f"^{where}, column '{re.escape(column)}': "


# --- shipped seeds ---------------------------------------------------------------------------


def test_shipped_seeds_load() -> None:
    reference = load_reference(SEEDS)

    assert reference.price_book.height > 0
    assert reference.deployments.height > 0
    assert reference.cost_centers.height > 0


def test_shipped_price_book_prices_are_exact_decimals() -> None:
    prices = load_reference(SEEDS).price_book

    gpt_4o = prices.filter(
        (prices["model"] == "gpt-4o-2024-08-06") & (prices["deployment_type"] == "GlobalStandard")
    ).row(0, named=True)
    assert gpt_4o["input_per_1m"] == Decimal("2.50")
    assert gpt_4o["cached_input_per_1m"] == Decimal("1.25")


# --- price book: accepted --------------------------------------------------------------------


def test_date_and_utc_date_time_both_parse_to_utc(tmp_path: Path) -> None:
    frame = load_price_book(
        price_book(
            tmp_path,
            price_row(effective_from="2024-08-06", effective_to="2024-09-01T12:00:00Z"),
        )
    )

    row = frame.row(0, named=True)
    assert row["effective_from"] == datetime(2024, 8, 6, tzinfo=UTC)
    assert row["effective_to"] == datetime(2024, 9, 1, 12, tzinfo=UTC)
    assert str(frame.schema["effective_from"].time_zone) == "UTC"


def test_date_time_with_offset_is_converted_to_utc(tmp_path: Path) -> None:
    frame = load_price_book(
        price_book(tmp_path, price_row(effective_from="2024-08-06T02:00:00+02:00"))
    )

    assert frame["effective_from"][0] == datetime(2024, 8, 6, 0, tzinfo=UTC)


def test_empty_effective_to_is_open_ended(tmp_path: Path) -> None:
    frame = load_price_book(price_book(tmp_path, PRICE_ROW))

    assert frame["effective_to"][0] is None


def test_empty_cached_input_price_is_null_not_zero(tmp_path: Path) -> None:
    frame = load_price_book(price_book(tmp_path, price_row(cached_input_per_1m="")))

    assert frame["cached_input_per_1m"][0] is None
    assert frame["input_per_1m"][0] == Decimal("2.50")


def test_price_with_six_decimals_keeps_every_digit(tmp_path: Path) -> None:
    frame = load_price_book(price_book(tmp_path, price_row(cached_input_per_1m="0.000001")))

    assert frame["cached_input_per_1m"][0] == Decimal("0.000001")


def test_adjacent_price_rows_where_to_equals_next_from_are_accepted(tmp_path: Path) -> None:
    path = price_book(
        tmp_path,
        price_row(effective_from="2024-08-06", effective_to="2025-01-01T00:00:00Z"),
        price_row(effective_from="2025-01-01", input_per_1m="2.00"),
    )

    assert load_price_book(path).height == 2


def test_same_period_for_different_deployment_types_is_not_an_overlap(tmp_path: Path) -> None:
    path = price_book(tmp_path, PRICE_ROW, price_row(deployment_type="DataZoneStandard"))

    assert load_price_book(path).height == 2


def test_same_period_for_different_units_is_not_an_overlap(tmp_path: Path) -> None:
    path = price_book(tmp_path, PRICE_ROW, price_row(unit="image", per_unit="0.04"))

    assert load_price_book(path).height == 2


def test_data_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = price_book(tmp_path, PRICE_ROW, price_row(deployment_type="Standard"))

    assert load_price_book(path)["_row"].to_list() == [1, 2]


# --- price book: refused ---------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match=r"^price_book\.csv: file not found"):
        load_price_book(tmp_path / "price_book.csv")


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = ",".join(column for column in PRICE_BOOK_COLUMNS if column != "currency")
    path = write_csv(tmp_path, "price_book.csv", header, PRICE_ROW.rsplit(",", 1)[0])

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", None, "currency")):
        load_price_book(path)


def test_missing_required_value_names_row_and_column(tmp_path: Path) -> None:
    path = price_book(tmp_path, PRICE_ROW, price_row(deployment_type="Standard", model=""))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 2, "model")) as err:
        load_price_book(path)
    assert "required" in str(err.value)
    assert (err.value.file, err.value.row, err.value.column) == ("price_book.csv", 2, "model")


def test_whitespace_only_required_value_counts_as_missing(tmp_path: Path) -> None:
    path = price_book(tmp_path, price_row(currency="   "))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 1, "currency")):
        load_price_book(path)


def test_impossible_date_names_row_and_column(tmp_path: Path) -> None:
    path = price_book(tmp_path, PRICE_ROW, price_row(unit="image", effective_from="2024-13-01"))

    with pytest.raises(
        ReferenceDataError, match=expect_error("price_book.csv", 2, "effective_from")
    ) as err:
        load_price_book(path)
    assert "ISO-8601" in str(err.value)


@pytest.mark.parametrize("value", ["06/08/2024", "2024-08-06T12:00:00", "soon"])
def test_unparseable_or_offsetless_effective_to_is_refused(tmp_path: Path, value: str) -> None:
    path = price_book(tmp_path, price_row(effective_to=value))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 1, "effective_to")):
        load_price_book(path)


def test_price_with_seven_decimals_names_row_and_column(tmp_path: Path) -> None:
    path = price_book(tmp_path, price_row(output_per_1m="10.0000001"))

    with pytest.raises(
        ReferenceDataError, match=expect_error("price_book.csv", 1, "output_per_1m")
    ) as err:
        load_price_book(path)
    assert "6 decimals" in str(err.value)


def test_negative_price_names_row_and_column(tmp_path: Path) -> None:
    path = price_book(tmp_path, PRICE_ROW, price_row(deployment_type="Standard", input_per_1m="-1"))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 2, "input_per_1m")):
        load_price_book(path)


@pytest.mark.parametrize("value", ["1e3", "2,5", "$2.50", ".5", "NaN"])
def test_non_decimal_price_is_refused(tmp_path: Path, value: str) -> None:
    path = price_book(tmp_path, price_row(per_unit=f'"{value}"'))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 1, "per_unit")):
        load_price_book(path)


def test_unknown_unit_names_row_and_column(tmp_path: Path) -> None:
    path = price_book(tmp_path, price_row(unit="tokens"))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 1, "unit")) as err:
        load_price_book(path)
    assert "token" in str(err.value) and "image" in str(err.value)


def test_effective_to_before_effective_from_names_row_and_column(tmp_path: Path) -> None:
    path = price_book(tmp_path, price_row(effective_from="2024-08-06", effective_to="2024-08-01"))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 1, "effective_to")):
        load_price_book(path)


def test_effective_to_equal_to_effective_from_is_refused(tmp_path: Path) -> None:
    path = price_book(tmp_path, price_row(effective_from="2024-08-06", effective_to="2024-08-06"))

    with pytest.raises(ReferenceDataError, match=expect_error("price_book.csv", 1, "effective_to")):
        load_price_book(path)


def test_overlapping_price_rows_name_both_rows(tmp_path: Path) -> None:
    path = price_book(
        tmp_path,
        price_row(deployment_type="Standard"),
        price_row(effective_from="2024-08-06", effective_to="2025-02-01"),
        price_row(effective_from="2025-01-01", input_per_1m="2.00"),
    )

    with pytest.raises(
        ReferenceDataError, match=expect_error("price_book.csv", 3, "effective_from")
    ) as err:
        load_price_book(path)
    assert "overlaps row 2" in str(err.value)
    assert "gpt-4o-2024-08-06" in str(err.value)


def test_open_ended_price_row_overlaps_any_later_row(tmp_path: Path) -> None:
    path = price_book(
        tmp_path,
        price_row(effective_from="2026-01-01", input_per_1m="2.00"),
        price_row(effective_from="2024-08-06"),
    )

    with pytest.raises(ReferenceDataError, match=r"row 1, .*overlaps row 2"):
        load_price_book(path)


def test_identical_price_rows_overlap(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="overlaps row"):
        load_price_book(price_book(tmp_path, PRICE_ROW, PRICE_ROW))


# --- deployments -----------------------------------------------------------------------------


def test_deployments_load(tmp_path: Path) -> None:
    frame = load_deployments(deployments(tmp_path, DEPLOYMENT_ROW))

    assert frame.row(0, named=True)["billing"] == "paygo"


def test_one_deployment_on_two_backends_is_accepted(tmp_path: Path) -> None:
    path = deployments(
        tmp_path,
        DEPLOYMENT_ROW,
        "gpt-4o,aoai-westeurope-1,gpt-4o-2024-08-06,DataZoneStandard,westeurope,paygo",
    )

    assert load_deployments(path).height == 2


def test_unknown_billing_kind_names_row_and_column(tmp_path: Path) -> None:
    path = deployments(tmp_path, DEPLOYMENT_ROW, "gpt-4o-mini,b1,m,GlobalStandard,eastus,free")

    with pytest.raises(
        ReferenceDataError, match=expect_error("deployments.csv", 2, "billing")
    ) as err:
        load_deployments(path)
    assert "paygo" in str(err.value) and "ptu" in str(err.value)


def test_deployment_missing_model_names_row_and_column(tmp_path: Path) -> None:
    path = deployments(tmp_path, "gpt-4o,b1,,GlobalStandard,eastus,paygo")

    with pytest.raises(ReferenceDataError, match=expect_error("deployments.csv", 1, "model")):
        load_deployments(path)


def test_repeated_deployment_and_backend_names_the_repeat(tmp_path: Path) -> None:
    path = deployments(
        tmp_path,
        DEPLOYMENT_ROW,
        "gpt-4o-mini,aoai-eastus-1,gpt-4o-mini-2024-07-18,GlobalStandard,eastus,paygo",
        DEPLOYMENT_ROW.replace("paygo", "ptu"),
    )

    with pytest.raises(
        ReferenceDataError, match=expect_error("deployments.csv", 3, "deployment")
    ) as err:
        load_deployments(path)
    assert "repeat" in str(err.value)


def test_deployments_missing_column_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "deployments.csv", "deployment,backend_id,model", "a,b,c")

    with pytest.raises(
        ReferenceDataError, match=expect_error("deployments.csv", None, "deployment_type")
    ):
        load_deployments(path)


# --- cost centers ----------------------------------------------------------------------------


def test_cost_centers_load(tmp_path: Path) -> None:
    frame = load_cost_centers(cost_centers(tmp_path, COST_CENTER_ROW))

    assert frame.row(0, named=True)["effective_from"] == datetime(2025, 1, 1, tzinfo=UTC)


def test_overlapping_cost_center_rows_for_one_subscription_name_both_rows(tmp_path: Path) -> None:
    path = cost_centers(
        tmp_path,
        "sub-a,CC-1,o@contoso.com,2025-01-01,2025-07-01",
        "sub-b,CC-2,o@contoso.com,2025-01-01,",
        "sub-a,CC-3,o@contoso.com,2025-06-01T00:00:00Z,",
    )

    with pytest.raises(
        ReferenceDataError, match=expect_error("cost_centers.csv", 3, "effective_from")
    ) as err:
        load_cost_centers(path)
    assert "overlaps row 1" in str(err.value)
    assert "sub-a" in str(err.value)


def test_adjacent_cost_center_rows_are_accepted(tmp_path: Path) -> None:
    path = cost_centers(
        tmp_path,
        "sub-a,CC-1,o@contoso.com,2025-01-01,2025-07-01",
        "sub-a,CC-3,o@contoso.com,2025-07-01T00:00:00Z,",
    )

    assert load_cost_centers(path).height == 2


def test_cost_center_missing_value_names_row_and_column(tmp_path: Path) -> None:
    path = cost_centers(tmp_path, COST_CENTER_ROW, "sub-b,,o@contoso.com,2025-01-01,")

    with pytest.raises(
        ReferenceDataError, match=expect_error("cost_centers.csv", 2, "cost_center")
    ):
        load_cost_centers(path)


def test_cost_center_bad_date_names_row_and_column(tmp_path: Path) -> None:
    path = cost_centers(tmp_path, "sub-a,CC-1,o@contoso.com,2025-01-01,2025-02-30")

    with pytest.raises(
        ReferenceDataError, match=expect_error("cost_centers.csv", 1, "effective_to")
    ):
        load_cost_centers(path)


def test_cost_center_inverted_range_names_row_and_column(tmp_path: Path) -> None:
    path = cost_centers(tmp_path, "sub-a,CC-1,o@contoso.com,2025-06-01,2025-01-01")

    with pytest.raises(
        ReferenceDataError, match=expect_error("cost_centers.csv", 1, "effective_to")
    ):
        load_cost_centers(path)


def test_load_reference_names_the_failing_file(tmp_path: Path) -> None:
    price_book(tmp_path, PRICE_ROW)
    deployments(tmp_path, DEPLOYMENT_ROW)
    cost_centers(tmp_path, "sub-a,CC-1,o@contoso.com,someday,")

    with pytest.raises(ReferenceDataError, match=r"^cost_centers\.csv, row 1"):
        load_reference(tmp_path)


def test_blank_lines_in_a_reference_file_are_not_rows(tmp_path: Path) -> None:
    from chargeback_pipeline.lib.reference import load_deployments

    path = tmp_path / "deployments.csv"
    path.write_text(
        "deployment,backend_id,model,deployment_type,region,billing\n"
        "gpt-4o,b1,gpt-4o-2024-08-06,GlobalStandard,eastus,paygo\n\n\n"
    )
    assert load_deployments(path).height == 1
