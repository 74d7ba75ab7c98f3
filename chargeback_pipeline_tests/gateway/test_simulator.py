"""The Azure OpenAI simulator on its own: shapes the SDK accepts, predictable tokens, errors."""

from __future__ import annotations

import http.client
import json

import openai
import pytest

from chargeback_pipeline.gateway.routes import Route, match_route, without_subscription_key
from chargeback_pipeline.gateway.simulator import plan_usage, simulate
from chargeback_pipeline.gateway.tokens import CompletionCounter, prompt_tokens
from chargeback_pipeline.lib.usage import usage_from_sse
from chargeback_pipeline_tests.gateway.conftest import UPSTREAM_KEY, sdk

CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Name three rivers in Europe."},
]


def test_routes_cover_deployment_v1_and_preview_paths():
    assert match_route(CHAT) == Route("chat_completions", "gpt-4o-mini", v1=False)
    assert match_route("/openai/deployments/d/images/generations") == Route(
        "image_generations", "d", v1=False
    )
    assert match_route("/openai/v1/responses") == Route("responses", None, v1=True)
    assert match_route("/openai/responses?api-version=2025-03-01-preview") == Route(
        "responses", None, v1=False
    )
    assert match_route("/openai/v1/embeddings") == Route("embeddings", None, v1=True)
    assert match_route("/openai/deployments/d/audio/speech") is None
    assert match_route("/api/envelopes") is None
    assert without_subscription_key("/p?api-version=1&subscription-key=s3cret") == (
        "/p?api-version=1"
    )


def test_token_rule_is_words_plus_chat_overhead():
    # 2 + 5 words, 3 per message, 3 to prime the reply.
    assert prompt_tokens("chat_completions", {"messages": MESSAGES}) == 2 + 5 + 3 * 2 + 3
    assert prompt_tokens("embeddings", {"input": ["a b", "c"]}) == 3
    assert prompt_tokens("embeddings", {"input": [1, 2, 3]}) == 3
    assert prompt_tokens("responses", {"input": "one two", "instructions": "be brief"}) == 4
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "x y z"}]}]
    assert prompt_tokens("responses", {"input": parts}) == 3 + 3 + 3
    assert prompt_tokens("completions", {"prompt": "once upon a time"}) == 4


def test_plan_usage_predicts_answers_caching_and_reasoning():
    usage, cut = plan_usage("chat_completions", "gpt-4o-mini", {"messages": MESSAGES}, None)
    assert (usage.prompt, usage.cached, usage.completion, usage.reasoning, cut) == (
        16,
        0,
        10 + 16 // 2,
        0,
        False,
    )
    long = {"messages": [{"role": "user", "content": "word " * 1500}]}
    usage, _ = plan_usage("chat_completions", "gpt-4o", long, None)
    assert usage.prompt == 1506 and usage.cached == 1408 and usage.completion == 200
    usage, cut = plan_usage("responses", "o4-mini-2025-04-16", {"input": "a b c d"}, 5)
    assert (usage.completion, usage.reasoning, cut) == (15, 10, False)
    usage, cut = plan_usage("completions", "gpt-35-turbo-instruct", {"prompt": "a " * 60}, None)
    assert usage.completion == 16 and cut  # Azure's default max_tokens for completions


def test_stream_has_usage_chunk_only_when_asked_and_counter_agrees():
    body = {"messages": MESSAGES, "stream": True}
    plain = simulate(CHAT, {}, json.dumps(body).encode())
    asked = {**body, "stream_options": {"include_usage": True}}
    with_usage = simulate(CHAT, {}, json.dumps(asked).encode())
    assert b"prompt_filter_results" in plain.frames[0]
    assert plain.frames[-1] == with_usage.frames[-1] == b"data: [DONE]\n\n"
    assert usage_from_sse(b"".join(plain.frames).decode()) is None
    usage = usage_from_sse(b"".join(with_usage.frames).decode())
    assert usage is not None and usage.prompt_tokens == 16 and usage.completion_tokens == 18
    counter = CompletionCounter()
    stream = b"".join(with_usage.frames).replace(b"\n", b"\r\n")
    for start in range(0, len(stream), 7):  # frames split anywhere, CRLF line ends
        counter.feed(stream[start : start + 7])
    assert counter.tokens == usage.completion_tokens


def test_simulator_answers_the_official_sdk(simulator):
    client = sdk(simulator.server_port, key=UPSTREAM_KEY)
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert chat.model == "gpt-4o-mini-2024-07-18"
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (16, 18)
    assert len(chat.choices[0].message.content.split()) == 18

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.total_tokens == 34
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 3

    vectors = client.embeddings.create(model="text-embedding-3-large", input=["a b c", "d"])
    assert vectors.usage.prompt_tokens == 4
    assert [len(item.embedding) for item in vectors.data] == [3072, 3072]

    response = client.responses.create(model="o4-mini", input="Plan a parser test.")
    assert response.usage.input_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2 * 12
    assert len(response.output_text.split()) == 12

    events = list(client.responses.create(model="gpt-4.1", input="Plan it.", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.total_tokens == 2 + 11

    images = client.images.generate(model="dall-e-3", prompt="a red fox", n=2)
    assert len(images.data) == 2


@pytest.mark.parametrize(
    ("deployment", "headers", "error", "status"),
    [
        ("gpt-4o", {"x-simulate-status": "429"}, openai.RateLimitError, 429),
        ("fail-429", {}, openai.RateLimitError, 429),
        ("fail-500", {}, openai.InternalServerError, 500),
        ("gpt-4o", {"x-simulate-status": "400"}, openai.BadRequestError, 400),
    ],
)
def test_forced_errors_are_azure_shaped(simulator, deployment, headers, error, status):
    client = sdk(simulator.server_port, key=UPSTREAM_KEY)
    with pytest.raises(error) as raised:
        client.chat.completions.create(model=deployment, messages=MESSAGES, extra_headers=headers)
    assert raised.value.status_code == status
    assert raised.value.body["code"] in (str(status), "InternalServerError", "content_filter")
    if status == 429:
        assert raised.value.response.headers["retry-after"].isdigit()


def test_wrong_key_and_missing_api_version_are_refused(simulator):
    with pytest.raises(openai.AuthenticationError):
        sdk(simulator.server_port, key="wrong").chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    connection = http.client.HTTPConnection("127.0.0.1", simulator.server_port, timeout=5)
    connection.request(
        "POST",
        CHAT.split("?")[0],
        body=json.dumps({"messages": MESSAGES}),
        headers={"api-key": UPSTREAM_KEY, "Content-Type": "application/json"},
    )
    answer = connection.getresponse()
    assert answer.status == 404
    assert json.loads(answer.read())["error"]["message"] == "Resource not found"
    connection.close()
