"""The reference seeds are observed on a schedule, so edits get a new data version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from chargeback_pipeline import constants as c
from chargeback_pipeline.definitions import defs


def test_every_seed_is_observed_after_each_quarter_hour(chargeback_env):
    definitions = defs()
    seeds = {
        key.to_user_string()
        for key in definitions.resolve_asset_graph().asset_keys_for_group(c.REFERENCE_GROUP)
    }
    assert seeds == {"price_book", "deployments", "cost_centers", "budgets"}
    sensor = definitions.resolve_sensor_def("reference_observation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # The seeds are this sensor's, not left to a default sensor nobody described.
    targeted = sensor.asset_selection.resolve(definitions.resolve_asset_graph(), allow_missing=True)
    assert {key.to_user_string() for key in targeted} == seeds
    with dg.instance_for_test() as instance:
        start = datetime(2026, 11, 27, 10, 14, tzinfo=UTC)
        first = dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, evaluation_time=start
        )
        later = dg.evaluate_automation_conditions(
            defs=definitions,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=start + timedelta(minutes=2),
        )
    requested = {
        key.to_user_string()
        for key in (dg.AssetKey(name) for name in seeds)
        if later.get_requested_partitions(key)
    }
    assert requested == seeds
