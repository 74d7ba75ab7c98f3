// The forwarding Function (infra/function_app/) on a Flex Consumption plan with a system-assigned
// identity. Its only right on the data account is Storage Blob Data Contributor on the RAW
// container; the Functions host keeps its keys and locks in a separate host storage account.

@description('Azure region of the plan, the app and its host storage.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Function app name (<name>.azurewebsites.net); at most 32 characters to avoid host id collisions.')
@minLength(2)
@maxLength(32)
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the Functions host storage account (keys, locks, deployment package); never holds envelopes.')
@minLength(3)
@maxLength(24)
param hostStorageAccountName string

@description('Name of the data storage account that holds the raw container (storage module).')
param dataStorageAccountName string

@description('Name of the raw envelope container the Function appends to.')
param rawContainerName string

@description('Name of the Application Insights component (monitoring module).')
param appInsightsName string

@description('Name of the Key Vault (keyvault module) that receives the forwarder key for APIM.')
param keyVaultName string

@description('Name of the Key Vault secret holding the function key APIM sends as x-functions-key.')
param forwarderKeySecretName string = 'chargeback-forwarder-key'

@description('Python version of the Function (the package needs 3.11+).')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Maximum number of instances the plan scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per instance in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('CHARGEBACK_MAX_ENVELOPE_BYTES: envelopes above this size are refused with 413.')
@minValue(1024)
@maxValue(104857600)
param maxEnvelopeBytes int = 104857600

var deploymentContainerName = 'app-package'
// Built-in role ids
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its host storage over the public endpoint, Entra ID only
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35
  // checkov:skip=CKV_AZURE_206: host state (keys, locks, package) is recreated by a redeploy; LRS is enough
  // checkov:skip=CKV_AZURE_43: false positive, the name is a parameter built from uniqueString() in main.bicep
  name: hostStorageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
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
  }
}

resource hostBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption (FC1) is serverless; instances are placed by the platform, there is no zone setting on the plan to turn on
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: APIM (no VNet yet) calls the Function over its public endpoint; the host rejects calls without the function key before any code runs
  // checkov:skip=CKV_AZURE_17: APIM authenticates with the function key (and optionally Entra ID); a client certificate would be one more secret to rotate
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances per request; there is no fixed instance minimum to set for failover
  // checkov:skip=CKV_AZURE_213: health check is not available on Flex Consumption; failed requests show in Application Insights and the failed-auth alert
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'forwarder'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        {
          name: 'AzureWebJobsStorage__accountName'
          value: hostStorage.name
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD'
        }
        {
          name: 'CHARGEBACK_STORE'
          value: 'az://${rawContainerName}'
        }
        {
          name: 'AZURE_STORAGE_ACCOUNT_NAME'
          value: dataStorageAccountName
        }
        {
          name: 'CHARGEBACK_CONTAINER'
          value: rawContainerName
        }
        {
          name: 'CHARGEBACK_MAX_ENVELOPE_BYTES'
          value: string(maxEnvelopeBytes)
        }
      ]
    }
  }
}

// Host storage: the Functions host needs blob owner rights on its own account (keys, leases).
resource hostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, site.id, storageBlobDataOwnerRoleId)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName
}

resource dataBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: dataStorage
  name: 'default'
}

resource rawContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: dataBlobService
  name: rawContainerName
}

// The forwarder writes envelopes: Storage Blob Data Contributor on the raw container only.
resource rawContainerWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rawContainer.id, site.id, storageBlobDataContributorRoleId)
  scope: rawContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with Entra ID (local auth is off on the component).
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, site.id, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The host's default function key, copied into Key Vault for APIM's Key Vault-backed named value.
// The value never leaves Azure Resource Manager: it is not a parameter and not an output.
resource forwarderKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the key rotates with the function key (redeploy copies it); an expiry date would silently cut APIM off the forwarder
  parent: vault
  name: forwarderKeySecretName
  properties: {
    contentType: 'Azure Functions host key (x-functions-key)'
    value: listKeys('${site.id}/host/default', '2024-04-01').functionKeys.default
  }
}

@description('Name of the function app (target of `func azure functionapp publish`).')
output name string = site.name

@description('Resource id of the function app.')
output id string = site.id

@description('Object id of the Function\'s system-assigned identity.')
output principalId string = site.identity.principalId

@description('URL APIM sends envelopes to (named value chargeback-forwarder-url).')
output forwarderUrl string = 'https://${site.properties.defaultHostName}/api/envelopes'

@description('Versionless URI of the Key Vault secret holding the function key.')
output forwarderKeySecretUri string = '${vault.properties.vaultUri}secrets/${forwarderKeySecretName}'

@description('Name of the Key Vault secret holding the function key.')
output forwarderKeySecretName string = forwarderKey.name
