"""The chart PNGs: size, determinism, one colour per cost center or model, one currency."""

from __future__ import annotations

import base64
import io
from datetime import date
from decimal import Decimal

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.image import imread

from chargeback_pipeline.lib.charts import daily_cost_chart, markdown_image, model_mix_chart
from chargeback_pipeline.lib.tables import MONEY

STRONG = [colormaps["tab20"](2 * i) for i in range(4)]  # the first colours the charts use


def daily(rows: list[tuple[date, str, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(d, cc, Decimal(cost) if cost else None, ccy) for d, cc, cost, ccy in rows],
        schema={
            "day": pl.Date,
            "cost_center": pl.String,
            "total_cost": MONEY,
            "currency": pl.String,
        },
        orient="row",
    )


def mix(rows: list[tuple[str, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(model, Decimal(cost) if cost else None, ccy) for model, cost, ccy in rows],
        schema={"model": pl.String, "total_cost": MONEY, "currency": pl.String},
        orient="row",
    )


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return imread(io.BytesIO(png), format="png")


def has_colour(image: np.ndarray, rgba: tuple[float, ...]) -> bool:
    """Some pixel is exactly this colour (bar interiors are drawn without anti-aliasing)."""
    return bool((np.abs(image[..., :3] - np.array(rgba[:3])) < 1 / 255).all(axis=-1).any())


TWO_CENTERS = daily(
    [
        (date(2026, 11, 1), "CC-1", "1.500000000001", "USD"),
        (date(2026, 11, 1), "CC-2", "4.25", "USD"),
        (date(2026, 11, 3), "CC-1", "2", "USD"),
        (date(2026, 11, 3), "CC-2", None, None),  # unpriced only: no currency, draws nothing
    ]
)


def test_daily_chart_is_a_small_800x400_png_with_one_colour_per_cost_center():
    png = daily_cost_chart(TWO_CENTERS)
    image = pixels(png)
    assert image.shape[:2] == (400, 800)
    assert len(png) < 60_000
    # the larger spender (CC-2) stacks first with the first colour, CC-1 gets the second
    assert has_colour(image, STRONG[0]) and has_colour(image, STRONG[1])
    assert not has_colour(image, STRONG[2])


def test_daily_chart_is_deterministic_and_follows_the_numbers():
    assert daily_cost_chart(TWO_CENTERS) == daily_cost_chart(TWO_CENTERS.clone())
    changed = TWO_CENTERS.with_columns(pl.col("total_cost") * 2)
    assert daily_cost_chart(changed) != daily_cost_chart(TWO_CENTERS)
    assert TWO_CENTERS.schema["total_cost"] == MONEY  # the caller's Decimal frame is untouched


def test_daily_chart_never_adds_two_currencies():
    frame = daily(
        [
            (date(2026, 11, 1), "CC-1", "1", "USD"),
            (date(2026, 11, 1), "CC-2", "9", "EUR"),
        ]
    )
    image = pixels(daily_cost_chart(frame))
    # only the currency with the most cost is drawn: one cost center, one colour
    assert has_colour(image, STRONG[0]) and not has_colour(image, STRONG[1])


def test_empty_frames_still_give_a_png():
    for png in (daily_cost_chart(TWO_CENTERS.clear()), model_mix_chart(mix([]))):
        image = pixels(png)
        assert image.shape[:2] == (400, 800)
        assert not has_colour(image, STRONG[0])


def test_model_mix_has_a_bar_per_priced_model():
    frame = mix(
        [
            ("gpt-4o", "3", "USD"),
            ("gpt-4o-mini", "1", "USD"),
            ("gpt-4o", "0.5", "USD"),
            ("text-embedding-3-small", None, None),
        ]
    )
    png = model_mix_chart(frame)
    image = pixels(png)
    assert image.shape[:2] == (400, 800) and len(png) < 60_000
    assert has_colour(image, STRONG[0]) and has_colour(image, STRONG[1])
    assert not has_colour(image, STRONG[2])
    assert model_mix_chart(frame) == png


def test_model_mix_of_unpriced_usage_draws_no_bars():
    image = pixels(model_mix_chart(mix([("gpt-4o", None, None)])))
    assert not has_colour(image, STRONG[0])


def test_markdown_image_embeds_the_png_bytes():
    png = model_mix_chart(mix([("gpt-4o", "1", "USD")]))
    text = markdown_image(png, "model_mix")
    prefix = "![model_mix](data:image/png;base64,"
    assert text.startswith(prefix) and text.endswith(")")
    assert base64.b64decode(text[len(prefix) : -1]) == png
