// Alerts on the gateway: error rate, p95 latency, request rate, failed authentication (gateway and
// forwarder) and day-over-day growth of token spend. Log alerts query the resource-specific tables
// that the apim module's diagnostic setting fills.

@description('Azure region of the log alert rules.')
param location string

@description('Tags applied to every resource of this module.')
param tags object = {}

@description('Name prefix of the action group and the alert rules.')
@minLength(2)
@maxLength(40)
param namePrefix string

@description('E-mail addresses notified by every alert.')
@minLength(1)
param alertEmails array

@description('Resource id of the API Management service.')
param apimId string

@description('Resource id of the Log Analytics workspace.')
param workspaceId string

@description('Name of the forwarding Function app (its 401s count as failed authentication).')
param functionAppName string

@description('Alert when more than this percentage of gateway calls fail with 5xx over 5 minutes.')
@minValue(1)
@maxValue(100)
param errorRatePercent int = 5

@description('Alert when the p95 of gateway time exceeds this many milliseconds over 15 minutes.')
@minValue(100)
param latencyP95Milliseconds int = 2000

@description('Alert when the gateway serves more than this many requests in one minute.')
@minValue(1)
param requestsPerMinute int = 1000

@description('Alert when more than this many calls fail authentication (401/403) in 5 minutes.')
@minValue(1)
param failedAuthCount int = 20

@description('Alert when the last 24 hours of token spend exceed the previous 24 hours by more than this percentage.')
@minValue(1)
param dailyCostIncreasePercent int = 20

var errorRateQuery = format('''
ApiManagementGatewayLogs
| summarize total = count(), failed = countif(ResponseCode >= 500)
| extend error_rate_percent = iff(total == 0, 0.0, 100.0 * failed / total)
| where error_rate_percent > {0}
''', errorRatePercent)

var latencyQuery = format('''
ApiManagementGatewayLogs
| summarize p95_ms = percentile(TotalTime, 95)
| where p95_ms > {0}
''', latencyP95Milliseconds)

var failedAuthQuery = format('''
union isfuzzy=true
  (ApiManagementGatewayLogs | where ResponseCode in (401, 403) | project TimeGenerated),
  (AppRequests | where AppRoleName =~ "{0}" and ResultCode in ("401", "403") | project TimeGenerated)
| summarize failures = count()
| where failures > {1}
''', functionAppName, failedAuthCount)

// Token volume priced per model would need the price book; the gateway's token counts move with
// cost, so growth of tokens is the early warning and chargeback_daily has the exact money.
var dailyCostQuery = format('''
let current = toscalar(ApiManagementGatewayLlmLog
  | where TimeGenerated > ago(1d) | summarize sum(TotalTokens));
let previous = toscalar(ApiManagementGatewayLlmLog
  | where TimeGenerated between (ago(2d) .. ago(1d)) | summarize sum(TotalTokens));
print current_tokens = current, previous_tokens = previous
| where previous_tokens > 0 and current_tokens > previous_tokens * (100 + {0}) / 100.0
''', dailyCostIncreasePercent)

var logAlerts = [
  {
    name: 'error-rate'
    description: 'More than ${errorRatePercent}% of gateway calls failed with 5xx in 5 minutes.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT5M'
    query: errorRateQuery
  }
  {
    name: 'latency-p95'
    description: 'p95 gateway time above ${latencyP95Milliseconds} ms over 15 minutes.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: latencyQuery
  }
  {
    name: 'failed-auth'
    description: 'More than ${failedAuthCount} calls failed authentication (gateway or forwarder) in 5 minutes.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT5M'
    query: failedAuthQuery
  }
  {
    name: 'daily-cost-increase'
    description: 'Tokens in the last 24 hours exceed the previous 24 hours by more than ${dailyCostIncreasePercent}%.'
    severity: 2
    frequency: 'P1D'
    window: 'P2D'
    query: dailyCostQuery
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-ag'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(replace(namePrefix, '-', ''), 12)
    enabled: true
    emailReceivers: [for (email, i) in alertEmails: {
      name: 'email-${i}'
      emailAddress: email
      useCommonAlertSchema: true
    }]
  }
}

resource requestRate 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-requests-per-minute'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than ${requestsPerMinute} gateway requests in one minute.'
    severity: 2
    enabled: true
    scopes: [
      apimId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT1M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'requests'
          metricNamespace: 'Microsoft.ApiManagement/service'
          metricName: 'Requests'
          operator: 'GreaterThan'
          threshold: requestsPerMinute
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// Tables appear with the first logs, so the queries are not validated at creation.
resource logAlertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for a in logAlerts: {
  name: '${namePrefix}-${a.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    description: a.description
    severity: a.severity
    enabled: true
    evaluationFrequency: a.frequency
    windowSize: a.window
    scopes: [
      workspaceId
    ]
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: a.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

@description('Resource id of the action group.')
output actionGroupId string = actionGroup.id

@description('Name of the request-rate metric alert.')
output requestRateAlertName string = requestRate.name

@description('Names of the log alert rules.')
output logAlertRuleNames array = [for a in logAlerts: '${namePrefix}-${a.name}']
