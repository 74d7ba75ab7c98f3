"""Run the APIM policies over a fake gateway context: the XML turned into steps, walked by Mono.

`apim_runtime_harness.cs` (compiled together with every policy expression) walks the step tree;
this module builds the tree from a policy document, fragments included, and reads the outcome.
Supported: set-variable, choose/when/otherwise, set-body (of the request), return-response,
send-one-way-request, azure-openai-token-limit (its consumed-tokens variable: the prompt estimate,
then the total once forward-request returned), retry (its condition and count) and forward-request
(which reaches the next of the context's `backend_attempts`). Every other policy is recorded and
skipped (authentication, CORS, limits that did not fire, set-backend-service, headers).
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargeback_pipeline_tests.policies.policy_tools import (
    FRAGMENTS,
    NAMED_VALUE,
    Expression,
    all_expressions,
    compile_expressions,
    find_mono,
    is_expression,
    label,
    parse,
)

Step = dict[str, Any]

# One example value per named value the policies use (README.md lists the same names).
NAMED_VALUES = {
    "chargeback-streaming-mode": "buffered",
    "chargeback-require-cost-center": "false",
    "chargeback-cost-centers": "CC-4100,CC-4200",
    "chargeback-tokens-per-minute": "100000",
    "chargeback-max-body-chars": "8388608",
    "chargeback-backend-pool": "aoai-pool",
    "chargeback-backend-retries": "2",
    "chargeback-backend-hosts": (
        "oai-ptu.openai.azure.com=aoai-eastus-ptu,"
        "oai-eastus.openai.azure.com=aoai-eastus-1,"
        "oai-westeurope.openai.azure.com=aoai-westeurope-1"
    ),
    "chargeback-cors-origin": "https://chat.contoso.example",
    "chargeback-forwarder-url": "https://func-chargeback.azurewebsites.net/api/envelopes",
    "chargeback-forwarder-auth": "function-key",
    "chargeback-forwarder-audience": "api://00000000-0000-0000-0000-000000000001",
    "chargeback-forwarder-key": "test-function-key",
}


@dataclass(frozen=True)
class CompiledPolicies:
    executable: Path
    methods: dict[Expression, str]


def compile_policies(workdir: Path) -> CompiledPolicies:
    """Every policy expression plus the harness, as one Mono executable."""
    result = compile_expressions(all_expressions(), workdir, executable=True)
    if result.returncode != 0:
        raise AssertionError(result.explain())
    methods = {expression: name for name, expression in result.methods.items()}
    return CompiledPolicies(workdir / "policies.exe", methods)


class Translator:
    """A policy document (sections, fragments) as the harness's step tree."""

    def __init__(self, compiled: CompiledPolicies, named_values: dict[str, str]) -> None:
        self.methods = compiled.methods
        self.named_values = named_values

    def section(self, path: Path, name: str) -> list[Step]:
        element = parse(path).find(name)
        assert element is not None, f"{path.name} has no <{name}>"
        return self.steps(path, element)

    def steps(self, path: Path, parent: ET.Element) -> list[Step]:
        result: list[Step] = []
        for child in parent:
            if isinstance(child.tag, str):
                result.extend(self.step(path, child))
        return result

    def step(self, path: Path, element: ET.Element) -> list[Step]:
        tag = element.tag
        if tag == "include-fragment":
            fragment = FRAGMENTS / f"{element.get('fragment-id')}.xml"
            return self.steps(fragment, parse(fragment))
        if tag == "set-variable":
            value = self.value(path, element, "value")
            return [{"action": "set-variable", "name": element.get("name"), "value": value}]
        if tag == "choose":
            whens = [
                {"condition": self.value(path, when, "condition"), "steps": self.steps(path, when)}
                for when in element.findall("when")
            ]
            otherwise = element.find("otherwise")
            rest = [] if otherwise is None else self.steps(path, otherwise)
            return [{"action": "choose", "whens": whens, "otherwise": rest}]
        if tag == "set-body":
            return [{"action": "set-request-body", "value": self.value(path, element, None)}]
        if tag == "return-response":
            status = element.find("set-status")
            assert status is not None, f"{path.name}: return-response without set-status"
            code = self.value(path, status, "code")
            return [
                {
                    "action": "return-response",
                    "status": int(code) if isinstance(code, str) else code,
                    "reason": self.value(path, status, "reason"),
                    **self.message(path, element),
                }
            ]
        if tag == "send-one-way-request":
            identity = element.find("authentication-managed-identity")
            return [
                {
                    "action": "send-one-way-request",
                    "url": self.value(path, _child(element, "set-url"), None),
                    "method": (_child(element, "set-method").text or "").strip(),
                    "managed_identity": None
                    if identity is None
                    else self.expand(identity.get("resource", "")),
                    **self.message(path, element),
                }
            ]
        if tag == "azure-openai-token-limit":
            return [{"action": "token-limit", "name": element.get("tokens-consumed-variable-name")}]
        if tag == "retry":
            count = self.value(path, element, "count")
            return [
                {
                    "action": "retry",
                    "condition": self.value(path, element, "condition"),
                    "count": int(count) if isinstance(count, str) else count,
                    "steps": self.steps(path, element),
                }
            ]
        if tag == "forward-request":
            return [{"action": "forward-request"}]
        return [{"action": "noop", "name": tag}]

    def message(self, path: Path, element: ET.Element) -> Step:
        headers = {
            header.get("name"): self.value(path, _child(header, "value"), None)
            for header in element.findall("set-header")
        }
        body = element.find("set-body")
        return {"headers": headers, "body": None if body is None else self.value(path, body, None)}

    def value(self, path: Path, element: ET.Element, attribute: str | None) -> Any:
        """A literal (named values expanded) or {"method": name} of the compiled expression."""
        raw = element.get(attribute, "") if attribute else (element.text or "")
        if is_expression(raw):
            expression = Expression(
                path, element.tag, attribute, raw.strip(), label(element, attribute)
            )
            return {"method": self.methods[expression]}
        return self.expand(raw.strip())

    def expand(self, text: str) -> str:
        return NAMED_VALUE.sub(lambda match: self.named_values[match.group(1)], text)


def _child(element: ET.Element, tag: str) -> ET.Element:
    found = element.find(tag)
    assert found is not None, f"<{element.tag}> has no <{tag}>"
    return found


def run(
    compiled: CompiledPolicies,
    workdir: Path,
    context: dict[str, Any],
    steps: list[Step],
    named_values: dict[str, str],
    tokens: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Walk the steps over the context with Mono; the harness's JSON report."""
    mono = find_mono()
    assert mono is not None, "mono not found (it comes with mono-mcs)"
    scenario = workdir / "scenario.json"
    scenario.write_text(
        json.dumps(
            {"named_values": named_values, "context": context, "steps": steps, "tokens": tokens}
        )
    )
    done = subprocess.run(
        [mono, str(compiled.executable), str(scenario)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"harness failed:\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report
