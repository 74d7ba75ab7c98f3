"""PNG charts of the marts: daily cost per cost center and the model mix (numbers and ids only).

Frames in, PNG bytes out. Money stays Decimal in the frames; it becomes float only to be drawn.
Figures are built without pyplot (no global state, no GUI backend: PNGs go through Agg) and
saved without a timestamp, so the same frame always gives the same bytes.
"""

from __future__ import annotations

import base64
import io
from datetime import date

import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.0, 100
PALETTE = colormaps["tab20"]
MAX_MODELS = 12


def daily_cost_chart(daily: pl.DataFrame) -> bytes:
    """Stacked bars of cost per day and cost center.

    Columns: day, cost_center, total_cost, currency; days without rows show as empty bars."""
    rows, currency = _one_currency(daily)
    figure, axes = _figure()
    if rows.is_empty():
        return _empty(figure, axes, "Daily cost by cost center: no data")
    per_day = (
        rows.group_by("day", "cost_center")
        .agg(pl.col("total_cost").sum())
        .with_columns(pl.col("total_cost").cast(pl.Float64))
    )
    days = per_day.select(pl.date_range(pl.col("day").min(), pl.col("day").max()).alias("day"))
    centers = _by_cost(per_day, "cost_center")
    grid = (
        per_day.pivot(on="cost_center", index="day", values="total_cost")
        .join(days, on="day", how="right")
        .sort("day")
        .fill_null(0.0)
    )
    positions = list(range(grid.height))
    bottom = [0.0] * grid.height
    for index, center in enumerate(centers):
        values = grid[center].to_list()
        axes.bar(positions, values, bottom=bottom, label=center, color=_colour(index))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    day_list: list[date] = grid["day"].to_list()
    axes.set_xticks(positions, [f"{day:%d}" for day in day_list])
    axes.set_ylabel(f"cost ({currency})")
    axes.set_title(f"Daily cost by cost center, {_month_span(day_list)}")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def model_mix_chart(mix: pl.DataFrame) -> bytes:
    """Horizontal bars of each model's share of cost (columns: model, total_cost, currency)."""
    rows, currency = _one_currency(mix)
    figure, axes = _figure()
    per_model = (
        rows.group_by("model")
        .agg(pl.col("total_cost").sum())
        .with_columns(pl.col("total_cost").fill_null(0).cast(pl.Float64))
    )
    total = float(per_model["total_cost"].sum() or 0.0)
    if per_model.is_empty() or total <= 0:
        return _empty(figure, axes, "Model mix: no priced usage")
    ranked = per_model.sort(["total_cost", "model"], descending=[False, True]).tail(MAX_MODELS)
    shares = [100.0 * value / total for value in ranked["total_cost"].to_list()]
    labels = [str(model) for model in ranked["model"].to_list()]
    # barh draws bottom-up: the largest model is last and gets the first colour
    colours = [_colour(len(labels) - 1 - i) for i in range(len(labels))]
    bars = axes.barh(labels, shares, color=colours)
    axes.bar_label(bars, labels=[f"{share:.1f}%" for share in shares], padding=3, fontsize=8)
    axes.set_xlim(0, max(shares) * 1.15)
    axes.set_xlabel(f"share of cost ({currency} {total:,.2f} in all)")
    axes.set_title("Model mix by cost")
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown showing a PNG inline (a data URI), for Dagster's markdown metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _one_currency(frame: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """The rows of the currency with the most cost: amounts in two currencies never add up."""
    priced = frame.filter(pl.col("currency").is_not_null())
    if priced.is_empty():
        return frame.clear(), ""
    ranked = (
        priced.group_by("currency")
        .agg(pl.col("total_cost").sum())
        .sort(["total_cost", "currency"], descending=[True, False], nulls_last=True)
    )
    currency = str(ranked["currency"][0])
    # Unpriced rows draw nothing; keep them out rather than as nulls in the sums.
    return priced.filter(pl.col("currency") == currency), currency


def _by_cost(frame: pl.DataFrame, key: str) -> list[str]:
    """Keys by total cost, largest first (ties by name), so the big spenders stack at the bottom."""
    ranked = (
        frame.group_by(key)
        .agg(pl.col("total_cost").sum())
        .sort(["total_cost", key], descending=[True, False])
    )
    return [str(value) for value in ranked[key].to_list()]


def _colour(index: int) -> tuple[float, float, float, float]:
    """tab20's ten strong hues first, then their light twins: neighbours never look alike."""
    return PALETTE((2 * index) % 20 + (index // 10) % 2)


def _month_span(days: list[date]) -> str:
    first, last = days[0], days[-1]
    return (
        f"{first:%Y-%m}"
        if (first.year, first.month) == (last.year, last.month)
        else (f"{first} to {last}")
    )


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _empty(figure: Figure, axes: Axes, message: str) -> bytes:
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No Software/date chunks: the same frame always gives the same bytes.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
