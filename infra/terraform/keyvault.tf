# Key Vault with Azure RBAC (no access policies). It holds the pseudonym key that Dagster reads
# (CHARGEBACK_PSEUDONYM_KEY, set by the operator after deployment: no secret value in this code)
# and the forwarder's function key that APIM sends.

locals {
  pseudonym_key_secret_name = "chargeback-pseudonym-key"
  forwarder_key_secret_name = "chargeback-forwarder-key"
}

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_109: no VNet yet; Container Apps and APIM read secrets over the public endpoint, gated by Azure RBAC
  #checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109
  #checkov:skip=CKV2_AZURE_32: private endpoint, same reason as CKV_AZURE_109
  name                          = local.names.key_vault
  location                      = local.location
  resource_group_name           = data.azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  enable_rbac_authorization     = true
  soft_delete_retention_days    = var.key_vault_soft_delete_retention_days
  purge_protection_enabled      = true
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }
}

resource "azurerm_role_assignment" "key_vault_secret_officers" {
  for_each           = toset(var.key_vault_secret_officer_principal_ids)
  scope              = azurerm_key_vault.this.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.key_vault_secrets_officer}"
  principal_id       = each.value
}

# Terraform writes the forwarder key through the data plane, so the identity running it needs
# Key Vault Secrets Officer (Bicep writes it through Resource Manager and needs no such role).
resource "azurerm_role_assignment" "deployer_secrets_officer" {
  scope              = azurerm_key_vault.this.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.key_vault_secrets_officer}"
  principal_id       = data.azurerm_client_config.current.object_id
}
