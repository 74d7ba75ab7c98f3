// Dagster on Azure Container Apps: a managed environment logging to Log Analytics, a PostgreSQL
// flexible server for the Dagster instance (runs, events, schedules), a user-assigned identity with
// read access to raw envelopes, write access to the lake, Key Vault secrets and Log Analytics, and
// the webserver, daemon and code-location apps once an image is given.

@description('Azure region of every resource of this module.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Name of the Container Apps managed environment.')
param environmentName string

@description('Name prefix of the three container apps (<prefix>-web, -daemon, -code); at most 24 characters.')
@minLength(2)
@maxLength(24)
param appNamePrefix string

@description('Name of the user-assigned identity the apps run as.')
param identityName string

@description('Name of the PostgreSQL flexible server, globally unique.')
@minLength(3)
@maxLength(63)
param postgresServerName string

@description('PostgreSQL compute SKU, e.g. Standard_B1ms (Burstable) or Standard_D2ds_v5 (GeneralPurpose).')
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

@description('Zone-redundant high availability for PostgreSQL (not available on Burstable).')
param postgresHighAvailability bool = false

@description('Geo-redundant PostgreSQL backups.')
param postgresGeoRedundantBackup bool = false

@description('Days PostgreSQL keeps backups.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('PostgreSQL administrator login (used by Dagster).')
@minLength(1)
param postgresAdministratorLogin string = 'dagster'

@description('PostgreSQL administrator password; supply it at deployment time, never in a file.')
@secure()
@minLength(16)
param postgresAdministratorPassword string

@description('Name of the Log Analytics workspace (monitoring module).')
param workspaceName string

@description('Name of the data storage account (storage module).')
param dataStorageAccountName string

@description('Name of the raw envelope container (read-only for Dagster).')
param rawContainerName string

@description('Name of the lake container (Delta tables written by Dagster).')
param lakeContainerName string

@description('Name of the Key Vault (keyvault module).')
param keyVaultName string

@description('Versionless URI of the pseudonym key secret (set by the operator before the apps start).')
param pseudonymKeySecretUri string

@description('Container image with this package, dagster.yaml and workspace.yaml, e.g. myregistry.azurecr.io/chargeback:1.0. Empty: create everything but the apps.')
param image string = ''

@description('Login server of the registry holding the image, pulled with the identity (grant it AcrPull); empty for a public image.')
param containerRegistryServer string = ''

@description('Expose the Dagster UI outside the environment. The UI has no login of its own: enable only behind Container Apps authentication.')
param webserverExternalIngress bool = false

var databaseName = 'dagster'
var deployApps = !empty(image)
var webAppName = '${appNamePrefix}-web'
var daemonAppName = '${appNamePrefix}-daemon'
var codeAppName = '${appNamePrefix}-code'
// Built-in role ids
var storageBlobDataReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
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

resource lakeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: dataBlobService
  name: lakeContainerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource rawReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rawContainer.id, identity.id, storageBlobDataReaderRoleId)
  scope: rawContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReaderRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource lakeWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lakeContainer.id, identity.id, storageBlobDataContributorRoleId)
  scope: lakeContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Reconciliation of passthrough streams reads ApiManagementGatewayLlmLog with LogsQueryClient.
resource logsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, identity.id, logAnalyticsReaderRoleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: postgresServerName
  location: location
  tags: tags
  sku: {
    name: postgresSkuName
    tier: postgresSkuTier
  }
  properties: {
    version: '16'
    administratorLogin: postgresAdministratorLogin
    administratorLoginPassword: postgresAdministratorPassword
    authConfig: {
      activeDirectoryAuth: 'Disabled'
      passwordAuth: 'Enabled'
    }
    storage: {
      storageSizeGB: postgresStorageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: postgresBackupRetentionDays
      geoRedundantBackup: postgresGeoRedundantBackup ? 'Enabled' : 'Disabled'
    }
    highAvailability: {
      mode: postgresHighAvailability ? 'ZoneRedundant' : 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Container Apps without VNet integration leave from Azure addresses; TLS is enforced
// (require_secure_transport is on by default) and the password never leaves Container Apps secrets.
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: postgres
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
  }
}

// Console and system logs go to the workspace through a diagnostic setting (no shared key).
resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'container-apps-to-log-analytics'
  scope: managedEnvironment
  properties: {
    workspaceId: workspace.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

var registries = empty(containerRegistryServer) ? [] : [
  {
    server: containerRegistryServer
    identity: identity.id
  }
]

var secrets = [
  {
    name: 'pg-password'
    value: postgresAdministratorPassword
  }
  {
    name: 'pseudonym-key'
    keyVaultUrl: pseudonymKeySecretUri
    identity: identity.id
  }
]

// Same settings in the three apps: the Dagster instance (dagster.yaml reads DAGSTER_PG_*), the
// store and lake (CONTRACT.md section 4), the identity DefaultAzureCredential should use, and
// CHARGEBACK_ENV=production so that a short or demo pseudonym key is refused.
var env = [
  {
    name: 'CHARGEBACK_ENV'
    value: 'production'
  }
  {
    name: 'DAGSTER_HOME'
    value: '/opt/dagster/dagster_home'
  }
  {
    name: 'DAGSTER_PG_HOST'
    value: postgres.properties.fullyQualifiedDomainName
  }
  {
    name: 'DAGSTER_PG_DB'
    value: databaseName
  }
  {
    name: 'DAGSTER_PG_USERNAME'
    value: postgresAdministratorLogin
  }
  {
    name: 'DAGSTER_PG_PASSWORD'
    secretRef: 'pg-password'
  }
  {
    name: 'DAGSTER_CODE_LOCATION_HOST'
    value: codeAppName
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'AZURE_STORAGE_ACCOUNT_NAME'
    value: dataStorageAccountName
  }
  {
    name: 'CHARGEBACK_STORE'
    value: 'az://${rawContainerName}'
  }
  {
    name: 'CHARGEBACK_CONTAINER'
    value: rawContainerName
  }
  {
    name: 'CHARGEBACK_LAKE'
    value: 'az://${lakeContainerName}/chargeback'
  }
  {
    name: 'CHARGEBACK_DUCKDB'
    value: '/mnt/marts/marts.duckdb'
  }
  {
    name: 'CHARGEBACK_LOG_ANALYTICS_WORKSPACE_ID'
    value: workspace.properties.customerId
  }
  {
    name: 'CHARGEBACK_PSEUDONYM_KEY'
    secretRef: 'pseudonym-key'
  }
]

var identityConfig = {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${identity.id}': {}
  }
}

// Runs execute in the code location (default run launcher), so it holds the marts file.
resource codeApp 'Microsoft.App/containerApps@2024-03-01' = if (deployApps) {
  name: codeAppName
  location: location
  tags: tags
  identity: identityConfig
  properties: {
    environmentId: managedEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: secrets
      registries: registries
      ingress: {
        external: false
        targetPort: 4000
        transport: 'http2'
        allowInsecure: false
      }
    }
    template: {
      containers: [
        {
          name: 'code'
          image: image
          command: [
            'dagster'
            'code-server'
            'start'
            '-h'
            '0.0.0.0'
            '-p'
            '4000'
            '-m'
            'chargeback_pipeline.definitions'
          ]
          env: env
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          volumeMounts: [
            {
              volumeName: 'marts'
              mountPath: '/mnt/marts'
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'marts'
          storageType: 'EmptyDir'
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
  dependsOn: [
    rawReader
    lakeWriter
    secretsReader
    logsReader
    database
  ]
}

resource daemonApp 'Microsoft.App/containerApps@2024-03-01' = if (deployApps) {
  name: daemonAppName
  location: location
  tags: tags
  identity: identityConfig
  properties: {
    environmentId: managedEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: secrets
      registries: registries
    }
    template: {
      containers: [
        {
          name: 'daemon'
          image: image
          command: [
            'dagster-daemon'
            'run'
            '-w'
            '/opt/dagster/app/workspace.yaml'
          ]
          env: env
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
  dependsOn: [
    codeApp
  ]
}

resource webApp 'Microsoft.App/containerApps@2024-03-01' = if (deployApps) {
  name: webAppName
  location: location
  tags: tags
  identity: identityConfig
  properties: {
    environmentId: managedEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: secrets
      registries: registries
      ingress: {
        external: webserverExternalIngress
        targetPort: 3000
        transport: 'auto'
        allowInsecure: false
      }
    }
    template: {
      containers: [
        {
          name: 'webserver'
          image: image
          command: [
            'dagster-webserver'
            '-h'
            '0.0.0.0'
            '-p'
            '3000'
            '-w'
            '/opt/dagster/app/workspace.yaml'
          ]
          env: env
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
  dependsOn: [
    codeApp
  ]
}

@description('Resource id of the Dagster identity.')
output identityId string = identity.id

@description('Object id of the Dagster identity (grant it AcrPull on the registry).')
output identityPrincipalId string = identity.properties.principalId

@description('Client id of the Dagster identity (AZURE_CLIENT_ID).')
output identityClientId string = identity.properties.clientId

@description('Name of the Container Apps environment.')
output environmentName string = managedEnvironment.name

@description('Default domain of the Container Apps environment.')
output environmentDefaultDomain string = managedEnvironment.properties.defaultDomain

@description('PostgreSQL host name (DAGSTER_PG_HOST).')
output postgresHost string = postgres.properties.fullyQualifiedDomainName

@description('Names of the webserver, daemon and code-location apps.')
output appNames array = [
  webAppName
  daemonAppName
  codeAppName
]
