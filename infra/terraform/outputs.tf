# What the post-deployment steps need (publish the Function, set the pseudonym key, deploy Dagster).

output "apim_gateway_url" {
  description = "APIM gateway URL; clients call <url>/openai/deployments/<deployment>/chat/completions."
  value       = azurerm_api_management.this.gateway_url
}

output "apim_name" {
  description = "APIM service name."
  value       = azurerm_api_management.this.name
}

output "function_app_name" {
  description = "Function app to publish infra/function_app/.package to."
  value       = azurerm_function_app_flex_consumption.forwarder.name
}

output "forwarder_url" {
  description = "URL the APIM policies send envelopes to."
  value       = local.forwarder_url
}

output "storage_account_name" {
  description = "Data storage account (AZURE_STORAGE_ACCOUNT_NAME)."
  value       = azurerm_storage_account.data.name
}

output "chargeback_store" {
  description = "CHARGEBACK_STORE for the Function and Dagster."
  value       = "az://${azurerm_storage_container.raw.name}"
}

output "chargeback_lake" {
  description = "CHARGEBACK_LAKE for Dagster and analysts."
  value       = "az://${azurerm_storage_container.lake.name}/chargeback"
}

output "key_vault_name" {
  description = "Key Vault name."
  value       = azurerm_key_vault.this.name
}

output "pseudonym_key_secret_name" {
  description = "Name of the secret the operator sets to CHARGEBACK_PSEUDONYM_KEY."
  value       = local.pseudonym_key_secret_name
}

output "openai_endpoints" {
  description = "Azure OpenAI endpoints behind the gateway, by APIM backend id."
  value       = { for id, account in azurerm_cognitive_account.openai : id => account.endpoint }
}

output "apim_backend_ids" {
  description = "APIM backend ids of the pool members; each must be a backend_id of dbt_like_sql/seeds/deployments.csv."
  value       = keys(azapi_resource.apim_openai_backend)
}

output "log_analytics_workspace_id" {
  description = "Log Analytics workspace id for LogsQueryClient (ApiManagementGatewayLlmLog)."
  value       = azurerm_log_analytics_workspace.this.workspace_id
}

output "dagster_identity_client_id" {
  description = "Client id of the Dagster identity (AZURE_CLIENT_ID)."
  value       = azurerm_user_assigned_identity.dagster.client_id
}

output "dagster_identity_principal_id" {
  description = "Object id of the Dagster identity (grant it AcrPull on the registry)."
  value       = azurerm_user_assigned_identity.dagster.principal_id
}

output "container_apps_environment_name" {
  description = "Container Apps environment name."
  value       = azurerm_container_app_environment.dagster.name
}

output "dagster_app_names" {
  description = "Dagster app names: webserver, daemon, code location."
  value       = [for k in ["web", "daemon", "code"] : local.dagster_apps[k].name]
}
