"""The policy XML the IaC deploys exists in apim_policies/ and agrees with the IaC.

The policies are written by another author: when a file the IaC loads is missing, these tests fail
with a message naming it, instead of a deployment failing later in loadTextContent()/file()."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chargeback_pipeline_tests.infra import iac

# The files the IaC loads by name; fragments are taken from the folder, whatever their names.
API_POLICY = "azure-openai-api.xml"
PRODUCTS = ("genai-free", "genai-basic", "genai-premium")
NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")
FRAGMENT_REF = re.compile(r"<include-fragment\s+fragment-id=\"([^\"]+)\"")


def _bicep_loaded_files() -> list[Path]:
    paths = []
    for module in ("apim", "apim-fragments"):
        base = iac.BICEP / "modules"
        for call in iac.functions(iac.bicep_module(module), "load_text_content"):
            paths.append((base / call["file_path"]).resolve())
    return paths


def _policy_xml_files() -> list[Path]:
    return sorted(iac.POLICIES.rglob("*.xml"))


def test_bicep_loads_the_api_and_product_policies_by_path() -> None:
    loaded = _bicep_loaded_files()
    expected = {iac.policy_file(API_POLICY).resolve()} | {
        iac.policy_file(f"products/{p}.xml").resolve() for p in PRODUCTS
    }
    assert expected <= set(loaded)
    for path in loaded:
        assert path.is_relative_to(iac.POLICIES), f"{path} is outside apim_policies/"


def test_every_policy_file_the_bicep_loads_exists() -> None:
    missing = [p for p in _bicep_loaded_files() if not p.is_file()]
    assert not missing, iac.missing_policy_message(missing)


def test_every_policy_file_the_terraform_loads_exists() -> None:
    products = iac.terraform()["locals"]["apim_products"]
    assert set(products) == set(PRODUCTS)
    wanted = [iac.policy_file(API_POLICY)] + [
        iac.policy_file(f"products/{name}.xml") for name in products
    ]
    missing = [p for p in wanted if not p.is_file()]
    assert not missing, iac.missing_policy_message(missing)
    source = (iac.TERRAFORM / "apim.tf").read_text()
    assert 'file("${local.policy_dir}/azure-openai-api.xml")' in source
    assert 'file("${local.policy_dir}/products/${each.key}.xml")' in source
    assert 'fileset("${local.policy_dir}/fragments", "*.xml")' in source


def test_bicep_fragment_module_matches_the_fragment_folder() -> None:
    script = iac.ROOT / "infra" / "scripts" / "sync_apim_fragments.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_included_fragment_is_deployed() -> None:
    deployed = {p.stem for p in (iac.POLICIES / "fragments").glob("*.xml")}
    for path in _policy_xml_files():
        for fragment in FRAGMENT_REF.findall(path.read_text()):
            assert fragment in deployed, (
                f"{path.relative_to(iac.ROOT)} includes fragment {fragment!r}, "
                f"but apim_policies/fragments/{fragment}.xml does not exist"
            )


def _bicep_named_values() -> set[str]:
    doc = iac.bicep_module("apim")
    plain = {nv["name"] for nv in doc["variables"]["plainNamedValues"]["value"]}
    secret = {
        res["config"]["name"]
        for res in iac.resources(doc, "Microsoft.ApiManagement/service/namedValues").values()
        if isinstance(res["config"].get("name"), str)
    }
    return plain | secret


def _terraform_named_values() -> set[str]:
    plain = set(iac.terraform()["locals"]["apim_named_values"])
    named = iac.tf_resources("azurerm_api_management_named_value")
    return plain | {body["name"] for body in named.values() if "for_each" not in body}


@pytest.mark.parametrize("flavour", ["bicep", "terraform"])
def test_every_named_value_the_policies_read_is_defined(flavour: str) -> None:
    defined = _bicep_named_values() if flavour == "bicep" else _terraform_named_values()
    for path in _policy_xml_files():
        for name in NAMED_VALUE.findall(path.read_text()):
            assert name in defined, (
                f"{path.relative_to(iac.ROOT)} reads {{{{{name}}}}}, which the {flavour} "
                f"does not define (defined: {sorted(defined)})"
            )


def test_bicep_and_terraform_define_the_same_named_values() -> None:
    assert _bicep_named_values() == _terraform_named_values()


def test_forwarder_key_named_value_comes_from_key_vault() -> None:
    doc = iac.bicep_module("apim")
    (key,) = [
        res
        for res in iac.resources(doc, "Microsoft.ApiManagement/service/namedValues").values()
        if res["config"].get("name") == "chargeback-forwarder-key"
    ]
    props = key["config"]["properties"]
    assert props["secret"] is True and "value" not in props
    assert props["keyVault"]["secretIdentifier"] == "forwarderKeySecretUri"
    tf = iac.tf_resources("azurerm_api_management_named_value")["forwarder_key"]
    assert tf["secret"] is True and "value" not in tf
    assert tf["value_from_key_vault"][0]["secret_id"].startswith("${azurerm_key_vault_secret.")
