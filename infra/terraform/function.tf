# The forwarding Function (infra/function_app/) on a Flex Consumption plan with a system-assigned
# identity. Its only right on the data account is Storage Blob Data Contributor on the RAW
# container; the Functions host keeps its keys and locks in a separate host storage account.

resource "azurerm_storage_account" "function_host" {
  #checkov:skip=CKV_AZURE_43: false positive, the name is built from local.suffix within the naming rules
  #checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its host storage over the public endpoint, Entra ID only
  #checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35
  #checkov:skip=CKV2_AZURE_33: private endpoint, same reason as CKV_AZURE_35
  #checkov:skip=CKV2_AZURE_1: holds only host keys, locks and the deployment package; Microsoft-managed keys are enough
  #checkov:skip=CKV_AZURE_33: the queue service is unused by an HTTP-only Function
  #checkov:skip=CKV_AZURE_206: host state is recreated by a redeploy; LRS is enough
  #checkov:skip=CKV2_AZURE_38: soft delete would keep superseded deployment packages; nothing here needs restoring
  #checkov:skip=CKV2_AZURE_40: shared keys are disabled (shared_access_key_enabled = false); false positive
  name                            = local.names.host_storage
  location                        = local.location
  resource_group_name             = data.azurerm_resource_group.this.name
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  https_traffic_only_enabled      = true
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  public_network_access_enabled   = true
  tags                            = local.tags

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }
}

resource "azurerm_storage_container" "function_package" {
  #checkov:skip=CKV2_AZURE_21: the deployment package container needs no read logging
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.function_host.id
  container_access_type = "private"
}

resource "azurerm_service_plan" "function" {
  #checkov:skip=CKV_AZURE_225: Flex Consumption (FC1) is serverless; instances are placed by the platform, there is no zone setting on the plan to turn on
  #checkov:skip=CKV_AZURE_212: FC1 has no instance minimum on the plan; the platform scales from zero per request
  name                = local.names.function_plan
  location            = local.location
  resource_group_name = data.azurerm_resource_group.this.name
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

resource "azurerm_function_app_flex_consumption" "forwarder" {
  name                          = local.names.function_app
  location                      = local.location
  resource_group_name           = data.azurerm_resource_group.this.name
  service_plan_id               = azurerm_service_plan.function.id
  https_only                    = true
  public_network_access_enabled = true

  storage_container_type      = "blobContainer"
  storage_container_endpoint  = "${azurerm_storage_account.function_host.primary_blob_endpoint}${azurerm_storage_container.function_package.name}"
  storage_authentication_type = "SystemAssignedIdentity"
  runtime_name                = "python"
  runtime_version             = "3.11"
  maximum_instance_count      = var.function_maximum_instance_count
  instance_memory_in_mb       = var.function_instance_memory_mb
  tags                        = merge(local.tags, { "azd-service-name" = "forwarder" })

  identity {
    type = "SystemAssigned"
  }

  site_config {
    minimum_tls_version                    = "1.2"
    http2_enabled                          = true
    application_insights_connection_string = azurerm_application_insights.this.connection_string
  }

  app_settings = {
    AzureWebJobsStorage__accountName          = azurerm_storage_account.function_host.name
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "Authorization=AAD"
    CHARGEBACK_STORE                          = "az://${azurerm_storage_container.raw.name}"
    AZURE_STORAGE_ACCOUNT_NAME                = azurerm_storage_account.data.name
    CHARGEBACK_CONTAINER                      = azurerm_storage_container.raw.name
    CHARGEBACK_MAX_ENVELOPE_BYTES             = tostring(var.max_envelope_bytes)
  }
}

# Host storage: the Functions host needs blob owner rights on its own account (keys, leases).
resource "azurerm_role_assignment" "function_host_storage_owner" {
  scope              = azurerm_storage_account.function_host.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.storage_blob_data_owner}"
  principal_id       = azurerm_function_app_flex_consumption.forwarder.identity[0].principal_id
  principal_type     = "ServicePrincipal"
}

# The forwarder writes envelopes: Storage Blob Data Contributor on the raw container only.
resource "azurerm_role_assignment" "function_raw_writer" {
  scope              = azurerm_storage_container.raw.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.storage_blob_data_contributor}"
  principal_id       = azurerm_function_app_flex_consumption.forwarder.identity[0].principal_id
  principal_type     = "ServicePrincipal"
}

# Telemetry with Entra ID (local auth is off on the component).
resource "azurerm_role_assignment" "function_telemetry" {
  scope              = azurerm_application_insights.this.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.monitoring_metrics_publisher}"
  principal_id       = azurerm_function_app_flex_consumption.forwarder.identity[0].principal_id
  principal_type     = "ServicePrincipal"
}

# The host's default function key, copied into Key Vault for APIM's Key Vault-backed named value.
data "azurerm_function_app_host_keys" "forwarder" {
  name                = azurerm_function_app_flex_consumption.forwarder.name
  resource_group_name = data.azurerm_resource_group.this.name
}

resource "azurerm_key_vault_secret" "forwarder_key" {
  #checkov:skip=CKV_AZURE_41: the key rotates with the function key (apply copies it); an expiry date would silently cut APIM off the forwarder
  name         = local.forwarder_key_secret_name
  key_vault_id = azurerm_key_vault.this.id
  value        = data.azurerm_function_app_host_keys.forwarder.default_function_key
  content_type = "Azure Functions host key (x-functions-key)"

  depends_on = [azurerm_role_assignment.deployer_secrets_officer]
}
