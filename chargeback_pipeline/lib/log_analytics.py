"""One hour of APIM's Log Analytics tables (gateway calls, LLM token counts) as Polars frames.

Queries name every column they return: prompt and completion text (`RequestMessages`,
`ResponseMessages`) never leaves the workspace. Times enter the KQL only as `datetime(...)`
literals formatted from aware datetimes; no caller string is ever spliced into a query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.monitor.query import (
    LogsQueryClient,
    LogsQueryError,
    LogsQueryPartialResult,
    LogsTable,
)

GATEWAY_LOGS = "ApiManagementGatewayLogs"
LLM_LOG = "ApiManagementGatewayLlmLog"

GATEWAY_CALLS: dict[str, pl.DataType] = {
    "correlation_id": pl.String(),
    "subscription_id": pl.String(),
    "api_id": pl.String(),
    "response_code": pl.Int32(),
}
"""One row per gateway call; `correlation_id` is APIM's request id (the envelope's request_id)."""

LLM_USAGE: dict[str, pl.DataType] = {
    "correlation_id": pl.String(),
    "deployment": pl.String(),
    "model": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "is_stream": pl.Boolean(),
}
"""One row per language-model call with the gateway's own token counts."""

# Log Analytics column -> frame column, in the order the queries return them.
_GATEWAY_COLUMNS = {
    "CorrelationId": "correlation_id",
    "ApimSubscriptionId": "subscription_id",
    "ApiId": "api_id",
    "ResponseCode": "response_code",
}
_LLM_COLUMNS = {
    "CorrelationId": "correlation_id",
    "DeploymentName": "deployment",
    "ModelName": "model",
    "PromptTokens": "prompt_tokens",
    "CompletionTokens": "completion_tokens",
    "TotalTokens": "total_tokens",
    "IsStreamCompletion": "is_stream",
}
_RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})


class LogAnalyticsError(RuntimeError):
    """A query that failed; `retryable` says whether running it again later may succeed."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class LogAnalyticsThrottled(LogAnalyticsError):
    """HTTP 429 after the client's own retries: retry after `retry_after` seconds (when sent)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, status=429, retryable=True)
        self.retry_after = retry_after


@dataclass(frozen=True)
class QueryResult:
    """The rows a query returned and, for a partial result, the service's error."""

    frame: pl.DataFrame
    partial_error: str | None = None


@dataclass(frozen=True)
class HourLogs:
    """Both tables for one window, and the partial errors met on the way (empty when complete)."""

    gateway_calls: pl.DataFrame
    llm_usage: pl.DataFrame
    partial_errors: tuple[str, ...] = ()


def kql_datetime(value: datetime) -> str:
    """A KQL `datetime(...)` literal for an aware datetime, in UTC to the microsecond."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    return f"datetime({value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"


def _time_filter(start: datetime, end: datetime) -> str:
    if end <= start:
        raise ValueError(f"empty window: end {end} is not after start {start}")
    return f"| where TimeGenerated >= {kql_datetime(start)} and TimeGenerated < {kql_datetime(end)}"


def gateway_calls_query(start: datetime, end: datetime) -> str:
    """KQL: one row per CorrelationId of ApiManagementGatewayLogs in [start, end)."""
    columns = ", ".join(_GATEWAY_COLUMNS)
    return "\n".join(
        [
            GATEWAY_LOGS,
            _time_filter(start, end),
            "| where isnotempty(CorrelationId)",
            "| summarize arg_max(TimeGenerated, ApimSubscriptionId, ApiId, ResponseCode)"
            " by CorrelationId",
            f"| project {columns}",
        ]
    )


def llm_usage_query(start: datetime, end: datetime) -> str:
    """KQL: token counts per CorrelationId of ApiManagementGatewayLlmLog in [start, end).

    Long messages are split over several rows (SequenceNumber); counts are taken once per call.
    """
    columns = ", ".join(_LLM_COLUMNS)
    return "\n".join(
        [
            LLM_LOG,
            _time_filter(start, end),
            "| where isnotempty(CorrelationId)",
            "| summarize DeploymentName = take_anyif(DeploymentName, isnotempty(DeploymentName)),"
            " ModelName = take_anyif(ModelName, isnotempty(ModelName)),"
            " PromptTokens = max(PromptTokens), CompletionTokens = max(CompletionTokens),"
            " TotalTokens = max(TotalTokens), IsStreamCompletion = take_any(IsStreamCompletion)"
            " by CorrelationId",
            f"| project {columns}",
        ]
    )


def table_frame(
    tables: Sequence[LogsTable] | None, columns: Mapping[str, str], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """The first result table as a typed frame, columns renamed; an empty frame when none."""
    if not tables:
        return pl.DataFrame(schema=schema)
    table = tables[0]
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise LogAnalyticsError(f"query result lacks the columns {missing}")
    at = {name: table.columns.index(name) for name in columns}
    data = {columns[name]: [row[index] for row in table.rows] for name, index in at.items()}
    return pl.DataFrame(data, schema=schema, strict=False)


def _innermost_message(detail: Mapping[str, object]) -> str:
    inner: object = detail
    message: object = None
    while isinstance(inner, Mapping):
        message = inner.get("message") or message
        inner = inner.get("innererror")
    return str(message or "")


def _error_text(error: LogsQueryError | None) -> str:
    """The service's code and message with the reasons in its details (e.g. a row limit hit)."""
    if error is None:
        return "unknown partial error"
    details = [_innermost_message(d) for d in error.details or [] if isinstance(d, Mapping)]
    return "; ".join(m for m in [f"{error.code}: {error.message}", *details] if m)


def _translated(error: HttpResponseError) -> LogAnalyticsError:
    """A service or credential error as a LogAnalyticsError that says what to do."""
    status = error.status_code
    detail = " ".join(str(error.message or error).split())
    if status == 429:
        return LogAnalyticsThrottled(
            f"Log Analytics throttled the query (HTTP 429); retry later. {detail}",
            _retry_after(error),
        )
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        return LogAnalyticsError(
            "Log Analytics refused the credential: the pipeline's identity needs the "
            f"'Log Analytics Reader' role on the workspace. {detail}",
            status,
        )
    if status == 400:
        return LogAnalyticsError(
            "Log Analytics rejected the query (HTTP 400): check that APIM's diagnostic setting "
            "sends GatewayLogs and GatewayLlmLogs to this workspace as resource-specific tables. "
            f"{detail}",
            status,
        )
    if status == 404:
        return LogAnalyticsError(f"Log Analytics workspace not found (HTTP 404). {detail}", status)
    retryable = status is None or status in _RETRYABLE_STATUS
    return LogAnalyticsError(
        f"Log Analytics query failed (HTTP {status}). {detail}", status, retryable
    )


def _retry_after(error: HttpResponseError) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    try:
        return float(headers["Retry-After"])
    except (KeyError, TypeError, ValueError):
        return None


def run_query(
    client: LogsQueryClient,
    workspace_id: str,
    query: str,
    window: tuple[datetime, datetime],
    columns: Mapping[str, str],
    schema: dict[str, pl.DataType],
) -> QueryResult:
    """Run one query; a partial result keeps its rows and carries the service's error."""
    try:
        response = client.query_workspace(workspace_id, query, timespan=window)
    except HttpResponseError as error:
        raise _translated(error) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise LogAnalyticsError(f"Log Analytics unreachable: {error}", retryable=True) from error
    if isinstance(response, LogsQueryPartialResult):
        frame = table_frame(response.partial_data, columns, schema)
        return QueryResult(frame, _error_text(response.partial_error))
    return QueryResult(table_frame(response.tables, columns, schema))


def fetch_window(
    client: LogsQueryClient, workspace_id: str, start: datetime, end: datetime
) -> HourLogs:
    """Gateway calls and LLM token counts of [start, end) from one workspace."""
    window = (start, end)
    calls = run_query(
        client,
        workspace_id,
        gateway_calls_query(start, end),
        window,
        _GATEWAY_COLUMNS,
        GATEWAY_CALLS,
    )
    usage = run_query(
        client, workspace_id, llm_usage_query(start, end), window, _LLM_COLUMNS, LLM_USAGE
    )
    errors = tuple(
        f"{table}: {result.partial_error}"
        for table, result in ((GATEWAY_LOGS, calls), (LLM_LOG, usage))
        if result.partial_error
    )
    return HourLogs(calls.frame, usage.frame, errors)
