"""The gateway's APIM behaviour through the official SDK: keys, tags, caller, modes, envelopes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from chargeback_pipeline.devtools.azurite import free_port, stop_process, wait_for_port
from chargeback_pipeline.forwarder.server import ROUTE, build_server
from chargeback_pipeline.gateway.gateway import (
    REQUEST_ID_HEADER,
    GatewayConfig,
    Upstream,
    build_gateway,
    default_backend_id,
    upstream_headers,
)
from chargeback_pipeline.gateway.httpio import start_in_thread
from chargeback_pipeline.gateway.policy import (
    caller_of,
    chargeback_tags,
    find_subscription,
    gateway_tokens,
    load_subscriptions,
    with_usage_requested,
)
from chargeback_pipeline.gateway.tokens import count_words, prompt_tokens
from chargeback_pipeline_tests.gateway.conftest import (
    FRAME_DELAY,
    KEY,
    UPSTREAM_KEY,
    Recorder,
    hour_key,
    sdk,
    unsigned_jwt,
    wait_for_stored,
)

MESSAGES = [{"role": "user", "content": "Write one line about the sea, please."}]


def stream_pieces(chunks: list) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


# --- policy functions -------------------------------------------------------------------------


def test_subscriptions_load_from_default_csv_and_json(tmp_path: Path):
    shipped = load_subscriptions()
    assert shipped[KEY].subscription_id == "sub-marketing-01"
    assert shipped[KEY].product_id == "genai-standard"
    custom = tmp_path / "keys.json"
    custom.write_text(json.dumps([{"key": "k1", "subscription_id": "sub-x"}]))
    loaded = load_subscriptions(custom)
    assert loaded["k1"].subscription_id == "sub-x" and loaded["k1"].product_id is None
    assert find_subscription("k1", loaded) == loaded["k1"]
    assert find_subscription("k2", loaded) is None and find_subscription(None, loaded) is None
    custom.write_text(json.dumps([{"key": "k1"}]))
    with pytest.raises(ValueError, match="entry 1"):
        load_subscriptions(custom)


def test_tags_and_caller_as_the_capture_fragments_read_them():
    headers = {
        "X-Chargeback-Cost-Center": " CC-4100 ",
        "x-chargeback-project": "sea-lines",
        "x-chargeback-": "no key",
        "x-chargeback-empty": "",
        "x-chargeback-long": "v" * 300,
        "Authorization": "Bearer " + unsigned_jwt({"oid": "user-1", "azp": "app-1"}),
        "x-end-user-id": "header-user",
    }
    tags = chargeback_tags(headers)
    assert tags == {"cost-center": "CC-4100", "project": "sea-lines", "long": "v" * 256}
    many = chargeback_tags({f"x-chargeback-t{n}": "v" for n in range(20)})
    assert len(many) == 16
    assert caller_of(headers, "127.0.0.1") == {
        "user_id": "user-1",
        "app_id": "app-1",
        "ip": "127.0.0.1",
    }
    fallback = {"x-end-user-id": "u", "Authorization": "Bearer not-a-jwt"}
    assert caller_of(fallback, None) == {"user_id": "u", "app_id": None, "ip": None}


def test_include_usage_injection_keeps_the_callers_json_intact():
    raw = b'{ "messages": [], "stream": true }'
    injected = with_usage_requested("chat_completions", raw, json.loads(raw), "2024-10-21")
    assert injected == b'{"stream_options":{"include_usage":true}, "messages": [], "stream": true }'
    off = b'{"stream": true, "stream_options": {"include_usage": false}}'
    rewritten = with_usage_requested("completions", off, json.loads(off), "v1")
    assert json.loads(rewritten)["stream_options"] == {"include_usage": True}
    assert with_usage_requested("chat_completions", raw, json.loads(raw), "2024-06-01") is None
    plain = b'{"messages": []}'
    assert with_usage_requested("chat_completions", plain, json.loads(plain), "v1") is None
    stream = b'{"input": "x", "stream": true}'
    assert with_usage_requested("responses", stream, json.loads(stream), "v1") is None


def test_gateway_tokens_exact_from_json_estimated_for_streams_none_on_errors():
    assert gateway_tokens(429, False, b'{"usage": {"prompt_tokens": 1}}', 5, 0) is None
    assert gateway_tokens(200, True, None, 5, 7) == {
        "prompt": 5,
        "completion": 7,
        "total": 12,
        "estimated": True,
    }
    body = b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}'
    assert gateway_tokens(200, False, body, 99, 0) == {
        "prompt": 3,
        "completion": 4,
        "total": 7,
        "estimated": False,
    }
    assert gateway_tokens(200, False, b'{"data": [{"url": "u"}]}', 9, 0) is None


def test_upstream_headers_carry_no_client_credentials_or_tags():
    sent = upstream_headers(
        {
            "api-key": KEY,
            "Authorization": "Bearer client-token",
            "x-chargeback-project": "p",
            "Accept-Encoding": "gzip",
            "User-Agent": "AzureOpenAI/Python",
        },
        UPSTREAM_KEY,
    )
    assert sent == {
        "User-Agent": "AzureOpenAI/Python",
        "api-key": UPSTREAM_KEY,
        "Accept-Encoding": "identity",
    }
    assert default_backend_id("https://contoso-eastus.openai.azure.com/") == "contoso-eastus"
    assert default_backend_id("http://127.0.0.1:8081") == "local-upstream"


# --- through the SDK --------------------------------------------------------------------------


def test_buffered_stream_is_relayed_token_by_token_with_injected_usage(
    start_gateway, envelope_validator
):
    recorder = Recorder()
    gateway = start_gateway("buffered", recorder)
    jwt = unsigned_jwt({"oid": "user-oid-1", "azp": "app-azp-1"})
    stream = sdk(gateway.server_port).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-chargeback-project": "sea-lines", "Authorization": f"Bearer {jwt}"},
    )
    arrivals = [(time.monotonic(), chunk) for chunk in stream]
    content = [at for at, chunk in arrivals if stream_pieces([chunk])]
    # The client never asked for usage; the inbound policy did, so the SDK sees the chunk too.
    usage = arrivals[-1][1].usage
    assert usage is not None and usage.prompt_tokens == prompt_tokens(
        "chat_completions", {"messages": MESSAGES}
    )
    # Relayed as produced: pieces arrive spread over the simulator's per-frame pauses.
    assert len(content) >= 4
    assert content[-1] - content[0] >= (len(content) - 1) * FRAME_DELAY * 0.5

    (envelope,) = recorder.wait_for(1)
    envelope_validator.validate(envelope)
    assert json.loads(envelope["request"]["body"])["stream_options"] == {"include_usage": True}
    assert envelope["response"]["streamed"] is True
    assert envelope["response"]["body"].endswith("data: [DONE]\n\n")
    assert envelope["response"]["body_bytes"] == len(envelope["response"]["body"].encode())
    assert envelope["gateway_tokens"] == {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "estimated": True,
    }
    assert envelope["subscription"] == {"id": "sub-marketing-01", "name": "Marketing analytics"}
    assert envelope["caller"] == {"user_id": "user-oid-1", "app_id": "app-azp-1", "ip": "127.0.0.1"}
    assert envelope["tags"] == {"project": "sea-lines"}
    assert envelope["backend"] == {
        "id": "aoai-sim",
        "deployment": "gpt-4o-mini",
        "api_version": "2024-10-21",
    }
    assert UPSTREAM_KEY not in json.dumps(envelope) and KEY not in json.dumps(envelope)


def test_passthrough_stream_keeps_no_body_and_estimates_what_the_client_saw(
    start_gateway, envelope_validator
):
    recorder = Recorder()
    gateway = start_gateway("passthrough", recorder)
    chunks = list(
        sdk(gateway.server_port).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
    )
    assert all(chunk.usage is None for chunk in chunks)  # nothing injected in passthrough
    (envelope,) = recorder.wait_for(1)
    envelope_validator.validate(envelope)
    assert "stream_options" not in json.loads(envelope["request"]["body"])
    assert envelope["response"]["body"] is None and envelope["response"]["body_bytes"] is None
    received = sum(count_words(piece) for piece in stream_pieces(chunks))
    prompt = prompt_tokens("chat_completions", {"messages": MESSAGES})
    assert envelope["gateway_tokens"] == {
        "prompt": prompt,
        "completion": received,
        "total": prompt + received,
        "estimated": True,
    }


def test_request_id_header_names_the_envelope(start_gateway):
    recorder = Recorder()
    gateway = start_gateway("buffered", recorder)
    raw = sdk(gateway.server_port).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES
    )
    completion = raw.parse()
    (envelope,) = recorder.wait_for(1)
    assert raw.headers[REQUEST_ID_HEADER] == envelope["request_id"]
    assert raw.headers["apim-request-id"]  # the upstream's own header is relayed
    assert envelope["gateway_tokens"]["estimated"] is False
    assert envelope["gateway_tokens"]["total"] == completion.usage.total_tokens


def test_missing_or_wrong_key_is_refused_and_recorded(start_gateway, envelope_validator):
    recorder = Recorder()
    gateway = start_gateway("buffered", recorder)
    with pytest.raises(openai.AuthenticationError) as wrong:
        sdk(gateway.server_port, key="not-a-key").embeddings.create(
            model="text-embedding-3-small", input="x"
        )
    assert "invalid subscription key" in wrong.value.message
    with pytest.raises(openai.AuthenticationError, match="missing subscription key"):
        sdk(gateway.server_port, token=unsigned_jwt({"oid": "u"})).embeddings.create(
            model="text-embedding-3-small", input="x"
        )
    envelopes = recorder.wait_for(2)
    for envelope in envelopes:
        envelope_validator.validate(envelope)
        assert envelope["response"]["status"] == 401
        assert envelope["subscription"] is None and envelope["product"] is None
        assert envelope["backend"]["id"] is None and envelope["gateway_tokens"] is None


def test_entra_client_with_apim_key_header_or_query(start_gateway):
    recorder = Recorder()
    gateway = start_gateway("buffered", recorder)
    client = sdk(gateway.server_port, token=unsigned_jwt({"sub": "user-sub-1", "appid": "app-2"}))
    client.embeddings.create(
        model="text-embedding-3-small",
        input="x y",
        extra_headers={"Ocp-Apim-Subscription-Key": "demo-key-support"},
    )
    client.embeddings.create(
        model="text-embedding-3-small", input="x y", extra_query={"subscription-key": "demo-key-hr"}
    )
    first, second = recorder.wait_for(2)
    assert first["subscription"]["id"] == "sub-support-bot"
    assert second["subscription"]["id"] == "sub-hr-assistant"
    assert second["request"]["path"] == (
        "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
    )
    assert "demo-key-hr" not in json.dumps(second)
    assert first["caller"]["user_id"] == "user-sub-1" and first["caller"]["app_id"] == "app-2"


def test_unreachable_upstream_answers_502_and_is_recorded(envelope_validator):
    recorder = Recorder()
    upstream = Upstream(f"http://127.0.0.1:{free_port()}", UPSTREAM_KEY, "gone", timeout=5)
    config = GatewayConfig(upstream, "buffered", load_subscriptions(), recorder)
    server = build_gateway("127.0.0.1", 0, config)
    start_in_thread(server, "gateway-502")
    try:
        with pytest.raises(openai.APIStatusError) as raised:
            sdk(server.server_port).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert raised.value.status_code == 502
        (envelope,) = recorder.wait_for(1)
        envelope_validator.validate(envelope)
        assert envelope["response"]["status"] == 502
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_command_with_builtin_simulator_posts_to_http_forwarder(chargeback_env: Path):
    """`python -m chargeback_pipeline.gateway gateway` (what `chargeback gateway` runs) in its
    own process, delivering over HTTP to the local forwarder."""
    forwarder = build_server("127.0.0.1", 0)
    start_in_thread(forwarder, "forwarder")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chargeback_pipeline.gateway",
            "gateway",
            "--port",
            str(port),
            "--upstream",
            "simulator",
            "--mode",
            "passthrough",
            "--forwarder-url",
            f"http://127.0.0.1:{forwarder.server_port}{ROUTE}",
        ],
        env={**os.environ, "AZURE_OPENAI_ENDPOINT": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        chunks = list(
            sdk(port).chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        now = datetime.now(UTC)
        (envelope,) = wait_for_stored([hour_key(now - timedelta(hours=1)), hour_key(now)], 1)
    finally:
        stop_process(process)
        forwarder.shutdown()
        forwarder.server_close()
    assert envelope["backend"]["id"] == "aoai-simulator"
    assert envelope["gateway_tokens"]["total"] == chunks[-1].usage.total_tokens
