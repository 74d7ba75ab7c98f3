# The Azure OpenAI accounts behind the APIM backend pool and their model deployments. Local (key)
# auth is off: APIM calls them with its managed identity (Cognitive Services OpenAI User, in
# apim_backends.tf). Deployments on one account cannot be written in parallel: apply with
# -parallelism=1 when adding several at once, or expect a retry.

locals {
  # PTU first (priority 1), then pay-as-you-go in the primary and secondary regions (priority 2,
  # split by weight). Keys are backend_ids of dbt_like_sql/seeds/deployments.csv: envelopes name
  # the one that served a call, which prices it.
  openai_pool_candidates = {
    "aoai-${var.openai_location}-ptu" = {
      account_name = local.names.openai_ptu
      location     = var.openai_location
      priority     = 1
      weight       = 1
      deployments  = var.openai_ptu_deployments
    }
    "aoai-${var.openai_location}-1" = {
      account_name = local.names.openai
      location     = var.openai_location
      priority     = 2
      weight       = var.openai_primary_weight
      deployments  = var.openai_deployments
    }
    "aoai-${var.openai_secondary_location}-1" = {
      account_name = local.names.openai_secondary
      location     = var.openai_secondary_location
      priority     = 2
      weight       = var.openai_secondary_weight
      deployments  = var.openai_deployments
    }
  }
  # No PTU account without PTU deployments.
  openai_backends   = { for id, backend in local.openai_pool_candidates : id => backend if length(backend.deployments) > 0 }
  openai_primary_id = "aoai-${var.openai_location}-1"

  openai_model_deployments = merge([
    for id, backend in local.openai_backends : {
      for d in backend.deployments : "${id}/${d.name}" => merge(d, { backend_id = id })
    }
  ]...)
}

resource "azurerm_cognitive_account" "openai" {
  #checkov:skip=CKV_AZURE_134: APIM (no VNet yet) reaches the accounts over their public endpoints; keys are off, only Entra ID tokens are accepted
  #checkov:skip=CKV2_AZURE_22: Microsoft-managed keys are enough for the accounts (no data stored at rest by this deployment)
  #checkov:skip=CKV_AZURE_247: network ACLs need a VNet or fixed APIM egress IPs, see CKV_AZURE_134
  for_each                      = local.openai_backends
  name                          = each.value.account_name
  location                      = each.value.location
  resource_group_name           = data.azurerm_resource_group.this.name
  kind                          = "OpenAI"
  sku_name                      = "S0"
  custom_subdomain_name         = each.value.account_name
  local_auth_enabled            = false
  public_network_access_enabled = true
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_cognitive_deployment" "models" {
  for_each               = local.openai_model_deployments
  name                   = each.value.name
  cognitive_account_id   = azurerm_cognitive_account.openai[each.value.backend_id].id
  version_upgrade_option = "NoAutoUpgrade"

  model {
    format  = "OpenAI"
    name    = each.value.model
    version = each.value.version
  }

  sku {
    name     = each.value.sku_name
    capacity = each.value.capacity
  }
}
