"""Bicep (primary) and Terraform (alternative) deploy the same kinds of resources, take the same
inputs and grant the same roles. The mapping is coarse: one ARM type to one Terraform type."""

from __future__ import annotations

import re

from chargeback_pipeline_tests.infra import iac

# ARM resource type -> Terraform resource type. blobServices is a block of the storage account in
# azurerm; azapi resources are compared by the ARM type they declare.
ARM_TO_TERRAFORM = {
    "Microsoft.OperationalInsights/workspaces": "azurerm_log_analytics_workspace",
    "Microsoft.Insights/components": "azurerm_application_insights",
    "Microsoft.Storage/storageAccounts": "azurerm_storage_account",
    "Microsoft.Storage/storageAccounts/blobServices": "azurerm_storage_account",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "azurerm_storage_container",
    "Microsoft.Storage/storageAccounts/managementPolicies": "azurerm_storage_management_policy",
    "Microsoft.KeyVault/vaults": "azurerm_key_vault",
    "Microsoft.KeyVault/vaults/secrets": "azurerm_key_vault_secret",
    "Microsoft.Authorization/roleAssignments": "azurerm_role_assignment",
    "Microsoft.CognitiveServices/accounts": "azurerm_cognitive_account",
    "Microsoft.CognitiveServices/accounts/deployments": "azurerm_cognitive_deployment",
    "Microsoft.Web/serverfarms": "azurerm_service_plan",
    "Microsoft.Web/sites": "azurerm_function_app_flex_consumption",
    "Microsoft.ApiManagement/service": "azurerm_api_management",
    "Microsoft.ApiManagement/service/namedValues": "azurerm_api_management_named_value",
    # azurerm has neither circuit breakers nor pools: every backend is an azapi resource.
    "Microsoft.ApiManagement/service/backends": "azapi:Microsoft.ApiManagement/service/backends",
    "Microsoft.ApiManagement/service/apis": "azurerm_api_management_api",
    "Microsoft.ApiManagement/service/apis/operations": "azurerm_api_management_api_operation",
    "Microsoft.ApiManagement/service/apis/policies": "azurerm_api_management_api_policy",
    "Microsoft.ApiManagement/service/policyFragments": "azurerm_api_management_policy_fragment",
    "Microsoft.ApiManagement/service/products": "azurerm_api_management_product",
    "Microsoft.ApiManagement/service/products/apis": "azurerm_api_management_product_api",
    "Microsoft.ApiManagement/service/products/policies": "azurerm_api_management_product_policy",
    "Microsoft.ApiManagement/service/loggers": "azapi:Microsoft.ApiManagement/service/loggers",
    "Microsoft.ApiManagement/service/apis/diagnostics": (
        "azapi:Microsoft.ApiManagement/service/apis/diagnostics"
    ),
    "Microsoft.Insights/diagnosticSettings": "azurerm_monitor_diagnostic_setting",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "azurerm_user_assigned_identity",
    "Microsoft.DBforPostgreSQL/flexibleServers": "azurerm_postgresql_flexible_server",
    "Microsoft.DBforPostgreSQL/flexibleServers/databases": (
        "azurerm_postgresql_flexible_server_database"
    ),
    "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules": (
        "azurerm_postgresql_flexible_server_firewall_rule"
    ),
    "Microsoft.App/managedEnvironments": "azurerm_container_app_environment",
    "Microsoft.App/containerApps": "azurerm_container_app",
    "Microsoft.Insights/actionGroups": "azurerm_monitor_action_group",
    "Microsoft.Insights/metricAlerts": "azurerm_monitor_metric_alert",
    "Microsoft.Insights/scheduledQueryRules": "azurerm_monitor_scheduled_query_rules_alert_v2",
}

# Bicep parameter -> Terraform variable where the names differ beyond camelCase -> snake_case
# (None: no counterpart, with the reason).
PARAMETER_RENAMES: dict[str, str | None] = {
    "namePrefix": "name_prefix",
    "storageSkuName": "storage_replication_type",
    "openAiLocation": "openai_location",
    "openAiSecondaryLocation": "openai_secondary_location",
    "openAiDeployments": "openai_deployments",
    "openAiPtuDeployments": "openai_ptu_deployments",
    "openAiPrimaryWeight": "openai_primary_weight",
    "openAiSecondaryWeight": "openai_secondary_weight",
    "apimSkuName": "apim_sku_name",
    "apimSkuCapacity": None,  # azurerm spells tier and units in one sku_name, e.g. Developer_1
    "functionInstanceMemoryMB": "function_instance_memory_mb",
    "postgresSkuTier": None,  # the tier is the prefix of azurerm's sku_name (B_, GP_, MO_)
    "postgresStorageSizeGB": "postgres_storage_mb",
    "alertLatencyP95Milliseconds": "alert_latency_p95_milliseconds",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _bicep_kinds() -> set[str]:
    kinds = set()
    for path in iac.BICEP_FILES:
        for res in iac.resources(iac.bicep(path)).values():
            if not res["existing"]:
                kinds.add(res["type"])
    return kinds


def _terraform_kinds() -> set[str]:
    kinds = set()
    for type_, named in iac.terraform()["resource"].items():
        if type_ == "azapi_resource":
            kinds |= {f"azapi:{body['type'].split('@')[0]}" for body in named.values()}
        else:
            kinds.add(type_)
    return kinds


def test_every_bicep_resource_kind_has_a_terraform_counterpart() -> None:
    bicep = _bicep_kinds()
    unmapped = bicep - set(ARM_TO_TERRAFORM)
    assert not unmapped, f"add these ARM types to ARM_TO_TERRAFORM: {sorted(unmapped)}"
    missing = {ARM_TO_TERRAFORM[k] for k in bicep} - _terraform_kinds()
    assert not missing, f"Terraform lacks {sorted(missing)}"


def test_every_terraform_resource_kind_has_a_bicep_counterpart() -> None:
    expected = {ARM_TO_TERRAFORM[k] for k in _bicep_kinds()}
    extra = _terraform_kinds() - expected
    assert not extra, f"Terraform deploys kinds the Bicep does not: {sorted(extra)}"


def test_both_take_the_same_inputs() -> None:
    params = iac.bicep(iac.BICEP / "main.bicep")["parameters"]
    variables = iac.terraform()["variable"]
    expected = set()
    for name in params:
        target = PARAMETER_RENAMES.get(name, _snake(name))
        if target is not None:
            assert target in variables, f"Bicep param {name} has no Terraform variable {target}"
            expected.add(target)
    # Terraform's only extra input: the resource group (Bicep deploys into the `-g` group).
    assert set(variables) - expected == {"resource_group_name"}


def test_same_defaults_for_retention_and_thresholds() -> None:
    params = iac.bicep(iac.BICEP / "main.bicep")["parameters"]
    variables = iac.terraform()["variable"]
    for name in (
        "rawRetentionDays",
        "logRetentionDays",
        "alertErrorRatePercent",
        "alertLatencyP95Milliseconds",
        "alertRequestsPerMinute",
        "alertFailedAuthCount",
        "alertDailyCostIncreasePercent",
        "maxEnvelopeBytes",
        "tokensPerMinute",
        "maxBodyChars",
        "openAiLocation",
        "openAiSecondaryLocation",
        "openAiPtuDeployments",
        "openAiPrimaryWeight",
        "openAiSecondaryWeight",
        "circuitBreakerFailureCount",
        "circuitBreakerIntervalSeconds",
        "circuitBreakerTripSeconds",
    ):
        target = PARAMETER_RENAMES.get(name) or _snake(name)
        assert params[name]["default"] == variables[target]["default"], name


def test_same_role_definitions_are_granted() -> None:
    bicep_ids = set()
    for path in iac.BICEP_FILES:
        for var in iac.bicep(path).get("variables", {}).values():
            value = var["value"]
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f-]{36}", value):
                bicep_ids.add(value)
    terraform_ids = set(iac.terraform()["locals"]["role_ids"].values())
    assert bicep_ids == terraform_ids


def test_the_same_pool_members_and_breaker_rule() -> None:
    """Both deploy PTU at priority 1 and two pay-as-you-go regions at priority 2, with the same
    backend ids and the same circuit breaker rule."""
    main = iac.bicep(iac.BICEP / "main.bicep")["variables"]
    ptu = main["ptuBackends"]["value"]["operator"]["operands"]["false_value"]
    paygo = main["openAiBackends"]["value"]["function"]["parameters"]["arg_2"]
    bicep = {
        re.sub(r"\$\{(\w+)\}", lambda m: "${var." + _snake_var(m.group(1)) + "}", b["id"]): (
            b["priority"]
        )
        for b in [*ptu, *paygo]
    }
    candidates = iac.terraform()["locals"]["openai_pool_candidates"]
    terraform = {key: body["priority"] for key, body in candidates.items()}
    assert bicep == terraform
    [members] = [
        body
        for body in iac.tf_resources("azapi_resource").values()
        if body["type"].startswith("Microsoft.ApiManagement/service/backends@")
        and body["body"]["properties"]["type"] == "Single"
    ]
    (tf_rule,) = members["body"]["properties"]["circuitBreaker"]["rules"]
    backends = iac.resources(
        iac.bicep_module("apim-backends"), "Microsoft.ApiManagement/service/backends"
    )
    (bicep_rule,) = backends["members"]["config"]["config"]["properties"]["circuitBreaker"]["rules"]
    assert tf_rule["acceptRetryAfter"] is bicep_rule["acceptRetryAfter"] is True
    assert (
        tf_rule["failureCondition"]["statusCodeRanges"]
        == (bicep_rule["failureCondition"]["statusCodeRanges"])
    )
    assert (
        tf_rule["failureCondition"]["errorReasons"]
        == (bicep_rule["failureCondition"]["errorReasons"])
    )
    assert members["body"]["properties"]["type"] == "Single"
    assert backends["pool"]["config"]["properties"]["type"] == "Pool"


def _snake_var(name: str) -> str:
    return PARAMETER_RENAMES.get(name) or _snake(name)


def test_the_same_api_operations() -> None:
    """Including the versionless v1 routes that OpenAI SDKs and LibreChat call."""
    operations = iac.bicep_module("apim")["variables"]["operations"]["value"]
    bicep = {op["name"]: op["urlTemplate"] for op in operations}
    terraform = {
        name: body["url_template"]
        for name, body in iac.terraform()["locals"]["apim_operations"].items()
    }
    assert bicep == terraform
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/responses"} <= set(bicep.values())
