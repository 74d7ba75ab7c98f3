"""Reference seeds as observable source assets: their data version is their content hash."""

import dagster as dg

from chargeback_pipeline.constants import OWNERS, REFERENCE_GROUP
from chargeback_pipeline.lib.marts import BUDGETS
from chargeback_pipeline.lib.reference import (
    COST_CENTERS,
    DEPLOYMENTS,
    PRICE_BOOK,
    content_version,
)
from chargeback_pipeline.resources import ChargebackSettings

OBSERVE_CRON = "*/15 * * * *"
"""How often the seeds' data versions are refreshed (the reference_observation sensor)."""
MISSING_VERSION = "missing"
"""The data version of an optional seed that is absent (budgets.csv): marts read it as empty."""

_DESCRIPTIONS = {
    PRICE_BOOK: "Effective-dated list prices per model and deployment type (USD per 1M tokens).",
    DEPLOYMENTS: "Azure OpenAI deployments: model, deployment type, region, billing per backend.",
    COST_CENTERS: "Effective-dated mapping of APIM subscriptions to cost centers and owners.",
    BUDGETS: "Monthly budget per cost center and currency (optional), read by budget_status.",
}


def reference_asset(file_name: str) -> dg.SourceAsset:
    """An observable source asset for one reference CSV."""

    @dg.observable_source_asset(
        name=file_name.removesuffix(".csv"),
        group_name=REFERENCE_GROUP,
        description=_DESCRIPTIONS[file_name],
        owners=OWNERS,
        tags={"dagster/kind/csv": ""},
        # An edited seed shows up in the UI (new data version, marts stale) within minutes.
        automation_condition=dg.AutomationCondition.cron_tick_passed(OBSERVE_CRON)
        & ~dg.AutomationCondition.in_progress(),
    )
    def _observe(chargeback: ChargebackSettings) -> dg.DataVersion:
        path = chargeback.resolve().reference_dir / file_name
        # Only budgets may be absent; a missing required seed fails its observation.
        if file_name == BUDGETS and not path.is_file():
            return dg.DataVersion(MISSING_VERSION)
        return dg.DataVersion(content_version(path))

    return _observe


price_book = reference_asset(PRICE_BOOK)
deployments = reference_asset(DEPLOYMENTS)
cost_centers = reference_asset(COST_CENTERS)
budgets = reference_asset(BUDGETS)
