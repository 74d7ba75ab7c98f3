"""The Azure OpenAI routes the gateway and the simulator answer, and what each one bills."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

OPERATION_IDS = {
    "chat_completions": "ChatCompletions_Create",
    "completions": "Completions_Create",
    "embeddings": "embeddings_create",
    "image_generations": "ImageGenerations_Create",
    "responses": "createResponse",
}
"""APIM operation ids of Azure's published OpenAPI description, by `lib.usage` operation name."""

_SUFFIXES = {
    "chat/completions": "chat_completions",
    "completions": "completions",
    "embeddings": "embeddings",
    "images/generations": "image_generations",
    "responses": "responses",
}
_DEPLOYMENT_ROUTE = re.compile(
    r"/openai/deployments/(?P<deployment>[^/]+)/"
    r"(?P<suffix>chat/completions|completions|embeddings|images/generations)"
)
# The v1 API names the deployment in the body's `model`; `/openai/responses` is the preview route.
_MODEL_ROUTE = re.compile(
    r"/openai/(?:v1/(?P<suffix>chat/completions|completions|embeddings|images/generations|responses)"
    r"|(?P<preview>responses))"
)
SUBSCRIPTION_KEY_PARAM = "subscription-key"


@dataclass(frozen=True)
class Route:
    """One matched call: the operation, the deployment named by the path, and the API flavour."""

    operation: str
    deployment: str | None
    v1: bool

    @property
    def operation_id(self) -> str:
        return OPERATION_IDS[self.operation]


def match_route(path: str) -> Route | None:
    """The route of a request path (query ignored), or None for anything else."""
    route = urlsplit(path).path.rstrip("/")
    found = _DEPLOYMENT_ROUTE.fullmatch(route)
    if found:
        return Route(_SUFFIXES[found["suffix"]], found["deployment"], v1=False)
    found = _MODEL_ROUTE.fullmatch(route)
    if found:
        return Route(_SUFFIXES[found["suffix"] or found["preview"]], None, v1=bool(found["suffix"]))
    return None


def api_version_of(path: str, route: Route) -> str | None:
    """The `api-version` query value; the v1 API is versionless and reported as `v1`."""
    version = dict(parse_qsl(urlsplit(path).query)).get("api-version")
    return version or ("v1" if route.v1 else None)


def without_subscription_key(path: str) -> str:
    """The path with APIM's `subscription-key` query parameter removed: keys never travel on."""
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    kept = [(k, v) for k, v in query if k.lower() != SUBSCRIPTION_KEY_PARAM]
    if len(kept) == len(query):
        return path
    return urlunsplit(("", "", parts.path, urlencode(kept), parts.fragment))


def subscription_key_param(path: str) -> str | None:
    """APIM also accepts the subscription key as a query parameter."""
    query = parse_qsl(urlsplit(path).query)
    return next((v for k, v in query if k.lower() == SUBSCRIPTION_KEY_PARAM), None)


def recorded_path(path: str) -> str:
    """The path as the envelope records it: only `api-version` of the query is kept, as the
    policy does, so no key or other parameter reaches the store."""
    parts = urlsplit(path)
    version = dict(parse_qsl(parts.query)).get("api-version")
    return parts.path + (f"?{urlencode({'api-version': version})}" if version else "")
