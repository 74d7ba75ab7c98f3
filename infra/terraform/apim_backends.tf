# The Azure OpenAI backends of API Management and the pool the API policy sends calls to
# (set-backend-service backend-id = chargeback-backend-pool): one backend per account, each with a
# circuit breaker that trips on throttling (429) and server errors (5xx) and honours Retry-After,
# grouped by priority (1 first: PTU) and weight (the pay-as-you-go spill across regions). azurerm
# has neither circuit breaker rules nor pools, hence azapi (2024-06-01-preview: acceptRetryAfter,
# pool priority and weight).

locals {
  apim_backend_pool = "aoai-pool"
}

# The gateway calls every account with its managed identity (keys are disabled on the accounts).
resource "azurerm_role_assignment" "apim_openai_user" {
  for_each           = local.openai_backends
  scope              = azurerm_cognitive_account.openai[each.key].id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.cognitive_services_openai_user}"
  principal_id       = azurerm_api_management.this.identity[0].principal_id
  principal_type     = "ServicePrincipal"
}

resource "azapi_resource" "apim_openai_backend" {
  for_each  = local.openai_backends
  type      = "Microsoft.ApiManagement/service/backends@2024-06-01-preview"
  name      = each.key
  parent_id = azurerm_api_management.this.id
  body = {
    properties = {
      description = "Azure OpenAI account ${each.value.account_name} (priority ${each.value.priority}, weight ${each.value.weight})"
      type        = "Single"
      protocol    = "http"
      url         = "${azurerm_cognitive_account.openai[each.key].endpoint}openai"
      tls = {
        validateCertificateChain = true
        validateCertificateName  = true
      }
      circuitBreaker = {
        rules = [
          {
            name = "throttled-or-failing"
            failureCondition = {
              count    = var.circuit_breaker_failure_count
              interval = "PT${var.circuit_breaker_interval_seconds}S"
              statusCodeRanges = [
                { min = 429, max = 429 },
                { min = 500, max = 599 },
              ]
              errorReasons = ["BackendConnectionFailure", "Timeout"]
            }
            tripDuration     = "PT${var.circuit_breaker_trip_seconds}S"
            acceptRetryAfter = true
          }
        ]
      }
    }
  }
}

resource "azapi_resource" "apim_openai_pool" {
  type      = "Microsoft.ApiManagement/service/backends@2024-06-01-preview"
  name      = local.apim_backend_pool
  parent_id = azurerm_api_management.this.id
  body = {
    properties = {
      description = "Azure OpenAI pool: PTU first (priority 1), pay-as-you-go spill (priority 2) by weight."
      type        = "Pool"
      pool = {
        services = [
          for id, backend in local.openai_backends : {
            id       = azapi_resource.apim_openai_backend[id].id
            priority = backend.priority
            weight   = backend.weight
          }
        ]
      }
    }
  }
}
