"""Bicep: every file parses, parameters are typed and described, and the settings that matter for
chargeback (retention, least-privilege roles, storage and Key Vault security) are wired as meant."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chargeback_pipeline.store.base import RAW_PREFIX
from chargeback_pipeline_tests.infra import iac

MAIN = iac.BICEP / "main.bicep"


@pytest.mark.parametrize("path", iac.BICEP_FILES, ids=lambda p: p.name)
def test_every_bicep_file_parses_and_describes_its_parameters(path: Path) -> None:
    doc = iac.bicep(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"
    for name, spec in doc.get("parameters", {}).items():
        decorators = iac.decorators(spec)
        assert decorators.get("description"), f"{path.name}: param {name} has no @description"
        assert spec["type"] in {"string", "int", "bool", "object", "array"}, name
        if spec["type"] == "string" and name.lower().endswith(("password", "key")):
            assert "secure" in decorators, f"{path.name}: param {name} must be @secure()"
    for name, spec in doc.get("outputs", {}).items():
        assert iac.decorators(spec).get("description"), f"{path.name}: output {name}"


def test_main_uses_every_module_and_nothing_else() -> None:
    used = {m["detail"]["path"] for m in iac.bicep(MAIN)["modules"].values()}
    apim_used = {m["detail"]["path"] for m in iac.bicep_module("apim")["modules"].values()}
    files = {f"modules/{p.name}" for p in (iac.BICEP / "modules").glob("*.bicep")}
    assert used | {f"modules/{p}" for p in apim_used} == files
    for path in used:
        assert (iac.BICEP / path).is_file(), path


def test_names_derive_from_unique_string_of_the_resource_group() -> None:
    variables = iac.bicep(MAIN)["variables"]
    suffix = variables["suffix"]["value"]["function"]
    assert suffix["type"] == "unique_string"
    operands = suffix["parameters"]["base_string"]["operator"]["operands"]
    assert operands["operand_1"]["function"]["type"] == "resource_group"
    assert operands["operand_2"] == "id"
    globally_unique = ("dataStorage", "hostStorage", "keyVault", "openAi", "functionApp", "apim")
    names = variables["names"]["value"]
    for key in (*globally_unique, "postgres", "workspace"):
        assert "suffix" in str(names[key]), f"names.{key} does not use uniqueString: {names[key]}"


def test_raw_retention_flows_from_the_parameter_into_the_lifecycle_rule() -> None:
    main = iac.bicep(MAIN)
    spec = main["parameters"]["rawRetentionDays"]
    assert spec["type"] == "int" and spec["default"] == 30
    assert iac.decorators(spec)["min_value"] >= 1
    assert main["modules"]["storage"]["config"]["params"]["rawRetentionDays"] == "rawRetentionDays"

    storage = iac.bicep_module("storage")
    assert "rawRetentionDays" in storage["parameters"]
    assert storage["variables"]["rawPrefix"]["value"] == f"{RAW_PREFIX}/"
    (policy,) = iac.resources(
        storage, "Microsoft.Storage/storageAccounts/managementPolicies"
    ).values()
    (rule,) = policy["config"]["properties"]["policy"]["rules"]
    definition = rule["definition"]
    assert definition["actions"]["baseBlob"]["delete"] == {
        "daysAfterModificationGreaterThan": "rawRetentionDays"
    }
    assert definition["filters"]["prefixMatch"] == ["${rawContainerName}/${rawPrefix}"]
    # The store writes append blobs; a block-blob-only rule would never delete them.
    assert "appendBlob" in definition["filters"]["blobTypes"]


def _role_assignments(doc: dict) -> dict[str, dict]:
    return iac.resources(doc, "Microsoft.Authorization/roleAssignments")


def _role_id(doc: dict, assignment: dict) -> str:
    reference = assignment["config"]["properties"]["roleDefinitionId"]["function"]["parameters"]
    return doc["variables"][reference["resource_name_1"]]["value"]


def test_function_writes_only_to_the_raw_container() -> None:
    doc = iac.bicep_module("function")
    contributor = {
        name: ra
        for name, ra in _role_assignments(doc).items()
        if _role_id(doc, ra) == iac.STORAGE_BLOB_DATA_CONTRIBUTOR
    }
    assert list(contributor) == ["rawContainerWriter"], contributor
    scope = contributor["rawContainerWriter"]["config"]["scope"]
    target = doc["resources"][scope]
    assert target["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert target["existing"] and target["config"]["name"] == "rawContainerName"
    # No role of the Function reaches the data account as a whole.
    data_scopes = {"dataStorage", "dataBlobService"}
    assert not {ra["config"]["scope"] for ra in _role_assignments(doc).values()} & data_scopes
    params = iac.bicep(MAIN)["modules"]["function"]["config"]["params"]
    assert "rawContainerName" in str(params["rawContainerName"])


def test_function_app_settings_match_the_forwarder_readme() -> None:
    (site,) = iac.resources(iac.bicep_module("function"), "Microsoft.Web/sites").values()
    config = site["config"]
    assert config["identity"] == {"type": "SystemAssigned"}
    assert config["properties"]["httpsOnly"] is True
    settings = {s["name"]: s["value"] for s in config["properties"]["siteConfig"]["appSettings"]}
    assert settings["CHARGEBACK_STORE"] == "az://${rawContainerName}"
    assert settings["AZURE_STORAGE_ACCOUNT_NAME"] == "dataStorageAccountName"
    assert {"CHARGEBACK_CONTAINER", "CHARGEBACK_MAX_ENVELOPE_BYTES"} <= set(settings)
    assert "AzureWebJobsStorage__accountName" in settings


def _storage_accounts() -> list[tuple[str, dict]]:
    found = []
    for path in iac.BICEP_FILES:
        for name, res in iac.resources(
            iac.bicep(path), "Microsoft.Storage/storageAccounts"
        ).items():
            if not res["existing"]:
                found.append((f"{path.stem}.{name}", res))
    return found


def test_every_storage_account_is_https_tls12_private_and_keyless() -> None:
    accounts = _storage_accounts()
    assert {name for name, _ in accounts} == {"storage.account", "function.hostStorage"}
    for name, res in accounts:
        props = res["config"]["properties"]
        assert props["supportsHttpsTrafficOnly"] is True, name
        assert props["minimumTlsVersion"] == "TLS1_2", name
        assert props["allowBlobPublicAccess"] is False, name
        assert props["allowSharedKeyAccess"] is False, name


def test_containers_are_private() -> None:
    for path in iac.BICEP_FILES:
        containers = iac.resources(
            iac.bicep(path), "Microsoft.Storage/storageAccounts/blobServices/containers"
        )
        for name, res in containers.items():
            if not res["existing"]:
                assert res["config"]["properties"]["publicAccess"] == "None", name


def test_key_vault_uses_rbac_and_holds_no_secret_value_in_code() -> None:
    doc = iac.bicep_module("keyvault")
    (vault,) = iac.resources(doc, "Microsoft.KeyVault/vaults").values()
    props = vault["config"]["properties"]
    assert props["enableRbacAuthorization"] is True
    assert "accessPolicies" not in props
    assert props["enablePurgeProtection"] is True and props["enableSoftDelete"] is True
    # The pseudonym key is named, never created: the operator sets its value.
    assert doc["parameters"]["pseudonymKeySecretName"]["default"] == "chargeback-pseudonym-key"
    assert not iac.resources(doc, "Microsoft.KeyVault/vaults/secrets")
    for path in iac.BICEP_FILES:
        for name, secret in iac.resources(
            iac.bicep(path), "Microsoft.KeyVault/vaults/secrets"
        ).items():
            if secret["existing"]:
                continue
            value = secret["config"]["properties"]["value"]
            assert isinstance(value, dict), f"{path.name}: secret {name} has a literal value"


def test_dagster_identity_roles() -> None:
    doc = iac.bicep_module("dagster")
    got = {(ra["config"]["scope"], _role_id(doc, ra)) for ra in _role_assignments(doc).values()}
    assert got == {
        ("rawContainer", iac.STORAGE_BLOB_DATA_READER),
        ("lakeContainer", iac.STORAGE_BLOB_DATA_CONTRIBUTOR),
        ("vault", iac.KEY_VAULT_SECRETS_USER),
        ("workspace", iac.LOG_ANALYTICS_READER),
    }
    assert doc["variables"]["identityConfig"]["value"]["type"] == "UserAssigned"
    apps = iac.resources(doc, "Microsoft.App/containerApps")
    assert set(apps) == {"webApp", "daemonApp", "codeApp"}
    for name, res in apps.items():
        # Created only once an image is given: `if (deployApps)`.
        assert res["config"]["condition"] == "deployApps", name
        assert res["config"]["config"]["identity"] == "identityConfig", name


def test_apim_identity_may_call_every_azure_openai_account() -> None:
    doc = iac.bicep_module("apim")
    (apim,) = iac.resources(doc, "Microsoft.ApiManagement/service").values()
    assert apim["config"]["identity"] == {"type": "SystemAssigned"}
    roles = {ra["config"]["scope"]: _role_id(doc, ra) for ra in _role_assignments(doc).values()}
    assert roles == {"forwarderKeySecret": iac.KEY_VAULT_SECRETS_USER}
    backends = iac.bicep_module("apim-backends")
    (user,) = _role_assignments(backends).values()
    assert user["config"]["loop_type"]["detail"]["array_name"] == "backends"
    assert _role_id(backends, user["config"]) == iac.COGNITIVE_SERVICES_OPENAI_USER
    scope = user["config"]["config"]["scope"]["operator"]["operands"]
    assert scope == {"operand_1": "accounts", "operand_2": "i"}  # one grant per pool member
    (accounts,) = iac.resources(backends, "Microsoft.CognitiveServices/accounts").values()
    assert accounts["existing"]


def _pool_resources() -> tuple[dict, dict]:
    """(the per-account backends, the pool) of modules/apim-backends.bicep."""
    found = iac.resources(
        iac.bicep_module("apim-backends"), "Microsoft.ApiManagement/service/backends"
    )
    assert set(found) == {"members", "pool"}
    return found["members"]["config"], found["pool"]["config"]


def test_every_pool_member_trips_on_throttling_and_server_errors_and_honours_retry_after() -> None:
    members, _ = _pool_resources()
    assert members["loop_type"]["detail"]["array_name"] == "backends"
    props = members["config"]["properties"]
    assert props["type"] == "Single" and props["url"] == "${accounts[i].properties.endpoint}openai"
    assert props["tls"] == {"validateCertificateChain": True, "validateCertificateName": True}
    (rule,) = props["circuitBreaker"]["rules"]
    condition = rule["failureCondition"]
    ranges = {(r["min"], r["max"]) for r in condition["statusCodeRanges"]}
    assert ranges == {(429, 429), (500, 599)}
    assert {"BackendConnectionFailure", "Timeout"} <= set(condition["errorReasons"])
    assert rule["acceptRetryAfter"] is True
    assert condition["count"] == "circuitBreakerFailureCount"
    assert condition["interval"] == "PT${circuitBreakerIntervalSeconds}S"
    assert rule["tripDuration"] == "PT${circuitBreakerTripSeconds}S"
    params = iac.bicep_module("apim-backends")["parameters"]
    # One 429 trips a member, so the policy's immediate retry lands on the next one.
    assert params["circuitBreakerFailureCount"]["default"] == 1
    for name in ("circuitBreakerIntervalSeconds", "circuitBreakerTripSeconds"):
        assert iac.decorators(params[name])["min_value"] >= 1, name


def test_the_pool_ranks_its_members_by_priority_and_weight() -> None:
    _, pool = _pool_resources()
    props = pool["properties"]
    assert props["type"] == "Pool"
    services = props["pool"]["services"]
    assert services["loop_type"]["detail"]["array_name"] == "backends"
    entry = services["config"]
    assert entry["id"]["operator"]["operands"]["operand_2"] == "id"
    assert entry["id"]["operator"]["operands"]["operand_1"]["operator"]["operands"] == {
        "operand_1": "members",
        "operand_2": "i",
    }
    for key in ("priority", "weight"):
        assert entry[key]["operator"]["operands"] == {"operand_1": "backend", "operand_2": key}


def _resolve_backend_id(template: str, location: str, secondary: str) -> str:
    return template.replace("${openAiLocation}", location).replace(
        "${openAiSecondaryLocation}", secondary
    )


def test_ptu_comes_first_and_pay_as_you_go_spills_across_two_regions() -> None:
    main = iac.bicep(MAIN)
    params = main["parameters"]
    assert params["openAiLocation"]["default"] == "eastus"
    assert params["openAiSecondaryLocation"]["default"] == "westeurope"
    assert params["openAiPtuDeployments"]["default"] == []
    ptu = main["variables"]["ptuBackends"]["value"]["operator"]["operands"]
    assert ptu["condition"]["function"] == {
        "type": "empty",
        "parameters": {"item_to_test": "openAiPtuDeployments"},
    }
    assert ptu["true_value"] == []
    (ptu_backend,) = ptu["false_value"]
    pooled = main["variables"]["openAiBackends"]["value"]["function"]["parameters"]
    assert pooled["arg_1"] == "ptuBackends"  # PTU first
    paygo = pooled["arg_2"]
    assert (ptu_backend["priority"], ptu_backend["weight"]) == (1, 1)
    assert ptu_backend["deployments"] == "openAiPtuDeployments"
    assert [b["priority"] for b in paygo] == [2, 2]
    assert [b["weight"] for b in paygo] == ["openAiPrimaryWeight", "openAiSecondaryWeight"]
    assert [b["location"] for b in paygo] == ["openAiLocation", "openAiSecondaryLocation"]
    assert {b["deployments"] for b in paygo} == {"openAiDeployments"}
    # The default ids are backend_ids of the seed, so whichever member serves a call is priced.
    seeded = set(pl.read_csv(iac.ROOT / "dbt_like_sql" / "seeds" / "deployments.csv")["backend_id"])
    ids = [_resolve_backend_id(b["id"], "eastus", "westeurope") for b in [ptu_backend, *paygo]]
    assert ids == ["aoai-eastus-ptu", "aoai-eastus-1", "aoai-westeurope-1"]
    assert set(ids) <= seeded


def test_one_account_per_pool_member_and_the_pool_wired_to_apim() -> None:
    main = iac.bicep(MAIN)
    accounts = main["modules"]["openAi"]["config"]
    assert accounts["loop_type"]["detail"]["array_name"] == "openAiBackends"
    apim = main["modules"]["apim"]["config"]["params"]
    members = apim["openAiBackends"]
    assert members["loop_type"]["detail"]["array_name"] == "openAiBackends"
    assert set(members["config"]) == {"id", "accountName", "priority", "weight"}
    names = main["variables"]["names"]["value"]
    assert len({str(names[k]) for k in ("openAi", "openAiSecondary", "openAiPtu")}) == 3
    for name in (
        "circuitBreakerFailureCount",
        "circuitBreakerIntervalSeconds",
        "circuitBreakerTripSeconds",
    ):
        assert apim[name] == name
        module = iac.bicep_module("apim")
        assert module["modules"]["backendPool"]["config"]["params"][name] == name
    module = iac.bicep_module("apim")
    pool_params = module["modules"]["backendPool"]["config"]["params"]
    assert pool_params["backends"] == "openAiBackends"
    assert pool_params["poolName"] == "backendPoolName"
    named = {nv["name"]: nv["value"] for nv in module["variables"]["plainNamedValues"]["value"]}
    assert named["chargeback-backend-pool"] == "backendPoolName"
    assert "backendHosts" in str(named["chargeback-backend-hosts"])
    assert "openAiBackends" in str(named["chargeback-backend-retries"])
    (policy,) = iac.resources(module, "Microsoft.ApiManagement/service/apis/policies").values()
    assert "backendPool" in policy["config"]["dependsOn"]


def test_apim_logs_token_counts_but_never_message_text() -> None:
    doc = iac.bicep_module("apim")
    (diagnostic,) = iac.resources(doc, "Microsoft.ApiManagement/service/apis/diagnostics").values()
    props = diagnostic["config"]["properties"]
    llm = props["largeLanguageModel"]
    assert llm["logs"] == "enabled"
    assert llm["requests"]["messages"] == llm["responses"]["messages"] == "none"
    for side in ("frontend", "backend"):
        for direction in ("request", "response"):
            assert props[side][direction]["body"]["bytes"] == 0
    (setting,) = iac.resources(doc, "Microsoft.Insights/diagnosticSettings").values()
    categories = {log["category"] for log in setting["config"]["properties"]["logs"]}
    assert categories == {"GatewayLogs", "GatewayLlmLogs"}
    assert setting["config"]["properties"]["logAnalyticsDestinationType"] == "Dedicated"


def test_alerts_cover_errors_latency_rate_auth_and_cost() -> None:
    doc = iac.bicep_module("alerts")
    params = doc["parameters"]
    assert params["errorRatePercent"]["default"] == 5
    assert params["latencyP95Milliseconds"]["default"] == 2000
    assert params["requestsPerMinute"]["default"] == 1000
    assert params["dailyCostIncreasePercent"]["default"] == 20
    names = {a["name"] for a in doc["variables"]["logAlerts"]["value"]}
    assert names == {"error-rate", "latency-p95", "failed-auth", "daily-cost-increase"}
    assert iac.resources(doc, "Microsoft.Insights/metricAlerts")
    (rules,) = iac.resources(doc, "Microsoft.Insights/scheduledQueryRules").values()
    assert "logAlerts" in str(rules["config"])


def _literal_ok(value: object, spec: dict) -> bool:
    decorators = iac.decorators(spec)
    if "allowed" in decorators and not isinstance(value, dict):
        return value in decorators["allowed"]
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = decorators.get("min_value"), decorators.get("max_value")
        return (low is None or value >= low) and (high is None or value <= high)
    if isinstance(value, list) and "min_length" in decorators:
        return len(value) >= decorators["min_length"]
    return True


@pytest.mark.parametrize("env", iac.ENVIRONMENTS)
def test_parameter_file_gives_every_required_parameter(env: str) -> None:
    path = iac.BICEP / "parameters" / f"{env}.bicepparam"
    assert path.is_file(), f"missing {path.relative_to(iac.ROOT)}"
    using, values = iac.bicepparam(path)
    assert (path.parent / using).resolve() == MAIN.resolve()
    params = iac.bicep(MAIN)["parameters"]
    required = {name for name, spec in params.items() if spec.get("default") is None}
    assert required <= set(values), f"{path.name} misses {sorted(required - set(values))}"
    assert set(values) <= set(params), f"{path.name} sets unknown {set(values) - set(params)}"
    assert values["environmentName"] == env
    for name, value in values.items():
        assert _literal_ok(value, params[name]), f"{path.name}: {name} = {value!r}"
    # Secrets come from the environment at deployment time, never from the file.
    for name, spec in params.items():
        if "secure" in iac.decorators(spec) and name in values:
            assert values[name]["function"]["type"] == "readEnvironmentVariable" or (
                "readEnvironmentVariable" in str(values[name])
            ), f"{path.name}: {name} must come from readEnvironmentVariable()"
