"""Parsing helpers for the infra tests: Bicep through pycep-parser, Terraform through python-hcl2.

Neither the Bicep CLI nor Terraform providers exist here, so the tests read the files as data:
pycep turns Bicep into nested dicts (expressions become `{"function": ...}` / `{"operator": ...}`
trees, identifiers stay plain strings) and hcl2 turns HCL into dicts whose string literals keep
their quotes (`'"LRS"'`), which `unquote` strips.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP = ROOT / "infra" / "bicep"
TERRAFORM = ROOT / "infra" / "terraform"
POLICIES = ROOT / "apim_policies"

BICEP_FILES = sorted([BICEP / "main.bicep", *(BICEP / "modules").glob("*.bicep")])
BICEPPARAM_FILES = sorted((BICEP / "parameters").glob("*.bicepparam"))
TF_FILES = sorted(TERRAFORM.glob("*.tf"))
TFVARS_FILES = sorted((TERRAFORM / "environments").glob("*.tfvars"))
ENVIRONMENTS = ("dev", "test", "prod")

# Built-in Azure role definition ids.
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
LOG_ANALYTICS_READER = "73c42c96-874c-492b-b04d-ab87d138a893"
COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"


@cache
def bicep(path: Path) -> dict[str, Any]:
    """A Bicep file as pycep's JSON (keys: parameters, variables, resources, modules, outputs)."""
    return BicepParser().parse(file_path=path)


def bicep_module(name: str) -> dict[str, Any]:
    return bicep(BICEP / "modules" / f"{name}.bicep")


def bicepparam(path: Path) -> tuple[str, dict[str, Any]]:
    """(the `using` target, {param: value}) of a .bicepparam file.

    pycep has no .bicepparam grammar, but `param x = value` has the syntax of `var x = value`,
    so the file is parsed as Bicep after that one rewrite.
    """
    text = path.read_text()
    using = re.search(r"^using\s+'([^']+)'", text, flags=re.MULTILINE)
    if using is None:
        raise AssertionError(f"{path.name}: no `using '<template>'` line")
    body = text[: using.start()] + text[using.end() :]
    body = re.sub(r"^param(\s+\w+\s*=)", r"var\1", body, flags=re.MULTILINE)
    parsed = BicepParser().parse(text=body)
    values = {name: spec["value"] for name, spec in parsed.get("variables", {}).items()}
    return using.group(1), values


def resources(doc: dict[str, Any], type_: str | None = None) -> dict[str, dict[str, Any]]:
    """Resources of a parsed Bicep file, optionally only those of one type (without @version)."""
    found = doc.get("resources", {})
    return {k: v for k, v in found.items() if type_ is None or v["type"] == type_}


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside a parsed document."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def functions(node: Any, type_: str) -> list[dict[str, Any]]:
    """Parameters of every call of one pycep function type (e.g. load_text_content) in a tree."""
    return [
        n["function"]["parameters"]
        for n in walk(node)
        if isinstance(n, dict)
        and isinstance(n.get("function"), dict)
        and n["function"].get("type") == type_
    ]


def decorators(spec: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in spec.get("decorators", [])}


def unquote(node: Any) -> Any:
    """hcl2 output with the quotes of string literals (values and keys) removed, and without
    hcl2's own bookkeeping keys (`__is_block__`, `__comments__`)."""
    if isinstance(node, dict):
        return {
            unquote(k): unquote(v)
            for k, v in node.items()
            if not (k.startswith("__") and k.endswith("__"))
        }
    if isinstance(node, list):
        return [unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


@cache
def hcl(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return unquote(hcl2.load(handle))


@cache
def terraform() -> dict[str, Any]:
    """All root-module .tf files merged: {"resource": {type: {name: body}}, "variable": ...}."""
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "locals": {},
        "terraform": [],
    }
    for path in TF_FILES:
        doc = hcl(path)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for type_, named in block.items():
                    merged[kind].setdefault(type_, {}).update(named)
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        merged["terraform"].extend(doc.get("terraform", []))
    return merged


def tf_resources(type_: str) -> dict[str, dict[str, Any]]:
    return terraform()["resource"].get(type_, {})


def policy_file(relative: str) -> Path:
    return POLICIES / relative


def missing_policy_message(paths: list[Path]) -> str:
    names = ", ".join(str(p.relative_to(ROOT)) for p in paths)
    return (
        f"policy files referenced by the IaC do not exist: {names}. "
        "They are written in apim_policies/ by the policy author; commit them (or fix the "
        "reference) before deploying, since loadTextContent()/file() fail on a missing file."
    )
