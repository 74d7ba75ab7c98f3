"""Terraform: every file parses, variables are described and validated, and the settings that
matter for chargeback are wired as in the Bicep."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chargeback_pipeline.store.base import RAW_PREFIX
from chargeback_pipeline_tests.infra import iac


@pytest.mark.parametrize("path", iac.TF_FILES + iac.TFVARS_FILES, ids=lambda p: p.name)
def test_every_terraform_file_parses(path: Path) -> None:
    assert iac.hcl(path), f"{path.name} is empty"


def test_azurerm_provider_is_pinned_to_v4() -> None:
    (block,) = iac.terraform()["terraform"]
    providers = block["required_providers"][0]
    assert providers["azurerm"]["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"~> 4\.\d+", providers["azurerm"]["version"])


def test_every_variable_is_typed_and_described_and_bounded_ones_are_validated() -> None:
    variables = iac.terraform()["variable"]
    for name, spec in variables.items():
        assert spec.get("description"), f"variable {name} has no description"
        assert spec.get("type"), f"variable {name} has no type"
    must_validate = {
        "environment_name",
        "name_prefix",
        "raw_retention_days",
        "storage_replication_type",
        "apim_sku_name",
        "streaming_mode",
        "postgres_administrator_password",
    }
    for name in must_validate:
        assert variables[name].get("validation"), f"variable {name} is not validated"
    assert variables["postgres_administrator_password"]["sensitive"] is True
    assert variables["raw_retention_days"]["default"] == 30


def test_every_output_is_described() -> None:
    for name, spec in iac.terraform()["output"].items():
        assert spec.get("description"), f"output {name} has no description"


def test_every_storage_account_is_https_tls12_private_and_keyless() -> None:
    accounts = iac.tf_resources("azurerm_storage_account")
    assert set(accounts) == {"data", "function_host"}
    for name, body in accounts.items():
        assert body["https_traffic_only_enabled"] is True, name
        assert body["min_tls_version"] == "TLS1_2", name
        assert body["allow_nested_items_to_be_public"] is False, name
        assert body["shared_access_key_enabled"] is False, name
    for name, body in iac.tf_resources("azurerm_storage_container").items():
        assert body["container_access_type"] == "private", name


def test_raw_retention_flows_from_the_variable_into_the_lifecycle_rule() -> None:
    (policy,) = iac.tf_resources("azurerm_storage_management_policy").values()
    (rule,) = policy["rule"]
    (filters,) = rule["filters"]
    assert filters["prefix_match"] == [f"${{azurerm_storage_container.raw.name}}/{RAW_PREFIX}/"]
    assert "appendBlob" in filters["blob_types"]
    (actions,) = rule["actions"]
    (base_blob,) = actions["base_blob"]
    assert base_blob["delete_after_days_since_modification_greater_than"] == (
        "${var.raw_retention_days}"
    )


def _role(body: dict) -> str:
    match = re.search(r"local\.role_ids\.(\w+)", body["role_definition_id"])
    assert match, body["role_definition_id"]
    return iac.terraform()["locals"]["role_ids"][match.group(1)]


def test_function_writes_only_to_the_raw_container() -> None:
    assignments = iac.tf_resources("azurerm_role_assignment")
    function_roles = {
        name: body
        for name, body in assignments.items()
        if "azurerm_function_app_flex_consumption.forwarder" in str(body["principal_id"])
    }
    contributor = [
        name for name, b in function_roles.items() if _role(b) == iac.STORAGE_BLOB_DATA_CONTRIBUTOR
    ]
    assert contributor == ["function_raw_writer"]
    assert function_roles["function_raw_writer"]["scope"] == "${azurerm_storage_container.raw.id}"
    for name, body in function_roles.items():
        assert "azurerm_storage_account.data" not in body["scope"], name


def test_function_app_settings_match_the_forwarder_readme() -> None:
    (app,) = iac.tf_resources("azurerm_function_app_flex_consumption").values()
    assert app["https_only"] is True
    assert app["identity"][0]["type"] == "SystemAssigned"
    settings = app["app_settings"]
    assert settings["CHARGEBACK_STORE"] == "az://${azurerm_storage_container.raw.name}"
    assert settings["AZURE_STORAGE_ACCOUNT_NAME"] == "${azurerm_storage_account.data.name}"
    assert {"CHARGEBACK_CONTAINER", "CHARGEBACK_MAX_ENVELOPE_BYTES"} <= set(settings)


def test_key_vault_uses_rbac_and_the_pseudonym_key_is_not_created() -> None:
    (vault,) = iac.tf_resources("azurerm_key_vault").values()
    assert vault["enable_rbac_authorization"] is True
    assert "access_policy" not in vault
    assert vault["purge_protection_enabled"] is True
    secrets = iac.tf_resources("azurerm_key_vault_secret")
    assert set(secrets) == {"forwarder_key"}
    assert secrets["forwarder_key"]["value"].startswith("${data.azurerm_function_app_host_keys.")


def test_dagster_identity_roles() -> None:
    assignments = iac.tf_resources("azurerm_role_assignment")
    got = {
        (body["scope"], _role(body))
        for body in assignments.values()
        if "azurerm_user_assigned_identity.dagster" in body["principal_id"]
    }
    assert got == {
        ("${azurerm_storage_container.raw.id}", iac.STORAGE_BLOB_DATA_READER),
        ("${azurerm_storage_container.lake.id}", iac.STORAGE_BLOB_DATA_CONTRIBUTOR),
        ("${azurerm_key_vault.this.id}", iac.KEY_VAULT_SECRETS_USER),
        ("${azurerm_log_analytics_workspace.this.id}", iac.LOG_ANALYTICS_READER),
    }


def test_apim_logs_token_counts_but_never_message_text() -> None:
    diagnostic = iac.tf_resources("azapi_resource")["apim_llm_diagnostic"]
    llm = diagnostic["body"]["properties"]["largeLanguageModel"]
    assert llm["logs"] == "enabled"
    assert llm["requests"]["messages"] == llm["responses"]["messages"] == "none"
    setting = iac.tf_resources("azurerm_monitor_diagnostic_setting")["apim"]
    assert {log["category"] for log in setting["enabled_log"]} == {"GatewayLogs", "GatewayLlmLogs"}
    assert setting["log_analytics_destination_type"] == "Dedicated"


def test_alerts_cover_errors_latency_rate_auth_and_cost() -> None:
    alerts = iac.terraform()["locals"]["log_alerts"]
    assert set(alerts) == {"error-rate", "latency-p95", "failed-auth", "daily-cost-increase"}
    variables = iac.terraform()["variable"]
    assert variables["alert_error_rate_percent"]["default"] == 5
    assert variables["alert_latency_p95_milliseconds"]["default"] == 2000
    assert variables["alert_requests_per_minute"]["default"] == 1000
    assert variables["alert_daily_cost_increase_percent"]["default"] == 20
    assert iac.tf_resources("azurerm_monitor_metric_alert")


def _check_validations(name: str, value: object) -> None:
    """The simple validations (contains/regex/ranges) of variables.tf, re-evaluated in Python."""
    spec = iac.terraform()["variable"][name]
    for validation in spec.get("validation", []):
        condition = validation["condition"]
        contains = re.fullmatch(r"\$\{contains\(\[(.*)\], var\.\w+\)\}", condition)
        regex = re.fullmatch(r'\$\{can\(regex\("(.*)", var\.\w+\)\)\}', condition)
        if contains:
            allowed = [v.strip().strip('"') for v in contains.group(1).split(",")]
            if isinstance(value, (int, float)):
                allowed_numbers = [float(v) for v in allowed]
                assert float(value) in allowed_numbers, f"{name} = {value!r}"
            else:
                assert value in allowed, f"{name} = {value!r}"
        elif regex:
            pattern = regex.group(1).replace("\\\\", "\\")
            assert re.search(pattern, str(value)), f"{name} = {value!r} !~ {pattern}"


@pytest.mark.parametrize("env", iac.ENVIRONMENTS)
def test_tfvars_give_every_required_variable(env: str) -> None:
    path = iac.TERRAFORM / "environments" / f"{env}.tfvars"
    assert path.is_file(), f"missing {path.relative_to(iac.ROOT)}"
    values = iac.hcl(path)
    variables = iac.terraform()["variable"]
    sensitive = {name for name, spec in variables.items() if spec.get("sensitive")}
    required = {name for name, spec in variables.items() if "default" not in spec} - sensitive
    assert required <= set(values), f"{path.name} misses {sorted(required - set(values))}"
    assert set(values) <= set(variables), f"{path.name} sets unknown {set(values) - set(variables)}"
    # Secrets come from TF_VAR_* at apply time, never from the file.
    assert not sensitive & set(values), f"{path.name} holds a sensitive variable"
    assert values["environment_name"] == env
    for name, value in values.items():
        _check_validations(name, value)


def test_pool_members_are_ptu_first_then_pay_as_you_go_in_two_regions() -> None:
    variables = iac.terraform()["variable"]
    assert variables["openai_location"]["default"] == "eastus"
    assert variables["openai_secondary_location"]["default"] == "westeurope"
    assert variables["openai_ptu_deployments"]["default"] == []
    for name in ("openai_primary_weight", "openai_secondary_weight"):
        assert variables[name]["default"] == 1 and variables[name].get("validation"), name
    candidates = iac.terraform()["locals"]["openai_pool_candidates"]
    ranks = {key: (body["priority"], body["deployments"]) for key, body in candidates.items()}
    assert ranks == {
        "aoai-${var.openai_location}-ptu": (1, "${var.openai_ptu_deployments}"),
        "aoai-${var.openai_location}-1": (2, "${var.openai_deployments}"),
        "aoai-${var.openai_secondary_location}-1": (2, "${var.openai_deployments}"),
    }
    weights = [body["weight"] for body in candidates.values()]
    assert weights == [1, "${var.openai_primary_weight}", "${var.openai_secondary_weight}"]
    # No PTU account (nor backend) without PTU deployments.
    backends = iac.terraform()["locals"]["openai_backends"]
    assert "openai_pool_candidates" in backends and "length(backend.deployments) > 0" in backends
    (account,) = iac.tf_resources("azurerm_cognitive_account").values()
    assert account["for_each"] == "${local.openai_backends}"


def test_every_member_trips_on_throttling_and_server_errors_and_the_pool_ranks_them() -> None:
    azapi = iac.tf_resources("azapi_resource")
    member, pool = azapi["apim_openai_backend"], azapi["apim_openai_pool"]
    for body in (member, pool):
        assert body["type"] == "Microsoft.ApiManagement/service/backends@2024-06-01-preview"
    assert member["for_each"] == "${local.openai_backends}"
    props = member["body"]["properties"]
    assert props["type"] == "Single"
    assert props["url"] == "${azurerm_cognitive_account.openai[each.key].endpoint}openai"
    (rule,) = props["circuitBreaker"]["rules"]
    condition = rule["failureCondition"]
    assert {(r["min"], r["max"]) for r in condition["statusCodeRanges"]} == {(429, 429), (500, 599)}
    assert rule["acceptRetryAfter"] is True
    assert condition["count"] == "${var.circuit_breaker_failure_count}"
    assert rule["tripDuration"] == "PT${var.circuit_breaker_trip_seconds}S"
    assert iac.terraform()["variable"]["circuit_breaker_failure_count"]["default"] == 1
    pool_props = pool["body"]["properties"]
    assert pool_props["type"] == "Pool"
    services = pool_props["pool"]["services"]
    assert "for id, backend in local.openai_backends" in services
    pieces = ("azapi_resource.apim_openai_backend[id].id", "backend.priority", "backend.weight")
    for piece in pieces:
        assert piece in services, piece
    # The policy routes to the pool; every account grants APIM's identity the OpenAI User role.
    named = iac.terraform()["locals"]["apim_named_values"]
    assert named["chargeback-backend-pool"] == "${local.apim_backend_pool}"
    assert pool["name"] == "${local.apim_backend_pool}"
    user = iac.tf_resources("azurerm_role_assignment")["apim_openai_user"]
    assert user["for_each"] == "${local.openai_backends}"
    assert user["scope"] == "${azurerm_cognitive_account.openai[each.key].id}"
    assert _role(user) == iac.COGNITIVE_SERVICES_OPENAI_USER
    policy = iac.tf_resources("azurerm_api_management_api_policy")["openai"]
    assert "${azapi_resource.apim_openai_pool}" in policy["depends_on"]
