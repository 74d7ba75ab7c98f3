"""The envelope builder's C# source against envelope.schema.json, property by property.

Read statically from the expression: `var name = new JObject { ["prop"] = ..., ... }` blocks, the
envelope block assigning sections by their local variable, and `envelope["prop"] =` statements.
The runtime tests (test_policy_runtime.py) then check the JSON it actually produces.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chargeback_pipeline_tests.conftest import SHARED
from chargeback_pipeline_tests.policies.policy_tools import FRAGMENTS, expressions

BUILDER = FRAGMENTS / "chargeback-build-envelope.xml"
SCHEMA: dict[str, Any] = json.loads((SHARED / "envelope.schema.json").read_text())
NESTED = [name for name, spec in SCHEMA["properties"].items() if "properties" in spec]
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
BLOCK_START = re.compile(
    r"(?:\b(?:var|JObject)\s+)?\b(\w+)\s*=\s*(?:[^;{}]*?:\s*)?new JObject\s*\{"
)


def builder_code() -> str:
    [expression] = [
        e for e in expressions(BUILDER) if e.label == "set-variable[chargeback-envelope]/value"
    ]
    return expression.inner


def _blank_strings(code: str) -> str:
    """String literals replaced by same-length placeholders, so braces inside them do not count."""
    return STRING.sub(lambda m: '"' + "_" * (len(m.group(0)) - 2) + '"', code)


def jobject_blocks(code: str) -> dict[str, str]:
    """Local variable -> the text of the `new JObject { ... }` initializer assigned to it."""
    blank = _blank_strings(code)
    blocks: dict[str, str] = {}
    for match in BLOCK_START.finditer(blank):
        depth, start = 0, match.end() - 1
        for index in range(start, len(blank)):
            depth += {"{": 1, "}": -1}.get(blank[index], 0)
            if depth == 0:
                blocks[match.group(1)] = code[start + 1 : index]
                break
    return blocks


def assigned(block: str) -> dict[str, str]:
    """Property -> assigned expression text, for the initializer's own (depth 1) properties."""
    blank = _blank_strings(block)
    result: dict[str, str] = {}
    depth = 0
    for index, char in enumerate(blank):
        depth += {"{": 1, "}": -1, "(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char == "[":
            match = re.match(r'\["([^"]+)"\]\s*=\s*', block[index:])
            if match:
                rest = block[index + match.end() :]
                value = re.split(r",\s*\[\"|\s*$", rest, maxsplit=1)[0]
                result[match.group(1)] = value.strip().rstrip(",").strip()
    return result


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    return jobject_blocks(builder_code())


@pytest.fixture(scope="module")
def envelope(blocks: dict[str, str]) -> dict[str, str]:
    assert "envelope" in blocks, "the builder has no `var envelope = new JObject { ... }`"
    return assigned(blocks["envelope"])


def test_every_top_level_property_of_the_schema_is_assigned(envelope: dict[str, str]) -> None:
    code = builder_code()
    extensions = set(re.findall(r'\benvelope\["([^"]+)"\]\s*=', code))
    properties = set(envelope) | extensions
    assert set(SCHEMA["required"]) <= properties
    assert set(SCHEMA["properties"]) <= properties, set(SCHEMA["properties"]) - properties
    # The only addition to the contract: on-error's "error" (the schema allows extra properties).
    assert properties - set(SCHEMA["properties"]) == {"error"}
    assert SCHEMA.get("additionalProperties", True) is True


@pytest.mark.parametrize("section", NESTED)
def test_every_nested_section_assigns_exactly_the_schema_properties(
    section: str, envelope: dict[str, str], blocks: dict[str, str]
) -> None:
    variable = envelope[section]
    assert variable in blocks, f"{section} is not built as a `new JObject {{ ... }}` local"
    expected = set(SCHEMA["properties"][section]["properties"])
    assert set(assigned(blocks[variable])) == expected


def test_nullable_sections_are_null_when_apim_has_no_such_entity() -> None:
    code = builder_code()
    for section, entity in [("subscription", "Subscription"), ("product", "Product")]:
        assert re.search(
            rf"JObject {section} = context\.{entity} == null \? null : new JObject", code
        ), section
        assert "null" in SCHEMA["properties"][section]["type"]


def test_tags_come_from_the_captured_headers_as_an_object(envelope: dict[str, str]) -> None:
    assert envelope["tags"] == "tags"
    assert re.search(r'var tags = JObject\.Parse\(.*"chargeback-tags"', builder_code())


def test_fixed_values_and_sources(envelope: dict[str, str]) -> None:
    assert envelope["schema_version"] == '"1.0"'
    assert envelope["request_id"] == "context.RequestId.ToString()"
    assert (
        "context.Timestamp" in envelope["timestamp"] and '.ToString("o")' in envelope["timestamp"]
    )
    assert "UtcDateTime" in envelope["timestamp"]
    assert "context.Elapsed.TotalMilliseconds" in envelope["elapsed_ms"]


def test_bodies_are_raw_strings_and_json_is_never_concatenated(blocks: dict[str, str]) -> None:
    code = builder_code()
    request, response = assigned(blocks["request"]), assigned(blocks["response"])
    assert request["body"] == "requestBody" and response["body"] == "responseBody"
    assert "As<string>(preserveContent: true)" in code
    # Newtonsoft does all escaping: no hand-written JSON, quoting or formatting of the envelope.
    assert '\\"' not in code
    assert "string.Format" not in code and "JsonConvert.SerializeObject" not in code
    assert code.rstrip().endswith("return envelope.ToString(Formatting.None);")


def test_gateway_tokens_come_from_the_token_limit_variables(blocks: dict[str, str]) -> None:
    code = builder_code()
    tokens = assigned(blocks["gatewayTokens"])
    assert tokens["total"].startswith("total")
    assert tokens["prompt"] == "prompt"
    assert 'context.Variables["chargeback-tokens-consumed"]' in code
    assert 'context.Variables["chargeback-prompt-estimate"]' in code


def test_the_block_reader_sees_through_strings_and_nesting() -> None:
    code = (
        'var a = new JObject { ["x"] = "{[\\"y\\"] = 1}", ["z"] = f(1, 2),'
        ' ["n"] = new JObject { ["in"] = 1 } };'
    )
    blocks = jobject_blocks(code)
    assert set(assigned(blocks["a"])) == {"x", "z", "n"}


def test_a_dropped_property_would_be_caught() -> None:
    code = builder_code().replace('["ip"] = context.Request.IpAddress', "")
    caller = assigned(jobject_blocks(code)["caller"])
    assert set(caller) == {"user_id", "app_id"}
