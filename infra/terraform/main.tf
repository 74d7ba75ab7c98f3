# Azure side of the chargeback pipeline in one existing resource group per environment; the same
# resources as infra/bicep/main.bicep (see README.md for the mapping):
#   client -> APIM (apim_policies/) -> Azure OpenAI pool (PTU first, pay-as-you-go in two regions)
#              `-> forwarding Function -> raw container -> Dagster on Container Apps -> lake container
#
#   terraform init && terraform apply -var-file=environments/dev.tfvars

data "azurerm_client_config" "current" {}

data "azurerm_subscription" "current" {}

data "azurerm_resource_group" "this" {
  name = var.resource_group_name
}

locals {
  location = coalesce(var.location, data.azurerm_resource_group.this.location)
  # Stable per resource group, like uniqueString(resourceGroup().id) in Bicep (different value).
  suffix    = substr(sha1(data.azurerm_resource_group.this.id), 0, 13)
  prefix    = lower(var.name_prefix)
  base_name = "${local.prefix}-${var.environment_name}"
  tags = merge(var.tags, {
    environment = var.environment_name
    workload    = "genai-chargeback"
  })

  names = {
    workspace             = "log-${local.base_name}-${local.suffix}"
    app_insights          = "appi-${local.base_name}-${local.suffix}"
    data_storage          = "st${local.prefix}${local.suffix}"
    host_storage          = "stfn${local.prefix}${substr(local.suffix, 0, 10)}"
    key_vault             = "kv-${local.prefix}-${substr(local.suffix, 0, 12)}"
    openai                = "oai-${local.prefix}-${local.suffix}"
    openai_secondary      = "oai-${local.prefix}-2-${local.suffix}"
    openai_ptu            = "oai-${local.prefix}-ptu-${local.suffix}"
    function_app          = "func-${local.prefix}-${local.suffix}"
    function_plan         = "plan-${local.base_name}-${local.suffix}"
    apim                  = "apim-${local.base_name}-${local.suffix}"
    container_environment = "cae-${local.base_name}-${local.suffix}"
    dagster_apps          = "dagster-${local.prefix}"
    dagster_identity      = "id-dagster-${local.base_name}"
    postgres              = "psql-${local.prefix}-${local.suffix}"
    alerts                = "chargeback-${local.base_name}"
  }

  # Built-in role definition ids.
  role_ids = {
    storage_blob_data_contributor  = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    storage_blob_data_reader       = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    storage_blob_data_owner        = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
    key_vault_secrets_user         = "4633458b-17de-408a-b874-0445c86b69e6"
    key_vault_secrets_officer      = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
    log_analytics_reader           = "73c42c96-874c-492b-b04d-ab87d138a893"
    cognitive_services_openai_user = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
    monitoring_metrics_publisher   = "3913510d-42f4-4e42-8a64-420c390055eb"
  }
  role_definition_prefix = "${data.azurerm_subscription.current.id}/providers/Microsoft.Authorization/roleDefinitions"
}
