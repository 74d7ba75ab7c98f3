"""The read API (`chargeback serve-api`): JSON over the marts, Prometheus metrics, API-key auth.

Read-only: every request opens the marts file read-only and closes it before answering, so
`chargeback materialize` can rebuild it between requests. The spec is docs/openapi.yaml.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import duckdb
import polars as pl
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chargeback_pipeline.lib import read_api
from chargeback_pipeline.lib.read_api import BadRequest, MartsUnavailable
from chargeback_pipeline.settings import ConfigurationError, Settings, load_settings

API_KEY_ENV = "CHARGEBACK_API_KEY"
PREFIX = "/api/v1"
LOCK_ATTEMPTS = 3
LOCK_PAUSE_S = 0.2
RETRY_AFTER_S = "5"
NO_STORE = {"cache-control": "no-store"}
T = TypeVar("T")
Endpoint = Callable[[Request], Response]


def api_keys(env: Mapping[str, str]) -> list[str]:
    """The accepted keys: CHARGEBACK_API_KEY, comma-separated so a key can be rotated live."""
    return [key.strip() for key in (env.get(API_KEY_ENV) or "").split(",") if key.strip()]


def presented_key(request: Request) -> str | None:
    """The key from `x-api-key`, else from `Authorization: Bearer <key>`."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authorised(presented: str | None, keys: Sequence[str]) -> bool:
    """Constant-time comparison with every key, so timing tells nothing about a near miss."""
    if not presented:
        return False
    given = presented.encode()
    return any([hmac.compare_digest(given, key.encode()) for key in keys])


def error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error shape: `{"error": {"code", "message"}}`."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def with_marts(read: Callable[[], T]) -> T:
    """Run a read of the marts, retrying briefly while a build holds the file's lock."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            return read()
        except duckdb.IOException as exc:
            failure = MartsUnavailable(f"the marts are being rebuilt ({exc})", retry=True)
        except MartsUnavailable as exc:
            failure = exc
        if not failure.retry or attempt == LOCK_ATTEMPTS - 1:
            raise failure
        time.sleep(LOCK_PAUSE_S)
    raise AssertionError("unreachable")


def create_app(settings: Settings, keys: Sequence[str] | None) -> Starlette:
    """The API over `settings`' lake and marts; `keys=None` turns authentication off (demo)."""
    if keys is not None and not keys:
        raise ConfigurationError(f"{API_KEY_ENV} holds no key")

    def protected(endpoint: Endpoint) -> Endpoint:
        if keys is None:
            return endpoint

        @functools.wraps(endpoint)
        def guarded(request: Request) -> Response:
            if not authorised(presented_key(request), keys):
                return error(
                    401,
                    "unauthorized",
                    "send a valid API key in the x-api-key header or as Authorization: Bearer",
                    {"www-authenticate": 'Bearer realm="chargeback"'},
                )
            return endpoint(request)

        return guarded

    def usage_summary(request: Request) -> Response:
        query = request.query_params
        start = read_api.parse_day(query.get("start"), "start")
        end = read_api.parse_day(query.get("end"), "end")
        group_by = read_api.parse_group_by(query.get("group_by"))
        cost_center = query.get("cost_center")

        def read() -> dict[str, Any]:
            with read_api.connect_marts(settings.duckdb_path) as con:
                return read_api.usage_summary(con, start, end, group_by, cost_center)

        return _json(with_marts(read))

    def chargeback_report(request: Request) -> Response:
        from chargeback_pipeline.report import monthly_chargeback

        asked = read_api.parse_month(request.query_params.get("month"))

        def read() -> tuple[str, pl.DataFrame]:
            if not settings.duckdb_path.is_file():
                read_api.connect_marts(settings.duckdb_path)  # raises with the advice
            return monthly_chargeback(settings.duckdb_path, asked)

        month, frame = with_marts(read)
        if frame.is_empty():
            what = f"for {asked}" if asked else "yet"
            return error(404, "not_found", f"the marts hold no chargeback {what}")
        return _json(read_api.chargeback_report(month, frame))

    def health(request: Request) -> Response:
        status, body = read_api.health(
            lake_status(settings), read_api.marts_status(settings.duckdb_path)
        )
        return _json(body, status)

    def metrics(request: Request) -> Response:
        month = read_api.parse_month(request.query_params.get("month"))
        month = month or datetime.now(UTC).strftime("%Y-%m")
        marts = read_api.marts_status(settings.duckdb_path)
        rows = pl.DataFrame(schema=read_api.MONTH_SCHEMA)
        if marts.available:
            try:
                rows = with_marts(lambda: _month_rows(settings, month))
            except MartsUnavailable as exc:
                marts = read_api.MartsStatus(False, problem=str(exc))
        snapshot = read_api.MetricsSnapshot(month, rows, lake_status(settings), marts)
        return Response(
            read_api.render_metrics(snapshot),
            media_type=CONTENT_TYPE_PLAIN_0_0_4,
            headers=NO_STORE,
        )

    routes = [
        Route(f"{PREFIX}/usage/summary", protected(usage_summary), methods=["GET"]),
        Route(f"{PREFIX}/chargeback/report", protected(chargeback_report), methods=["GET"]),
        # Open so load balancers and probes need no secret; it shows freshness, not money.
        Route(f"{PREFIX}/health", health, methods=["GET"]),
        Route(f"{PREFIX}/metrics", protected(metrics), methods=["GET"]),
    ]
    handlers: dict[Any, Callable[..., Any]] = {
        HTTPException: _http_error,
        BadRequest: _bad_request,
        MartsUnavailable: _unavailable,
        duckdb.CatalogException: _unavailable,
    }
    return Starlette(routes=routes, exception_handlers=handlers)


def _month_rows(settings: Settings, month: str) -> pl.DataFrame:
    with read_api.connect_marts(settings.duckdb_path) as con:
        return read_api.month_rows(con, month)


def lake_status(settings: Settings) -> read_api.LakeStatus:
    """The lake's freshness; a lake that cannot be read is reported, not raised."""
    try:
        return read_api.lake_status(settings.lake, settings.lake_storage_options())
    except Exception as exc:  # a health probe must answer whatever the storage says
        return read_api.LakeStatus(False, problem=f"the lake cannot be read: {exc}")


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), exc.headers)


def _bad_request(request: Request, exc: Exception) -> Response:
    return error(400, "bad_request", str(exc))


def _unavailable(request: Request, exc: Exception) -> Response:
    if isinstance(exc, duckdb.CatalogException):
        message = f"the marts file lacks a table ({exc}): rebuild it with `chargeback materialize`"
        return error(503, "marts_unavailable", message)
    retry = isinstance(exc, MartsUnavailable) and exc.retry
    headers = {"retry-after": RETRY_AFTER_S} if retry else None
    return error(503, "marts_unavailable", str(exc), headers)


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_keys(
    env: Mapping[str, str], host: str, insecure_no_auth: bool, environment: str
) -> list[str] | None:
    """The keys to require, or None for `--insecure-no-auth` (loopback and non-production only)."""
    if insecure_no_auth:
        if environment == "production" or not is_loopback(host):
            raise ConfigurationError(
                "--insecure-no-auth is for a local demo: only on a loopback --host and "
                "never with CHARGEBACK_ENV=production"
            )
        return None
    keys = api_keys(env)
    if not keys:
        raise ConfigurationError(
            f"{API_KEY_ENV} is not set: set it to a long random secret (for example "
            "`openssl rand -hex 32`; several keys comma-separated while rotating), or pass "
            "--insecure-no-auth for a local demo"
        )
    if environment == "production" and min(len(key) for key in keys) < 32:
        raise ConfigurationError(
            f"CHARGEBACK_ENV=production needs every {API_KEY_ENV} key to be 32+ characters"
        )
    return keys


def serve(host: str, port: int, insecure_no_auth: bool = False) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    settings = load_settings()
    keys = checked_keys(os.environ, host, insecure_no_auth, settings.environment)
    if keys is None:
        print("serve-api: authentication is OFF (--insecure-no-auth)", file=sys.stderr)
    uvicorn.run(create_app(settings, keys), host=host, port=port, log_level="info")
