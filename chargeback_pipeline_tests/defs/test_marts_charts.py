"""Charts on the marts' materialisations and the monthly report asset, over one generated hour."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import duckdb
from matplotlib.image import imread

from chargeback_pipeline.cli import forward_all
from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.defs.marts import ReportConfig, dbt_like_marts, monthly_chargeback_report
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings

HOUR = "2026-11-27-13:00"
DATA_URI = re.compile(r"^!\[(?P<alt>[^\]]*)\]\(data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)\)$")


def bill_generated_hour(calls: int) -> None:
    """Generated traffic for HOUR through the forwarder, then ingested and priced in-process."""
    assert forward_all(generate_hour(datetime(2026, 11, 27, 13, tzinfo=UTC), calls=calls)) == {
        202: calls
    }
    result = dg.materialize(
        [ingested_envelopes, usage_costs],
        partition_key=HOUR,
        resources={"chargeback": ChargebackSettings()},
    )
    assert result.success


def test_marts_carry_charts_and_the_report_asset_writes_the_month(chargeback_env):
    bill_generated_hour(60)

    result = dg.materialize(
        [dbt_like_marts, monthly_chargeback_report],
        resources={"chargeback": ChargebackSettings()},
    )
    assert result.success
    metadata = {
        event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata
        for event in result.get_asset_materialization_events()
    }

    for mart in ("chargeback_daily", "model_mix"):
        match = DATA_URI.match(metadata[mart]["chart"].value)
        assert match, mart
        png = base64.b64decode(match["data"])
        assert match["alt"] == mart and len(png) < 60_000
        assert imread(io.BytesIO(png), format="png").shape[:2] == (400, 800)
    assert "chart" not in metadata["chargeback_monthly"]

    report = metadata["monthly_chargeback_report"]
    path = chargeback_env / "reports" / "chargeback-2026-11.html"
    assert report["dagster/uri"].value == str(path)
    assert report["month"].value == "2026-11"
    html = path.read_text()
    with duckdb.connect(str(load_settings().duckdb_path), read_only=True) as con:
        (total,) = con.sql("select sum(total_cost) from chargeback_monthly").fetchone()
    assert isinstance(total, Decimal) and total > 0
    places = -total.normalize().as_tuple().exponent
    assert "<td>TOTAL</td>" in html and f"{total:,.{max(places, 2)}f}" in html


def test_report_asset_honours_its_config(chargeback_env, tmp_path):
    bill_generated_hour(10)
    folder = tmp_path / "elsewhere"
    result = dg.materialize(
        [dbt_like_marts, monthly_chargeback_report],
        resources={"chargeback": ChargebackSettings()},
        run_config=dg.RunConfig(
            ops={
                "monthly_chargeback_report": ReportConfig(month="2026-11", reports_dir=str(folder))
            }
        ),
    )
    assert result.success
    assert [p.name for p in folder.iterdir()] == ["chargeback-2026-11.html"]
    assert not (chargeback_env / "reports").exists()
