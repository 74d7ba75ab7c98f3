"""Issue 7: the real `dagster dev` serves the lineage and backfills three hours over GraphQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from chargeback_pipeline.cli import ensure_dagster_home
from chargeback_pipeline.devtools.azurite import free_port
from chargeback_pipeline.forwarder.core import forward_envelope
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store
from chargeback_pipeline_tests.conftest import EXAMPLES, REPO_ROOT

HOURS = ["2026-11-27-13:00", "2026-11-27-14:00", "2026-11-27-15:00"]
LOCATION = "chargeback_pipeline"
JOB = "hourly_chargeback"
BACKFILL_TIMEOUT = 180.0
DAGSTER_DEV = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]

ASSET_NODES = """
query {
  assetNodes { assetKey { path } dependencyKeys { path } }
}
"""

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      partitionStatuses { results { partitionName runStatus } }
      error { message }
    }
    ... on PythonError { message }
  }
}
"""


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def forward_three_hours() -> None:
    settings = load_settings()
    store = open_store(settings.store)
    envelopes = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]
    template = json.loads((EXAMPLES / "chat_completion.json").read_text())
    for hour in (14, 15):
        extra = dict(template)
        extra["request_id"] = f"webserver-backfill-{hour}"
        extra["timestamp"] = f"2026-11-27T{hour}:21:00.000Z"
        envelopes.append(extra)
    for envelope in envelopes:
        result = forward_envelope(orjson.dumps(envelope), store, settings.max_envelope_bytes)
        assert result.status == 202, result.message


def log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def wait_for_server(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited with {process.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"dagster dev did not answer /server_info within 120 s:\n{log_tail(log)}")


def wait_for_assets(port: int, log: Path) -> dict[str, set[str]]:
    """Asset key -> upstream keys, once the code location has loaded."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        nodes = graphql(port, ASSET_NODES)["assetNodes"]
        if nodes:
            return {
                "/".join(node["assetKey"]["path"]): {
                    "/".join(dep["path"]) for dep in node["dependencyKeys"]
                }
                for node in nodes
            }
        time.sleep(1)
    pytest.fail(f"the code location did not load within 120 s:\n{log_tail(log)}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the whole process group, wait, then SIGKILL whatever is left."""
    pgid = process.pid  # start_new_session: the leader's PID is the group id
    try:
        os.killpg(pgid, signal.SIGINT)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=10)


def default_sigint() -> None:
    # A shell that starts pytest in the background ignores SIGINT, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_dagster_dev_backfills_three_hours(chargeback_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(chargeback_env / "dagster_home_cli"))
    home = ensure_dagster_home()
    assert "tag_concurrency_limits" in (home / "dagster.yaml").read_text()
    forward_three_hours()

    port = free_port()
    log = chargeback_env / "dagster_dev.log"
    started = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*DAGSTER_DEV, "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
    try:
        wait_for_server(port, process, log)
        upstream = wait_for_assets(port, log)
        ready = time.monotonic()
        assert "usage_events" in upstream.get("usage_costs", set()), upstream
        assert "usage_costs" in upstream.get("stg_usage_costs", set()), upstream

        launched = graphql(
            port,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "selector": {
                        "repositorySelector": {
                            "repositoryLocationName": LOCATION,
                            "repositoryName": "__repository__",
                        },
                        "partitionSetName": f"{JOB}_partition_set",
                    },
                    "partitionNames": HOURS,
                    "tags": [{"key": "chargeback/source", "value": "test-webserver-backfill"}],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        deadline = time.monotonic() + BACKFILL_TIMEOUT
        backfill: dict[str, Any] = {}
        while time.monotonic() < deadline:
            backfill = graphql(port, BACKFILL_STATUS, {"id": backfill_id})[
                "partitionBackfillOrError"
            ]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            statuses = {
                result["partitionName"]: result["runStatus"]
                for result in backfill["partitionStatuses"]["results"]
            }
            if backfill["status"] in {"FAILED", "CANCELED", "COMPLETED_FAILED"}:
                pytest.fail(f"backfill {backfill}:\n{log_tail(log)}")
            done = backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}
            if done and all(statuses.get(hour) in {"SUCCESS", "FAILURE"} for hour in HOURS):
                break
            time.sleep(2)
        else:
            pytest.fail(f"backfill not done in {BACKFILL_TIMEOUT} s: {backfill}\n{log_tail(log)}")
        assert statuses == dict.fromkeys(HOURS, "SUCCESS"), backfill
        finished = time.monotonic()
    finally:
        stop_group(process)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of `dagster dev` outlives the test

    events = pl.read_delta(str(Path(load_settings().lake) / "usage_events"))
    per_hour = dict(events.group_by("hour").len().iter_rows())
    assert set(per_hour) == set(HOURS), per_hour
    assert per_hour["2026-11-27-14:00"] == 1
    assert per_hour["2026-11-27-15:00"] == 1
    assert per_hour["2026-11-27-13:00"] == 6
    print(
        f"dagster dev ready in {ready - started:.1f} s; "
        f"backfill of {len(HOURS)} hours took {finished - ready:.1f} s"
    )
