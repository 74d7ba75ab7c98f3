// Azure side of the chargeback pipeline, deployed into one resource group per environment:
//   client -> APIM (apim_policies/) -> Azure OpenAI pool (PTU first, pay-as-you-go in two regions)
//              `-> forwarding Function -> raw container -> Dagster on Container Apps -> lake container
// Names derive from uniqueString(resourceGroup().id), so dev, test and prod (one resource group
// each) never collide and a redeploy into the same group updates in place.
//
//   az deployment group create -g RG -f infra/bicep/main.bicep -p infra/bicep/parameters/dev.bicepparam

targetScope = 'resourceGroup'

@description('Environment this deployment serves; part of names and tags.')
@allowed([
  'dev'
  'test'
  'prod'
])
param environmentName string

@description('Short lowercase name (letters and digits only) prefixed to every resource name.')
@minLength(2)
@maxLength(8)
param namePrefix string = 'chgbk'

@description('Azure region of every resource except the Azure OpenAI accounts.')
param location string = resourceGroup().location

@description('Primary Azure OpenAI region: the PTU account (when openAiPtuDeployments is set) and the first pay-as-you-go account.')
@minLength(1)
param openAiLocation string = 'eastus'

@description('Secondary Azure OpenAI region: the second pay-as-you-go account, which takes the spill when the primary is throttled or down.')
@minLength(1)
param openAiSecondaryLocation string = 'westeurope'

@description('Tags added to every resource.')
param tags object = {}

@description('Days Log Analytics keeps gateway, LLM and application logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Replication of the data storage account (raw envelopes and the lake).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_ZRS'

@description('Container of the raw envelopes (CHARGEBACK_CONTAINER).')
@minLength(3)
@maxLength(63)
param rawContainerName string = 'envelopes'

@description('Container of the Delta lake (CHARGEBACK_LAKE = az://<container>/chargeback).')
@minLength(3)
@maxLength(63)
param lakeContainerName string = 'lake'

@description('Days raw envelopes are kept before the lifecycle rule deletes them; usage_events keeps the tokens.')
@minValue(1)
@maxValue(3650)
param rawRetentionDays int = 30

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionDays int = 90

@description('Object ids (groups) allowed to set Key Vault secrets, e.g. the operator who sets the pseudonym key.')
param keyVaultSecretOfficerPrincipalIds array = []

@description('Pay-as-you-go model deployments, created in both regions: [{ name, model, version, skuName, capacity }]; names must match dbt_like_sql/seeds/deployments.csv.')
@minLength(1)
param openAiDeployments array

@description('Provisioned (PTU) deployments of a third account in the primary region, at pool priority 1: [{ name, model, version, skuName (ProvisionedManaged, ...), capacity }]. Use the names of openAiDeployments so the spill serves the same paths; empty = no PTU backend.')
param openAiPtuDeployments array = []

@description('Weight of the primary pay-as-you-go account within pool priority 2.')
@minValue(1)
@maxValue(1000)
param openAiPrimaryWeight int = 1

@description('Weight of the secondary pay-as-you-go account within pool priority 2.')
@minValue(1)
@maxValue(1000)
param openAiSecondaryWeight int = 1

@description('Failures (429, 5xx, connection failure, timeout) within circuitBreakerIntervalSeconds that trip a pool member; 1 spills a throttled PTU backend at once.')
@minValue(1)
@maxValue(100)
param circuitBreakerFailureCount int = 1

@description('Seconds over which a pool member\'s failures are counted.')
@minValue(1)
@maxValue(3600)
param circuitBreakerIntervalSeconds int = 10

@description('Seconds a tripped pool member is skipped when it sent no Retry-After header.')
@minValue(1)
@maxValue(3600)
param circuitBreakerTripSeconds int = 10

@description('API Management tier.')
@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
  'PremiumV2'
])
param apimSkuName string = 'Developer'

@description('API Management scale units.')
@minValue(1)
@maxValue(12)
param apimSkuCapacity int = 1

@description('E-mail address of the API publisher.')
@minLength(3)
param apimPublisherEmail string

@description('Name of the API publisher.')
@minLength(1)
param apimPublisherName string

@description('Streaming mode of the policies: buffered (exact usage, client waits for the whole stream) or passthrough (token-by-token, usage reconciled from Log Analytics).')
@allowed([
  'buffered'
  'passthrough'
])
param streamingMode string = 'buffered'

@description('Cost centers accepted in the x-chargeback-cost-center header; keep in line with dbt_like_sql/seeds/cost_centers.csv.')
@minLength(1)
param costCenters array

@description('Refuse calls whose x-chargeback-cost-center is missing or not in costCenters.')
param requireCostCenter bool = false

@description('Tokens per minute per APIM subscription (azure-openai-token-limit).')
@minValue(1000)
param tokensPerMinute int = 100000

@description('Envelope bodies longer than this many characters are cut (named value chargeback-max-body-chars).')
@minValue(65536)
param maxBodyChars int = 16777216

@description('Origin allowed by the API\'s CORS policy; * allows any origin without credentials.')
param corsOrigin string = '*'

@description('How APIM authenticates to the forwarder: function-key, or managed-identity for a Function behind App Service Authentication.')
@allowed([
  'function-key'
  'managed-identity'
])
param forwarderAuth string = 'function-key'

@description('Application ID URI of the forwarder\'s Entra ID registration; only with forwarderAuth managed-identity.')
param forwarderAudience string = ''

@description('Maximum instances of the forwarding Function.')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 100

@description('Memory per Function instance in MB.')
@allowed([
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Envelopes larger than this are refused with 413 (CHARGEBACK_MAX_ENVELOPE_BYTES).')
@minValue(1024)
@maxValue(104857600)
param maxEnvelopeBytes int = 104857600

@description('PostgreSQL compute SKU of the Dagster instance database.')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL compute tier matching postgresSkuName.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage in GB.')
@minValue(32)
@maxValue(16384)
param postgresStorageSizeGB int = 32

@description('Zone-redundant high availability for PostgreSQL.')
param postgresHighAvailability bool = false

@description('Geo-redundant PostgreSQL backups.')
param postgresGeoRedundantBackup bool = false

@description('PostgreSQL administrator password, read from the environment by the .bicepparam files; never stored in a file.')
@secure()
@minLength(16)
param postgresAdministratorPassword string

@description('Dagster image (this package + dagster.yaml + workspace.yaml). Empty on the first deployment: the apps are created once the image exists and the pseudonym key is set.')
param dagsterImage string = ''

@description('Login server of the registry holding dagsterImage (pulled with the Dagster identity, which needs AcrPull).')
param containerRegistryServer string = ''

@description('Expose the Dagster UI outside the Container Apps environment (only behind Container Apps authentication).')
param dagsterWebserverExternalIngress bool = false

@description('E-mail addresses that receive alerts.')
@minLength(1)
param alertEmails array

@description('Error-rate alert threshold in percent of gateway calls.')
@minValue(1)
@maxValue(100)
param alertErrorRatePercent int = 5

@description('p95 gateway latency alert threshold in milliseconds.')
@minValue(100)
param alertLatencyP95Milliseconds int = 2000

@description('Request-rate alert threshold in requests per minute.')
@minValue(1)
param alertRequestsPerMinute int = 1000

@description('Failed-authentication alert threshold in calls per 5 minutes.')
@minValue(1)
param alertFailedAuthCount int = 20

@description('Daily spend growth alert threshold in percent (last 24 h against the previous 24 h).')
@minValue(1)
param alertDailyCostIncreasePercent int = 20

var suffix = uniqueString(resourceGroup().id)
var prefix = toLower(namePrefix)
var baseName = '${prefix}-${environmentName}'
var allTags = union(tags, {
  environment: environmentName
  workload: 'genai-chargeback'
})
var names = {
  workspace: 'log-${baseName}-${suffix}'
  appInsights: 'appi-${baseName}-${suffix}'
  dataStorage: 'st${prefix}${suffix}'
  hostStorage: 'stfn${prefix}${take(suffix, 10)}'
  keyVault: 'kv-${prefix}-${take(suffix, 12)}'
  openAi: 'oai-${prefix}-${suffix}'
  openAiSecondary: 'oai-${prefix}-2-${suffix}'
  openAiPtu: 'oai-${prefix}-ptu-${suffix}'
  functionApp: 'func-${prefix}-${suffix}'
  functionPlan: 'plan-${baseName}-${suffix}'
  apim: 'apim-${baseName}-${suffix}'
  containerEnvironment: 'cae-${baseName}-${suffix}'
  dagsterApps: 'dagster-${prefix}'
  dagsterIdentity: 'id-dagster-${baseName}'
  postgres: 'psql-${prefix}-${suffix}'
  alerts: 'chargeback-${baseName}'
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: allTags
    accountName: names.dataStorage
    skuName: storageSkuName
    rawContainerName: rawContainerName
    lakeContainerName: lakeContainerName
    rawRetentionDays: rawRetentionDays
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: allTags
    name: names.keyVault
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionDays
    secretOfficerPrincipalIds: keyVaultSecretOfficerPrincipalIds
  }
}

// The Azure OpenAI accounts behind the APIM pool: PTU first (priority 1), then pay-as-you-go in the
// primary and secondary regions (priority 2, split by weight). Each id is a backend_id of
// dbt_like_sql/seeds/deployments.csv: envelopes name the one that served a call, which prices it.
var ptuBackends = empty(openAiPtuDeployments) ? [] : [
  {
    id: 'aoai-${openAiLocation}-ptu'
    accountName: names.openAiPtu
    location: openAiLocation
    priority: 1
    weight: 1
    deployments: openAiPtuDeployments
  }
]
var openAiBackends = concat(ptuBackends, [
  {
    id: 'aoai-${openAiLocation}-1'
    accountName: names.openAi
    location: openAiLocation
    priority: 2
    weight: openAiPrimaryWeight
    deployments: openAiDeployments
  }
  {
    id: 'aoai-${openAiSecondaryLocation}-1'
    accountName: names.openAiSecondary
    location: openAiSecondaryLocation
    priority: 2
    weight: openAiSecondaryWeight
    deployments: openAiDeployments
  }
])

module openAi 'modules/openai.bicep' = [for backend in openAiBackends: {
  name: 'openai-${backend.id}'
  params: {
    location: backend.location
    tags: allTags
    name: backend.accountName
    deployments: backend.deployments
  }
}]

module function 'modules/function.bicep' = {
  name: 'function'
  params: {
    location: location
    tags: allTags
    name: names.functionApp
    planName: names.functionPlan
    hostStorageAccountName: names.hostStorage
    dataStorageAccountName: storage.outputs.accountName
    rawContainerName: storage.outputs.rawContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultName: keyVault.outputs.name
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    maxEnvelopeBytes: maxEnvelopeBytes
  }
}

module apim 'modules/apim.bicep' = {
  name: 'apim'
  params: {
    location: location
    tags: allTags
    name: names.apim
    skuName: apimSkuName
    skuCapacity: apimSkuCapacity
    publisherEmail: apimPublisherEmail
    publisherName: apimPublisherName
    openAiBackends: [for (backend, i) in openAiBackends: {
      id: backend.id
      accountName: openAi[i].outputs.name
      priority: backend.priority
      weight: backend.weight
    }]
    circuitBreakerFailureCount: circuitBreakerFailureCount
    circuitBreakerIntervalSeconds: circuitBreakerIntervalSeconds
    circuitBreakerTripSeconds: circuitBreakerTripSeconds
    requireCostCenter: requireCostCenter
    tokensPerMinute: tokensPerMinute
    maxBodyChars: maxBodyChars
    corsOrigin: corsOrigin
    forwarderAuth: forwarderAuth
    forwarderAudience: forwarderAudience
    forwarderUrl: function.outputs.forwarderUrl
    forwarderKeySecretUri: function.outputs.forwarderKeySecretUri
    keyVaultName: keyVault.outputs.name
    forwarderKeySecretName: function.outputs.forwarderKeySecretName
    streamingMode: streamingMode
    costCenters: costCenters
    workspaceId: monitoring.outputs.workspaceId
  }
}

module dagster 'modules/dagster.bicep' = {
  name: 'dagster'
  params: {
    location: location
    tags: allTags
    environmentName: names.containerEnvironment
    appNamePrefix: names.dagsterApps
    identityName: names.dagsterIdentity
    postgresServerName: names.postgres
    postgresSkuName: postgresSkuName
    postgresSkuTier: postgresSkuTier
    postgresStorageSizeGB: postgresStorageSizeGB
    postgresHighAvailability: postgresHighAvailability
    postgresGeoRedundantBackup: postgresGeoRedundantBackup
    postgresAdministratorPassword: postgresAdministratorPassword
    workspaceName: monitoring.outputs.workspaceName
    dataStorageAccountName: storage.outputs.accountName
    rawContainerName: storage.outputs.rawContainerName
    lakeContainerName: storage.outputs.lakeContainerName
    keyVaultName: keyVault.outputs.name
    pseudonymKeySecretUri: keyVault.outputs.pseudonymKeySecretUri
    image: dagsterImage
    containerRegistryServer: containerRegistryServer
    webserverExternalIngress: dagsterWebserverExternalIngress
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: allTags
    namePrefix: names.alerts
    alertEmails: alertEmails
    apimId: apim.outputs.id
    workspaceId: monitoring.outputs.workspaceId
    functionAppName: function.outputs.name
    errorRatePercent: alertErrorRatePercent
    latencyP95Milliseconds: alertLatencyP95Milliseconds
    requestsPerMinute: alertRequestsPerMinute
    failedAuthCount: alertFailedAuthCount
    dailyCostIncreasePercent: alertDailyCostIncreasePercent
  }
}

@description('APIM gateway URL; clients call <url>/openai/deployments/<deployment>/chat/completions.')
output apimGatewayUrl string = apim.outputs.gatewayUrl

@description('APIM service name.')
output apimName string = apim.outputs.name

@description('Function app to publish infra/function_app/.package to.')
output functionAppName string = function.outputs.name

@description('URL the APIM policies send envelopes to.')
output forwarderUrl string = function.outputs.forwarderUrl

@description('Data storage account (AZURE_STORAGE_ACCOUNT_NAME).')
output storageAccountName string = storage.outputs.accountName

@description('CHARGEBACK_STORE for the Function and Dagster.')
output chargebackStore string = 'az://${storage.outputs.rawContainerName}'

@description('CHARGEBACK_LAKE for Dagster and analysts.')
output chargebackLake string = 'az://${storage.outputs.lakeContainerName}/chargeback'

@description('Key Vault name.')
output keyVaultName string = keyVault.outputs.name

@description('Name of the secret the operator sets to CHARGEBACK_PSEUDONYM_KEY.')
output pseudonymKeySecretName string = keyVault.outputs.pseudonymKeySecretName

@description('Azure OpenAI endpoints behind the gateway, in pool order (PTU first).')
output openAiEndpoints array = [for (backend, i) in openAiBackends: openAi[i].outputs.endpoint]

@description('APIM backend ids of the pool members; each must be a backend_id of dbt_like_sql/seeds/deployments.csv.')
output apimBackendIds array = apim.outputs.backendIds

@description('Log Analytics workspace id for LogsQueryClient (ApiManagementGatewayLlmLog).')
output logAnalyticsWorkspaceId string = monitoring.outputs.workspaceCustomerId

@description('Client id of the Dagster identity (AZURE_CLIENT_ID).')
output dagsterIdentityClientId string = dagster.outputs.identityClientId

@description('Object id of the Dagster identity (grant it AcrPull on the registry).')
output dagsterIdentityPrincipalId string = dagster.outputs.identityPrincipalId

@description('Container Apps environment name.')
output containerAppsEnvironmentName string = dagster.outputs.environmentName

@description('Dagster app names: webserver, daemon, code location.')
output dagsterAppNames array = dagster.outputs.appNames
