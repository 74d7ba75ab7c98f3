// The data storage account: the raw envelope container (written by the forwarding Function, read by
// Dagster, emptied by a lifecycle rule) and the lake container (Delta tables written by Dagster).
// Key-based access is off, so every reader and writer needs an Entra ID role on its container.

@description('Azure region of the storage account.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param accountName string

@description('Replication of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_ZRS'

@description('Container holding the raw usage envelopes under raw/ (CHARGEBACK_CONTAINER).')
@minLength(3)
@maxLength(63)
param rawContainerName string = 'envelopes'

@description('Container holding the Delta lake (CHARGEBACK_LAKE = az://<lake>/chargeback).')
@minLength(3)
@maxLength(63)
param lakeContainerName string = 'lake'

@description('Days after their last append that raw envelope blobs are deleted; costs stay recomputable from usage_events.')
@minValue(1)
@maxValue(3650)
param rawRetentionDays int = 30

@description('Days a deleted blob or container can be restored (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 7

// The store writes every envelope under raw/YYYY/MM/DD/HH/ (chargeback_pipeline/store/base.py).
var rawPrefix = 'raw/'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: no VNet yet; the Function (Flex Consumption) and Container Apps reach the account over its public endpoint with Entra ID only (shared keys are off)
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; private endpoints belong to a network module
  // checkov:skip=CKV_AZURE_206: false positive, the replication is the skuName parameter (ZRS by default, GZRS in prod)
  // checkov:skip=CKV_AZURE_43: false positive, the name is a parameter that main.bicep builds from uniqueString() within the naming rules
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource rawContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: rawContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource lakeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: lakeContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Envelopes are append blobs (one per writer and minute); lifecycle rules can only delete those.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-raw-envelopes'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'appendBlob'
                'blockBlob'
              ]
              prefixMatch: [
                '${rawContainerName}/${rawPrefix}'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: rawRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

@description('Resource id of the storage account.')
output accountId string = account.id

@description('Name of the storage account (AZURE_STORAGE_ACCOUNT_NAME).')
output accountName string = account.name

@description('Blob endpoint of the storage account.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('Name of the raw envelope container.')
output rawContainerName string = rawContainer.name

@description('Resource id of the raw envelope container (scope of the forwarder role).')
output rawContainerId string = rawContainer.id

@description('Name of the lake container.')
output lakeContainerName string = lakeContainer.name

@description('Resource id of the lake container.')
output lakeContainerId string = lakeContainer.id
