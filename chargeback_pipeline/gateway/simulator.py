"""An upstream that answers like Azure OpenAI, with token counts a test can predict.

Usage follows `gateway.tokens` (words); the payload shapes are `lib.demo_traffic`'s: Azure's
`prompt_filter_results` first frame, a final usage chunk only with `stream_options.include_usage`,
Responses API events ending in `response.completed`. Header `x-simulate-status: 429` or a
deployment named `fail-429` forces an Azure-shaped error; `x-simulate-completion-tokens: N` sets
the answer length. A `Failures` plan makes the whole upstream fail (the next N calls, or a share
of them), which is how a throttled PTU backend or a regional outage is staged for the pool.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from random import Random
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from chargeback_pipeline.gateway.httpio import Handler, Server, serve_until_interrupted
from chargeback_pipeline.gateway.routes import Route, api_version_of, match_route
from chargeback_pipeline.gateway.tokens import parse_json_object, prompt_tokens

# demo_traffic's payload builders are private helpers; reusing them keeps one source of shapes.
from chargeback_pipeline.lib.demo_traffic import (
    _ANSWER_WORDS,
    _FILTER_OK,
    _PROMPT_FILTER,
    DEPLOYMENTS,
    Usage,
    _chat_body,
    _chat_sse,
    _Completion,
    _content_filter_error,
    _dumps,
    _guid,
    _pieces,
    _responses_sse,
    _responses_usage_body,
    _token,
    _vector_pool,
    responses_output,
)

SIMULATE_STATUS_HEADER = "x-simulate-status"
SIMULATE_COMPLETION_HEADER = "x-simulate-completion-tokens"
ANSWER_CAP = 200
"""Default answer length: 10 words plus one per two prompt tokens, at most this many."""
DEFAULT_LIMITS = {"completions": 16}
"""Azure's legacy completions stop at 16 tokens unless asked for more; everything else at 4096."""
SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"
_FAIL_DEPLOYMENT = re.compile(r"fail-(\d{3})")
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_MODELS = {row.deployment: row.model for row in DEPLOYMENTS}


class Reply(NamedTuple):
    """What the simulator answers: a whole body, or SSE frames sent one by one."""

    status: int
    content_type: str
    body: bytes = b""
    frames: tuple[bytes, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


def plan_usage(
    operation: str, model: str, body: Mapping[str, Any], requested: int | None
) -> tuple[Usage, bool]:
    """Token counts for a request and whether the answer was cut by the token limit.

    Prompts of 1,024+ tokens report their 128-aligned prefix as cached; o-series and gpt-5 models
    think for two reasoning tokens per visible one, within the limit.
    """
    prompt = prompt_tokens(operation, body)
    cached = prompt // 128 * 128 if prompt >= 1024 else 0
    if operation in ("embeddings", "image_generations"):
        return Usage(prompt, 0, 0, 0), False
    limit = _limit(operation, body)
    natural = requested if requested is not None else min(ANSWER_CAP, 10 + prompt // 2)
    reasoning = min(limit, 2 * natural) if model.startswith(_REASONING_PREFIXES) else 0
    visible = max(0, min(natural, limit - reasoning))
    return Usage(prompt, cached, visible + reasoning, reasoning), visible < natural


def _limit(operation: str, body: Mapping[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_output_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_LIMITS.get(operation, 4096)


def simulate(
    path: str, headers: Mapping[str, str], raw: bytes, api_key: str | None = None
) -> Reply:
    """Answer one POST as Azure OpenAI would (header names lower-case); pure but for the clock."""
    route = match_route(path)
    if route is None or (not route.v1 and not api_version_of(path, route)):
        # Azure answers a wrong path and a missing api-version alike.
        return _error(404, "404", "Resource not found")
    if api_key and not _authorised(headers, api_key):
        return _error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource.",
        )
    body = parse_json_object(raw)
    if body is None:
        return _error(400, None, "We could not parse the JSON body of your request.")
    deployment = route.deployment or body.get("model")
    if not isinstance(deployment, str) or not deployment:
        return _error(400, "missing_required_parameter", "Missing required parameter: 'model'.")
    rng = Random(hashlib.sha256(urlsplit(path).path.encode() + raw).hexdigest())
    forced = _forced_status(headers, deployment)
    if forced is not None:
        return _forced_error(rng, route, forced)
    model = _MODELS.get(deployment, deployment)
    requested = _int_header(headers, SIMULATE_COMPLETION_HEADER)
    usage, cut = plan_usage(route.operation, model, body, requested)
    return _BUILDERS[route.operation](rng, model, body, usage, cut)


def _authorised(headers: Mapping[str, str], api_key: str) -> bool:
    bearer = headers.get("authorization", "")
    return headers.get("api-key") == api_key or bearer == f"Bearer {api_key}"


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value and value.strip().isdigit() else None


def _forced_status(headers: Mapping[str, str], deployment: str) -> int | None:
    status = _int_header(headers, SIMULATE_STATUS_HEADER)
    found = _FAIL_DEPLOYMENT.fullmatch(deployment)
    status = status or (int(found[1]) if found else None)
    return status if status is not None and 400 <= status <= 599 else None


def _error(
    status: int, code: str | None, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    error = {"error": {"code": code, "message": message}}
    return Reply(status, JSON, _dumps(error).encode(), headers=headers)


def _forced_error(rng: Random, route: Route, status: int) -> Reply:
    """Azure's error bodies for a forced status (429 with Retry-After, content filter 400, …)."""
    if status == 429:
        seconds = rng.randint(1, 10)
        message = (
            f"Requests to the {route.operation_id} Operation have exceeded the token rate "
            f"limit. Please retry after {seconds} seconds."
        )
        return _error(429, "429", message, (("Retry-After", str(seconds)),))
    if status == 400:
        return Reply(400, JSON, _dumps(_content_filter_error(rng)).encode())
    if status == 500:
        message = "The server had an error while processing your request. Sorry about that!"
        return _error(500, "InternalServerError", message)
    if status == 503:
        message = "The service is temporarily unable to process your request. Try again later."
        return _error(503, "ServiceUnavailable", message)
    return _error(status, str(status), f"Simulated error {status}.")


def _answer(rng: Random, words: int) -> str:
    """`words` words, one token each by the simulator's rule."""
    return " ".join(rng.choices(_ANSWER_WORDS, k=words)).capitalize()


def _frames(sse: str) -> tuple[bytes, ...]:
    """An SSE text cut into its frames, each still ending in its blank line."""
    return tuple(f"{frame}\n\n".encode() for frame in sse.split("\n\n") if frame)


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _chat(rng: Random, model: str, body: Mapping[str, Any], usage: Usage, cut: bool) -> Reply:
    completion = _Completion(
        id="chatcmpl-" + _token(rng, 29),
        created=int(time.time()),
        model=model,
        answer=_answer(rng, usage.completion - usage.reasoning),
        finish_reason="length" if cut else "stop",
    )
    if body.get("stream") is True:
        sse = _chat_sse(rng, completion, usage if _include_usage(body) else None)
        return Reply(200, SSE, frames=_frames(sse))
    return Reply(200, JSON, _dumps(_chat_body(rng, completion, usage)).encode())


def _completions(
    rng: Random, model: str, body: Mapping[str, Any], usage: Usage, cut: bool
) -> Reply:
    head = {
        "id": "cmpl-" + _token(rng, 29),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    text = _answer(rng, usage.completion)
    finish = "length" if cut else "stop"
    usage_body = {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.total,
    }
    if body.get("stream") is not True:
        choice = {"text": text, "index": 0, "finish_reason": finish, "logprobs": None}
        choice["content_filter_results"] = _FILTER_OK
        document = {
            **head,
            "prompt_filter_results": _PROMPT_FILTER,
            "choices": [choice],
            "usage": usage_body,
        }
        return Reply(200, JSON, _dumps(document).encode())
    frames = [{**head, "choices": [], "prompt_filter_results": _PROMPT_FILTER}]
    frames += [
        {**head, "choices": [{"text": p, "index": 0, "finish_reason": None, "logprobs": None}]}
        for p in _pieces(rng, text)
    ]
    frames.append(
        {**head, "choices": [{"text": "", "index": 0, "finish_reason": finish, "logprobs": None}]}
    )
    if _include_usage(body):
        frames.append({**head, "choices": [], "usage": usage_body})
    sse = "".join(f"data: {_dumps(frame)}\n\n" for frame in frames) + "data: [DONE]\n\n"
    return Reply(200, SSE, frames=_frames(sse))


def _embeddings(rng: Random, model: str, body: Mapping[str, Any], usage: Usage, cut: bool) -> Reply:
    request_input = body.get("input")
    count = 1 if isinstance(request_input, str) or _is_token_array(request_input) else 0
    if not count and isinstance(request_input, list):
        count = len(request_input)
    dims = body.get("dimensions")
    full = 3072 if model.endswith("large") else 1536
    dims = dims if isinstance(dims, int) and 0 < dims <= full else full
    pool = _vector_pool(full)
    data = []
    for index in range(count):
        vector = pool[rng.randrange(len(pool))][:dims]
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    document = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.prompt, "total_tokens": usage.prompt},
    }
    return Reply(200, JSON, _dumps(document).encode())


def _is_token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value)


def _images(rng: Random, model: str, body: Mapping[str, Any], usage: Usage, cut: bool) -> Reply:
    count = body["n"] if isinstance(body.get("n"), int) else 1
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
    data = []
    for index in range(max(1, min(count, 10))):
        image: dict[str, Any] = {"revised_prompt": f"A detailed illustration: {prompt}"}
        if body.get("response_format") == "b64_json":
            image["b64_json"] = base64.b64encode(rng.randbytes(64)).decode()
        else:
            image["url"] = (
                "https://dalleprodsec.blob.core.windows.net/private/images/"
                f"{_guid(rng)}/generated_{index:02d}.png?sig={_token(rng, 43)}"
            )
        image["content_filter_results"] = _FILTER_OK
        data.append(image)
    document = {"created": int(time.time()), "data": data}
    return Reply(200, JSON, _dumps(document).encode())


def _responses(rng: Random, model: str, body: Mapping[str, Any], usage: Usage, cut: bool) -> Reply:
    answer = _answer(rng, usage.completion - usage.reasoning)
    output = responses_output(rng, answer, usage.reasoning)
    done = {
        "id": "resp_" + rng.randbytes(12).hex(),
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "model": model,
        "output": output,
        "usage": _responses_usage_body(usage),
    }
    if body.get("stream") is True:
        return Reply(200, SSE, frames=_frames(_responses_sse(rng, done, answer)))
    return Reply(200, JSON, _dumps(done).encode())


_BUILDERS = {
    "chat_completions": _chat,
    "completions": _completions,
    "embeddings": _embeddings,
    "image_generations": _images,
    "responses": _responses,
}


class Failures:
    """Which calls the whole upstream fails, whatever they ask: the next `count`, then a `rate`
    share of the rest (seeded), each answered with `status` in Azure's shape."""

    def __init__(self, status: int = 429, count: int = 0, rate: float = 0.0, seed: int = 0) -> None:
        if not 400 <= status <= 599 or count < 0 or not 0.0 <= rate <= 1.0:
            raise ValueError("status must be 4xx/5xx, count >= 0 and rate within [0, 1]")
        self.status, self.remaining, self.rate = status, count, rate
        self.failed = 0
        self._rng = Random(seed)
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int | None = None) -> None:
        """Fail the next `count` calls (with `status`, default the plan's)."""
        with self._lock:
            self.remaining, self.status = count, status or self.status

    def draw(self) -> int | None:
        """The status to force on this call, or None to answer normally."""
        with self._lock:
            if self.remaining > 0:
                self.remaining -= 1
            elif not (self.rate and self._rng.random() < self.rate):
                return None
            self.failed += 1
            return self.status


class SimulatorServer(Server):
    """The simulator on one address, with its optional key, the pause between SSE frames and the
    plan of calls it fails."""

    def __init__(
        self,
        address: tuple[str, int],
        api_key: str | None = None,
        frame_delay: float = 0.02,
        failures: Failures | None = None,
    ) -> None:
        super().__init__(address, SimulatorHandler)
        self.api_key = api_key
        self.frame_delay = frame_delay
        self.failures = failures or Failures()
        self.calls = 0
        self._calls_lock = threading.Lock()

    def count_call(self) -> None:
        with self._calls_lock:
            self.calls += 1


class SimulatorHandler(Handler):
    server: SimulatorServer

    def do_POST(self) -> None:
        raw = self.read_body()
        if raw is None:
            self.close_connection = True
            self.send_bytes(411, JSON, b'{"error": {"code": "411", "message": "Length Required"}}')
            return
        received = {name.lower(): value for name, value in self.headers.items()}
        self.server.count_call()
        forced = self.server.failures.draw()
        if forced is not None and SIMULATE_STATUS_HEADER not in received:
            received[SIMULATE_STATUS_HEADER] = str(forced)
        reply = simulate(self.path, received, raw, self.server.api_key)
        extra = (("apim-request-id", str(uuid.uuid4())), ("x-ms-region", "Local"))
        headers = (*reply.headers, *extra)
        if not reply.frames:
            self.send_bytes(reply.status, reply.content_type, reply.body, headers)
            return
        self.start_chunked(reply.status, reply.content_type, headers)
        for frame in reply.frames:
            # A pause per frame makes delivery observable token by token through the gateway.
            time.sleep(self.server.frame_delay)
            self.write_chunk(frame)
        self.end_chunked()

    def do_GET(self) -> None:
        self.send_bytes(404, JSON, b'{"error": {"code": "404", "message": "Resource not found"}}')


def build_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    frame_delay: float = 0.02,
    failures: Failures | None = None,
) -> SimulatorServer:
    """A simulator bound to host:port (0 = any free port); serve it with `serve_forever`."""
    return SimulatorServer((host, port), api_key, frame_delay, failures)


def serve_simulator(
    host: str = "127.0.0.1",
    port: int = 8081,
    api_key: str | None = None,
    frame_delay: float = 0.02,
    failures: Failures | None = None,
) -> None:
    """Serve the simulator until interrupted."""
    server = build_simulator(host, port, api_key, frame_delay, failures)
    print(f"Azure OpenAI simulator on http://{host}:{server.server_port}", flush=True)
    serve_until_interrupted(server)
