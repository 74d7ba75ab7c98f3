# Azure OpenAI account and its model deployments. Local (key) auth is off: APIM calls it with its
# managed identity (Cognitive Services OpenAI User, in apim.tf).
# Deployments on one account cannot be written in parallel: apply with -parallelism=1 when adding
# several at once, or expect a retry.

resource "azurerm_cognitive_account" "openai" {
  #checkov:skip=CKV_AZURE_134: APIM (no VNet yet) reaches the account over its public endpoint; keys are off, only Entra ID tokens are accepted
  #checkov:skip=CKV2_AZURE_22: Microsoft-managed keys are enough for the account (no data stored at rest by this deployment)
  #checkov:skip=CKV_AZURE_247: network ACLs need a VNet or fixed APIM egress IPs, see CKV_AZURE_134
  name                          = local.names.openai
  location                      = local.openai_location
  resource_group_name           = data.azurerm_resource_group.this.name
  kind                          = "OpenAI"
  sku_name                      = "S0"
  custom_subdomain_name         = local.names.openai
  local_auth_enabled            = false
  public_network_access_enabled = true
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_cognitive_deployment" "models" {
  for_each               = { for d in var.openai_deployments : d.name => d }
  name                   = each.key
  cognitive_account_id   = azurerm_cognitive_account.openai.id
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
