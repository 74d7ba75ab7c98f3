"""Property-based test of the live `chargeback serve-api` against docs/openapi.yaml.

Schemathesis generates valid and invalid queries for every operation (its coverage phase adds
boundary values and undocumented methods) and runs all its checks on each answer: no 5xx,
documented status code, content type and headers, body valid against the response schema,
invalid input rejected, and (re-sending without and with a wrong key) authentication enforced.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

# the module-scoped `api` fixture: a live server over a lake and marts built from the examples
from chargeback_pipeline_tests.test_api import SPEC, Api
from chargeback_pipeline_tests.test_api import api as live_api  # noqa: F401

schema = schemathesis.openapi.from_path(SPEC)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_server_conforms_to_the_spec(case: schemathesis.Case, live_api: Api) -> None:  # noqa: F811
    case.call_and_validate(base_url=live_api.base_url, headers={"x-api-key": live_api.key})
