"""Nothing a run logs or records (events, metadata, check results) holds body text or secrets."""

from __future__ import annotations

import json

import dagster as dg
import orjson

from chargeback_pipeline.defs.costs import usage_costs
from chargeback_pipeline.defs.ingest import ingested_envelopes
from chargeback_pipeline.defs.marts import dbt_like_marts
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.resources import ChargebackSettings
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store
from chargeback_pipeline_tests.conftest import EXAMPLES

SECRETS_AND_CONTENT = [
    "Three taglines for a rain jacket",
    "Stay dry, stay bold",
    "Summarise ticket 4411",
    "Plan a 3-step test for a parser",
    "rain jacket, waterproof, breathable",
    "3f1c9a2e-user",  # a user id: only its keyed hash may appear
    "test-pseudonym-key",
    "203.0.113.7",
]


def test_run_events_and_metadata_hold_no_content_or_secrets(chargeback_env, capfd):
    settings = load_settings()
    store = open_store(settings.store)
    for path in sorted(EXAMPLES.glob("*.json")):
        raw = orjson.dumps(json.loads(path.read_text()))
        assert forward_envelope(raw, store, settings.max_envelope_bytes).status == 202
    broken = json.loads((EXAMPLES / "chat_completion.json").read_text())
    broken["request_id"] = "bad-one"
    broken["elapsed_ms"] = "Stay dry, stay bold"  # content in a wrong-typed field
    assert forward_envelope(orjson.dumps(broken), store, 10**9).status == 202

    with dg.DagsterInstance.get() as instance:
        resources = {"chargeback": ChargebackSettings()}
        hourly = dg.materialize(
            [ingested_envelopes, usage_costs],
            partition_key="2026-11-27-13:00",
            resources=resources,
            instance=instance,
        )
        marts = dg.materialize([dbt_like_marts], resources=resources, instance=instance)
        assert hourly.success and marts.success
        records = [
            entry for run_id in (hourly.run_id, marts.run_id) for entry in instance.all_logs(run_id)
        ]
    previews = [
        str(event.materialization.metadata["preview"].value)
        for event in hourly.get_asset_materialization_events()
    ]
    assert len(previews) == 3  # usage_events, quarantined_envelopes, usage_costs
    assert all("2026-11-27-13:00" in preview for preview in previews)
    shown = "\n".join(previews)
    for fragment in [*SECRETS_AND_CONTENT, "bad-one", "0b7e5c1e-", "sub-support-bot"]:
        assert fragment not in shown, fragment  # no request, subscription or user ids either
    recorded = "\n".join(dg.serialize_value(entry) for entry in records)
    printed = capfd.readouterr()
    for fragment in SECRETS_AND_CONTENT:
        assert fragment not in recorded, fragment
        assert fragment not in printed.out + printed.err, fragment
    assert "wrong_type" in recorded  # the quarantine reason itself is reported
