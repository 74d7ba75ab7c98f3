"""The policy files as documents: well-formed, scoped, wired together, and documented."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chargeback_pipeline_tests.policies.policy_runner import NAMED_VALUES
from chargeback_pipeline_tests.policies.policy_tools import (
    FRAGMENTS,
    POLICIES,
    elements,
    expressions,
    fragment_files,
    named_values,
    parse,
    policy_files,
)

API_POLICY = POLICIES / "azure-openai-api.xml"
SECTIONS = ["inbound", "backend", "outbound", "on-error"]
PRODUCT_LIMITS = {"genai-free": 100, "genai-basic": 1000, "genai-premium": 10000}
README = POLICIES / "README.md"


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(POLICIES)) for path in paths]


def test_the_expected_files_exist() -> None:
    names = {str(path.relative_to(POLICIES)) for path in policy_files()}
    assert {
        "azure-openai-api.xml",
        "fragments/chargeback-capture-headers.xml",
        "fragments/chargeback-stream-options.xml",
        "fragments/chargeback-build-envelope.xml",
        "fragments/chargeback-send-envelope.xml",
        *(f"products/{product}.xml" for product in PRODUCT_LIMITS),
    } <= names


@pytest.mark.parametrize("path", policy_files(), ids=_ids(policy_files()))
def test_every_file_is_well_formed_xml(path: Path) -> None:
    ET.parse(path)  # raises ParseError on `As<string>` in an attribute, a bare `&&`, ...


@pytest.mark.parametrize("path", policy_files(), ids=_ids(policy_files()))
def test_every_file_starts_with_a_header_comment_naming_its_scope(path: Path) -> None:
    root = parse(path)
    first = next(iter(root), None)
    assert first is not None and first.tag is ET.Comment, f"{path.name}: no header comment"
    header = first.text or ""
    assert path.stem in header, f"{path.name}: the header comment does not name the file"
    assert re.search(r"Scope: (global|product|API|operation)", header), header


@pytest.mark.parametrize("path", policy_files(), ids=_ids(policy_files()))
def test_expression_attributes_hold_no_line_comments(path: Path) -> None:
    # Newlines in attribute values become spaces when the XML is read: a // comment would swallow
    # the rest of the expression.
    for expression in expressions(path):
        if expression.attribute is not None:
            code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression.code)
            assert "//" not in code, expression.where


@pytest.mark.parametrize("path", fragment_files(), ids=_ids(fragment_files()))
def test_fragments_follow_apim_fragment_rules(path: Path) -> None:
    root = parse(path)
    assert root.tag == "fragment"
    tags = {element.tag for element in elements(root)}
    # No section identifiers, no <base/>, and no nested fragments (APIM refuses them).
    assert not tags & {"inbound", "backend", "outbound", "on-error", "base", "include-fragment"}
    assert path.stat().st_size < 512 * 1024


def _included(path: Path) -> list[str]:
    return [
        element.get("fragment-id", "")
        for element in elements(parse(path))
        if element.tag == "include-fragment"
    ]


def test_every_included_fragment_exists_and_every_fragment_is_used() -> None:
    included = {fragment for path in policy_files() for fragment in _included(path)}
    existing = {path.stem for path in fragment_files()}
    assert included, "the API policy includes no fragment"
    assert included <= existing, f"missing fragment files: {sorted(included - existing)}"
    assert existing <= included, f"fragments nobody includes: {sorted(existing - included)}"


def test_policy_documents_have_the_four_sections_each_with_base() -> None:
    for path in [API_POLICY, *(POLICIES / "products" / f"{p}.xml" for p in PRODUCT_LIMITS)]:
        root = parse(path)
        assert root.tag == "policies"
        assert [child.tag for child in root if isinstance(child.tag, str)] == SECTIONS
        for name in SECTIONS:
            section = root.find(name)
            assert section is not None
            has_base = section.find("base") is not None
            # The API policy forwards itself (forward-request); everything else inherits.
            assert has_base == (path != API_POLICY or name != "backend"), f"{path.name}/{name}"


def test_api_inbound_authenticates_limits_tokens_and_captures_before_forwarding() -> None:
    inbound = parse(API_POLICY).find("inbound")
    assert inbound is not None
    order = [
        element.get("fragment-id") or element.tag
        for element in inbound
        if isinstance(element.tag, str)
    ]
    assert order[0] == "cors"
    identity = inbound.find("authentication-managed-identity")
    assert identity is not None
    assert identity.get("resource") == "https://cognitiveservices.azure.com"
    limit = inbound.find("azure-openai-token-limit")
    assert limit is not None
    assert limit.get("tokens-consumed-variable-name") == "chargeback-tokens-consumed"
    assert limit.get("estimate-prompt-tokens") == "true"
    assert "context.Subscription.Id" in (limit.get("counter-key") or "")
    # The caller's Authorization header is read before managed identity replaces it.
    assert order.index("chargeback-capture-caller") < order.index("authentication-managed-identity")
    assert order.index("chargeback-capture-headers") < order.index("base")
    assert order.index("chargeback-stream-options") < order.index("set-variable")
    cors = inbound.find("cors")
    assert cors is not None and cors.get("allow-credentials") == "false"


def test_the_token_variables_the_builder_reads_are_the_ones_the_policy_sets() -> None:
    builder = (FRAGMENTS / "chargeback-build-envelope.xml").read_text()
    api = API_POLICY.read_text()
    for variable in ["chargeback-tokens-consumed", "chargeback-prompt-estimate"]:
        assert f'"{variable}"' in builder
        assert variable in api
    backend = parse(API_POLICY).find("backend")
    assert backend is not None
    estimate = backend.find("set-variable[@name='chargeback-prompt-estimate']")
    retry = backend.find("retry")
    assert estimate is not None and retry is not None
    children = list(backend)
    assert children.index(estimate) < children.index(retry)


def test_backend_does_not_buffer_responses_so_passthrough_streams_flow() -> None:
    forward = parse(API_POLICY).find("backend/retry/forward-request")
    assert forward is not None and forward.get("buffer-response") == "false"
    # The request body is sent again on a retry, so it must be kept.
    assert forward.get("buffer-request-body") == "true"


def test_the_pool_is_the_backend_and_throttling_or_failures_retry_at_once() -> None:
    inbound, backend = parse(API_POLICY).find("inbound"), parse(API_POLICY).find("backend")
    assert inbound is not None and backend is not None
    [service] = inbound.findall("set-backend-service")
    assert service.get("backend-id") == "{{chargeback-backend-pool}}"
    [retry] = backend.findall("retry")
    assert [child.tag for child in retry if isinstance(child.tag, str)] == ["forward-request"]
    condition = retry.get("condition", "")
    assert "StatusCode == 429" in condition and "StatusCode >= 500" in condition
    assert "context.Response != null" in condition  # no answer at all is on-error's business
    assert retry.get("count") == "{{chargeback-backend-retries}}"  # bounded by the pool's size
    assert retry.get("interval") == "0" and retry.get("first-fast-retry") == "true"


@pytest.mark.parametrize("section", ["outbound", "on-error"])
def test_the_serving_backend_is_named_before_the_envelope_is_built(section: str) -> None:
    element = parse(API_POLICY).find(section)
    assert element is not None
    order = [e.get("fragment-id") for e in element if e.tag == "include-fragment"]
    assert order.index("chargeback-serving-backend") < order.index("chargeback-build-envelope")
    api = API_POLICY.read_text()
    # Only the fragment sets the variable the envelope reports as backend.id.
    assert 'name="chargeback-backend-id"' not in api


@pytest.mark.parametrize("product,calls", PRODUCT_LIMITS.items())
def test_product_rate_limits_per_subscription_per_minute(product: str, calls: int) -> None:
    path = POLICIES / "products" / f"{product}.xml"
    limits = [element for element in elements(parse(path)) if element.tag == "rate-limit-by-key"]
    assert len(limits) == 1
    limit = limits[0]
    assert int(limit.get("calls", "0")) == calls
    assert int(limit.get("renewal-period", "0")) == 60
    assert "context.Subscription.Id" in limit.get("counter-key", "")
    assert limit.get("retry-after-variable-name") == "chargeback-retry-after"
    assert f'Scope: product "{product}"' in (next(iter(parse(path))).text or "")


def test_on_error_sends_an_envelope_then_answers_generically() -> None:
    on_error = parse(API_POLICY).find("on-error")
    assert on_error is not None
    order = [
        element.get("fragment-id") or element.tag
        for element in on_error
        if isinstance(element.tag, str)
    ]
    assert order == [
        "base",
        "chargeback-error-status",
        "chargeback-serving-backend",
        "chargeback-build-envelope",
        "chargeback-send-envelope",
        "chargeback-error-response",
    ]


def test_error_responses_carry_no_error_details() -> None:
    leaks = re.compile(r"LastError|Exception|\.Message\b|StackTrace|InnerException")
    for fragment in ["chargeback-error-status", "chargeback-error-response"]:
        root = parse(FRAGMENTS / f"{fragment}.xml")
        for response in (e for e in elements(root) if e.tag == "return-response"):
            for element in elements(response):
                for value in [element.text or "", *element.attrib.values()]:
                    assert not leaks.search(value), f"{fragment}: {value.strip()[:80]}"
            body = response.find("set-body")
            assert body is not None and "request_id" in (body.text or "")
    status = (FRAGMENTS / "chargeback-error-status.xml").read_text()
    assert "LastError.Message" not in status


def test_the_streaming_switch_covers_both_modes() -> None:
    stream_options = (FRAGMENTS / "chargeback-stream-options.xml").read_text()
    builder = (FRAGMENTS / "chargeback-build-envelope.xml").read_text()
    assert '"{{chargeback-streaming-mode}}".Trim() != "buffered"' in stream_options
    assert '"{{chargeback-streaming-mode}}".Trim() == "passthrough"' in builder
    # Passthrough skips the body of a streamed response only.
    assert "!(streamed &amp;&amp; passthrough)" in builder


def test_forwarder_authentication_is_switched_by_a_named_value() -> None:
    root = parse(FRAGMENTS / "chargeback-send-envelope.xml")
    sends = [element for element in elements(root) if element.tag == "send-one-way-request"]
    assert len(sends) == 2
    identities = [send.find("authentication-managed-identity") for send in sends]
    assert identities[0] is not None
    assert identities[0].get("resource") == "{{chargeback-forwarder-audience}}"
    assert identities[1] is None
    for send in sends:
        url = send.find("set-url")
        key = send.find("set-header[@name='x-functions-key']/value")
        assert url is not None and url.text == "{{chargeback-forwarder-url}}"
        assert key is not None and key.text == "{{chargeback-forwarder-key}}"


def _readme_named_values() -> dict[str, list[str]]:
    """Rows of the README's named-value table: name -> cells."""
    rows: dict[str, list[str]] = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(chargeback-[a-z-]+)`", cells[0]) if cells else None
        if match and len(cells) >= 4:
            rows[match.group(1)] = cells
    return rows


def test_every_named_value_is_documented_with_an_example() -> None:
    used = set().union(*(named_values(path) for path in policy_files()))
    documented = _readme_named_values()
    assert used == set(documented), used ^ set(documented)
    assert used == set(NAMED_VALUES)  # the simulator knows an example for each
    assert "yes" in documented["chargeback-forwarder-key"][-1].lower()  # secret


def test_readme_maps_every_file_to_its_scope() -> None:
    readme = README.read_text()
    for path in policy_files():
        relative = path.relative_to(POLICIES)
        assert re.search(rf"`{re.escape(str(relative))}`.*\|", readme), relative
    assert "rawxml" in readme and "Subscription required" in readme
    assert "buffered" in readme and "passthrough" in readme


def test_no_secret_or_tenant_specific_value_is_hard_coded() -> None:
    for path in policy_files():
        text = path.read_text()
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", text), path
        assert "azurewebsites.net" not in text and "openai.azure.com" not in text, path


def test_the_answer_names_the_envelope_and_leaves_azure_request_id_alone() -> None:
    """Clients find their usage row by x-chargeback-request-id, as with `chargeback gateway`;
    Azure OpenAI's own x-request-id is what Microsoft support asks for, so it is never replaced."""
    outbound = parse(API_POLICY).find("outbound")
    named = {h.get("name"): h for h in outbound.iter("set-header")}
    assert "x-request-id" not in named
    assert "context.RequestId" in named["x-chargeback-request-id"].findtext("value")
    exposed = [h.text for h in parse(API_POLICY).iter("expose-headers") for h in h]
    assert "x-chargeback-request-id" in exposed

    from chargeback_pipeline.gateway.gateway import REQUEST_ID_HEADER

    assert REQUEST_ID_HEADER == "x-chargeback-request-id"
