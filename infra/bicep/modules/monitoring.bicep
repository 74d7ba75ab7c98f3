// Log Analytics workspace (APIM gateway and LLM logs, Function and Container Apps logs) and the
// workspace-based Application Insights component the forwarding Function reports to.

@description('Azure region of the workspace and the Application Insights component.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Name of the Log Analytics workspace.')
@minLength(4)
@maxLength(63)
param workspaceName string

@description('Name of the Application Insights component.')
@minLength(1)
@maxLength(260)
param appInsightsName string

@description('Days Log Analytics keeps data interactively (the pipeline reconciles tokens from the last days only).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

// Local (instrumentation key) auth is off: the Function sends telemetry with its managed identity.
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

@description('Resource id of the Log Analytics workspace (diagnostic settings, alert scopes).')
output workspaceId string = workspace.id

@description('Name of the Log Analytics workspace.')
output workspaceName string = workspace.name

@description('Workspace (customer) id that LogsQueryClient queries for ApiManagementGatewayLlmLog.')
output workspaceCustomerId string = workspace.properties.customerId

@description('Name of the Application Insights component.')
output appInsightsName string = appInsights.name

@description('Application Insights connection string (not a secret: ingestion requires Entra ID auth).')
output appInsightsConnectionString string = appInsights.properties.ConnectionString
