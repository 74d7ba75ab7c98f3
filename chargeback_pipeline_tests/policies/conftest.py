"""Fixtures for the APIM policy tests: the compiled policy expressions and a gateway simulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chargeback_pipeline_tests.conftest import EXAMPLES
from chargeback_pipeline_tests.policies.policy_runner import (
    NAMED_VALUES,
    CompiledPolicies,
    Step,
    Translator,
    compile_policies,
    run,
)
from chargeback_pipeline_tests.policies.policy_tools import (
    INSTALL_HINT,
    POLICIES,
    find_mcs,
    find_mono,
    find_newtonsoft,
)

API_POLICY = POLICIES / "azure-openai-api.xml"
GATEWAY_HOST = "https://apim-contoso-prod.azure-api.net"
BACKEND_URLS = {
    "aoai-eastus-ptu": "https://oai-ptu.openai.azure.com/openai",
    "aoai-eastus-1": "https://oai-eastus.openai.azure.com/openai",
    "aoai-westeurope-1": "https://oai-westeurope.openai.azure.com/openai",
}
"""The pool members of NAMED_VALUES["chargeback-backend-hosts"], by backend id."""


def backend_url(backend_id: str, gateway_path: str) -> str:
    """The URL a pool member is called at for a gateway path (APIM drops the API's /openai)."""
    return BACKEND_URLS[backend_id] + gateway_path.removeprefix("/openai")


def require_mono() -> None:
    """Fail (never skip) where Mono is missing: the check must not silently disappear."""
    if find_mcs() is None or find_mono() is None or find_newtonsoft() is None:
        pytest.fail(INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> CompiledPolicies:
    require_mono()
    return compile_policies(tmp_path_factory.mktemp("apim-policies"))


def jwt(claims: dict[str, str]) -> str:
    """An unsigned JWT (the policies read claims for attribution only)."""

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.signature"


def context_from_example(example: dict[str, Any]) -> dict[str, Any]:
    """The gateway context that should make the policies send exactly this envelope."""
    request, response, caller = example["request"], example["response"], example["caller"]
    headers = {
        "Content-Type": request["content_type"],
        "Authorization": "Bearer " + jwt({"oid": caller["user_id"], "azp": caller["app_id"]}),
    }
    headers.update({f"x-chargeback-{key}": value for key, value in example["tags"].items()})
    body = response["body"]
    if body is None:  # a passthrough stream: the backend did send one; the policy must not read it
        body = json.loads((EXAMPLES / "chat_stream_buffered.json").read_text())["response"]["body"]
    return {
        "request_id": example["request_id"],
        "timestamp": example["timestamp"],
        "elapsed_ms": example["elapsed_ms"],
        "gateway": example["gateway"],
        "api": {"id": example["api"]["id"]},
        "operation": {"id": example["api"]["operation_id"]},
        "subscription": example["subscription"],
        "product": example["product"],
        "request": {
            "method": request["method"],
            "url": GATEWAY_HOST + request["path"],
            "headers": headers,
            "body": request["body"],
            "ip": caller["ip"],
        },
        "response": {
            "status": response["status"],
            "headers": {"Content-Type": response["content_type"]},
            "body": body,
        },
        # forward-request reaches the member the example names; its answer is `response`.
        "backend_attempts": [{"url": backend_url(example["backend"]["id"], request["path"])}],
        "last_error": None,
    }


Gateway = Callable[..., dict[str, Any]]


@pytest.fixture
def gateway(compiled: CompiledPolicies, tmp_path: Path) -> Gateway:
    """Run API-policy sections over a context: `gateway(context, sections, **named_values)`.

    `sections` lists section names ("inbound", "backend", "outbound", "on-error") or ready steps;
    `tokens={"estimate": n, "total": m}` simulates azure-openai-token-limit's counts.
    """

    def simulate(
        context: dict[str, Any],
        sections: tuple[str | list[Step], ...] = ("inbound", "backend", "outbound"),
        tokens: dict[str, int] | None = None,
        **named: str,
    ) -> dict[str, Any]:
        named_values = NAMED_VALUES | {key.replace("_", "-"): value for key, value in named.items()}
        translator = Translator(compiled, named_values)
        steps: list[Step] = []
        for section in sections:
            steps += (
                translator.section(API_POLICY, section) if isinstance(section, str) else section
            )
        report = run(compiled, tmp_path, context, steps, named_values, tokens)
        envelope = report["variables"].get("chargeback-envelope")
        report["envelope"] = None if envelope is None else json.loads(envelope)
        return report

    return simulate


@pytest.fixture
def translator(compiled: CompiledPolicies) -> Translator:
    return Translator(compiled, NAMED_VALUES)
