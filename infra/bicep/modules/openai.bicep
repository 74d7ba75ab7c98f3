// Azure OpenAI account and its model deployments. Local (key) auth is off: APIM calls it with its
// managed identity, which gets Cognitive Services OpenAI User in the apim module.

@description('Azure region of the account (must offer the models in deployments).')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Account name; also its custom subdomain (https://<name>.openai.azure.com/).')
@minLength(2)
@maxLength(64)
param name string

@description('Model deployments: [{ name, model, version, skuName (GlobalStandard, DataZoneStandard, Standard, ProvisionedManaged), capacity }]. Each name must also be a row of dbt_like_sql/seeds/deployments.csv so that usage is priced.')
param deployments array

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134: APIM (no VNet yet) reaches the account over its public endpoint; keys are off, only Entra ID tokens are accepted
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

// One at a time: parallel deployment writes on one account conflict.
@batchSize(1)
resource modelDeployments 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = [for d in deployments: {
  parent: account
  name: d.name
  sku: {
    name: d.skuName
    capacity: d.capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: d.model
      version: d.version
    }
    versionUpgradeOption: 'NoAutoUpgrade'
  }
}]

@description('Resource id of the account.')
output id string = account.id

@description('Name of the account.')
output name string = account.name

@description('Endpoint, e.g. https://<name>.openai.azure.com/.')
output endpoint string = account.properties.endpoint

@description('Names of the model deployments.')
output deploymentNames array = [for d in deployments: d.name]
