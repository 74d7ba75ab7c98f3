// prod: zone- and geo-redundant storage and database, an SLA-backed APIM tier, 90-day logs,
// the default 30-day raw retention. The PostgreSQL password comes from the environment
// (export CHARGEBACK_PG_PASSWORD, e.g. from the team's secret store) and never from this file.
using '../main.bicep'

param environmentName = 'prod'
param namePrefix = 'chgbk'
param tags = {
  costCenter: 'CC-3300'
  owner: 'platform-team'
  criticality: 'high'
}
param logRetentionDays = 90
param storageSkuName = 'Standard_GZRS'
param rawRetentionDays = 30
param keyVaultSoftDeleteRetentionDays = 90
param openAiLocation = 'eastus'
param openAiSecondaryLocation = 'westeurope'
param openAiPtuDeployments = [
  {
    name: 'gpt-4o'
    model: 'gpt-4o'
    version: '2024-08-06'
    skuName: 'ProvisionedManaged'
    capacity: 50
  }
]
param openAiPrimaryWeight = 3
param openAiSecondaryWeight = 1
param openAiDeployments = [
  {
    name: 'gpt-4o'
    model: 'gpt-4o'
    version: '2024-08-06'
    skuName: 'GlobalStandard'
    capacity: 300
  }
  {
    name: 'gpt-4o-mini'
    model: 'gpt-4o-mini'
    version: '2024-07-18'
    skuName: 'GlobalStandard'
    capacity: 300
  }
  {
    name: 'o4-mini'
    model: 'o4-mini'
    version: '2025-04-16'
    skuName: 'GlobalStandard'
    capacity: 100
  }
  {
    name: 'text-embedding-3-large'
    model: 'text-embedding-3-large'
    version: '1'
    skuName: 'GlobalStandard'
    capacity: 300
  }
  {
    name: 'text-embedding-3-small'
    model: 'text-embedding-3-small'
    version: '1'
    skuName: 'GlobalStandard'
    capacity: 300
  }
]
param apimSkuName = 'StandardV2'
param apimSkuCapacity = 2
param apimPublisherEmail = 'genai-platform@contoso.com'
param apimPublisherName = 'GenAI Platform'
param streamingMode = 'buffered'
param costCenters = [
  'CC-2200'
  'CC-3300'
  'CC-4100'
  'CC-5100'
  'CC-6100'
  'CC-6200'
]
param requireCostCenter = true
param tokensPerMinute = 200000
param functionMaximumInstanceCount = 200
param postgresSkuName = 'Standard_D2ds_v5'
param postgresSkuTier = 'GeneralPurpose'
param postgresHighAvailability = true
param postgresGeoRedundantBackup = true
param postgresAdministratorPassword = readEnvironmentVariable('CHARGEBACK_PG_PASSWORD')
param alertEmails = [
  'genai-platform@contoso.com'
  'finops@contoso.com'
]
