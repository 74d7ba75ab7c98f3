// Key Vault with Azure RBAC (no access policies). It holds the pseudonym key that Dagster reads
// (CHARGEBACK_PSEUDONYM_KEY) and the forwarder's function key that APIM sends. The pseudonym key is
// set by the pipeline operator after deployment: no secret value is ever written in this code.

@description('Azure region of the vault.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Name of the secret that holds CHARGEBACK_PSEUDONYM_KEY; the operator creates its value.')
param pseudonymKeySecretName string = 'chargeback-pseudonym-key'

@description('Object ids of the people or pipelines allowed to set secrets (Key Vault Secrets Officer), e.g. the operator who sets the pseudonym key.')
param secretOfficerPrincipalIds array = []

@description('Principal type of secretOfficerPrincipalIds.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretOfficerPrincipalType string = 'Group'

// Key Vault Secrets Officer
var secretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: no VNet yet; Container Apps and APIM read secrets over the public endpoint, gated by Azure RBAC
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secretOfficers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in secretOfficerPrincipalIds: {
  name: guid(vault.id, principalId, secretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficerRoleId)
    principalId: principalId
    principalType: secretOfficerPrincipalType
  }
}]

@description('Resource id of the vault.')
output id string = vault.id

@description('Name of the vault.')
output name string = vault.name

@description('Vault URI, e.g. https://<name>.vault.azure.net/.')
output uri string = vault.properties.vaultUri

@description('Name of the pseudonym key secret the operator must set.')
output pseudonymKeySecretName string = pseudonymKeySecretName

@description('Versionless URI of the pseudonym key secret (Container Apps Key Vault reference).')
output pseudonymKeySecretUri string = '${vault.properties.vaultUri}secrets/${pseudonymKeySecretName}'
