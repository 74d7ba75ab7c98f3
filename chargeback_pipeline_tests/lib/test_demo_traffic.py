"""Tests of the demo traffic generator: determinism, contract shape, realism and injected faults."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from chargeback_pipeline.lib import demo_traffic
from chargeback_pipeline.lib.demo_traffic import (
    INVALID_REASONS,
    OPERATION_KINDS,
    DemoTruth,
    generate_day,
    generate_day_with_truth,
    generate_hour,
    hour_call_counts,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SEEDS = REPO / "dbt_like_sql" / "seeds"
DAY = date(2026, 11, 27)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SCHEMA_BREAKING = {"unknown_schema_major", "wrong_type", "missing_section"}


@pytest.fixture(scope="module")
def day() -> tuple[list[dict[str, Any]], DemoTruth]:
    return generate_day_with_truth(DAY)


@pytest.fixture(scope="module")
def valid(day: tuple[list[dict[str, Any]], DemoTruth]) -> list[dict[str, Any]]:
    envelopes, truth = day
    return [e for e in envelopes if e["request_id"] not in truth.invalid_request_ids]


def _read_csv(name: str) -> list[dict[str, str]]:
    with (SEEDS / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _operation(envelope: dict[str, Any]) -> str:
    """Name the call's kind from what the pipeline sees: path, status, streaming, body."""
    path = envelope["request"]["path"].split("?")[0]
    response = envelope["response"]
    status = response["status"]
    if status >= 400:
        return "error_5xx" if status >= 500 else f"error_{status}"
    if path.endswith("/chat/completions"):
        if not response["streamed"]:
            return "chat"
        return "chat_stream" if response["body"] is not None else "chat_stream_passthrough"
    if path == "/openai/v1/responses":
        return "responses_stream" if response["streamed"] else "responses"
    suffixes = {"/completions": "completions", "/embeddings": "embeddings"}
    for suffix, name in suffixes.items():
        if path.endswith(suffix):
            return name
    assert path.endswith("/images/generations"), path
    return "images"


def _sse_data(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.split("\n") if line.startswith("data: ")]


def test_same_seed_same_bytes_other_seed_other_traffic() -> None:
    first = orjson.dumps(list(generate_day(DAY, seed=11, calls=500)))
    again = orjson.dumps(list(generate_day(DAY, seed=11, calls=500)))
    other = orjson.dumps(list(generate_day(DAY, seed=12, calls=500)))
    assert first == again
    assert first != other


def test_with_truth_yields_exactly_generate_day(
    day: tuple[list[dict[str, Any]], DemoTruth],
) -> None:
    envelopes, truth = day
    assert orjson.dumps(envelopes) == orjson.dumps(list(generate_day(DAY)))
    assert truth.envelopes_emitted == len(envelopes)


def test_generates_a_day_of_more_than_4000_calls() -> None:
    # No timing here: speed is measured by `make bench`, never asserted in tests.
    count = sum(1 for _ in generate_day(date(2026, 3, 2), seed=3))
    assert count > 4000


def test_valid_envelopes_match_the_shared_schema(
    day: tuple[list[dict[str, Any]], DemoTruth],
) -> None:
    envelopes, truth = day
    schema = json.loads((SHARED / "envelope.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for envelope in envelopes:
        reason = truth.invalid_request_ids.get(envelope["request_id"])
        errors = list(validator.iter_errors(envelope))
        if reason in SCHEMA_BREAKING:
            assert errors, (reason, envelope["request_id"])
        else:
            assert not errors, (envelope["request_id"], [e.message for e in errors])


def test_keys_match_the_shared_examples(valid: list[dict[str, Any]]) -> None:
    example = json.loads((SHARED / "examples" / "chat_completion.json").read_text())
    for envelope in valid:
        assert set(envelope) <= set(example)
        assert set(example) - set(envelope) <= {"gateway_tokens"}
        for section in ("gateway", "api", "backend", "request", "response"):
            assert set(envelope[section]) == set(example[section]), section
        assert envelope["caller"].keys() == example["caller"].keys()


def test_timestamps_are_ordered_within_the_day_with_milliseconds(
    day: tuple[list[dict[str, Any]], DemoTruth],
) -> None:
    envelopes, _ = day
    stamps = [e["timestamp"] for e in envelopes]
    assert all(TIMESTAMP.match(stamp) for stamp in stamps)
    assert stamps == sorted(stamps)
    moments = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert all(m.tzinfo is not None and m.astimezone(UTC).date() == DAY for m in moments)


def test_diurnal_curve_peaks_in_business_hours(valid: list[dict[str, Any]]) -> None:
    per_hour = Counter(int(e["timestamp"][11:13]) for e in valid)
    assert set(per_hour) == set(range(24))
    assert max(per_hour.values()) > 3 * min(per_hour.values())
    assert min(per_hour.values()) >= 5
    assert 9 <= max(per_hour, key=per_hour.__getitem__) <= 17


@pytest.mark.parametrize("calls", [0, 7, 24, 130, 4000, 4001])
def test_hour_counts_add_up_with_a_floor(calls: int) -> None:
    counts = hour_call_counts(calls)
    assert len(counts) == 24 and sum(counts) == calls
    assert min(counts) >= min(5, calls // 24)


def test_every_operation_kind_is_present(
    day: tuple[list[dict[str, Any]], DemoTruth], valid: list[dict[str, Any]]
) -> None:
    _, truth = day
    seen = Counter(_operation(e) for e in valid)
    assert set(seen) == set(OPERATION_KINDS)
    assert all(truth.kind_counts[kind] > 0 for kind in OPERATION_KINDS)
    total = sum(truth.kind_counts.values())
    chat = sum(truth.kind_counts[k] for k in ("chat", "chat_stream", "chat_stream_passthrough"))
    streamed_chat = truth.kind_counts["chat_stream"] + truth.kind_counts["chat_stream_passthrough"]
    assert 0.48 < chat / total < 0.62
    assert 0.11 < streamed_chat / total < 0.19
    assert 0.07 < truth.kind_counts["embeddings"] / total < 0.13


def test_deployments_and_backends_come_from_the_seed(valid: list[dict[str, Any]]) -> None:
    rows = _read_csv("deployments.csv")
    seeded = {(r["deployment"], r["backend_id"], r["model"], r["region"]) for r in rows}
    assert set(demo_traffic.DEPLOYMENTS) == seeded
    known = {(r["deployment"], r["backend_id"]) for r in rows}
    for envelope in valid:
        backend = envelope["backend"]
        if envelope["response"]["status"] == 401:
            assert backend["id"] is None and envelope["subscription"] is None
            continue
        assert (backend["deployment"], backend["id"]) in known
    used = {(e["backend"]["deployment"], e["backend"]["id"]) for e in valid if e["backend"]["id"]}
    assert used == known


def test_response_model_is_the_deployments_model(valid: list[dict[str, Any]]) -> None:
    models = {(r["deployment"], r["backend_id"]): r["model"] for r in _read_csv("deployments.csv")}
    for envelope in valid:
        response = envelope["response"]
        body = response["body"]
        if response["status"] != 200 or body is None or response["streamed"]:
            continue
        reported = orjson.loads(body).get("model")
        if reported is not None:
            key = (envelope["backend"]["deployment"], envelope["backend"]["id"])
            assert reported == models[key]


def test_subscriptions_and_cost_center_tags(valid: list[dict[str, Any]]) -> None:
    mapping = _read_csv("cost_centers.csv")
    assert {s.id for s in demo_traffic.SUBSCRIPTIONS} == {r["subscription_id"] for r in mapping} | {
        "sub-sandbox-07"
    }
    history = {
        (r["subscription_id"], r["cost_center"], r["effective_from"], r["effective_to"])
        for r in mapping
    }
    assert {
        (sub, cc, start.isoformat(), end.isoformat() if end else "")
        for sub, cc, start, end in demo_traffic.COST_CENTER_HISTORY
    } == history
    known = {r["cost_center"] for r in mapping}
    kinds: Counter[str] = Counter()
    for envelope in valid:
        if envelope["subscription"] is None:
            continue
        sub = envelope["subscription"]["id"]
        tag = envelope["tags"].get("cost-center")
        own = demo_traffic.cost_center_on(sub, DAY)
        if tag is None:
            kinds["none"] += 1
        elif tag == own:
            kinds["own"] += 1
        elif tag in known:
            kinds["other"] += 1
        else:
            assert tag == "CC-9999"
            kinds["unknown"] += 1
    assert kinds["own"] > kinds["none"] > kinds["other"] > kinds["unknown"] > 0
    assert demo_traffic.cost_center_on("sub-hr-assistant", DAY) == "CC-6200"
    assert demo_traffic.cost_center_on("sub-hr-assistant", date(2026, 1, 5)) == "CC-6100"
    products = {e["product"]["id"] for e in valid if e["product"] is not None}
    assert products == {"genai-free", "genai-standard", "genai-premium"}
    assert sum(1 for e in valid if "project" in e["tags"]) > 0.8 * len(valid)


def test_callers_are_skewed_over_about_forty_users_and_eight_apps(
    valid: list[dict[str, Any]],
) -> None:
    users = Counter(e["caller"]["user_id"] for e in valid if e["caller"]["user_id"])
    apps = {e["caller"]["app_id"] for e in valid}
    assert 30 <= len(users) <= 40
    assert len(apps) == 8
    top_three = sum(count for _, count in users.most_common(3))
    assert top_three > 0.25 * sum(users.values())
    ips = {e["caller"]["ip"] for e in valid}
    assert all(ip.startswith(("203.0.113.", "198.51.100.")) for ip in ips)


def test_bodies_are_raw_strings_with_utf8_byte_counts(valid: list[dict[str, Any]]) -> None:
    non_ascii = 0
    for envelope in valid:
        for section in (envelope["request"], envelope["response"]):
            body = section["body"]
            if body is None:
                assert section["body_bytes"] is None
                continue
            assert isinstance(body, str)
            assert section["body_bytes"] == len(body.encode("utf-8"))
            non_ascii += section["body_bytes"] != len(body)
    assert non_ascii > 0


def test_non_streamed_usage_is_consistent(valid: list[dict[str, Any]]) -> None:
    cached_calls = 0
    for envelope in valid:
        response = envelope["response"]
        if response["status"] != 200 or response["streamed"]:
            continue
        usage = orjson.loads(response["body"]).get("usage")
        if usage is None:
            assert "/images/generations" in envelope["request"]["path"]
            continue
        if "input_tokens" in usage:
            prompt, completion = usage["input_tokens"], usage["output_tokens"]
            cached = usage["input_tokens_details"]["cached_tokens"]
            reasoning = usage["output_tokens_details"]["reasoning_tokens"]
        else:
            prompt, completion = usage["prompt_tokens"], usage.get("completion_tokens", 0)
            cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
            reasoning = usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0)
        assert usage["total_tokens"] == prompt + completion
        assert cached % 128 == 0 and cached <= prompt
        assert reasoning <= completion
        cached_calls += cached > 0
        gateway = envelope.get("gateway_tokens")
        if gateway is not None:
            assert gateway["estimated"] is False
            assert (gateway["prompt"], gateway["completion"]) == (prompt, completion)
    assert cached_calls > 0


def test_o_series_reports_reasoning_tokens(valid: list[dict[str, Any]]) -> None:
    reasoning = [
        orjson.loads(e["response"]["body"])["usage"]["completion_tokens_details"][
            "reasoning_tokens"
        ]
        for e in valid
        if e["backend"]["deployment"] == "o4-mini" and _operation(e) == "chat"
    ]
    assert reasoning and all(tokens > 0 for tokens in reasoning)


def test_chat_streams_follow_azure_sse(valid: list[dict[str, Any]]) -> None:
    with_usage = without_usage = 0
    for envelope in (e for e in valid if _operation(e) == "chat_stream"):
        frames = _sse_data(envelope["response"]["body"])
        assert frames[-1] == "[DONE]"
        first = orjson.loads(frames[0])
        assert first["choices"] == [] and first["prompt_filter_results"]
        chunks = [orjson.loads(frame) for frame in frames[1:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text.startswith("Regarding ") and text.endswith(".")
        asked = '"include_usage":true' in envelope["request"]["body"]
        usage = chunks[-1].get("usage")
        assert (usage is not None) == asked
        with_usage += asked
        without_usage += not asked
        assert envelope["gateway_tokens"]["estimated"] is True
    assert with_usage > without_usage > 0


def test_passthrough_streams_have_no_body_and_estimated_tokens(
    day: tuple[list[dict[str, Any]], DemoTruth], valid: list[dict[str, Any]]
) -> None:
    _, truth = day
    passthrough = [e for e in valid if _operation(e) == "chat_stream_passthrough"]
    for envelope in passthrough:
        assert envelope["response"]["body"] is None and envelope["response"]["body_bytes"] is None
        assert envelope["gateway_tokens"]["estimated"] is True
        assert envelope["gateway_tokens"]["total"] > 0
    assert set(truth.passthrough_usage) == {e["request_id"] for e in passthrough}


def test_responses_streams_end_with_completed_usage(valid: list[dict[str, Any]]) -> None:
    streams = [e for e in valid if _operation(e) == "responses_stream"]
    for envelope in streams:
        body = envelope["response"]["body"]
        events = re.findall(r"^event: (\S+)$", body, flags=re.MULTILINE)
        assert events[0] == "response.created" and events[-1] == "response.completed"
        completed = orjson.loads(_sse_data(body)[-1])
        usage = completed["response"]["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert streams


def test_embeddings_are_large_and_images_have_no_usage(valid: list[dict[str, Any]]) -> None:
    embeddings = [e for e in valid if _operation(e) == "embeddings"]
    assert all(20_000 <= e["response"]["body_bytes"] <= 40_000 for e in embeddings)
    for envelope in embeddings:
        usage = orjson.loads(envelope["response"]["body"])["usage"]
        assert set(usage) == {"prompt_tokens", "total_tokens"}
    images = [orjson.loads(e["response"]["body"]) for e in valid if _operation(e) == "images"]
    assert {len(body["data"]) for body in images} == {1, 2}
    assert all("usage" not in body for body in images)
    formats = {key for body in images for image in body["data"] for key in image}
    assert {"url", "b64_json"} <= formats


def test_legacy_completions_use_the_instruct_deployment(valid: list[dict[str, Any]]) -> None:
    calls = [e for e in valid if _operation(e) == "completions"]
    assert calls
    for envelope in calls:
        assert envelope["request"]["path"].startswith(
            "/openai/deployments/gpt-35-turbo-instruct/completions"
        )
        assert orjson.loads(envelope["response"]["body"])["object"] == "text_completion"


def test_errors_carry_no_tokens(valid: list[dict[str, Any]]) -> None:
    errors = [e for e in valid if e["response"]["status"] >= 400]
    assert {e["response"]["status"] for e in errors} == {400, 401, 429, 500, 503}
    assert all(e["gateway_tokens"] is None for e in errors)
    assert all("usage" not in orjson.loads(e["response"]["body"]) for e in errors)


def test_prompt_text_varies_and_truth_fragments_are_in_bodies(
    day: tuple[list[dict[str, Any]], DemoTruth], valid: list[dict[str, Any]]
) -> None:
    envelopes, truth = day
    bodies = [e["request"]["body"] for e in valid]
    assert len(set(bodies)) > 0.99 * len(bodies)
    assert len(truth.text_fragments) >= 10
    raw = orjson.dumps(envelopes).decode()
    for fragment in truth.text_fragments:
        assert json.dumps(fragment, ensure_ascii=False)[1:-1] in raw


def test_truth_names_duplicates_and_invalid_envelopes(
    day: tuple[list[dict[str, Any]], DemoTruth],
) -> None:
    envelopes, truth = day
    by_id: dict[str, list[dict[str, Any]]] = {}
    for envelope in envelopes:
        by_id.setdefault(envelope["request_id"], []).append(envelope)
    redelivered = {rid for rid, copies in by_id.items() if len(copies) > 1}
    assert redelivered == set(truth.duplicate_request_ids)
    for rid in redelivered:
        first, second = by_id[rid]
        assert first == second and first is not second
    assert set(truth.invalid_request_ids.values()) == set(INVALID_REASONS)
    assert not redelivered & set(truth.invalid_request_ids)
    assert truth.expected_valid_calls == len(by_id) - len(truth.invalid_request_ids) == 3990
    assert len(redelivered) + len(truth.invalid_request_ids) == 40
    for rid, reason in truth.invalid_request_ids.items():
        (envelope,) = by_id[rid]
        assert isinstance(envelope["request_id"], str)
        datetime.fromisoformat(envelope["timestamp"])
        if reason in ("negative_tokens", "absurd_tokens"):
            usage = orjson.loads(envelope["response"]["body"])["usage"]
            if reason == "negative_tokens":
                assert min(usage["prompt_tokens"], usage["completion_tokens"]) < 0
            else:
                assert usage["prompt_tokens"] >= 10**12


def test_generate_hour_matches_the_day_before_faults(
    day: tuple[list[dict[str, Any]], DemoTruth],
) -> None:
    envelopes, truth = day
    tampered = set(truth.invalid_request_ids) | set(truth.duplicate_request_ids)
    hour = 14
    in_day = [e for e in envelopes if int(e["timestamp"][11:13]) == hour]
    distinct = {e["request_id"]: e for e in in_day}
    count = hour_call_counts(4000)[hour]
    assert len(distinct) == count
    alone = list(generate_hour(datetime(2026, 11, 27, hour, tzinfo=UTC), calls=count))
    assert [e["timestamp"] for e in alone] == [e["timestamp"] for e in distinct.values()]
    same = [
        e for e in alone if e["request_id"] not in tampered and e == distinct.get(e["request_id"])
    ]
    assert len(same) >= count - len([e for e in distinct if e in tampered])


def test_generate_hour_refuses_a_time_off_the_hour() -> None:
    with pytest.raises(ValueError):
        list(generate_hour(datetime(2026, 11, 27, 14, 30, tzinfo=UTC), calls=3))
