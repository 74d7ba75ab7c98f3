// API Management in front of Azure OpenAI: the service and its identity (Key Vault Secrets User on
// the forwarder key), the named values the policies read, the Azure OpenAI backend pool with its
// circuit breakers (apim-backends.bicep, which also grants Cognitive Services OpenAI User on every
// account), the API with apim_policies/azure-openai-api.xml, the policy fragments, the genai-free/basic/premium products with their policies, and Azure Monitor logging
// (gateway logs and LLM token logs, never prompt or completion text) into Log Analytics.

@description('Azure region of the service.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('API Management service name (<name>.azure-api.net), globally unique.')
@minLength(1)
@maxLength(50)
param name string

@description('Pricing tier. Developer has no SLA; use a Standard/Premium tier (classic or v2) in production.')
@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
  'PremiumV2'
])
param skuName string = 'Developer'

@description('Scale units of the tier.')
@minValue(1)
@maxValue(12)
param skuCapacity int = 1

@description('E-mail address of the API publisher (system notifications).')
@minLength(3)
param publisherEmail string

@description('Name of the API publisher shown in the developer portal.')
@minLength(1)
param publisherName string

@description('Azure OpenAI accounts of the backend pool: [{ id (APIM backend id that envelopes report as backend.id; a backend_id of dbt_like_sql/seeds/deployments.csv), accountName, priority (1 first: PTU), weight (share within its priority) }].')
@minLength(1)
param openAiBackends array

@description('Failures (429, 5xx, connection failure, timeout) within circuitBreakerIntervalSeconds that trip a pool member.')
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

@description('Forwarding Function URL (named value chargeback-forwarder-url).')
param forwarderUrl string

@description('Versionless Key Vault secret URI of the function key (named value chargeback-forwarder-key).')
param forwarderKeySecretUri string

@description('Name of the Key Vault holding the forwarder key.')
param keyVaultName string

@description('Name of the Key Vault secret holding the forwarder key.')
param forwarderKeySecretName string

@description('How the policies treat SSE responses (named value chargeback-streaming-mode): buffered reads the body for exact usage, passthrough keeps token-by-token delivery.')
@allowed([
  'buffered'
  'passthrough'
])
param streamingMode string = 'buffered'

@description('Cost centers accepted in the x-chargeback-cost-center header (named value chargeback-cost-centers, comma-separated).')
@minLength(1)
param costCenters array

@description('When true, calls without an x-chargeback-cost-center value from costCenters are refused with 400 (named value chargeback-require-cost-center).')
param requireCostCenter bool = false

@description('Tokens per minute per subscription for azure-openai-token-limit (named value chargeback-tokens-per-minute).')
@minValue(1000)
param tokensPerMinute int = 100000

@description('Request and response bodies longer than this many characters are cut in the envelope (named value chargeback-max-body-chars); keep it above your largest responses, whose usage sits at the end.')
@minValue(65536)
param maxBodyChars int = 16777216

@description('Origin allowed by the API\'s CORS policy (named value chargeback-cors-origin); * allows any origin, without credentials.')
param corsOrigin string = '*'

@description('How APIM authenticates to the forwarder (named value chargeback-forwarder-auth): function-key, or managed-identity for a Function behind App Service Authentication.')
@allowed([
  'function-key'
  'managed-identity'
])
param forwarderAuth string = 'function-key'

@description('Application ID URI of the Function\'s Entra ID registration, e.g. api://chargeback-forwarder (named value chargeback-forwarder-audience); used only with forwarderAuth managed-identity.')
param forwarderAudience string = ''

@description('Resource id of the Log Analytics workspace for gateway and LLM logs.')
param workspaceId string

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

// Product policies live in apim_policies/products/<product>.xml (loadTextContent needs literals).
var products = [
  {
    name: 'genai-free'
    displayName: 'GenAI Free'
    description: 'Trial access with tight token and request limits.'
    approvalRequired: false
    subscriptionsLimit: 1
    policy: loadTextContent('../../../apim_policies/products/genai-free.xml')
  }
  {
    name: 'genai-basic'
    displayName: 'GenAI Basic'
    description: 'Team access with moderate token limits; subscriptions need approval.'
    approvalRequired: true
    subscriptionsLimit: 10
    policy: loadTextContent('../../../apim_policies/products/genai-basic.xml')
  }
  {
    name: 'genai-premium'
    displayName: 'GenAI Premium'
    description: 'Production access with high token limits; subscriptions need approval.'
    approvalRequired: true
    subscriptionsLimit: 50
    policy: loadTextContent('../../../apim_policies/products/genai-premium.xml')
  }
]

// Azure OpenAI operations exposed through the gateway (paths as in the data-plane API).
var operations = [
  {
    name: 'chat-completions'
    displayName: 'Chat completions'
    urlTemplate: '/deployments/{deployment-id}/chat/completions'
  }
  {
    name: 'completions'
    displayName: 'Completions'
    urlTemplate: '/deployments/{deployment-id}/completions'
  }
  {
    name: 'embeddings'
    displayName: 'Embeddings'
    urlTemplate: '/deployments/{deployment-id}/embeddings'
  }
  {
    name: 'image-generations'
    displayName: 'Image generations'
    urlTemplate: '/deployments/{deployment-id}/images/generations'
  }
  {
    name: 'responses'
    displayName: 'Responses'
    urlTemplate: '/responses'
  }
  // The versionless v1 API (deployment in the body's model): what OpenAI SDKs and LibreChat's
  // custom endpoints call with base URL <gateway>/openai/v1.
  {
    name: 'v1-chat-completions'
    displayName: 'Chat completions (v1)'
    urlTemplate: '/v1/chat/completions'
  }
  {
    name: 'v1-embeddings'
    displayName: 'Embeddings (v1)'
    urlTemplate: '/v1/embeddings'
  }
  {
    name: 'v1-responses'
    displayName: 'Responses (v1)'
    urlTemplate: '/v1/responses'
  }
]

resource apim 'Microsoft.ApiManagement/service@2024-05-01' = {
  // checkov:skip=CKV_AZURE_174: the gateway is the public entry point for the teams' clients; access needs a product subscription key
  // checkov:skip=CKV_AZURE_107: no VNet yet (v2 tiers and Developer without VNet injection); the gateway is public by design, see CKV_AZURE_174
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: skuCapacity
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    publicNetworkAccess: 'Enabled'
    customProperties: {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Ciphers.TripleDes168': 'false'
    }
  }
}

// The pool the policy routes to, and how the envelope names the member that served a call: each
// account's host (its custom subdomain) mapped to its backend id.
var backendPoolName = 'aoai-pool'
var openAiDomain = 'openai.azure.com'
var backendHosts = [for backend in openAiBackends: '${backend.accountName}.${openAiDomain}=${backend.id}']

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource forwarderKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: forwarderKeySecretName
}

// Read access to the one secret the gateway needs, not to the whole vault.
resource forwarderKeyReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(forwarderKeySecret.id, apim.id, keyVaultSecretsUserRoleId)
  scope: forwarderKeySecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: apim.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Plain named values read by the policies as {{name}}; infra tests check that every {{name}} in
// apim_policies/ is defined here.
var plainNamedValues = [
  {
    name: 'chargeback-forwarder-url'
    value: forwarderUrl
  }
  {
    name: 'chargeback-forwarder-auth'
    value: forwarderAuth
  }
  {
    name: 'chargeback-forwarder-audience'
    value: empty(forwarderAudience) ? 'not-configured' : forwarderAudience
  }
  {
    name: 'chargeback-backend-pool'
    value: backendPoolName
  }
  {
    name: 'chargeback-backend-retries'
    value: string(max(length(openAiBackends) - 1, 1))
  }
  {
    name: 'chargeback-backend-hosts'
    value: join(backendHosts, ',')
  }
  {
    name: 'chargeback-streaming-mode'
    value: streamingMode
  }
  {
    name: 'chargeback-cost-centers'
    value: join(costCenters, ',')
  }
  {
    name: 'chargeback-require-cost-center'
    value: requireCostCenter ? 'true' : 'false'
  }
  {
    name: 'chargeback-tokens-per-minute'
    value: string(tokensPerMinute)
  }
  {
    name: 'chargeback-max-body-chars'
    value: string(maxBodyChars)
  }
  {
    name: 'chargeback-cors-origin'
    value: corsOrigin
  }
]

resource namedValues 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = [for nv in plainNamedValues: {
  parent: apim
  name: nv.name
  properties: {
    displayName: nv.name
    value: nv.value
    secret: false
  }
}]

// The function key, read by APIM from Key Vault (refreshed every 4 hours after a rotation).
resource forwarderKeyValue 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = {
  parent: apim
  name: 'chargeback-forwarder-key'
  properties: {
    displayName: 'chargeback-forwarder-key'
    secret: true
    keyVault: {
      secretIdentifier: forwarderKeySecretUri
    }
  }
  dependsOn: [
    forwarderKeyReader
  ]
}

module backendPool 'apim-backends.bicep' = {
  name: '${deployment().name}-backends'
  params: {
    apimName: apim.name
    backends: openAiBackends
    poolName: backendPoolName
    circuitBreakerFailureCount: circuitBreakerFailureCount
    circuitBreakerIntervalSeconds: circuitBreakerIntervalSeconds
    circuitBreakerTripSeconds: circuitBreakerTripSeconds
  }
}

module fragments 'apim-fragments.bicep' = {
  name: '${deployment().name}-fragments'
  params: {
    apimName: apim.name
  }
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apim
  name: 'azure-openai'
  properties: {
    displayName: 'Azure OpenAI'
    description: 'Azure OpenAI data-plane API; every call produces a usage envelope for chargeback.'
    path: 'openai'
    protocols: [
      'https'
    ]
    // Overridden by set-backend-service (the pool); the first member stands in as the default.
    serviceUrl: 'https://${openAiBackends[0].accountName}.${openAiDomain}/openai'
    subscriptionRequired: true
    subscriptionKeyParameterNames: {
      header: 'api-key'
      query: 'subscription-key'
    }
    apiType: 'http'
  }
}

resource apiOperations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [for op in operations: {
  parent: api
  name: op.name
  properties: {
    displayName: op.displayName
    method: 'POST'
    urlTemplate: op.urlTemplate
    templateParameters: contains(op.urlTemplate, '{deployment-id}') ? [
      {
        name: 'deployment-id'
        type: 'string'
        required: true
      }
    ] : []
  }
}]

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'xml'
    value: loadTextContent('../../../apim_policies/azure-openai-api.xml')
  }
  dependsOn: [
    backendPool
    fragments
    namedValues
    forwarderKeyValue
  ]
}

resource productResources 'Microsoft.ApiManagement/service/products@2024-05-01' = [for p in products: {
  parent: apim
  name: p.name
  properties: {
    displayName: p.displayName
    description: p.description
    subscriptionRequired: true
    approvalRequired: p.approvalRequired
    subscriptionsLimit: p.subscriptionsLimit
    state: 'published'
  }
}]

resource productApis 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = [for (p, i) in products: {
  parent: productResources[i]
  name: api.name
}]

resource productPolicies 'Microsoft.ApiManagement/service/products/policies@2024-05-01' = [for (p, i) in products: {
  parent: productResources[i]
  name: 'policy'
  properties: {
    format: 'xml'
    value: p.policy
  }
  dependsOn: [
    fragments
    namedValues
  ]
}]

// The built-in Azure Monitor logger; the API diagnostic below sends through it.
resource azureMonitorLogger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apim
  name: 'azuremonitor'
  properties: {
    loggerType: 'azureMonitor'
    isBuffered: true
  }
}

// Token counts per call (ApiManagementGatewayLlmLog), which the pipeline joins on request id for
// passthrough streams. Messages stay off: prompts and completions are never persisted.
resource apiDiagnostics 'Microsoft.ApiManagement/service/apis/diagnostics@2024-06-01-preview' = {
  parent: api
  name: 'azuremonitor'
  properties: {
    loggerId: azureMonitorLogger.id
    alwaysLog: 'allErrors'
    logClientIp: false
    verbosity: 'information'
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
    frontend: {
      request: {
        body: {
          bytes: 0
        }
      }
      response: {
        body: {
          bytes: 0
        }
      }
    }
    backend: {
      request: {
        body: {
          bytes: 0
        }
      }
      response: {
        body: {
          bytes: 0
        }
      }
    }
    largeLanguageModel: {
      logs: 'enabled'
      requests: {
        messages: 'none'
      }
      responses: {
        messages: 'none'
      }
    }
  }
}

// Resource-specific tables (ApiManagementGatewayLogs, ApiManagementGatewayLlmLog) for the alerts
// and for the pipeline's reconciliation query.
resource gatewayLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'gateway-to-log-analytics'
  scope: apim
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'GatewayLogs'
        enabled: true
      }
      {
        category: 'GatewayLlmLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

@description('Name of the API Management service.')
output name string = apim.name

@description('Resource id of the API Management service (alert scope).')
output id string = apim.id

@description('Gateway URL; clients call <gatewayUrl>/openai/...')
output gatewayUrl string = apim.properties.gatewayUrl

@description('Object id of the gateway\'s system-assigned identity.')
output principalId string = apim.identity.principalId

@description('Id of the Azure OpenAI API in API Management.')
output apiId string = api.name

@description('Product ids, in the order free, basic, premium.')
output productIds array = [for p in products: p.name]

@description('Policy fragment ids deployed from apim_policies/fragments/.')
output fragmentIds array = fragments.outputs.fragmentIds

@description('APIM backend id of the Azure OpenAI pool.')
output backendPoolName string = backendPool.outputs.poolName

@description('APIM backend ids of the pool members (backend_id values of deployments.csv).')
output backendIds array = backendPool.outputs.backendIds
