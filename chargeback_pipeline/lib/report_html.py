"""The monthly chargeback as one self-contained HTML page: inline CSS, charts as data URIs, no JS.

Money is exact: every amount is the mart's Decimal printed with as many places as the table needs,
and each TOTAL row is the Decimal sum of the rows above it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape

import polars as pl

from chargeback_pipeline.lib.tables import UNALLOCATED

# The page may load nothing from anywhere: images are data URIs, styles inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:24px auto;max-width:980px;color:#1f2933;background:#fff;padding:0 16px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 8px;
 border-bottom:2px solid #d9e2ec;padding-bottom:4px}h3{font-size:1em;margin:18px 0 6px}
.meta{color:#52606d;font-size:.9em;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{flex:1 1 160px;border:1px solid #d9e2ec;border-radius:6px;padding:10px 12px;
 background:#f5f7fa}
.card .label{font-size:.8em;color:#52606d;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:1.15em;font-weight:600;font-variant-numeric:tabular-nums;
 overflow-wrap:anywhere}
.card .note{font-size:.8em;color:#52606d}
.card.warn{background:#fff8e6;border-color:#f0b429}
img{display:block;max-width:100%;height:auto;margin:8px 0;border:1px solid #e4e7eb}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:6px 0 12px}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7eb;text-align:right;
 font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}
th{background:#243b53;color:#fff;font-weight:600}
tr.total td{font-weight:700;border-top:2px solid #243b53;background:#f0f4f8}
tr.unallocated td{background:#fff8e6}
footer{margin-top:32px;color:#7b8794;font-size:.8em}
"""


@dataclass(frozen=True)
class ReportInputs:
    """What the page shows: the month's `chargeback_monthly` and `model_mix` rows and two PNGs."""

    month: str
    monthly: pl.DataFrame
    mix: pl.DataFrame
    daily_chart: bytes
    mix_chart: bytes
    generated_at: datetime


def build_report_html(inputs: ReportInputs) -> str:
    """The whole page as text."""
    monthly = inputs.monthly.sort(["total_cost", "cost_center"], descending=[True, False])
    places = money_places([*monthly["total_cost"], *inputs.mix["total_cost"]])
    title = f"Azure OpenAI chargeback {inputs.month}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Month <b>{escape(inputs.month)}</b> (UTC) &middot; generated '
        f"{inputs.generated_at:%Y-%m-%d %H:%M:%S %Z} &middot; source: DuckDB marts "
        "<code>chargeback_monthly</code>, <code>model_mix</code>, "
        "<code>chargeback_daily</code></p>",
        summary_cards(monthly, places),
        "<h2>Daily cost by cost center</h2>",
        image(inputs.daily_chart, f"Daily cost by cost center, {inputs.month}"),
        "<h2>Model mix</h2>",
        image(inputs.mix_chart, f"Share of cost by model, {inputs.month}"),
        "<h2>Cost by cost center</h2>",
        cost_center_table(monthly, places),
        "<h2>Each cost center by model</h2>",
        *(
            model_table(center, inputs.mix.filter(pl.col("cost_center") == center), places)
            for center in monthly["cost_center"].unique(maintain_order=True)
        ),
        "<footer>Amounts are exact decimals from the marts; TOTAL rows are their exact sums. "
        "Unpriced calls (no price in force) count requests and tokens but no cost. "
        "No prompt or completion text is stored anywhere this report reads.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def money_places(amounts: Iterable[Decimal | None]) -> int:
    """Decimal places that print every amount exactly (at least 2)."""
    exponents = [
        -int(amount.normalize().as_tuple().exponent)
        for amount in amounts
        if amount is not None and amount.is_finite()
    ]
    return max([2, *exponents])


def money(amount: Decimal | None, places: int) -> str:
    """An amount with thousands separators and `places` decimals; None is unpriced."""
    return "unpriced" if amount is None else f"{amount:,.{places}f}"


def exact_sum(amounts: Iterable[Decimal | None]) -> Decimal:
    """The Decimal sum of the priced amounts (unpriced rows add nothing)."""
    return sum((amount for amount in amounts if amount is not None), Decimal(0))


def summary_cards(monthly: pl.DataFrame, places: int) -> str:
    """Total cost per currency, requests, tokens, unallocated and unpriced figures."""
    unallocated = monthly.filter(pl.col("cost_center") == UNALLOCATED)
    unpriced_requests = int(monthly["unpriced_requests"].sum() or 0)
    unpriced_tokens = int(monthly["unpriced_tokens"].sum() or 0)
    cards = [
        *(
            card(
                f"total cost {currency}", money(exact_sum(rows["total_cost"]), places), "total-cost"
            )
            for currency, rows in by_currency(monthly)
        ),
        card("requests", f"{int(monthly['requests'].sum() or 0):,}", "requests"),
        card("tokens", f"{int(monthly['total_tokens'].sum() or 0):,}", "tokens"),
        card(
            "unallocated cost",
            money(exact_sum(unallocated["total_cost"]), places),
            "unallocated",
            note=f"{int(unallocated['requests'].sum() or 0):,} requests",
            warn=not unallocated.is_empty(),
        ),
        card(
            "unpriced requests",
            f"{unpriced_requests:,}",
            "unpriced",
            note=f"{unpriced_tokens:,} tokens",
            warn=unpriced_requests > 0,
        ),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


def card(label: str, value: str, key: str, note: str = "", warn: bool = False) -> str:
    """One headline figure; `data-figure` names it for readers of the page."""
    css = "card warn" if warn else "card"
    extra = f'<div class="note">{escape(note)}</div>' if note else ""
    return (
        f'<div class="{css}" data-figure="{escape(key)}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div>{extra}</div>'
    )


def by_currency(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """Rows per currency (amounts in two currencies are never added); with one currency, rows
    without one (only unpriced calls) belong to it, so its TOTAL counts every request."""
    currencies = sorted({str(c) for c in frame["currency"] if c is not None})
    if len(currencies) <= 1:
        return [(currencies[0] if currencies else "", frame)]
    groups = [(c, frame.filter(pl.col("currency") == c)) for c in currencies]
    unpriced = frame.filter(pl.col("currency").is_null())
    return groups + ([("", unpriced)] if unpriced.height else [])


def cost_center_table(monthly: pl.DataFrame, places: int) -> str:
    """One row per cost center and a TOTAL row per currency."""
    rows = [
        table_row(
            [
                str(r["cost_center"]),
                f"{r['requests']:,}",
                f"{r['total_tokens']:,}",
                money(r["total_cost"], places),
                str(r["currency"] or ""),
                f"{r['unpriced_requests']:,}",
            ],
            css="unallocated" if r["cost_center"] == UNALLOCATED else None,
            data=str(r["cost_center"]),
        )
        for r in monthly.iter_rows(named=True)
    ]
    return table(
        ["cost center", "requests", "tokens", "cost", "currency", "unpriced requests"],
        rows,
        total_rows(monthly, places, "TOTAL", extra=[f"{monthly['unpriced_requests'].sum():,}"]),
        table_id="cost-centers",
    )


def model_table(center: str, mix: pl.DataFrame, places: int) -> str:
    """A cost center's models with requests, tokens, cost and share, and its total."""
    rows = [
        table_row(
            [
                str(r["model"] or "unknown model"),
                f"{r['requests']:,}",
                f"{r['total_tokens']:,}",
                money(r["total_cost"], places),
                str(r["currency"] or ""),
                "" if r["share_of_cost"] is None else f"{100 * r['share_of_cost']:.2f}%",
            ]
        )
        for r in mix.sort(["total_cost", "model"], descending=[True, False]).iter_rows(named=True)
    ]
    return f"<h3>{escape(center)}</h3>" + table(
        ["model", "requests", "tokens", "cost", "currency", "share of cost"],
        rows,
        total_rows(mix, places, f"{center} total", extra=[""]),
        table_id=None,
    )


def total_rows(frame: pl.DataFrame, places: int, label: str, extra: Sequence[str]) -> list[str]:
    """A total per currency: the requests, tokens and exact cost of that currency's rows."""
    return [
        table_row(
            [
                label,
                f"{int(rows['requests'].sum() or 0):,}",
                f"{int(rows['total_tokens'].sum() or 0):,}",
                money(exact_sum(rows["total_cost"]), places),
                currency,
                *extra,
            ],
            css="total",
        )
        for currency, rows in by_currency(frame)
    ]


def table_row(cells: Sequence[str], css: str | None = None, data: str | None = None) -> str:
    attributes = (f' class="{css}"' if css else "") + (
        f' data-cost-center="{escape(data)}"' if data is not None else ""
    )
    return f"<tr{attributes}>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>"


def table(
    header: Sequence[str], rows: Sequence[str], totals: Sequence[str], table_id: str | None
) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    ident = f' id="{table_id}"' if table_id else ""
    return (
        f"<table{ident}><thead><tr>{head}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody><tfoot>"
        + "".join(totals)
        + "</tfoot></table>"
    )


def image(png: bytes, alt: str) -> str:
    """A PNG inline as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" width="800" height="400" src="data:image/png;base64,{data}">'
