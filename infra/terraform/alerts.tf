# Alerts on the gateway: error rate, p95 latency, request rate, failed authentication (gateway and
# forwarder) and day-over-day growth of token spend. Log alerts query the resource-specific tables
# that the APIM diagnostic setting fills; tables appear with the first logs, so queries are not
# validated at creation.

locals {
  log_alerts = {
    "error-rate" = {
      description = "More than ${var.alert_error_rate_percent}% of gateway calls failed with 5xx in 5 minutes."
      severity    = 1
      frequency   = "PT5M"
      window      = "PT5M"
      query       = <<-KQL
        ApiManagementGatewayLogs
        | summarize total = count(), failed = countif(ResponseCode >= 500)
        | extend error_rate_percent = iff(total == 0, 0.0, 100.0 * failed / total)
        | where error_rate_percent > ${var.alert_error_rate_percent}
      KQL
    }
    "latency-p95" = {
      description = "p95 gateway time above ${var.alert_latency_p95_milliseconds} ms over 15 minutes."
      severity    = 2
      frequency   = "PT5M"
      window      = "PT15M"
      query       = <<-KQL
        ApiManagementGatewayLogs
        | summarize p95_ms = percentile(TotalTime, 95)
        | where p95_ms > ${var.alert_latency_p95_milliseconds}
      KQL
    }
    "failed-auth" = {
      description = "More than ${var.alert_failed_auth_count} calls failed authentication (gateway or forwarder) in 5 minutes."
      severity    = 1
      frequency   = "PT5M"
      window      = "PT5M"
      query       = <<-KQL
        union isfuzzy=true
          (ApiManagementGatewayLogs | where ResponseCode in (401, 403) | project TimeGenerated),
          (AppRequests | where AppRoleName =~ "${local.names.function_app}" and ResultCode in ("401", "403") | project TimeGenerated)
        | summarize failures = count()
        | where failures > ${var.alert_failed_auth_count}
      KQL
    }
    # Token volume moves with cost; chargeback_daily has the exact money.
    "daily-cost-increase" = {
      description = "Tokens in the last 24 hours exceed the previous 24 hours by more than ${var.alert_daily_cost_increase_percent}%."
      severity    = 2
      frequency   = "P1D"
      window      = "P2D"
      query       = <<-KQL
        let current = toscalar(ApiManagementGatewayLlmLog
          | where TimeGenerated > ago(1d) | summarize sum(TotalTokens));
        let previous = toscalar(ApiManagementGatewayLlmLog
          | where TimeGenerated between (ago(2d) .. ago(1d)) | summarize sum(TotalTokens));
        print current_tokens = current, previous_tokens = previous
        | where previous_tokens > 0 and current_tokens > previous_tokens * (100 + ${var.alert_daily_cost_increase_percent}) / 100.0
      KQL
    }
  }
}

resource "azurerm_monitor_action_group" "chargeback" {
  name                = "${local.names.alerts}-ag"
  resource_group_name = data.azurerm_resource_group.this.name
  short_name          = substr(replace(local.names.alerts, "-", ""), 0, 12)
  tags                = local.tags

  dynamic "email_receiver" {
    for_each = { for i, email in var.alert_emails : i => email }
    content {
      name                    = "email-${email_receiver.key}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }
}

resource "azurerm_monitor_metric_alert" "requests_per_minute" {
  name                = "${local.names.alerts}-requests-per-minute"
  resource_group_name = data.azurerm_resource_group.this.name
  scopes              = [azurerm_api_management.this.id]
  description         = "More than ${var.alert_requests_per_minute} gateway requests in one minute."
  severity            = 2
  frequency           = "PT1M"
  window_size         = "PT1M"
  tags                = local.tags

  criteria {
    metric_namespace = "Microsoft.ApiManagement/service"
    metric_name      = "Requests"
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = var.alert_requests_per_minute
  }

  action {
    action_group_id = azurerm_monitor_action_group.chargeback.id
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "chargeback" {
  for_each                = local.log_alerts
  name                    = "${local.names.alerts}-${each.key}"
  location                = local.location
  resource_group_name     = data.azurerm_resource_group.this.name
  description             = each.value.description
  severity                = each.value.severity
  evaluation_frequency    = each.value.frequency
  window_duration         = each.value.window
  scopes                  = [azurerm_log_analytics_workspace.this.id]
  skip_query_validation   = true
  auto_mitigation_enabled = true
  tags                    = local.tags

  criteria {
    query                   = each.value.query
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
    failing_periods {
      number_of_evaluation_periods             = 1
      minimum_failing_periods_to_trigger_alert = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.chargeback.id]
  }
}
