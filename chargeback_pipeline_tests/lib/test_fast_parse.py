"""The fast parse path equals the reference path exactly: every row, every reject and its reason.

`parse_envelopes` (msgspec structs) against `parse_envelopes_reference` (orjson + envelope_row)
on the shared examples, demo traffic, the benchmark mix and hostile edge cases, many near where a
large body's usage is read from its tail. Where the fast path is meant to answer on its own, the
tests also check that it did, so a fast path that always deferred to the reference would not pass.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback_pipeline.lib import fast_parse, parse
from chargeback_pipeline.lib.demo_traffic import generate_hour
from chargeback_pipeline.lib.fast_parse import fast_row
from chargeback_pipeline.lib.usage import TAIL_READ_FROM, Usage, operation_of, usage_from_body
from chargeback_pipeline.store.base import StoredEnvelope
from chargeback_pipeline_tests.conftest import EXAMPLES, REPO_ROOT

KEY = b"fast-parse-key"
COMPILED = fast_parse.scan_envelope
OPERATION_ID, PATH, CONTENT_TYPE, RESPONSE_BODY, STREAMED = 6, 17, 22, 23, 25
STEMS = sorted(path.stem for path in EXAMPLES.glob("*.json"))
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, params=["compiled", "msgspec"])
def scanner(request, monkeypatch):
    """Every test runs with each scanner the fast path can have."""
    if request.param == "msgspec":
        monkeypatch.setattr(fast_parse, "scan_envelope", fast_parse.decoded_fields)
    return request.param


def test_fast_rows_have_every_parsed_column():
    assert sorted(fast_parse.ROW_COLUMNS) == sorted(parse.PARSED_ENVELOPES)


def test_the_compiled_scanner_is_built():
    """`pip install -e .` compiles it wherever a C compiler is, as on CI."""
    assert fast_parse.SCANNER == "compiled"
    from chargeback_pipeline.lib import _envelope_scan

    assert _envelope_scan.TAIL_READ_FROM == TAIL_READ_FROM


def same(raws: Sequence[bytes]) -> int:
    """Assert both paths give equal frames; returns how many envelopes the fast path read.

    Whatever the compiled scanner reads, it reads into the fields msgspec gives."""
    for raw in raws:
        same_fields(raw)
    stored = [StoredEnvelope("raw/x.ndjson", n, raw) for n, raw in enumerate(raws, start=1)]
    fast_rows, fast_rejects = parse.parse_envelopes(stored, KEY)
    rows, rejects = parse.parse_envelopes_reference(stored, KEY)
    assert fast_rows.equals(rows), (fast_rows.to_dicts(), rows.to_dicts())
    assert fast_rejects.equals(rejects), (fast_rejects.to_dicts(), rejects.to_dicts())
    return sum(fast_row(s.raw, s.source, s.line, KEY) is not None for s in stored)


def named(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    return None if row is None else dict(zip(fast_parse.ROW_COLUMNS, row, strict=True))


def same_fields(raw: bytes) -> None:
    """The compiled scanner's fields are msgspec's, and the usage it settles from a body is the
    one the reference's usage_from_body reads from that body."""
    fields = COMPILED(raw)
    if fields is None:
        return
    decoded = fast_parse.decoded_fields(raw)
    *head, reported, body_length = fields
    if reported is not None:
        body = decoded[RESPONSE_BODY]
        assert head[RESPONSE_BODY] is None
        assert body_length == len(body.encode())
        streamed = bool(decoded[STREAMED]) or (decoded[CONTENT_TYPE] or "").startswith(
            "text/event-stream"
        )
        operation = operation_of(decoded[PATH], decoded[OPERATION_ID])
        counts_images = operation == "image_generations"
        assert Usage(*reported) == usage_from_body(body, streamed, counts_images)
        head[RESPONSE_BODY] = body
    assert (*head, None, None) == decoded


def example(stem: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{stem}.json").read_text())


def with_literal(envelope: dict[str, Any], literal: bytes, section: str = "response") -> bytes:
    """The envelope serialised with `literal` (raw JSON) as the section's body."""
    changed = copy.deepcopy(envelope)
    changed[section]["body"] = "\x00body\x00"
    return orjson.dumps(changed).replace(b'"\\u0000body\\u0000"', literal)


def literal_of(text: str, ascii_escapes: bool = False) -> bytes:
    """A JSON string literal: UTF-8 as orjson writes it, or every non-ASCII character escaped."""
    return json.dumps(text, ensure_ascii=ascii_escapes).encode()


def embeddings_body(size: int, after_usage: str = "", model: str = "text-embedding-3-large") -> str:
    """An embeddings response of about `size` characters whose usage object closes it."""
    vector = "[" + ",".join(f"{(i % 97 - 48) / 997:.8f}" for i in range(64)) + "]"
    items, length, index = [], 0, 0
    while length < size:
        item = f'{{"object":"embedding","index":{index},"embedding":{vector}}}'
        items.append(item)
        length += len(item) + 1
        index += 1
    return (
        f'{{"object":"list","data":[{",".join(items)}],"model":"{model}",'
        f'"usage":{{"prompt_tokens":{7 + index},"total_tokens":{7 + index}}}{after_usage}}}'
    )


def sse_body(frames: int, usage: bool = True, padding: str = "") -> str:
    """A chat completion stream of `frames` content chunks, with or without the usage chunk."""
    chunk = {"model": "gpt-4o-mini-2024-07-18", "choices": [{"delta": {"content": "x" + padding}}]}
    events = ['data: {"choices":[],"prompt_filter_results":[{"prompt_index":0}]}']
    events += [f"data: {orjson.dumps(chunk).decode()}" for _ in range(frames)]
    if usage:
        events.append(
            'data: {"choices":[],"model":"gpt-4o-mini-2024-07-18","usage":'
            '{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}'
        )
    return "\n\n".join([*events, "data: [DONE]", ""])


# --- corpora --------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_each_example_file_as_stored_and_compact(stem):
    pretty = (EXAMPLES / f"{stem}.json").read_bytes()
    assert same([pretty, orjson.dumps(example(stem))]) == 2


def test_demo_traffic_hour():
    raws = [orjson.dumps(e) for e in generate_hour(datetime(2026, 11, 27, 13, tzinfo=UTC), 11, 600)]
    assert same(raws) >= 0.95 * len(raws)


@cache
def bench_mix() -> list[bytes]:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import ingest_bench

    return ingest_bench.make_bodies(2000)


def test_benchmark_mix():
    raws = bench_mix()
    fast = same(raws)
    rows = len(raws) - sum(b'"2.0"' in r or b'"elapsed_ms":"' in r for r in raws)
    assert fast >= 0.95 * rows


# --- large bodies, whose usage is read from the tail -------------------------------------------

EMBEDDINGS = example("embeddings")


@pytest.mark.parametrize("size", [TAIL_READ_FROM - 300, TAIL_READ_FROM + 300, 20_000, 70_000])
@pytest.mark.parametrize("ascii_escapes", [False, True])
def test_embeddings_bodies_around_the_threshold(size, ascii_escapes):
    body = embeddings_body(size)
    raws = [with_literal(EMBEDDINGS, literal_of(body, ascii_escapes))]
    assert same(raws) == 1


def test_large_body_is_read_by_the_fast_path():
    raw = with_literal(EMBEDDINGS, literal_of(embeddings_body(40_000)))
    row = named(fast_row(raw, "s", 1, KEY))
    assert row is not None
    assert (row["prompt_tokens"], row["model"]) == (
        7 + embeddings_body(40_000).count('"object":"embedding"'),
        "text-embedding-3-large",
    )


TAIL_TEXTS = {
    "escaped quotes": ',"note":"she said \\"usage\\": {\\"prompt_tokens\\": 5}"',
    "backslashes": ',"path":"C:\\\\dir\\\\usage\\\\","more":"\\\\\\""',
    "accents": ',"note":"caf\u00e9, na\u00efve, d\u00e9j\u00e0 vu"',
    "astral": ',"note":"\U0001f600, \U0001f680, \U00010348"',
    "nested usage after": ',"extra":{"usage":{"prompt_tokens":1,"total_tokens":1}}',
    "usage word in a key's string": ',"usage_note":"usage","model_note":"model"',
    "model after usage": ',"model":"later-model"',
    "empty model after": ',"model":""',
    "usage not an object after": ',"usage":[1,2]',
    "newlines and commas": ',"text":"a,\\n,b,\\r\\n,c,\\t,"',
}


@pytest.mark.parametrize("name", sorted(TAIL_TEXTS))
@pytest.mark.parametrize("ascii_escapes", [False, True])
def test_tail_texts_after_the_usage_object(name, ascii_escapes):
    body = embeddings_body(30_000, after_usage=TAIL_TEXTS[name])
    assert same([with_literal(EMBEDDINGS, literal_of(body, ascii_escapes))]) == 1


@given(
    st.integers(min_value=0, max_value=2600),
    st.sampled_from(['"', "\\", "\u00e9", "\U0001f600", ",", "\n", "usage", '"usage":', "model"]),
    st.booleans(),
)
@settings(PROPERTY)
def test_escapes_at_every_distance_from_the_cut(offset, text, ascii_escapes):
    """Characters that escape to several bytes, near the usage object the tail search finds."""
    body = embeddings_body(12_000, after_usage=',"note":"' + "a," * 700 + '"')
    at = max(0, len(body) - offset)
    body = body[:at] + text + body[at:]
    same([with_literal(EMBEDDINGS, literal_of(body, ascii_escapes))])


@pytest.mark.parametrize("keep", [0, 40, 200, 5000, 11_000])
def test_truncated_large_bodies(keep):
    body = embeddings_body(12_000)
    body = body[: len(body) - keep]
    envelope = copy.deepcopy(EMBEDDINGS)
    envelope["response"]["truncated"] = True
    envelope["gateway_tokens"] = {"prompt": 5, "completion": 0, "total": 5, "estimated": True}
    assert same([with_literal(envelope, literal_of(body))]) == 1


def test_large_chat_completion_with_its_model_at_the_head():
    envelope = example("chat_completion")
    document = orjson.loads(envelope["response"]["body"])
    document["choices"][0]["message"]["content"] = "Long answer, with commas. " * 2000
    envelope["response"]["body"] = orjson.dumps(document).decode()
    assert same([orjson.dumps(envelope)]) == 1


def test_large_body_of_only_escapes_proves_no_length():
    """Twelve raw bytes per character: a body of many bytes but few characters."""
    body = embeddings_body(1000)[:-1] + ',"pad":"' + "\U0001f600" * 7000 + '"}'
    assert same([with_literal(EMBEDDINGS, literal_of(body, ascii_escapes=True))]) == 1


def test_images_are_counted_from_the_whole_body():
    envelope = example("chat_completion")
    envelope["request"]["path"] = "/openai/deployments/dall-e-3/images/generations"
    data = [{"b64_json": "QUJD" * 5000}, {"url": "https://x/2"}]
    envelope["response"]["body"] = orjson.dumps({"created": 1, "data": data}).decode()
    assert same([orjson.dumps(envelope)]) == 1


NESTED_AFTER = ',"extra":{"usage":{"prompt_tokens":1,"total_tokens":1},"model":"nested"}'


@pytest.mark.parametrize("units", [1500, 1700, 1750, 1790, 2000])
def test_escaped_head_cannot_fake_the_length_threshold(units):
    """Bodies near TAIL_READ_FROM characters but of many raw bytes (an escaped emoji is 12),
    whose tail reading differs from the whole parse: the threshold counts characters."""
    body = embeddings_body(200, after_usage=NESTED_AFTER)
    body = '{"pad":"' + "\U0001f600\U0001f600\U0001f600," * units + '",' + body[1:]
    assert same([with_literal(EMBEDDINGS, literal_of(body, ascii_escapes=True))]) == 1


@pytest.mark.parametrize("size", [TAIL_READ_FROM - 150, TAIL_READ_FROM - 80, 9000, 20_000])
def test_nested_usage_after_the_top_level_one(size):
    body = embeddings_body(size, after_usage=NESTED_AFTER)
    assert same([with_literal(EMBEDDINGS, literal_of(body))]) == 1


def test_image_response_with_usage_counts_its_images():
    envelope = example("chat_completion")
    envelope["request"]["path"] = "/openai/deployments/gpt-image-1/images/generations"
    document = {
        "created": 1,
        "data": [{"b64_json": "QUJD," * 4000}, {"b64_json": "REVG"}],
        "model": "gpt-image-1",
        "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210},
    }
    envelope["response"]["body"] = orjson.dumps(document).decode()
    assert same([orjson.dumps(envelope)]) == 1


SHAPES: dict[str, Callable[[], tuple[dict[str, Any], bytes]]] = {
    "embeddings 20 KB": lambda: (EMBEDDINGS, literal_of(embeddings_body(20_000))),
    "embeddings 40 KB": lambda: (EMBEDDINGS, literal_of(embeddings_body(40_000))),
    "embeddings, escaped": lambda: (
        EMBEDDINGS,
        literal_of(embeddings_body(30_000, after_usage=TAIL_TEXTS["astral"]), ascii_escapes=True),
    ),
    # Multilingual text is UTF-8 in the envelope.
    "embeddings, UTF-8 text": lambda: (
        {**EMBEDDINGS, "request": {**EMBEDDINGS["request"], "body": '{"input":"Zürich, Kraków"}'}},
        literal_of(embeddings_body(30_000, after_usage=TAIL_TEXTS["astral"])),
    ),
    "chat stream, UTF-8 text": lambda: (STREAM, literal_of(sse_body(200, padding=" déjà vu"))),
    "chat stream": lambda: (STREAM, literal_of(sse_body(200))),
    "chat stream, CRLF": lambda: (STREAM, literal_of(sse_body(200).replace("\n", "\r\n"))),
    "responses stream": lambda: (RESPONSES_STREAM, literal_of(responses_stream(150))),
    "responses stream, not marked": lambda: (
        example("responses_api"),
        literal_of(responses_stream(150)),
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_common_large_bodies_are_read_by_the_fast_path(shape):
    envelope, literal = SHAPES[shape]()
    raw = with_literal(envelope, literal)
    row = named(fast_row(raw, "s", 1, KEY))
    assert row is not None and row["token_source"] == "reported"
    assert same([raw]) == 1


# --- streams ---------------------------------------------------------------------------------

STREAM = example("chat_stream_buffered")


@pytest.mark.parametrize(
    "body",
    [
        sse_body(400),
        sse_body(400, usage=False),
        sse_body(400).replace("\n", "\r\n"),
        sse_body(40, padding=", and more" * 40),
        sse_body(400)[:-30],
        sse_body(400)[:-120],
        sse_body(3),
        "data: " + "x," * 3000,
        "\n\n" * 2000 + "data: [DONE]",
    ],
    ids=[
        "usage",
        "no usage",
        "crlf",
        "long frames",
        "cut in done",
        "cut in usage",
        "short",
        "no frames",
        "blank lines",
    ],
)
@pytest.mark.parametrize("streamed", [True, False])
def test_sse_streams(body, streamed):
    envelope = copy.deepcopy(STREAM)
    envelope["response"]["streamed"] = streamed
    envelope["response"]["content_type"] = "text/event-stream" if streamed else "text/plain"
    assert same([with_literal(envelope, literal_of(body))]) == 1


def test_event_of_several_data_lines_cut_by_the_tail():
    """A long event whose last data line alone is a usage chunk: the tail must not take that
    line for the whole event."""
    lines = (
        'data: {"pad": "' + "a," * 3000 + '\ndata: {"choices":[],"usage":'
        '{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    )
    body = sse_body(20).removesuffix("data: [DONE]\n\n") + lines + "\n\ndata: [DONE]\n\n"
    assert same([with_literal(STREAM, literal_of(body))]) == 1


def test_streamed_usage_is_read_by_the_fast_path():
    envelope = copy.deepcopy(STREAM)
    envelope["response"]["body"] = sse_body(400)
    row = named(fast_row(orjson.dumps(envelope), "s", 1, KEY))
    assert row is not None
    assert (row["prompt_tokens"], row["completion_tokens"], row["token_source"]) == (
        9,
        3,
        "reported",
    )


def responses_stream(text_size: int, cut: int = 0) -> str:
    completed = {
        "type": "response.completed",
        "response": {
            "model": "o4-mini-2025-04-16",
            "output": [{"content": [{"type": "output_text", "text": "word, " * text_size}]}],
            "usage": {
                "input_tokens": 20,
                "input_tokens_details": {"cached_tokens": 8},
                "output_tokens": 100,
                "output_tokens_details": {"reasoning_tokens": 64},
                "total_tokens": 120,
            },
        },
    }
    deltas = "".join(
        f'event: response.output_text.delta\ndata: {{"type":"d","delta":"w{n}, "}}\n\n'
        for n in range(text_size // 10)
    )
    body = (
        'event: response.created\ndata: {"type":"response.created","response":'
        '{"model":"o4-mini-2025-04-16","usage":null}}\n\n'
        + deltas
        + f"event: response.completed\ndata: {orjson.dumps(completed).decode()}\n\n"
    )
    return body[: len(body) - cut]


RESPONSES_STREAM = example("responses_api")
RESPONSES_STREAM["response"].update(streamed=True, content_type="text/event-stream")


@pytest.mark.parametrize(("text_size", "cut"), [(10, 0), (200, 0), (3000, 0), (3000, 100)])
@pytest.mark.parametrize("streamed", [True, False])
def test_responses_api_streams(text_size, cut, streamed):
    envelope = copy.deepcopy(RESPONSES_STREAM)
    if not streamed:
        envelope["response"].update(streamed=False, content_type="application/json")
    envelope["response"]["body"] = responses_stream(text_size, cut)
    envelope["gateway_tokens"] = {"prompt": 5, "completion": 7, "total": 12, "estimated": True}
    assert same([orjson.dumps(envelope)]) == 1


# --- wrong types, missing parts, unknown fields, broken bytes ------------------------------------

WRONG_VALUES = [
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1.0",
    b"2e2",
    b"1e400",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b'""',
    b'"x"',
    b'"\\ud800"',
    b'"\xff"',
    b"[]",
    b"{}",
    b'{"usage":1}',
]


def leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        paths = [prefix] if prefix else []
        return paths + [p for key, item in value.items() for p in leaf_paths(item, (*prefix, key))]
    return [prefix]


def raw_with(envelope: dict[str, Any], path: tuple[str, ...], token: bytes | None) -> bytes:
    """The envelope with the value at `path` replaced by raw JSON `token` (None: removed)."""
    changed = copy.deepcopy(envelope)
    *parents, key = path
    target = changed
    for parent in parents:
        target = target[parent]
    if token is None:
        del target[key]
        return orjson.dumps(changed)
    target[key] = "\x00value\x00"
    return orjson.dumps(changed).replace(b'"\\u0000value\\u0000"', token)


@pytest.mark.parametrize("stem", ["chat_completion", "chat_stream_passthrough", "embeddings"])
def test_every_value_of_every_field(stem):
    envelope = example(stem)
    raws = [
        raw_with(envelope, path, token)
        for path in leaf_paths(envelope)
        for token in [*WRONG_VALUES, None]
    ]
    same(raws)


@pytest.mark.parametrize("stem", ["chat_completion", "embeddings"])
def test_unknown_fields_at_every_level(stem):
    envelope = example(stem)
    sections = [(), *[(k,) for k, v in envelope.items() if isinstance(v, dict)]]
    raws = []
    for section in sections:
        for token in (b"1", b"1e400", b'"\xff"', b'"\\ud800"', b"[[[[1]]]]", b"{}"):
            changed = copy.deepcopy(envelope)
            target = changed
            for key in section:
                target = target[key]
            target["x_extension"] = "\x00value\x00"
            raws.append(orjson.dumps(changed).replace(b'"\\u0000value\\u0000"', token))
    same(raws)


def test_duplicate_keys_take_the_last_value():
    raw = orjson.dumps(example("chat_completion"))
    raws = [
        raw.replace(b'"status":200', b'"status":"x","status":200'),
        raw.replace(b'"status":200', b'"status":200,"status":"x"'),
        raw.replace(b'"request_id":', b'"request_id":"first","request_id":'),
        raw.replace(b'"tags":{', b'"tags":{"project":"first",'),
        raw.replace(b'"response":{', b'"response":null,"response":{'),
        raw.replace(b'"body":"{', b'"body":null,"body":"{'),
    ]
    same(raws)


@pytest.mark.parametrize(
    "literal",
    [b"null", b"1", b"1e400", b"[]", b'{"usage":{}}', b'""', b'"\\u0000"', b'"   {}"'],
)
@pytest.mark.parametrize("section", ["request", "response"])
def test_bodies_that_are_not_plain_strings(literal, section):
    same([with_literal(example("chat_completion"), literal, section)])


@pytest.mark.parametrize(
    "broken",
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\\ud800", b"\\udc00", b"\x01"],
)
@pytest.mark.parametrize("section", ["request", "response"])
def test_invalid_text_in_the_head_of_a_large_body(broken, section):
    literal = literal_of(embeddings_body(30_000))
    literal = literal[:100] + broken + literal[100:]
    raws = [with_literal(EMBEDDINGS, literal, section)]
    if section == "request":
        raws.append(with_literal(EMBEDDINGS, literal_of(embeddings_body(30_000)), "response"))
    same(raws)


@pytest.mark.parametrize(
    "timestamp",
    [
        "1969-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00-01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T23:59:59-01:00",
        "2026-11-27T13:05:00.123456789Z",
        "2026-11-27T13:05:00+05:30",
        "20261127T130500Z",
    ],
)
def test_timestamps_at_the_edges_of_the_representable_range(timestamp):
    """Rows carry microseconds since the epoch: before it, and where UTC leaves the range."""
    same([orjson.dumps({**example("chat_completion"), "timestamp": timestamp})])


def test_unreadable_envelopes():
    good = orjson.dumps(example("chat_completion"))
    same([b"", b"not json", b"[1]", b"\xff{}", good[:-1], good + b"x", b"\xef\xbb\xbf" + good])


# --- bodies the compiled scanner reads itself --------------------------------------------------

CHAT_USAGE = '"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}'
SMALL_BODIES = [
    '{"model":"gpt-4o",' + CHAT_USAGE + "}",
    '{"model":"gpt-4o","usage":{"prompt_tokens":7,"completion_tokens":3}}',
    '{"model":"","usage":{"prompt_tokens":7,"total_tokens":0}}',
    '{"model":null,"usage":{"prompt_tokens":null,"completion_tokens":3}}',
    '{"model":"m","usage":{"input_tokens":5,"output_tokens":2,"input_tokens_details":'
    '{"cached_tokens":1},"output_tokens_details":{"reasoning_tokens":1},"total_tokens":7}}',
    '{"usage":{"input_tokens":null,"prompt_tokens":9}}',
    '{"usage":{"prompt_tokens":9,"prompt_tokens_details":null,'
    '"completion_tokens_details":{"reasoning_tokens":null,"audio_tokens":4}}}',
    '{"usage":{"prompt_tokens":9,"prompt_tokens_details":3}}',
    '{"usage":{"prompt_tokens":-0,"completion_tokens":999999999999999999}}',
    '{"usage":{"prompt_tokens":1000000000000000000}}',
    '{"usage":{"prompt_tokens":9223372036854775808}}',
    '{"usage":{"prompt_tokens":1.0}}',
    '{"usage":{"prompt_tokens":true}}',
    '{"usage":{"prompt_tokens":"7"}}',
    '{"usage":{"prompt_tokens":7,"prompt_tokens":8}}',
    '{"usage":{"prompt_tokens":7,"total_tokens":{"x":1}}}',
    '{"usage":{"prompt_tokens_details":{"cached_tokens":{"deep":1}}}}',
    '{"usage":{"pr\\u006fmpt_tokens":7}}',
    '{"us\\u0061ge":{"prompt_tokens":7}}',
    '{"model":"gpt-4o","model":"other",' + CHAT_USAGE + "}",
    '{"model":"gpt-\\u00e9",' + CHAT_USAGE + "}",
    '{"model":"gpt-4o",' + CHAT_USAGE + ',"usage":null}',
    '{"usage":null}',
    '{"usage":[1]}',
    '{"response":{"usage":{"input_tokens":3}},' + CHAT_USAGE + "}",
    '{"response":"text",' + CHAT_USAGE + "}",
    '{"data":[{"url":"https://x"}],' + CHAT_USAGE + "}",
    '{"data":[{"b64_json":"QUJD"},{"url":"u"}]}',
    '{"data":[{"embedding":[0.1,-2e-3]},{"object":"embedding"}],' + CHAT_USAGE + "}",
    '{"data":[1,{"url":"u"}],' + CHAT_USAGE + "}",
    '{"data":[],' + CHAT_USAGE + "}",
    '{"data":{"url":"u"},' + CHAT_USAGE + "}",
    '{"data":[{"u\\u0072l":"x"}],' + CHAT_USAGE + "}",
    '{"x":1e400,' + CHAT_USAGE + "}",
    '{"x":1e-400,' + CHAT_USAGE + "}",
    '{"x":123456789012345678901234567890,' + CHAT_USAGE + "}",
    '{"x":1.5e300,"y":-0.0,"z":[true,false,null,{}],' + CHAT_USAGE + "}",
    '{"x":01,' + CHAT_USAGE + "}",
    '{"x":1.,' + CHAT_USAGE + "}",
    '{"x":"\\ud800",' + CHAT_USAGE + "}",
    '{"x":"\\ud83d\\ude00 \\u00e9 \\n",' + CHAT_USAGE + "}",
    '{"x":"bad \\q escape",' + CHAT_USAGE + "}",
    '{"x":' + "[" * 70 + "]" * 70 + "," + CHAT_USAGE + "}",
    "{" + CHAT_USAGE + "} trailing",
    "{" + CHAT_USAGE + ",}",
    " \t\r\n{" + CHAT_USAGE + "}\n ",
    "\x0b{" + CHAT_USAGE + "}",
    "\u00a0{" + CHAT_USAGE + "}",
    "\ufeff{" + CHAT_USAGE + "}",
    "data: {" + CHAT_USAGE + "}\n\n",
    " event: x\ndata: {" + CHAT_USAGE + "}\n\n",
    "[" + "{" + CHAT_USAGE + "}]",
    "{}",
    "",
    "   ",
]


@pytest.mark.parametrize("body", SMALL_BODIES)
@pytest.mark.parametrize("ascii_escapes", [False, True])
def test_small_json_bodies(body, ascii_escapes):
    same([with_literal(example("chat_completion"), literal_of(body, ascii_escapes))])


CHUNK = '{"model":"gpt-4o-mini","choices":[{"delta":{"content":"hi"}}]}'
USAGE_CHUNK = '{"model":"gpt-4o-mini","choices":[],' + CHAT_USAGE + "}"
COMPLETED = (
    '{"type":"response.completed","response":{"model":"gpt-4.1","usage":'
    '{"input_tokens":5,"output_tokens":2,"total_tokens":7}}}'
)
STREAMS = [
    f"data: {CHUNK}\n\ndata: {USAGE_CHUNK}\n\ndata: [DONE]\n\n",
    f"data: {CHUNK}\n\ndata: {USAGE_CHUNK}\n\n",
    f"data:{USAGE_CHUNK}\n\ndata:[DONE]",
    f"data: {CHUNK}\r\n\r\ndata: {USAGE_CHUNK}\r\n\r\ndata: [DONE]\r\n\r\n",
    f"data: {USAGE_CHUNK}\n\ndata: {CHUNK[:30]}",
    f'data: {USAGE_CHUNK}\n\ndata: [1,2]\n\ndata: "text"\n\ndata: \n\n',
    f"data: {USAGE_CHUNK.replace('gpt-4o-mini', '')}\n\ndata: {CHUNK}\n\ndata: [DONE]\n\n",
    f'data: {{"choices":[],{CHAT_USAGE}}}\n\ndata: {CHUNK}\n\n',
    f'data: {{"choices":[],{CHAT_USAGE}}}\n\ndata: {{"model":null}}\n\ndata: {CHUNK}\n\n',
    f"data: {USAGE_CHUNK}\ndata: [DONE]\n\n",
    f"event: response.completed\ndata: {COMPLETED}\n\n",
    "event: response.completed\ndata: "
    + COMPLETED.replace('"model":"gpt-4.1",', "")
    + f"\n\ndata: {CHUNK}\n\n",
    'data: {"type":"response.created","response":{"model":"gpt-4.1","usage":null}}\n\n',
    'data: {"response":{"usage":{"input_tokens":1}},"response":{}}\n\n',
    f"data: {CHUNK}\n\n",
    f"data:\u00a0{USAGE_CHUNK}\n\n",
    f": comment\nid: 7\ndata: {USAGE_CHUNK}\n\n\n",
    f"data: {USAGE_CHUNK} x\n\n",
]


@pytest.mark.parametrize("body", STREAMS)
@pytest.mark.parametrize("streamed", [True, False])
def test_sse_bodies_at_the_edges(body, streamed):
    envelope = copy.deepcopy(STREAM)
    envelope["response"]["streamed"] = streamed
    same([with_literal(envelope, literal_of(body))])


IMAGES = '{"created":1,"data":[{"b64_json":"QUJD"},{"url":"https://x/y.png"}]'
LARGE_IMAGE = '{"data":[{"b64_json":"' + "Q" * 20_000 + '"'
IMAGE_BODIES = [
    IMAGES + "}",
    IMAGES + ',"usage":{"input_tokens":4,"output_tokens":2}}',
    IMAGES + ',"model":"dall-e-3"}',
    '{"data":[{"b64_json":"'
    + "Q" * 20_000
    + '","revised_prompt":"r"}],"usage":{"total_tokens":3}}',
    '{"data":[{"b64_json":"'
    + "Q" * 20_000
    + '"}],"pad":"x","usage":{"total_tokens":3},"z":{"usage":{"total_tokens":9}}}',
    '{"data":[{"b64_json":"' + "Q" * 20_000 + '"}]',
    '{"data":[{"url":"u"},{"object":"x"}],"usage":{"total_tokens":3}}',
]
IMAGE_ROUTES = [
    ("/openai/deployments/dall-e-3/images/generations?api-version=2024-10-21", None),
    ("/openai/deployments/dall-e-3/IMAGES/Generations/", None),
    (None, "Images_Generate"),
    ("/openai/other", "image_create"),
    ("/openai/other", "ImageResponse"),
    ("/openai/deployments/d/chat/completions", "image"),
    ("/openai/\u0130mages/generations", None),
    ("/openai/other", "\u212aimage"),
]


@pytest.mark.parametrize("body", IMAGE_BODIES)
@pytest.mark.parametrize("route", IMAGE_ROUTES)
def test_image_bodies_by_route(body, route):
    """Image operations read the body whole and count its images; others read large bodies
    from the tail. The route decides which, as operation_of says."""
    envelope = copy.deepcopy(example("chat_completion"))
    envelope["request"]["path"], envelope["api"]["operation_id"] = route
    same([with_literal(envelope, literal_of(body))])


@pytest.mark.parametrize(
    "piece",
    [
        b"\xc0\x80",
        b"\xc1\xbf",
        b"\xe0\x80\x80",
        b"\xe0\x9f\xbf",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xf0\x80\x80\x80",
        b"\xf0\x8f\xbf\xbf",
        b"\xf4\x90\x80\x80",
        b"\xf5\x80\x80\x80",
        b"\xff",
        b"\x80",
        b"\xc3",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\xef\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
    ],
)
@pytest.mark.parametrize("inside", ["model", "note"])
def test_utf8_at_the_edges_inside_a_settled_body(piece, inside):
    """The compiled scanner checks UTF-8 of a body it never turns into str: as strictly as
    CPython, or the envelope goes to the paths that do."""
    literal = literal_of(SMALL_BODIES[0])
    if inside == "model":
        literal = literal.replace(b"gpt-4o", b"gpt" + piece + b"-4o")
    else:
        literal = literal.replace(b'{\\"model', b'{\\"note\\":\\"x' + piece + b'\\",\\"model')
    assert piece in literal
    raw = with_literal(example("chat_completion"), literal)
    same([raw])
    valid = piece in (
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\xef\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
    )
    assert (COMPILED(raw) is not None and COMPILED(raw)[-2] is not None) == valid


def large(body: str) -> str:
    """The body with a long text before it, past TAIL_READ_FROM: its usage is read from the tail."""
    return '{"pad":"' + "p" * TAIL_READ_FROM + '",' + body.lstrip()[1:]


@pytest.mark.parametrize("body", [large(b) for b in SMALL_BODIES if b.lstrip().startswith("{")])
def test_large_json_bodies(body):
    same([with_literal(EMBEDDINGS, literal_of(body))])


@pytest.mark.parametrize(
    "tail",
    [
        '"usage":{"prompt_tokens":3},"x":"\\"usage\\": {\\"prompt_tokens\\": 9}"}',
        '"usage":{"prompt_tokens":3},"model":"\\"model\\":\\"fake\\""}',
        '"usage" :\t{"prompt_tokens":3}, "model" : "m1", "note":"\\"model\\""}',
        '"usage":{"prompt_tokens":3},"model":"","other":{"model":"inner"}}',
        '"model":"m1","usage":{"prompt_tokens":3},"model":7}',
        '"model":"m1","usage":{"prompt_tokens":3},"model":"m\\u00e9"}',
        '"usage":{"prompt_tokens":3},"usage":"text"}',
        '"usage":{"prompt_tokens":3},"x":"usage","y":"\\"usage\\""}',
        '"usage":{"prompt_tokens":3}',
        '"usage":{"prompt_tokens":3,}}',
        '"usage" "x", "model":"m"}',
    ],
)
def test_large_bodies_read_from_the_tail(tail):
    body = '{"pad":"' + "p" * TAIL_READ_FROM + '",' + tail
    same([with_literal(EMBEDDINGS, literal_of(body))])


def test_most_bodies_are_settled_by_the_compiled_scanner():
    """Chat, Responses, embeddings and stream bodies never become str: their usage is read in C
    (`COMPILED`, whichever scanner `fast_row` is given for the rest of the test)."""
    settled = [
        with_literal(example("chat_completion"), literal_of(SMALL_BODIES[0])),
        orjson.dumps(example("chat_completion")),
        orjson.dumps(example("responses_api")),
        with_literal(EMBEDDINGS, literal_of(embeddings_body(30_000))),
        with_literal(STREAM, literal_of(STREAMS[0])),
        with_literal(STREAM, literal_of(STREAMS[10])),
    ]
    assert all(COMPILED(raw)[-2] is not None for raw in settled)
    assert same(settled) == len(settled)


# --- random edits --------------------------------------------------------------------------------

PIECES = [
    '"',
    "\\",
    ",",
    "\n\n",
    "\r\n",
    "data: ",
    "usage",
    '"usage":{"prompt_tokens":1}',
    "{",
    "}",
    '"model":"m"',
    "\u00e9",
    "\U0001f600",
    "[DONE]",
    "x" * 50,
]
BASES: dict[str, Callable[[], dict[str, Any]]] = {
    "embeddings": lambda: {
        **EMBEDDINGS,
        "response": {**EMBEDDINGS["response"], "body": embeddings_body(9000)},
    },
    "stream": lambda: {**STREAM, "response": {**STREAM["response"], "body": sse_body(200)}},
    "chat": lambda: example("chat_completion"),
}


@given(
    st.sampled_from(sorted(BASES)),
    st.lists(st.tuples(st.floats(0, 1), st.sampled_from(PIECES)), min_size=1, max_size=6),
    st.booleans(),
)
@settings(PROPERTY)
def test_random_edits_of_a_response_body(base, edits, ascii_escapes):
    envelope = copy.deepcopy(BASES[base]())
    body = envelope["response"]["body"]
    for where, piece in edits:
        at = int(where * len(body))
        body = body[:at] + piece + body[at:]
    same([with_literal(envelope, literal_of(body, ascii_escapes))])


@given(st.integers(0, 10**9), st.binary(min_size=1, max_size=4))
@settings(PROPERTY)
def test_random_bytes_spliced_into_an_envelope(where, piece):
    raw = orjson.dumps(example("chat_completion"))
    at = where % len(raw)
    same([raw[:at] + piece + raw[at:]])
