"""The one resource every asset uses: settings resolved from CHARGEBACK_* at run time."""

import dagster as dg

from chargeback_pipeline.resources import ChargebackSettings


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"chargeback": ChargebackSettings()})
