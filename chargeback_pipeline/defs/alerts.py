"""Alert sensor: failed marts checks (cost anomalies, budgets over, ...) posted to a webhook."""

import os
from pathlib import Path

import dagster as dg
import duckdb

from chargeback_pipeline.lib.alerts import (
    CheckFailure,
    alerts_for,
    deliver,
    dump_state,
    load_state,
    post_json,
)
from chargeback_pipeline.lib.sql_models import load_model_docs
from chargeback_pipeline.resources import ChargebackSettings

ALERT_SENSOR = "chargeback_alerts"
WEBHOOK_VARIABLE = "CHARGEBACK_ALERT_WEBHOOK"


def mart_check_keys(sql_dir: Path) -> list[dg.AssetCheckKey]:
    """One key per models.yml test: the marts' asset checks."""
    docs = load_model_docs(sql_dir / "models.yml")
    return [
        dg.AssetCheckKey(dg.AssetKey(test.model), test.name)
        for doc in docs.values()
        for test in doc.tests
    ]


def latest_evaluations(
    instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, tuple[int, dg.AssetCheckEvaluation]]:
    """The latest completed evaluation of each check, with its event storage id."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    latest = {}
    for key, record in records.items():
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None:
            latest[key] = (record.id, evaluation)
    return latest


def _failure(evaluation: dg.AssetCheckEvaluation) -> CheckFailure:
    failing = evaluation.metadata.get("failing_rows")
    return CheckFailure(
        asset=evaluation.asset_key.to_user_string(),
        check=evaluation.check_name,
        severity="warn" if evaluation.severity == dg.AssetCheckSeverity.WARN else "error",
        failing_rows=failing.value if failing and isinstance(failing.value, int) else None,
    )


@dg.sensor(
    name=ALERT_SENSOR,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Posts each new finding of a failed marts check (cost anomaly, budget over, any other "
        f"models.yml test) once to {WEBHOOK_VARIABLE} as JSON with a `text` field."
    ),
)
def chargeback_alerts(
    context: dg.SensorEvaluationContext, chargeback: ChargebackSettings
) -> dg.SensorResult:
    webhook = os.environ.get(WEBHOOK_VARIABLE)
    if not webhook:
        return dg.SensorResult(skip_reason=f"{WEBHOOK_VARIABLE} is not set")
    settings = chargeback.resolve()
    latest = latest_evaluations(context.instance, mart_check_keys(settings.sql_dir))
    evaluations = {key.to_user_string(): storage_id for key, (storage_id, _) in latest.items()}
    state = load_state(context.cursor)
    if evaluations == state.evaluations:
        return dg.SensorResult(skip_reason="no new check evaluations")
    failures = [_failure(evaluation) for _, evaluation in latest.values() if not evaluation.passed]
    try:
        alerts = alerts_for(failures, settings.duckdb_path)
    except duckdb.Error as error:
        # The marts file is locked while it is rebuilt; the next tick reads the new one.
        return dg.SensorResult(skip_reason=f"marts file not readable yet: {error}")
    delivery = deliver(alerts, state, evaluations, lambda payload: post_json(webhook, payload))
    for alert, reason in delivery.failed:
        context.log.warning(f"alert {alert.key} not delivered, retrying next tick: {reason}")
    summary = ", ".join(alert.key for alert in delivery.sent) or "nothing new"
    return dg.SensorResult(skip_reason=f"alerts sent: {summary}", cursor=dump_state(delivery.state))
