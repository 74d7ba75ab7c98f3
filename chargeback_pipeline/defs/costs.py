"""usage_events + reference data -> usage_costs: allocated and priced, recomputable any time."""

import os

import dagster as dg

from chargeback_pipeline import constants as c
from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.checks import unallocated_share, unpriced_usage
from chargeback_pipeline.lib.costs import usage_costs as cost_usage
from chargeback_pipeline.lib.delta import read_hour_batches, replace_hour_batches
from chargeback_pipeline.lib.hour_summary import HourTally
from chargeback_pipeline.lib.validation import schema_failures, usage_costs_schema
from chargeback_pipeline.metadata import column_schema, failures_preview, usage_costs_metadata
from chargeback_pipeline.partitions import hourly_partitions
from chargeback_pipeline.resources import ChargebackSettings, fail_fast_on_bad_setup

DEFAULT_UNALLOCATED_WARN_SHARE = "0.05"


@dg.asset(
    name=c.USAGE_COSTS,
    group_name=c.COSTS_GROUP,
    description=(
        "usage_events priced with the price book in force at each call and allocated to a cost "
        "center (known tag, else subscription mapping, else UNALLOCATED). Exact decimals."
    ),
    deps=[c.USAGE_EVENTS, "price_book", "cost_centers"],
    partitions_def=hourly_partitions,
    owners=c.OWNERS,
    kinds={"delta", "polars"},
    metadata={"dagster/column_schema": column_schema(tables.USAGE_COSTS)},
    # Partitioned like the asset, so the UI and GraphQL show each check's status per hour.
    check_specs=[
        dg.AssetCheckSpec(
            "pandera_schema",
            asset=c.USAGE_COSTS,
            description="Every row matches the usage_costs schema (pandera).",
            partitions_def=hourly_partitions,
        ),
        dg.AssetCheckSpec(
            "unpriced_usage",
            asset=c.USAGE_COSTS,
            description="Every billable call of the hour found a price-book row in force.",
            partitions_def=hourly_partitions,
        ),
        dg.AssetCheckSpec(
            "unallocated_share",
            asset=c.USAGE_COSTS,
            description="At most CHARGEBACK_UNALLOCATED_WARN_SHARE of the hour's cost unallocated.",
            partitions_def=hourly_partitions,
        ),
    ],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
)
def usage_costs(
    context: dg.AssetExecutionContext, chargeback: ChargebackSettings
) -> dg.MaterializeResult:
    hour = context.partition_key
    options = chargeback.lake_options()
    with fail_fast_on_bad_setup():
        reference = chargeback.reference()
    schema = usage_costs_schema()
    tally = HourTally(lambda frame: schema_failures(frame, schema))
    # Pricing is row by row: the hour streams from usage_events into usage_costs in batches.
    events = read_hour_batches(chargeback.table(c.USAGE_EVENTS), hour, tables.USAGE_EVENTS, options)
    costs = tally.observe(cost_usage(batch, reference) for batch in events)
    costs_uri = chargeback.table(c.USAGE_COSTS)
    replace_hour_batches(costs_uri, costs, hour, tables.USAGE_COSTS, options)
    summary = tally.summary(tables.USAGE_COSTS)
    unpriced = unpriced_usage(summary)
    share = unallocated_share(summary)
    warn_above = float(
        os.environ.get("CHARGEBACK_UNALLOCATED_WARN_SHARE", DEFAULT_UNALLOCATED_WARN_SHARE)
    )
    failures = tally.failures()
    return dg.MaterializeResult(
        metadata={
            **usage_costs_metadata(summary, hour),
            "dagster/uri": costs_uri,
            "unpriced_requests": int(unpriced["requests"].sum()),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="pandera_schema",
                passed=failures.is_empty(),
                metadata={"failure_cases": len(failures), "preview": failures_preview(failures)},
            ),
            dg.AssetCheckResult(
                check_name="unpriced_usage",
                passed=unpriced.is_empty(),
                severity=dg.AssetCheckSeverity.ERROR,
                description="Billable usage with no price-book row in force; add the rows listed.",
                metadata={
                    "models": ", ".join(str(m) for m in unpriced["model"].to_list()) or "none",
                    "preview": failures_preview(unpriced),
                },
            ),
            dg.AssetCheckResult(
                check_name="unallocated_share",
                passed=float(share) <= warn_above,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"share": float(share), "warn_above": warn_above},
            ),
        ],
    )
