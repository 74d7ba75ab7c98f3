"""The HTML report builder on tiny frames: exact totals, escaping, nothing loaded from outside."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser

import polars as pl

from chargeback_pipeline.lib.report_html import ReportInputs, build_report_html, money_places
from chargeback_pipeline.lib.tables import MONEY

PNG = b"\x89PNG\r\n\x1a\nnot-a-real-image"
GENERATED = datetime(2026, 12, 1, 6, 30, 5, tzinfo=UTC)


class Tables(HTMLParser):
    """Rows of every table with an id, and the text of every `data-figure` card, from HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[str, list[str]]]] = {}
        self.figures: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._css = ""
        self._cell: list[str] | None = None
        self._figure: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table" and found.get("id"):
            self._table = found["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row, self._css = [], found.get("class") or ""
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "div" and self._figure:
            self._depth += 1
        elif tag == "div" and found.get("data-figure"):
            self._figure, self._depth = found["data-figure"], 1
            self.figures[self._figure] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._figure:
            self._depth -= 1
            self._figure = self._figure if self._depth else None
        elif tag == "table":
            self._table = None
        elif tag == "tr" and self._table and self._row:
            self.tables[self._table].append((self._css, self._row))
            self._row = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._figure:
            self.figures[self._figure] += data + " "


def parse(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    parser.close()
    return parser


def amount(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def monthly(rows: list[tuple[str, int, int, str | None, str | None, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(cc, r, t, Decimal(c) if c else None, ccy, ur, ut) for cc, r, t, c, ccy, ur, ut in rows],
        schema={
            "cost_center": pl.String,
            "requests": pl.Int64,
            "total_tokens": pl.Int64,
            "total_cost": MONEY,
            "currency": pl.String,
            "unpriced_requests": pl.Int64,
            "unpriced_tokens": pl.Int64,
        },
        orient="row",
    ).with_columns(month=pl.lit("2026-11"))


def mix(rows: list[tuple[str, str, int, int, str | None, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (cc, m, r, t, Decimal(c) if c else None, ccy, Decimal(s) if s else None)
            for cc, m, r, t, c, ccy, s in rows
        ],
        schema={
            "cost_center": pl.String,
            "model": pl.String,
            "requests": pl.Int64,
            "total_tokens": pl.Int64,
            "total_cost": MONEY,
            "currency": pl.String,
            "share_of_cost": pl.Decimal(9, 6),
        },
        orient="row",
    )


# Three amounts whose float sum is not their decimal sum (0.1 + 0.2 != 0.3 in binary).
MONTHLY = monthly(
    [
        ("CC-1", 3, 300, "0.100000000001", "USD", 0, 0),
        ("CC-2", 5, 500, "0.2", "USD", 1, 40),
        ("UNALLOCATED", 2, 20, "1234567.000000000002", "USD", 0, 0),
    ]
)
MIX = mix(
    [
        ("CC-1", "gpt-4o", 3, 300, "0.100000000001", "USD", "1"),
        ("CC-2", "gpt-4o-mini", 4, 460, "0.2", "USD", "1"),
        ("CC-2", "<script>alert(1)</script>", 1, 40, None, "USD", None),
        ("UNALLOCATED", "gpt-4o", 2, 20, "1234567.000000000002", "USD", "1"),
    ]
)


def report(monthly_rows: pl.DataFrame = MONTHLY, mix_rows: pl.DataFrame = MIX) -> str:
    return build_report_html(
        ReportInputs("2026-11", monthly_rows, mix_rows, PNG, PNG + b"2", GENERATED)
    )


def test_total_row_is_the_exact_decimal_sum_of_the_cost_centers():
    rows = parse(report()).tables["cost-centers"]
    body = [cells for css, cells in rows if css != "total"]
    totals = [cells for css, cells in rows if css == "total"]
    assert [cells[0] for cells in body] == ["UNALLOCATED", "CC-2", "CC-1"]  # by cost
    assert len(totals) == 1
    total = totals[0]
    assert total[0] == "TOTAL"
    assert amount(total[3]) == Decimal("1234567.300000000003")
    assert amount(total[3]) == sum(amount(cells[3]) for cells in body)
    assert total[3] == "1,234,567.300000000003"  # printed exactly, not as a rounded float
    assert (total[1], total[2], total[5]) == ("10", "820", "1")


def test_page_states_month_generation_time_unallocated_and_unpriced():
    html = report()
    parsed = parse(html)
    assert "Azure OpenAI chargeback 2026-11" in html
    assert "2026-12-01 06:30:05 UTC" in html
    assert parsed.figures["unallocated"].split() == [
        "unallocated",
        "cost",
        "1,234,567.000000000002",
        "2",
        "requests",
    ]
    assert parsed.figures["unpriced"].split() == ["unpriced", "requests", "1", "40", "tokens"]
    assert parsed.figures["total-cost"].split()[-1] == "1,234,567.300000000003"
    assert 'class="unallocated" data-cost-center="UNALLOCATED"' in html


def test_each_cost_center_has_a_model_table_whose_total_is_its_cost():
    html = report()
    for center, cost in [("CC-1", "0.100000000001"), ("CC-2", "0.200000000000")]:
        section = html.split(f"<h3>{center}</h3>", 1)[1].split("</table>", 1)[0]
        assert f"<td>{center} total</td>" in section
        assert f"<td>{cost}</td><td>USD</td><td></td></tr>" in section


def test_text_from_the_data_is_escaped_and_nothing_is_loaded_from_outside():
    html = report()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "unpriced" in html  # the unpriced model's cost cell
    assert not re.search(r"https?:", html)
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "default-src 'none'" in html  # the browser itself refuses anything else


def test_two_currencies_get_two_totals_and_are_never_added():
    rows = monthly(
        [
            ("CC-1", 1, 10, "2", "USD", 0, 0),
            ("CC-2", 1, 10, "3", "EUR", 0, 0),
            ("CC-3", 4, 0, None, None, 4, 0),  # only unpriced calls: no currency
        ]
    )
    parsed = parse(report(rows, MIX.clear()))
    totals = [cells for css, cells in parsed.tables["cost-centers"] if css == "total"]
    assert [(t[3], t[4], t[1]) for t in totals] == [
        ("3.00", "EUR", "1"),
        ("2.00", "USD", "1"),
        ("0.00", "", "4"),
    ]


def test_one_currency_total_counts_cost_centers_with_only_unpriced_calls():
    rows = monthly(
        [
            ("CC-1", 1, 10, "2", "USD", 0, 0),
            ("CC-3", 4, 7, None, None, 4, 7),
        ]
    )
    totals = [c for css, c in parse(report(rows, MIX.clear())).tables["cost-centers"] if css]
    assert [(t[1], t[2], t[3], t[4]) for t in totals] == [("5", "17", "2.00", "USD")]


def test_money_places_print_every_amount_exactly():
    assert money_places([Decimal("1.500000000000"), None]) == 2
    assert money_places([Decimal("0.000000000001"), Decimal("2")]) == 12
    assert money_places([]) == 2
