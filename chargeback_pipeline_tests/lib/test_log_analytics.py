"""Log Analytics queries through the real LogsQueryClient, answered by recorded REST responses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import case_insensitive_dict
from azure.monitor.query import LogsQueryClient

from chargeback_pipeline.lib.log_analytics import (
    GATEWAY_CALLS,
    LLM_USAGE,
    LogAnalyticsError,
    LogAnalyticsThrottled,
    fetch_window,
    gateway_calls_query,
    kql_datetime,
    llm_usage_query,
)

WORKSPACE = "00000000-1111-2222-3333-444444444444"
START = datetime(2026, 11, 27, 13, tzinfo=UTC)
END = START + timedelta(hours=1)
PASSTHROUGH_ID = "0b7e5c1e-4f7a-4a51-9d0e-000000000003"


def example_id(n: int) -> str:
    return f"0b7e5c1e-4f7a-4a51-9d0e-{n:012d}"


# --- recordings: the Log Analytics query API's JSON (tables / columns / rows; OneAPI errors) ---

GATEWAY_COLUMNS = [
    {"name": "CorrelationId", "type": "string"},
    {"name": "ApimSubscriptionId", "type": "string"},
    {"name": "ApiId", "type": "string"},
    {"name": "ResponseCode", "type": "int"},
]
LLM_COLUMNS = [
    {"name": "CorrelationId", "type": "string"},
    {"name": "DeploymentName", "type": "string"},
    {"name": "ModelName", "type": "string"},
    {"name": "PromptTokens", "type": "int"},
    {"name": "CompletionTokens", "type": "int"},
    {"name": "TotalTokens", "type": "int"},
    {"name": "IsStreamCompletion", "type": "bool"},
]
EXAMPLE_SUBSCRIPTIONS = {
    1: "sub-marketing-01",
    2: "sub-marketing-01",
    3: "sub-support-bot",
    4: "sub-marketing-01",
    5: "sub-marketing-01",
    6: "sub-marketing-01",
}


def gateway_table(rows: list[list[Any]]) -> dict[str, Any]:
    return {"tables": [{"name": "PrimaryResult", "columns": GATEWAY_COLUMNS, "rows": rows}]}


def llm_table(rows: list[list[Any]]) -> dict[str, Any]:
    return {"tables": [{"name": "PrimaryResult", "columns": LLM_COLUMNS, "rows": rows}]}


def example_gateway_rows(extra: list[list[Any]] | None = None) -> list[list[Any]]:
    """One gateway row per example envelope (the 429 example answered 429), plus `extra`."""
    rows: list[list[Any]] = [
        [example_id(n), sub, "azure-openai", 429 if n == 6 else 200]
        for n, sub in EXAMPLE_SUBSCRIPTIONS.items()
    ]
    return rows + (extra or [])


PASSTHROUGH_LLM_ROW = [PASSTHROUGH_ID, "gpt-4o", "gpt-4o-2024-08-06", 415, 190, 605, True]
REPORTED_LLM_ROW = [example_id(1), "gpt-4o", "gpt-4o-2024-08-06", 9999, 1, 10000, False]

PARTIAL_ERROR = {
    "code": "PartialError",
    "message": "There were some errors when processing your query.",
    "details": [
        {
            "code": "EngineError",
            "message": "Something went wrong processing your query on the server.",
            "innererror": {
                "code": "-2133196797",
                "message": "Query result set has exceeded the internal record count limit 500000",
                "severity": 2,
                "severityName": "Error",
            },
        }
    ],
}
THROTTLED_BODY = {
    "error": {
        "code": "ThrottledError",
        "message": "Your request was throttled. Please retry after some time.",
        "correlationId": "9f4c1c44-0000-0000-0000-000000000001",
    }
}
SERVER_ERROR_BODY = {
    "error": {
        "code": "InternalServerError",
        "message": "An internal server error occurred.",
        "correlationId": "9f4c1c44-0000-0000-0000-000000000002",
    }
}
FORBIDDEN_BODY = {
    "error": {
        "code": "InsufficientAccessError",
        "message": "The provided credentials have insufficient access to perform the requested "
        "operation",
        "innererror": {"code": "WorkspaceAuthorizationFailed"},
    }
}


@dataclass(frozen=True)
class Recorded:
    """One recorded answer of the query endpoint."""

    status: int
    body: Mapping[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)


def ok(body: Mapping[str, Any]) -> Recorded:
    return Recorded(200, body)


def partial(body: Mapping[str, Any]) -> Recorded:
    return Recorded(200, {**body, "error": PARTIAL_ERROR})


THROTTLED = Recorded(429, THROTTLED_BODY, {"Retry-After": "17"})
SERVER_ERROR = Recorded(500, SERVER_ERROR_BODY)
FORBIDDEN = Recorded(403, FORBIDDEN_BODY)


# --- an azure-core transport serving the recordings, and a stand-in for Entra ID ---


class RecordedResponse(HttpResponse):
    """A recorded answer as an azure-core response: the client library parses it as usual."""

    def __init__(self, request: HttpRequest, recorded: Recorded) -> None:
        self._request = request
        self._status = recorded.status
        body = b"" if recorded.body is None else json.dumps(recorded.body).encode()
        self._content = body
        self._headers = case_insensitive_dict(
            {"Content-Type": "application/json; charset=utf-8", **recorded.headers}
        )
        self._closed = False

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self) -> Any:
        return self._headers

    @property
    def reason(self) -> str:
        return HTTPStatus(self._status).phrase

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return "utf-8"

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        pass

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self._content) if self._content else None

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> RecordedResponse:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


@dataclass(frozen=True)
class SentQuery:
    """What the client put on the wire for one query."""

    url: str
    table: str
    query: str
    timespan: str
    authorization: str | None


class RecordedTransport(HttpTransport):
    """Answers each query with the next recording for the table it reads (the last one repeats)."""

    def __init__(self, recordings: Mapping[str, list[Recorded] | Recorded]) -> None:
        self.recordings = {
            table: list(answers) if isinstance(answers, list) else [answers]
            for table, answers in recordings.items()
        }
        self.sent: list[SentQuery] = []

    def send(self, request: HttpRequest, **kwargs: Any) -> RecordedResponse:  # type: ignore[override]
        body = json.loads(request.content)
        table = body["query"].split("\n", 1)[0]
        self.sent.append(
            SentQuery(
                request.url,
                table,
                body["query"],
                body["timespan"],
                request.headers.get("Authorization"),
            )
        )
        answers = self.recordings[table]
        return RecordedResponse(request, answers.pop(0) if len(answers) > 1 else answers[0])

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: object) -> None:
        self.close()


class UnreachableTransport(RecordedTransport):
    """A network that never answers."""

    def send(self, request: HttpRequest, **kwargs: Any) -> RecordedResponse:  # type: ignore[override]
        raise ServiceRequestError("connection refused")


class FakeEntraCredential:
    """Stands in for Entra ID (no Azure here): a fixed bearer token, scopes remembered."""

    def __init__(self) -> None:
        self.scopes: tuple[str, ...] = ()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes = scopes
        return AccessToken("fake-entra-token", int(time.time()) + 3600)


def recorded_client(transport: HttpTransport, retries: int = 0) -> LogsQueryClient:
    """The real client over recorded answers; `retries` are the client's own retries."""
    return LogsQueryClient(FakeEntraCredential(), transport=transport, retry_total=retries)


def both_tables(
    gateway: Recorded | list[Recorded], llm: Recorded | list[Recorded]
) -> RecordedTransport:
    return RecordedTransport(
        {"ApiManagementGatewayLogs": gateway, "ApiManagementGatewayLlmLog": llm}
    )


# --- queries ---


def test_datetime_literals_come_only_from_aware_datetimes():
    assert kql_datetime(START) == "datetime(2026-11-27T13:00:00.000000Z)"
    plus_two = datetime(2026, 11, 27, 15, 30, tzinfo=timezone(timedelta(hours=2)))
    assert kql_datetime(plus_two) == "datetime(2026-11-27T13:30:00.000000Z)"
    with pytest.raises(ValueError, match="timezone-aware"):
        kql_datetime(datetime(2026, 11, 27, 13))
    with pytest.raises(ValueError, match="timezone-aware"):
        kql_datetime("2026-11-27T13:00:00Z) | union SecurityEvent | where (1==1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty window"):
        gateway_calls_query(END, START)


def test_queries_cover_the_hour_and_name_their_columns_never_message_text():
    window = (
        "| where TimeGenerated >= datetime(2026-11-27T13:00:00.000000Z)"
        " and TimeGenerated < datetime(2026-11-27T14:00:00.000000Z)"
    )
    gateway, llm = gateway_calls_query(START, END), llm_usage_query(START, END)
    assert gateway.splitlines()[:2] == ["ApiManagementGatewayLogs", window]
    assert (
        gateway.splitlines()[-1]
        == "| project CorrelationId, ApimSubscriptionId, ApiId, ResponseCode"
    )
    assert llm.splitlines()[:2] == ["ApiManagementGatewayLlmLog", window]
    assert llm.splitlines()[-1] == (
        "| project CorrelationId, DeploymentName, ModelName, PromptTokens, CompletionTokens, "
        "TotalTokens, IsStreamCompletion"
    )
    for query in (gateway, llm):
        assert "Messages" not in query  # RequestMessages / ResponseMessages hold prompts


# --- the client over recordings ---


def test_both_tables_become_typed_frames_through_the_real_client():
    transport = both_tables(
        ok(gateway_table(example_gateway_rows())), ok(llm_table([PASSTHROUGH_LLM_ROW]))
    )
    logs = fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert logs.partial_errors == ()
    assert logs.gateway_calls.schema == GATEWAY_CALLS
    assert logs.gateway_calls.height == 6
    assert logs.gateway_calls.row(2) == (PASSTHROUGH_ID, "sub-support-bot", "azure-openai", 200)
    assert logs.llm_usage.schema == LLM_USAGE
    assert logs.llm_usage.rows() == [tuple(PASSTHROUGH_LLM_ROW)]
    sent = {query.table: query for query in transport.sent}
    assert set(sent) == {"ApiManagementGatewayLogs", "ApiManagementGatewayLlmLog"}
    for query in sent.values():
        assert query.url == f"https://api.loganalytics.io/v1/workspaces/{WORKSPACE}/query"
        assert query.timespan == "2026-11-27T13:00:00.000Z/2026-11-27T14:00:00.000Z"
        assert query.authorization == "Bearer fake-entra-token"


def test_empty_result_is_an_empty_typed_frame():
    transport = both_tables(ok(gateway_table([])), ok({"tables": []}))
    logs = fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert logs.gateway_calls.is_empty() and logs.gateway_calls.schema == GATEWAY_CALLS
    assert logs.llm_usage.is_empty() and logs.llm_usage.schema == LLM_USAGE


def test_partial_result_keeps_its_rows_and_reports_the_service_error():
    transport = both_tables(
        ok(gateway_table(example_gateway_rows())), partial(llm_table([PASSTHROUGH_LLM_ROW]))
    )
    logs = fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert logs.llm_usage.height == 1
    (problem,) = logs.partial_errors
    assert problem.startswith("ApiManagementGatewayLlmLog: PartialError")
    assert "exceeded the internal record count limit" in problem


def test_partial_result_without_tables_is_empty_not_a_crash():
    transport = both_tables(ok(gateway_table([])), Recorded(200, {"error": PARTIAL_ERROR}))
    logs = fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert logs.llm_usage.is_empty()
    assert len(logs.partial_errors) == 1


def test_throttling_raises_a_retryable_error_with_the_retry_after():
    transport = both_tables(THROTTLED, ok(llm_table([])))
    with pytest.raises(LogAnalyticsThrottled) as raised:
        fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert raised.value.retryable and raised.value.status == 429
    assert raised.value.retry_after == 17.0
    assert "throttled" in str(raised.value)


def test_the_clients_own_retry_absorbs_a_short_throttle():
    quick = Recorded(429, THROTTLED_BODY, {"Retry-After": "0"})
    transport = both_tables([quick, ok(gateway_table(example_gateway_rows()))], ok(llm_table([])))
    logs = fetch_window(recorded_client(transport, retries=1), WORKSPACE, START, END)
    assert logs.gateway_calls.height == 6
    assert [q.table for q in transport.sent].count("ApiManagementGatewayLogs") == 2


def test_server_error_is_retryable_and_names_the_status():
    transport = both_tables(SERVER_ERROR, ok(llm_table([])))
    with pytest.raises(LogAnalyticsError) as raised:
        fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert not isinstance(raised.value, LogAnalyticsThrottled)
    assert raised.value.retryable and raised.value.status == 500
    assert "HTTP 500" in str(raised.value)


def test_missing_role_is_not_retryable_and_names_the_role():
    transport = both_tables(FORBIDDEN, ok(llm_table([])))
    with pytest.raises(LogAnalyticsError) as raised:
        fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert not raised.value.retryable and raised.value.status == 403
    assert "Log Analytics Reader" in str(raised.value)


def test_unknown_table_is_not_retryable_and_names_the_diagnostic_categories():
    unresolved = {
        "error": {
            "code": "BadArgumentError",
            "message": "The request had some invalid properties",
            "innererror": {
                "code": "SemanticError",
                "message": "'ApiManagementGatewayLlmLog' could not be resolved",
            },
        }
    }
    transport = both_tables(ok(gateway_table([])), Recorded(400, unresolved))
    with pytest.raises(LogAnalyticsError) as raised:
        fetch_window(recorded_client(transport), WORKSPACE, START, END)
    assert not raised.value.retryable and raised.value.status == 400
    assert "GatewayLlmLogs" in str(raised.value)


def test_unreachable_service_is_retryable():
    with pytest.raises(LogAnalyticsError) as raised:
        fetch_window(recorded_client(UnreachableTransport({})), WORKSPACE, START, END)
    assert raised.value.retryable and raised.value.status is None


def test_a_result_missing_a_column_is_an_error_not_nulls():
    body = {
        "tables": [{"name": "PrimaryResult", "columns": GATEWAY_COLUMNS[:2], "rows": [["a", "s"]]}]
    }
    transport = both_tables(ok(body), ok(llm_table([])))
    with pytest.raises(LogAnalyticsError, match="lacks the columns"):
        fetch_window(recorded_client(transport), WORKSPACE, START, END)
