# Log Analytics (APIM gateway and LLM logs, Function and Container Apps logs) and the
# workspace-based Application Insights the forwarding Function reports to.

resource "azurerm_log_analytics_workspace" "this" {
  name                = local.names.workspace
  location            = local.location
  resource_group_name = data.azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# Local (instrumentation key) auth is off: the Function sends telemetry with its managed identity.
resource "azurerm_application_insights" "this" {
  name                          = local.names.app_insights
  location                      = local.location
  resource_group_name           = data.azurerm_resource_group.this.name
  workspace_id                  = azurerm_log_analytics_workspace.this.id
  application_type              = "web"
  local_authentication_disabled = true
  tags                          = local.tags
}
