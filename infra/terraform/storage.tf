# The data storage account: the raw envelope container (written by the forwarding Function, read by
# Dagster, emptied by a lifecycle rule) and the lake container (Delta tables written by Dagster).
# Shared keys are off, so every reader and writer needs an Entra ID role on its container.

resource "azurerm_storage_account" "data" {
  #checkov:skip=CKV_AZURE_43: false positive, the name is built from local.suffix within the naming rules
  #checkov:skip=CKV_AZURE_35: no VNet yet; the Function (Flex Consumption) and Container Apps reach the account over its public endpoint with Entra ID only (shared keys are off)
  #checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; private endpoints belong to a network module
  #checkov:skip=CKV2_AZURE_33: private endpoint, same reason as CKV_AZURE_59
  #checkov:skip=CKV2_AZURE_1: Microsoft-managed keys encrypt token counts at rest; customer-managed keys are not required
  #checkov:skip=CKV_AZURE_33: the queue service is unused; the store writes append blobs only
  #checkov:skip=CKV_AZURE_206: false positive, replication is var.storage_replication_type (ZRS by default, GZRS in prod)
  name                              = local.names.data_storage
  location                          = local.location
  resource_group_name               = data.azurerm_resource_group.this.name
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.storage_replication_type
  access_tier                       = "Hot"
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  public_network_access_enabled     = true
  tags                              = local.tags

  network_rules {
    default_action = "Allow"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }
}

resource "azurerm_storage_container" "raw" {
  #checkov:skip=CKV2_AZURE_21: blob read logging would log every envelope read by the hourly ingest; reads are audited through the Dagster run history instead
  name                  = var.raw_container_name
  storage_account_id    = azurerm_storage_account.data.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "lake" {
  #checkov:skip=CKV2_AZURE_21: same reason as for the raw container
  name                  = var.lake_container_name
  storage_account_id    = azurerm_storage_account.data.id
  container_access_type = "private"
}

# Envelopes are append blobs (one per writer and minute) under raw/YYYY/MM/DD/HH/
# (chargeback_pipeline/store/base.py); lifecycle rules can only delete those.
resource "azurerm_storage_management_policy" "data" {
  storage_account_id = azurerm_storage_account.data.id

  rule {
    name    = "delete-raw-envelopes"
    enabled = true
    filters {
      blob_types   = ["appendBlob", "blockBlob"]
      prefix_match = ["${azurerm_storage_container.raw.name}/raw/"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = var.raw_retention_days
      }
    }
  }
}
