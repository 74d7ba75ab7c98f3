"""Reference data (CONTRACT §2): price book, deployments, cost centers, read strictly from CSV."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from chargeback_pipeline.lib.tables import PRICE, UTC_TIMESTAMP

PRICE_BOOK = "price_book.csv"
DEPLOYMENTS = "deployments.csv"
COST_CENTERS = "cost_centers.csv"
REFERENCE_FILES = (PRICE_BOOK, DEPLOYMENTS, COST_CENTERS)

PRICE_BOOK_COLUMNS = [
    "model",
    "deployment_type",
    "unit",
    "effective_from",
    "effective_to",
    "input_per_1m",
    "cached_input_per_1m",
    "output_per_1m",
    "per_unit",
    "currency",
]
DEPLOYMENT_COLUMNS = ["deployment", "backend_id", "model", "deployment_type", "region", "billing"]
COST_CENTER_COLUMNS = ["subscription_id", "cost_center", "owner", "effective_from", "effective_to"]

PRICE_UNITS = ("token", "image", "ptu_hour")
BILLING_KINDS = ("paygo", "ptu")
_DECIMAL_PATTERN = r"^\d{1,20}(\.\d{1,6})?$"
_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class ReferenceDataError(ValueError):
    """A reference file that cannot be used, naming the file, the data row and the column."""

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None):
        where = file + (f", row {row}" if row is not None else "")
        where += f", column '{column}'" if column else ""
        super().__init__(f"{where}: {message}")
        self.file, self.row, self.column = file, row, column


@dataclass(frozen=True)
class ReferenceData:
    """The three reference tables, typed and checked."""

    price_book: pl.DataFrame
    deployments: pl.DataFrame
    cost_centers: pl.DataFrame


def read_csv_strict(path: Path, columns: list[str]) -> pl.DataFrame:
    """Read a CSV as strings with a 1-based `_row` (data rows), requiring the named columns."""
    if not path.is_file():
        raise ReferenceDataError(path.name, f"file not found at {path}")
    frame = pl.read_csv(path, infer_schema=False)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ReferenceDataError(path.name, "missing column", column=missing[0])
    stripped = [pl.col(c).str.strip_chars().replace("", None).alias(c) for c in columns]
    # Row numbers count data rows as written; blank lines (often trailing) are not data.
    numbered = frame.select(stripped).with_row_index("_row", offset=1)
    return numbered.filter(~pl.all_horizontal(pl.col(columns).is_null()))


def _first_bad_row(frame: pl.DataFrame, raw: str, parsed: pl.Expr) -> int | None:
    bad = frame.filter(pl.col(raw).is_not_null() & parsed.is_null())
    return int(bad["_row"][0]) if bad.height else None


def _require(frame: pl.DataFrame, file: str, columns: list[str]) -> None:
    for column in columns:
        nulls = frame.filter(pl.col(column).is_null())
        if nulls.height:
            raise ReferenceDataError(file, "value is required", int(nulls["_row"][0]), column)


def _allowed(frame: pl.DataFrame, file: str, column: str, values: tuple[str, ...]) -> None:
    bad = frame.filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(values))
    if bad.height:
        raise ReferenceDataError(
            file, f"must be one of {', '.join(values)}", int(bad["_row"][0]), column
        )


def utc_instant(column: str) -> pl.Expr:
    """Parse an ISO-8601 date (midnight UTC) or date-time with offset into a UTC timestamp."""
    text = pl.col(column)
    normalised = (
        pl.when(text.str.contains(_DATE_PATTERN))
        .then(text + "T00:00:00+00:00")
        .otherwise(text.str.replace(r"Z$", "+00:00"))
    )
    return normalised.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC")


def _parse_instants(frame: pl.DataFrame, file: str, columns: list[str]) -> pl.DataFrame:
    for column in columns:
        row = _first_bad_row(frame, column, utc_instant(column))
        if row is not None:
            raise ReferenceDataError(file, "not an ISO-8601 date or UTC date-time", row, column)
    return frame.with_columns(utc_instant(c).cast(UTC_TIMESTAMP).alias(c) for c in columns)


def _parse_prices(frame: pl.DataFrame, file: str, columns: list[str]) -> pl.DataFrame:
    for column in columns:
        valid = pl.when(pl.col(column).str.contains(_DECIMAL_PATTERN)).then(pl.col(column))
        row = _first_bad_row(frame, column, valid)
        if row is not None:
            raise ReferenceDataError(
                file, "not a non-negative decimal with at most 6 decimals", row, column
            )
    return frame.with_columns(pl.col(c).cast(PRICE) for c in columns)


def _check_ranges(frame: pl.DataFrame, file: str) -> None:
    inverted = frame.filter(pl.col("effective_to") <= pl.col("effective_from"))
    if inverted.height:
        raise ReferenceDataError(
            file,
            "effective_to is not after effective_from",
            int(inverted["_row"][0]),
            "effective_to",
        )


def _check_no_overlap(frame: pl.DataFrame, file: str, keys: list[str]) -> None:
    """Two rows for one key in force at the same instant is an error in the reference data."""
    ordered = frame.sort([*keys, "effective_from"]).with_columns(
        pl.col("effective_to").shift(1).over(keys).alias("_prev_to"),
        pl.col("_row").shift(1).over(keys).alias("_prev_row"),
        pl.col("_row").cum_count().over(keys).alias("_rank"),
    )
    clash = ordered.filter(
        (pl.col("_rank") > 1)
        & (pl.col("_prev_to").is_null() | (pl.col("_prev_to") > pl.col("effective_from")))
    )
    if clash.height:
        first = clash.row(0, named=True)
        key = ", ".join(f"{k}={first[k]}" for k in keys)
        raise ReferenceDataError(
            file,
            f"overlaps row {first['_prev_row']} ({key}): two rows would be in force at once",
            int(first["_row"]),
            "effective_from",
        )


def load_price_book(path: Path) -> pl.DataFrame:
    """The effective-dated price book; overlapping rows for one model and type are refused."""
    file = path.name
    frame = read_csv_strict(path, PRICE_BOOK_COLUMNS)
    _require(frame, file, ["model", "deployment_type", "unit", "effective_from", "currency"])
    _allowed(frame, file, "unit", PRICE_UNITS)
    frame = _parse_instants(frame, file, ["effective_from", "effective_to"])
    frame = _parse_prices(
        frame, file, ["input_per_1m", "cached_input_per_1m", "output_per_1m", "per_unit"]
    )
    _check_ranges(frame, file)
    _check_no_overlap(frame, file, ["model", "deployment_type", "unit"])
    return frame


def load_deployments(path: Path) -> pl.DataFrame:
    """Deployments: the model and deployment type behind each backend deployment name."""
    file = path.name
    frame = read_csv_strict(path, DEPLOYMENT_COLUMNS)
    _require(frame, file, ["deployment", "model", "deployment_type", "billing"])
    _allowed(frame, file, "billing", BILLING_KINDS)
    duplicated = frame.filter(pl.struct("deployment", "backend_id").is_duplicated())
    if duplicated.height:
        raise ReferenceDataError(
            file, "deployment and backend_id repeat", int(duplicated["_row"][-1]), "deployment"
        )
    return frame


def load_cost_centers(path: Path) -> pl.DataFrame:
    """Subscription to cost-center mappings, effective-dated, without overlaps."""
    file = path.name
    frame = read_csv_strict(path, COST_CENTER_COLUMNS)
    _require(frame, file, ["subscription_id", "cost_center", "effective_from"])
    frame = _parse_instants(frame, file, ["effective_from", "effective_to"])
    _check_ranges(frame, file)
    _check_no_overlap(frame, file, ["subscription_id"])
    return frame


def load_reference(directory: Path) -> ReferenceData:
    """All reference tables from one directory (the shipped seeds or CHARGEBACK_REFERENCE_DIR)."""
    return ReferenceData(
        price_book=load_price_book(directory / PRICE_BOOK),
        deployments=load_deployments(directory / DEPLOYMENTS),
        cost_centers=load_cost_centers(directory / COST_CENTERS),
    )


def content_version(path: Path) -> str:
    """A data version for a reference file: the SHA-256 of its bytes, shortened."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
