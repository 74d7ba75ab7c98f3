"""Each hour held against APIM's Log Analytics: lost envelopes, and LLM-log token upgrades."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg
from azure.identity import DefaultAzureCredential
from azure.monitor.query import LogsQueryClient

from chargeback_pipeline import constants as c
from chargeback_pipeline.lib import tables
from chargeback_pipeline.lib.costs import usage_costs as cost_usage
from chargeback_pipeline.lib.delta import read_hours, replace_hour
from chargeback_pipeline.lib.hours import hour_start
from chargeback_pipeline.lib.log_analytics import (
    HourLogs,
    LogAnalyticsError,
    LogAnalyticsThrottled,
    fetch_window,
)
from chargeback_pipeline.lib.reconciliation import (
    LostEnvelopes,
    TokenUpgrade,
    lost_envelopes,
    lost_tolerance,
    seen_request_ids,
    upgrade_tokens,
)
from chargeback_pipeline.metadata import markdown_table
from chargeback_pipeline.partitions import hourly_partitions
from chargeback_pipeline.resources import ChargebackSettings, fail_fast_on_bad_setup

USAGE_RECONCILIATION = "usage_reconciliation"
WORKSPACE_ENV = "CHARGEBACK_LOG_ANALYTICS_WORKSPACE_ID"
LOST_CHECK = "lost_envelopes"
UPGRADE_CHECK = "tokens_upgraded"
THROTTLED_RETRIES = 3
THROTTLED_WAIT_SECONDS = 60.0
CLIENT_RETRIES = 3
"""The client's own quick retries (Retry-After honoured) before a throttle reaches Dagster."""


class LogAnalyticsSettings(dg.ConfigurableResource):
    """The workspace APIM logs into (unset = CHARGEBACK_LOG_ANALYTICS_WORKSPACE_ID at run time)."""

    workspace_id: str | None = None
    endpoint: str | None = None

    def workspace(self) -> str | None:
        return self.workspace_id or os.environ.get(WORKSPACE_ENV) or None

    @contextmanager
    def client(self) -> Iterator[LogsQueryClient]:
        """A query client signed in as the run's identity (DefaultAzureCredential)."""
        options = {"endpoint": self.endpoint} if self.endpoint else {}
        with (
            DefaultAzureCredential() as credential,
            LogsQueryClient(credential, retry_total=CLIENT_RETRIES, **options) as client,
        ):
            yield client


@contextmanager
def _query_errors() -> Iterator[None]:
    """Throttling waits and retries; setup errors (role, workspace, query) fail without retries."""
    try:
        yield
    except LogAnalyticsThrottled as error:
        wait = THROTTLED_WAIT_SECONDS if error.retry_after is None else error.retry_after
        raise dg.RetryRequested(max_retries=THROTTLED_RETRIES, seconds_to_wait=wait) from error
    except LogAnalyticsError as error:
        if error.retryable:
            raise
        raise dg.Failure(description=str(error), allow_retries=False) from error


def _tolerance() -> float:
    try:
        return lost_tolerance(os.environ)
    except ValueError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


def _skipped(reason: str) -> dg.MaterializeResult:
    metadata = {"status": "skipped", "reason": reason}
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(check_name=name, passed=True, metadata=metadata)
            for name in (LOST_CHECK, UPGRADE_CHECK)
        ],
    )


def _lost_check(lost: LostEnvelopes, logs: HourLogs) -> dg.AssetCheckResult:
    per_subscription = {
        str(row["subscription_id"]): {
            "calls": row["calls"],
            "lost": row["lost"],
            "sample_ids": row["sample_ids"],
        }
        for row in lost.per_subscription.iter_rows(named=True)
    }
    preview = lost.per_subscription.with_columns(
        lost.per_subscription["sample_ids"].list.join(", ")
    )
    return dg.AssetCheckResult(
        check_name=LOST_CHECK,
        passed=lost.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="Gateway calls with no envelope billed or quarantined for the hour.",
        metadata={
            "gateway_calls": lost.gateway_calls,
            "lost": lost.lost,
            "share": lost.share,
            "tolerance": lost.tolerance,
            "per_subscription": dg.MetadataValue.json(per_subscription),
            "by_response_code": dg.MetadataValue.json(
                {str(r["response_code"]): r["lost"] for r in lost.by_response_code.to_dicts()}
            ),
            "partial_errors": list(logs.partial_errors),
            "preview": dg.MetadataValue.md(markdown_table(preview)),
        },
    )


def _upgrade_check(upgrade: TokenUpgrade, logs: HourLogs) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=UPGRADE_CHECK,
        passed=upgrade.not_upgraded == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description="Rows still on gateway or estimated counts have no row in the LLM log.",
        metadata={
            "rows_upgraded": upgrade.upgraded,
            "rows_changed": upgrade.changed,
            "not_upgraded": upgrade.not_upgraded,
            "token_delta": upgrade.token_delta,
            "llm_log_calls": logs.llm_usage.height,
            "partial_errors": list(logs.partial_errors),
        },
    )


@dg.asset(
    name=USAGE_RECONCILIATION,
    group_name=c.COSTS_GROUP,
    description=(
        "The hour against APIM's Log Analytics: gateway calls with no envelope, and passthrough "
        "(gateway) or estimated token counts replaced by ApiManagementGatewayLlmLog's, re-priced."
    ),
    # usage_costs is a dep so that, in one run, the re-pricing here comes after the pricing there.
    deps=[c.USAGE_EVENTS, c.QUARANTINED_ENVELOPES, c.USAGE_COSTS],
    partitions_def=hourly_partitions,
    owners=c.OWNERS,
    kinds={"azure", "polars"},
    check_specs=[
        dg.AssetCheckSpec(
            LOST_CHECK,
            asset=USAGE_RECONCILIATION,
            description="Every gateway call in Log Analytics reached the lake (or its quarantine).",
            partitions_def=hourly_partitions,
        ),
        dg.AssetCheckSpec(
            UPGRADE_CHECK,
            asset=USAGE_RECONCILIATION,
            description="Gateway or estimated counts upgraded from ApiManagementGatewayLlmLog.",
            partitions_def=hourly_partitions,
        ),
    ],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
)
def usage_reconciliation(
    context: dg.AssetExecutionContext,
    chargeback: ChargebackSettings,
    log_analytics: LogAnalyticsSettings,
) -> dg.MaterializeResult:
    workspace = log_analytics.workspace()
    if not workspace:
        return _skipped(f"{WORKSPACE_ENV} is not set")
    hour, tolerance = context.partition_key, _tolerance()
    start = hour_start(hour)
    with _query_errors(), log_analytics.client() as client:
        logs = fetch_window(client, workspace, start, start + timedelta(hours=1))
    for problem in logs.partial_errors:
        context.log.warning(f"{hour}: partial Log Analytics result, using its rows. {problem}")
    options = chargeback.lake_options()
    events_uri, costs_uri = chargeback.table(c.USAGE_EVENTS), chargeback.table(c.USAGE_COSTS)
    events = read_hours(events_uri, [hour], tables.USAGE_EVENTS, options)
    quarantine_uri = chargeback.table(c.QUARANTINED_ENVELOPES)
    quarantined = read_hours(quarantine_uri, [hour], tables.QUARANTINED_ENVELOPES, options)
    lost = lost_envelopes(logs.gateway_calls, seen_request_ids(events, quarantined), tolerance)
    upgrade = upgrade_tokens(events, logs.llm_usage)
    if upgrade.changed:
        with fail_fast_on_bad_setup():
            reference = chargeback.reference()
        # Costs first: if the events write then fails, the rerun still sees rows to upgrade.
        costs = cost_usage(upgrade.events, reference)
        replace_hour(costs_uri, costs, hour, tables.USAGE_COSTS, options)
        replace_hour(events_uri, upgrade.events, hour, tables.USAGE_EVENTS, options)
    return dg.MaterializeResult(
        metadata={
            "status": "partial" if logs.partial_errors else "reconciled",
            "gateway_calls": lost.gateway_calls,
            "lost_envelopes": lost.lost,
            "rows_upgraded": upgrade.upgraded,
        },
        check_results=[_lost_check(lost, logs), _upgrade_check(upgrade, logs)],
    )


@dg.definitions
def reconciliation() -> dg.Definitions:
    return dg.Definitions(
        assets=[usage_reconciliation], resources={"log_analytics": LogAnalyticsSettings()}
    )
