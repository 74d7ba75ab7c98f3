// The Azure OpenAI backends of API Management and the pool the API policy sends calls to
// (set-backend-service backend-id = poolName): one backend per Azure OpenAI account, each with a
// circuit breaker that trips on throttling (429) and server errors (5xx) and honours Retry-After,
// grouped in a pool by priority (1 first: the PTU deployment) and weight (the pay-as-you-go spill
// across regions). APIM's managed identity gets Cognitive Services OpenAI User on every account.

@description('Name of the API Management service that receives the backends.')
param apimName string

@description('Pool members: [{ id (APIM backend id and envelope backend.id; a backend_id of dbt_like_sql/seeds/deployments.csv), accountName (Azure OpenAI account), priority (1 is tried first), weight (share within its priority) }].')
@minLength(1)
param backends array

@description('APIM backend id of the pool (named value chargeback-backend-pool).')
@minLength(1)
@maxLength(80)
param poolName string = 'aoai-pool'

@description('Failures (429, 5xx, connection failure, timeout) within circuitBreakerIntervalSeconds that trip a backend; 1 spills a throttled PTU backend at once.')
@minValue(1)
@maxValue(100)
param circuitBreakerFailureCount int = 1

@description('Seconds over which a backend\'s failures are counted.')
@minValue(1)
@maxValue(3600)
param circuitBreakerIntervalSeconds int = 10

@description('Seconds a tripped backend is skipped when it sent no Retry-After header.')
@minValue(1)
@maxValue(3600)
param circuitBreakerTripSeconds int = 10

var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

resource accounts 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = [for backend in backends: {
  name: backend.accountName
}]

// The gateway calls every account with its managed identity (keys are disabled on the accounts).
resource openAiUsers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (backend, i) in backends: {
  name: guid(accounts[i].id, apim.id, openAiUserRoleId)
  scope: accounts[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: apim.identity.principalId
    principalType: 'ServicePrincipal'
  }
}]

// 2024-06-01-preview: circuit breaker rules with acceptRetryAfter, pools with priority and weight.
resource members 'Microsoft.ApiManagement/service/backends@2024-06-01-preview' = [for (backend, i) in backends: {
  parent: apim
  name: backend.id
  properties: {
    description: 'Azure OpenAI account ${backend.accountName} (priority ${backend.priority}, weight ${backend.weight})'
    type: 'Single'
    protocol: 'http'
    url: '${accounts[i].properties.endpoint}openai'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
    circuitBreaker: {
      rules: [
        {
          name: 'throttled-or-failing'
          failureCondition: {
            count: circuitBreakerFailureCount
            interval: 'PT${circuitBreakerIntervalSeconds}S'
            statusCodeRanges: [
              {
                min: 429
                max: 429
              }
              {
                min: 500
                max: 599
              }
            ]
            errorReasons: [
              'BackendConnectionFailure'
              'Timeout'
            ]
          }
          tripDuration: 'PT${circuitBreakerTripSeconds}S'
          acceptRetryAfter: true
        }
      ]
    }
  }
}]

resource pool 'Microsoft.ApiManagement/service/backends@2024-06-01-preview' = {
  parent: apim
  name: poolName
  properties: {
    description: 'Azure OpenAI pool: PTU first (priority 1), pay-as-you-go spill (priority 2) by weight.'
    type: 'Pool'
    pool: {
      services: [for (backend, i) in backends: {
        id: members[i].id
        priority: backend.priority
        weight: backend.weight
      }]
    }
  }
}

@description('APIM backend id of the pool, for set-backend-service.')
output poolName string = pool.name

@description('APIM backend ids of the pool members, in the order given.')
output backendIds array = [for (backend, i) in backends: members[i].name]
