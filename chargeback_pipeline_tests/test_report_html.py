"""`chargeback report --format html` rendered by headless Chromium: a real page, the marts' totals.

Chromium is the Debian package `chromium`; `make chromium` (part of `make test`) installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread

from chargeback_pipeline.cli import main
from chargeback_pipeline.defs.marts import dbt_like_marts
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline_tests.defs.test_marts_charts import bill_generated_hour
from chargeback_pipeline_tests.lib.test_report_html import amount, parse

WINDOW = (1000, 1400)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: run `make chromium` (or `make test`)")
    return found


def headless(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Chromium without GPU, sandbox (root in CI) or background traffic, on its own profile."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *extra,
        url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed


@pytest.fixture
def report_page(chargeback_env: Path) -> Path:
    """An hour of generated traffic billed into the marts, written by the CLI as HTML."""
    bill_generated_hour(80)
    assert dg.materialize([dbt_like_marts], resources={"chargeback": ChargebackSettings()}).success
    out = chargeback_env / "html"
    assert main(["report", "--format", "html", "--out", str(out)]) == 0
    return out / "chargeback-2026-11.html"


def marts_costs() -> tuple[Decimal, dict[str, Decimal]]:
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        rows = con.sql(
            "select cost_center, total_cost from chargeback_monthly where month = '2026-11'"
        ).fetchall()
    costs = {str(center): cost for center, cost in rows}
    return sum(costs.values(), Decimal(0)), costs


@pytest.mark.slow
def test_chromium_renders_the_report_with_the_marts_totals(report_page: Path, tmp_path: Path):
    url = report_page.as_uri()
    dom = headless(url, tmp_path / "profile", "--dump-dom").stdout
    shot = tmp_path / "report.png"
    headless(url, tmp_path / "profile", f"--screenshot={shot}")

    total, costs = marts_costs()
    assert total > 0 and len(costs) >= 3, costs
    page = parse(dom)
    rows = page.tables["cost-centers"]
    shown = {cells[0]: amount(cells[3]) for css, cells in rows if css != "total"}
    assert shown == costs
    assert [amount(cells[3]) for css, cells in rows if css == "total"] == [total]
    assert "2026-11" in dom and "TOTAL" in dom

    image = imread(shot, format="png")
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    rgb = (image[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    non_white = (rgb < 245).any(axis=1).mean()
    colours = len(np.unique(rgb, axis=0))
    assert non_white > 0.05, f"only {non_white:.1%} of the page is not white"
    assert colours > 200, f"only {colours} distinct colours: charts and tables did not render"
    # the charts' first bar colour, drawn at its native size: the data-URI images were shown
    first = (np.array(colormaps["tab20"](0)[:3]) * 255).round().astype(np.uint8)
    assert (rgb == first).all(axis=1).sum() > 500


def test_cli_writes_beside_the_marts_by_default_and_refuses_a_bad_month(
    report_page: Path, chargeback_env: Path, capsys: pytest.CaptureFixture[str]
):
    capsys.readouterr()
    assert main(["report", "--format", "html", "--month", "2026-11"]) == 0
    written = chargeback_env / "reports" / "chargeback-2026-11.html"
    assert capsys.readouterr().out.strip() == str(written)
    # same marts, same month: the same page but for its generation time
    strip = re.compile(r"generated [0-9: -]+UTC")
    assert strip.sub("", written.read_text()) == strip.sub("", report_page.read_text())

    assert main(["report", "--format", "html", "--month", "2026-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
