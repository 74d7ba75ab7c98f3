"""The policies run (Mono) over a simulated gateway: the envelopes they send are the contract's.

Each shared example is turned into the gateway context that should produce it; the API policy's
inbound, backend and outbound sections then run, and the envelope posted to the forwarder must be
that example, valid against envelope.schema.json and readable by the pipeline.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from chargeback_pipeline.lib.envelopes import envelope_row
from chargeback_pipeline_tests.conftest import EXAMPLES, SHARED
from chargeback_pipeline_tests.policies.conftest import (
    BACKEND_URLS,
    Gateway,
    backend_url,
    context_from_example,
    jwt,
)
from chargeback_pipeline_tests.policies.policy_runner import NAMED_VALUES, Step, Translator

SCHEMA = json.loads((SHARED / "envelope.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
STEMS = sorted(path.stem for path in EXAMPLES.glob("*.json"))
TOKEN_SOURCE = {
    "chat_completion": "reported",
    "chat_stream_buffered": "reported",
    "chat_stream_passthrough": "gateway",
    "embeddings": "reported",
    "responses_api": "reported",
    "throttled_429": "none",
}


def load(stem: str) -> dict[str, Any]:
    example: dict[str, Any] = json.loads((EXAMPLES / f"{stem}.json").read_text())
    return example


def tokens_of(example: dict[str, Any]) -> dict[str, int] | None:
    counts = example.get("gateway_tokens")
    return None if counts is None else {"estimate": counts["prompt"], "total": counts["total"]}


def check_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """Valid against the schema and readable by the pipeline; the pipeline's row."""
    errors = [error.message for error in VALIDATOR.iter_errors(envelope)]
    assert not errors, errors
    return envelope_row(envelope, "policy-test", 1, b"test-key")


def sent_envelope(report: dict[str, Any]) -> dict[str, Any]:
    [request] = report["sent"]
    assert request["url"] == NAMED_VALUES["chargeback-forwarder-url"]
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == report["variables"]["chargeback-envelope"]
    envelope: dict[str, Any] = json.loads(request["body"])
    return envelope


@pytest.mark.parametrize("stem", STEMS)
def test_the_policies_send_the_contract_examples(gateway: Gateway, stem: str) -> None:
    example = load(stem)
    mode = "passthrough" if stem == "chat_stream_passthrough" else "buffered"
    report = gateway(
        context_from_example(example), tokens=tokens_of(example), chargeback_streaming_mode=mode
    )
    envelope = sent_envelope(report)
    expected = copy.deepcopy(example)
    # APIM's prompt figure is always its pre-call estimate (estimate-prompt-tokens="true").
    if expected.get("gateway_tokens"):
        expected["gateway_tokens"]["estimated"] = True
    else:
        expected["gateway_tokens"] = None
    # The v1 Responses route carries no api-version query parameter to report.
    if "api-version=" not in expected["request"]["path"]:
        expected["backend"]["api_version"] = None
    # Same instant; .NET's round-trip format writes seven fractional digits.
    assert envelope["timestamp"].endswith("Z")
    assert datetime.fromisoformat(envelope["timestamp"]) == datetime.fromisoformat(
        expected["timestamp"]
    )
    assert {**envelope, "timestamp": None} == {**expected, "timestamp": None}
    row = check_envelope(envelope)
    assert row["token_source"] == TOKEN_SOURCE[stem]
    if stem == "chat_stream_passthrough":
        assert report["response_body_reads"] == 0  # the stream was never buffered


def test_buffered_mode_injects_include_usage_textually(gateway: Gateway) -> None:
    context = context_from_example(load("chat_stream_buffered"))
    original = '{"messages": [{"role": "user", "content": "Say hello"}], "stream": true}'
    context["request"]["body"] = original
    report = gateway(context, tokens={"estimate": 9, "total": 12})
    sent = report["request_body"]
    assert sent == '{"stream_options":{"include_usage":true},' + original[1:]
    assert report["variables"]["chargeback-stream-injection"] == "insert"
    envelope = sent_envelope(report)
    assert envelope["request"]["body"] == sent  # the envelope reports what the model received
    assert envelope["request"]["body_bytes"] == len(sent.encode())
    assert check_envelope(envelope)["prompt_tokens"] == 9


@pytest.mark.parametrize(
    "body,path,mode,injection",
    [
        ({"stream": True, "stream_options": {"x": 1}}, None, "buffered", "rewrite"),
        ({"stream": True, "stream_options": None}, None, "buffered", "rewrite"),
        ({"stream": True, "stream_options": {"include_usage": False}}, None, "buffered", "rewrite"),
        ({"stream": True, "stream_options": {"include_usage": True}}, None, "buffered", "none"),
        ({"stream": True}, None, "passthrough", "none"),
        ({"stream": False}, None, "buffered", "none"),
        ({"stream": "true"}, None, "buffered", "none"),
        (
            {"stream": True},
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01",
            "buffered",
            "none",
        ),
        (
            {"stream": True},
            "/openai/deployments/gpt-4o/chat/completions?api-version=2025-04-01-preview",
            "buffered",
            "insert",
        ),
        ({"stream": True}, "/openai/v1/chat/completions", "buffered", "insert"),
        (
            {"stream": True},
            "/openai/deployments/gpt-35-instruct/completions?api-version=2024-10-21",
            "buffered",
            "insert",
        ),
        ({"stream": True}, "/openai/v1/responses", "buffered", "none"),
        ("not json {", None, "buffered", "none"),
    ],
)
def test_stream_options_only_where_the_model_accepts_them(
    gateway: Gateway, body: Any, path: str | None, mode: str, injection: str
) -> None:
    context = context_from_example(load("chat_stream_buffered"))
    raw = body if isinstance(body, str) else json.dumps({"messages": [], **body})
    context["request"]["body"] = raw
    if path:
        context["request"]["url"] = "https://apim.example" + path
    report = gateway(context, chargeback_streaming_mode=mode)
    assert report["variables"]["chargeback-stream-injection"] == injection
    sent = report["request_body"]
    if injection == "none":
        assert sent == raw
    else:
        document = json.loads(sent)
        assert document["stream_options"]["include_usage"] is True
        assert {k: v for k, v in document.items() if k != "stream_options"} == {
            k: v for k, v in json.loads(raw).items() if k != "stream_options"
        }
        if isinstance(body.get("stream_options"), dict):
            assert (
                document["stream_options"].items()
                >= {k: v for k, v in body["stream_options"].items() if k != "include_usage"}.items()
            )
    check_envelope(sent_envelope(report))


def test_passthrough_reads_non_streamed_responses(gateway: Gateway) -> None:
    example = load("chat_completion")
    report = gateway(context_from_example(example), chargeback_streaming_mode="passthrough")
    envelope = sent_envelope(report)
    assert envelope["response"]["body"] == example["response"]["body"]
    assert check_envelope(envelope)["token_source"] == "reported"


def test_bodies_over_the_limit_are_cut_and_flagged(gateway: Gateway) -> None:
    example = load("chat_completion")
    context = context_from_example(example)
    # An emoji (a surrogate pair in .NET strings) straddles the cut: it must not be split.
    context["request"]["body"] = "x" * 99 + "\U0001f600" + "y" * 10
    report = gateway(context, chargeback_max_body_chars="100")
    envelope = sent_envelope(report)
    request, response = envelope["request"], envelope["response"]
    assert request["body"] == "x" * 99 and request["truncated"] is True
    assert request["body_bytes"] == 99 + 4 + 10
    assert response["body"] == example["response"]["body"][:100]
    assert response["truncated"] is True and response["body_bytes"] == 828
    assert envelope["backend"]["deployment"] == "gpt-4o"
    check_envelope(envelope)


def test_query_parameters_other_than_api_version_are_not_reported(gateway: Gateway) -> None:
    context = context_from_example(load("chat_completion"))
    context["request"]["url"] += "&subscription-key=SECRET&api-key=SECRET"
    envelope = sent_envelope(gateway(context))
    assert "SECRET" not in json.dumps(envelope)
    assert envelope["request"]["path"].endswith("?api-version=2024-10-21")


def test_caller_falls_back_to_the_end_user_header(gateway: Gateway) -> None:
    context = context_from_example(load("chat_completion"))
    headers = context["request"]["headers"]
    headers["Authorization"] = "Bearer not-a-jwt"
    headers["x-end-user-id"] = "user-from-header"
    envelope = sent_envelope(gateway(context))
    assert envelope["caller"] == {
        "user_id": "user-from-header",
        "app_id": None,
        "ip": "203.0.113.7",
    }
    headers["Authorization"] = "Bearer " + jwt({"sub": "subject-1", "appid": "app-2"})
    envelope = sent_envelope(gateway(context))
    assert envelope["caller"]["user_id"] == "subject-1" and envelope["caller"]["app_id"] == "app-2"


def test_tags_are_bounded_and_normalised(gateway: Gateway) -> None:
    context = context_from_example(load("chat_completion"))
    headers = context["request"]["headers"]
    headers["X-Chargeback-Cost-Center"] = "  CC-4100 "
    del headers["x-chargeback-cost-center"]
    headers["x-chargeback-note"] = "n" * 300
    headers["x-chargeback-"] = "no key"
    for index in range(20):
        headers[f"x-chargeback-t{index:02d}"] = str(index)
    tags = sent_envelope(gateway(context))["tags"]
    assert tags["cost-center"] == "CC-4100"
    assert len(tags) == 16 and "" not in tags
    assert all(len(value) <= 256 for value in tags.values())


def test_no_subscription_is_refused_without_forwarding(gateway: Gateway) -> None:
    context = context_from_example(load("chat_completion"))
    context["subscription"] = None
    report = gateway(context)
    assert report["returned"]["status"] == 401
    assert report["sent"] == [] and "forward-request" not in report["trace"]


@pytest.mark.parametrize(
    "cost_center,allowed,status",
    [
        ("CC-4100", "CC-4100,CC-4200", None),
        (None, "CC-4100,CC-4200", 400),
        ("CC-9999", "CC-4100, CC-4200", 400),
        ("cc-4100", "CC-4100", 400),
        ("anything", "*", None),
    ],
)
def test_a_required_cost_center_is_enforced(
    gateway: Gateway, cost_center: str | None, allowed: str, status: int | None
) -> None:
    context = context_from_example(load("chat_completion"))
    headers = context["request"]["headers"]
    headers.pop("x-chargeback-cost-center")
    if cost_center:
        headers["x-chargeback-cost-center"] = cost_center
    report = gateway(
        context, chargeback_require_cost_center="true", chargeback_cost_centers=allowed
    )
    if status is None:
        assert report["returned"] is None
        assert sent_envelope(report)["tags"]["cost-center"] == cost_center
    else:
        returned = report["returned"]
        assert returned["status"] == status and report["sent"] == []
        assert json.loads(returned["body"])["error"]["code"] == "CostCenterRequired"


def test_managed_identity_mode_adds_a_token_for_the_function(gateway: Gateway) -> None:
    report = gateway(
        context_from_example(load("chat_completion")), chargeback_forwarder_auth="managed-identity"
    )
    [request] = report["sent"]
    assert request["managed_identity"] == NAMED_VALUES["chargeback-forwarder-audience"]
    assert request["headers"]["x-functions-key"] == NAMED_VALUES["chargeback-forwarder-key"]
    [plain] = gateway(context_from_example(load("chat_completion")))["sent"]
    assert plain["managed_identity"] is None


def _until_base(translator: Translator) -> list[Step]:
    """The API inbound steps that run before <base /> (where the product's rate limit fires)."""
    from chargeback_pipeline_tests.policies.conftest import API_POLICY

    steps = translator.section(API_POLICY, "inbound")
    end = next(i for i, step in enumerate(steps) if step.get("name") == "base")
    return steps[:end]


def _error_context(error: dict[str, str], response: dict[str, Any] | None) -> dict[str, Any]:
    context = context_from_example(load("chat_completion"))
    context["last_error"] = error
    context["response"] = response
    return context


def test_a_throttled_call_sends_an_envelope_and_a_generic_429(
    gateway: Gateway, translator: Translator
) -> None:
    error = {"source": "rate-limit-by-key", "reason": "RateLimitExceeded", "section": "inbound"}
    response = {"status": 429, "headers": {"Retry-After": "7"}, "body": None}
    report = gateway(
        _error_context(error, response), sections=(_until_base(translator), "on-error")
    )
    envelope = sent_envelope(report)
    assert envelope["response"] == {
        "status": 429,
        "content_type": None,
        "body": None,
        "body_bytes": None,
        "streamed": False,
        "truncated": False,
    }
    assert envelope["error"] == error
    assert envelope["gateway_tokens"] is None
    assert envelope["backend"]["id"] is None  # refused in inbound: no backend was called
    assert envelope["tags"]["cost-center"] == "CC-4100"  # captured before <base />
    row = check_envelope(envelope)
    assert row["status_code"] == 429 and row["token_source"] == "none"
    returned = report["returned"]
    assert returned["status"] == 429 and returned["headers"]["Retry-After"] == "7"
    body = json.loads(returned["body"])
    assert body == {
        "error": {
            "code": "TooManyRequests",
            "message": body["error"]["message"],
            "request_id": envelope["request_id"],
        }
    }
    assert "RateLimitExceeded" not in returned["body"] and "rate-limit" not in returned["body"]


def test_retry_after_prefers_the_limit_policys_variable(
    gateway: Gateway, translator: Translator
) -> None:
    error = {
        "source": "azure-openai-token-limit",
        "reason": "TokenLimitExceeded",
        "section": "inbound",
    }
    response = {"status": 429, "headers": {}, "body": None}
    preset: list[Step] = [{"action": "set-variable", "name": "chargeback-retry-after", "value": 12}]
    report = gateway(_error_context(error, response), sections=(preset, "on-error"))
    assert report["returned"]["headers"]["Retry-After"] == "12"


@pytest.mark.parametrize(
    "error,response,status,code",
    [
        (
            {"source": "forward-request", "reason": "Timeout", "section": "backend"},
            None,
            504,
            "GatewayTimeout",
        ),
        (
            {
                "source": "forward-request",
                "reason": "BackendConnectionFailure",
                "section": "backend",
            },
            None,
            502,
            "BadGateway",
        ),
        (
            {"source": "authorization", "reason": "SubscriptionKeyInvalid", "section": "inbound"},
            {"status": 401},
            401,
            "Unauthorized",
        ),
        (
            {"source": "quota-by-key", "reason": "QuotaExceeded", "section": "inbound"},
            {"status": 403},
            403,
            "Forbidden",
        ),
        (
            {"source": "validate-content", "reason": "SomethingElse", "section": "inbound"},
            {"status": 413},
            413,
            "BadRequest",
        ),
        (
            {
                "source": "set-body",
                "reason": "ExpressionValueEvaluationFailure",
                "section": "outbound",
            },
            {"status": 200},
            500,
            "InternalError",
        ),
    ],
)
def test_errors_answer_generically_with_the_request_id(
    gateway: Gateway,
    error: dict[str, str],
    response: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    if response is not None:
        response = {
            "headers": {"Content-Type": "application/json"},
            "body": "internal detail",
            **response,
        }
    report = gateway(_error_context(error, response), sections=("on-error",))
    returned = report["returned"]
    assert returned["status"] == status
    body = json.loads(returned["body"])["error"]
    assert body["code"] == code and body["request_id"] == load("chat_completion")["request_id"]
    assert set(body) == {"code", "message", "request_id"}
    for secret in [error["source"], error["reason"], "internal detail"]:
        assert secret not in body["message"] and secret not in json.dumps(returned["headers"])
    assert error["source"] not in returned["body"] and "internal detail" not in returned["body"]
    envelope = sent_envelope(report)
    assert envelope["response"]["status"] == status and envelope["response"]["body"] is None
    assert envelope["error"]["reason"] == error["reason"]
    check_envelope(envelope)


def test_a_call_that_reached_the_backend_keeps_its_token_counts_on_error(
    gateway: Gateway, translator: Translator
) -> None:
    from chargeback_pipeline_tests.policies.conftest import API_POLICY

    context = _error_context(
        {"source": "forward-request", "reason": "Timeout", "section": "backend"}, None
    )
    inbound = translator.section(API_POLICY, "inbound")
    estimate = [s for s in translator.section(API_POLICY, "backend") if s["action"] != "retry"]
    report = gateway(
        context, sections=(inbound, estimate, "on-error"), tokens={"estimate": 50, "total": 70}
    )
    tokens = sent_envelope(report)["gateway_tokens"]
    assert tokens == {"prompt": 50, "completion": 0, "total": 50, "estimated": True}


# --- the backend pool: retry on 429/5xx, the serving member named in the envelope ---------------


def _answer(status: int, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """A member's answer: the example's response, or an Azure-shaped error."""
    if example is not None:
        response = example["response"]
        return {
            "status": status,
            "headers": {"Content-Type": response["content_type"]},
            "body": response["body"],
        }
    error = json.dumps({"error": {"code": str(status), "message": "throttled or failing"}})
    return {"status": status, "headers": {"Content-Type": "application/json"}, "body": error}


def _attempts(example: dict[str, Any], *tries: tuple[str, int]) -> list[dict[str, Any]]:
    path = example["request"]["path"]
    return [
        {
            "url": backend_url(backend_id, path),
            "response": _answer(status, example if status == 200 else None),
        }
        for backend_id, status in tries
    ]


def _host(backend_id: str) -> str:
    return urlsplit(BACKEND_URLS[backend_id]).hostname or ""


def test_a_throttled_ptu_member_is_retried_on_the_spill_and_the_spill_is_reported(
    gateway: Gateway,
) -> None:
    example = load("chat_completion")
    context = context_from_example(example)
    context["response"] = None
    context["backend_attempts"] = _attempts(
        example, ("aoai-eastus-ptu", 429), ("aoai-westeurope-1", 200)
    )
    report = gateway(context, tokens=tokens_of(example))
    assert report["forwarded"] == [_host("aoai-eastus-ptu"), _host("aoai-westeurope-1")]
    envelope = sent_envelope(report)  # exactly one envelope for the call
    assert envelope["backend"]["id"] == "aoai-westeurope-1"
    assert envelope["response"]["status"] == 200
    assert envelope["response"]["body"] == example["response"]["body"]
    row = check_envelope(envelope)
    assert row["backend_id"] == "aoai-westeurope-1" and row["total_tokens"] > 0


def test_the_retry_is_bounded_and_the_last_member_answers(gateway: Gateway) -> None:
    example = load("chat_completion")
    context = context_from_example(example)
    context["backend_attempts"] = _attempts(
        example,
        ("aoai-eastus-ptu", 429),
        ("aoai-eastus-1", 503),
        ("aoai-westeurope-1", 500),
        ("aoai-eastus-1", 200),  # never reached: two retries at most
    )
    report = gateway(context, chargeback_backend_retries="2")
    assert len(report["forwarded"]) == 3
    envelope = sent_envelope(report)
    assert envelope["backend"]["id"] == "aoai-westeurope-1"
    assert envelope["response"]["status"] == 500
    assert check_envelope(envelope)["token_source"] == "none"


@pytest.mark.parametrize("status", [200, 400, 404])
def test_answers_other_than_429_or_5xx_are_not_retried(gateway: Gateway, status: int) -> None:
    example = load("chat_completion")
    context = context_from_example(example)
    context["backend_attempts"] = _attempts(
        example, ("aoai-eastus-ptu", status), ("aoai-westeurope-1", 200)
    )
    report = gateway(context)
    assert report["forwarded"] == [_host("aoai-eastus-ptu")]
    assert sent_envelope(report)["backend"]["id"] == "aoai-eastus-ptu"


def test_an_unknown_member_host_is_reported_as_itself(gateway: Gateway) -> None:
    context = context_from_example(load("chat_completion"))
    context["backend_attempts"] = [{"url": "https://oai-new.openai.azure.com/openai/x"}]
    envelope = sent_envelope(gateway(context))
    assert envelope["backend"]["id"] == "oai-new.openai.azure.com"
    check_envelope(envelope)


def test_a_backend_timeout_reports_the_member_called_last(gateway: Gateway) -> None:
    example = load("chat_completion")
    context = _error_context(
        {"source": "forward-request", "reason": "Timeout", "section": "backend"}, None
    )
    context["request"]["url"] = backend_url("aoai-eastus-1", example["request"]["path"])
    envelope = sent_envelope(gateway(context, sections=("on-error",)))
    assert envelope["backend"]["id"] == "aoai-eastus-1"
    assert envelope["response"]["status"] == 504
