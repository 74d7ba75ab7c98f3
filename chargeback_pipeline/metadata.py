"""Dagster metadata built from the lake's column schemas, with Dagster's own metadata keys."""

from __future__ import annotations

import dagster as dg
import polars as pl


def column_schema(
    columns: dict[str, pl.DataType], docs: dict[str, str] | None = None
) -> dg.TableSchema:
    """A TableSchema for `dagster/column_schema` from a table's Polars column types."""
    docs = docs or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(dtype), description=docs.get(name))
            for name, dtype in columns.items()
        ]
    )


def table_metadata(uri: str, columns: dict[str, pl.DataType]) -> dict[str, object]:
    """Static metadata for an asset spec: where the table lives and its columns."""
    return {"dagster/uri": uri, "dagster/column_schema": column_schema(columns)}


def failures_preview(failures: pl.DataFrame, limit: int = 20) -> dg.MarkdownMetadataValue:
    """A markdown table of the first failure cases of a check."""
    return dg.MetadataValue.md(markdown_table(failures.head(limit)))


def markdown_table(frame: pl.DataFrame) -> str:
    """A small frame as a markdown table (ids and numbers only are ever passed here)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])
