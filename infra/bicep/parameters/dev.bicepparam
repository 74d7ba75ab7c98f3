// dev: smallest SKUs, LRS, short retention; everything else as in main.bicep's defaults.
// The PostgreSQL password comes from the environment: export CHARGEBACK_PG_PASSWORD first.
using '../main.bicep'

param environmentName = 'dev'
param namePrefix = 'chgbk'
param tags = {
  costCenter: 'CC-3300'
  owner: 'platform-team'
}
param logRetentionDays = 30
param storageSkuName = 'Standard_LRS'
param rawRetentionDays = 7
param keyVaultSoftDeleteRetentionDays = 7
param openAiLocation = 'eastus'
param openAiSecondaryLocation = 'westeurope'
param openAiPrimaryWeight = 1
param openAiSecondaryWeight = 1
param openAiDeployments = [
  {
    name: 'gpt-4o-mini'
    model: 'gpt-4o-mini'
    version: '2024-07-18'
    skuName: 'GlobalStandard'
    capacity: 10
  }
  {
    name: 'text-embedding-3-small'
    model: 'text-embedding-3-small'
    version: '1'
    skuName: 'GlobalStandard'
    capacity: 10
  }
]
param apimSkuName = 'Developer'
param apimSkuCapacity = 1
param apimPublisherEmail = 'genai-platform@contoso.com'
param apimPublisherName = 'GenAI Platform (dev)'
param streamingMode = 'buffered'
param costCenters = [
  '*'
]
param tokensPerMinute = 20000
param functionMaximumInstanceCount = 40
param postgresSkuName = 'Standard_B1ms'
param postgresSkuTier = 'Burstable'
param postgresAdministratorPassword = readEnvironmentVariable('CHARGEBACK_PG_PASSWORD')
param alertEmails = [
  'genai-platform@contoso.com'
]
