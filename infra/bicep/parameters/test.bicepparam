// test: production-like topology on small SKUs; cost centers enforced as in prod.
// The PostgreSQL password comes from the environment: export CHARGEBACK_PG_PASSWORD first.
using '../main.bicep'

param environmentName = 'test'
param namePrefix = 'chgbk'
param tags = {
  costCenter: 'CC-3300'
  owner: 'platform-team'
}
param logRetentionDays = 30
param storageSkuName = 'Standard_ZRS'
param rawRetentionDays = 14
param keyVaultSoftDeleteRetentionDays = 30
param openAiLocation = 'eastus'
param openAiSecondaryLocation = 'westeurope'
param openAiPrimaryWeight = 1
param openAiSecondaryWeight = 1
param openAiDeployments = [
  {
    name: 'gpt-4o'
    model: 'gpt-4o'
    version: '2024-08-06'
    skuName: 'GlobalStandard'
    capacity: 30
  }
  {
    name: 'gpt-4o-mini'
    model: 'gpt-4o-mini'
    version: '2024-07-18'
    skuName: 'GlobalStandard'
    capacity: 30
  }
  {
    name: 'text-embedding-3-small'
    model: 'text-embedding-3-small'
    version: '1'
    skuName: 'GlobalStandard'
    capacity: 30
  }
]
param apimSkuName = 'Developer'
param apimSkuCapacity = 1
param apimPublisherEmail = 'genai-platform@contoso.com'
param apimPublisherName = 'GenAI Platform (test)'
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
param tokensPerMinute = 50000
param functionMaximumInstanceCount = 40
param postgresSkuName = 'Standard_B2s'
param postgresSkuTier = 'Burstable'
param postgresAdministratorPassword = readEnvironmentVariable('CHARGEBACK_PG_PASSWORD')
param alertEmails = [
  'genai-platform@contoso.com'
]
