# API Management in front of Azure OpenAI: the service and its identity (Key Vault Secrets User on
# the forwarder key), the named values the policies read, the API (routed to the backend pool of
# apim_backends.tf) with apim_policies/azure-openai-api.xml, every fragment in
# apim_policies/fragments/, the genai-free/basic/premium products with their policies, and Azure
# Monitor logging (gateway logs and LLM token logs, never prompt or completion text).

locals {
  policy_dir     = "${path.module}/../../apim_policies"
  fragment_files = fileset("${local.policy_dir}/fragments", "*.xml")
  # Overridden by set-backend-service (the pool); the primary pay-as-you-go account stands in.
  openai_base_url = "${azurerm_cognitive_account.openai[local.openai_primary_id].endpoint}openai"
  # How the envelope names the pool member that served a call: each account's host and backend id.
  apim_backend_hosts = join(",", [for id, backend in local.openai_backends : "${backend.account_name}.openai.azure.com=${id}"])
  forwarder_url      = "https://${azurerm_function_app_flex_consumption.forwarder.default_hostname}/api/envelopes"
  forwarder_key_id   = "${azurerm_key_vault.this.id}/secrets/${local.forwarder_key_secret_name}"

  # Plain named values read by the policies as {{name}}; infra tests check that every {{name}} in
  # apim_policies/ is defined here.
  apim_named_values = {
    "chargeback-forwarder-url"       = local.forwarder_url
    "chargeback-forwarder-auth"      = var.forwarder_auth
    "chargeback-forwarder-audience"  = var.forwarder_audience == "" ? "not-configured" : var.forwarder_audience
    "chargeback-backend-pool"        = local.apim_backend_pool
    "chargeback-backend-retries"     = tostring(max(length(local.openai_backends) - 1, 1))
    "chargeback-backend-hosts"       = local.apim_backend_hosts
    "chargeback-streaming-mode"      = var.streaming_mode
    "chargeback-cost-centers"        = join(",", var.cost_centers)
    "chargeback-require-cost-center" = var.require_cost_center ? "true" : "false"
    "chargeback-tokens-per-minute"   = tostring(var.tokens_per_minute)
    "chargeback-max-body-chars"      = tostring(var.max_body_chars)
    "chargeback-cors-origin"         = var.cors_origin
  }

  apim_products = {
    "genai-free" = {
      display_name        = "GenAI Free"
      description         = "Trial access with tight token and request limits."
      approval_required   = false
      subscriptions_limit = 1
    }
    "genai-basic" = {
      display_name        = "GenAI Basic"
      description         = "Team access with moderate token limits; subscriptions need approval."
      approval_required   = true
      subscriptions_limit = 10
    }
    "genai-premium" = {
      display_name        = "GenAI Premium"
      description         = "Production access with high token limits; subscriptions need approval."
      approval_required   = true
      subscriptions_limit = 50
    }
  }

  # Azure OpenAI operations exposed through the gateway (paths as in the data-plane API).
  apim_operations = {
    "chat-completions"  = { display_name = "Chat completions", url_template = "/deployments/{deployment-id}/chat/completions" }
    "completions"       = { display_name = "Completions", url_template = "/deployments/{deployment-id}/completions" }
    "embeddings"        = { display_name = "Embeddings", url_template = "/deployments/{deployment-id}/embeddings" }
    "image-generations" = { display_name = "Image generations", url_template = "/deployments/{deployment-id}/images/generations" }
    "responses"         = { display_name = "Responses", url_template = "/responses" }
    # The versionless v1 API (deployment in the body's model): what OpenAI SDKs and LibreChat's
    # custom endpoints call with base URL <gateway>/openai/v1.
    "v1-chat-completions" = { display_name = "Chat completions (v1)", url_template = "/v1/chat/completions" }
    "v1-embeddings"       = { display_name = "Embeddings (v1)", url_template = "/v1/embeddings" }
    "v1-responses"        = { display_name = "Responses (v1)", url_template = "/v1/responses" }
  }
}

resource "azurerm_api_management" "this" {
  #checkov:skip=CKV_AZURE_174: the gateway is the public entry point for the teams' clients; access needs a product subscription key
  #checkov:skip=CKV_AZURE_107: no VNet yet (v2 tiers and Developer without VNet injection); the gateway is public by design, see CKV_AZURE_174
  name                          = local.names.apim
  location                      = local.location
  resource_group_name           = data.azurerm_resource_group.this.name
  publisher_email               = var.apim_publisher_email
  publisher_name                = var.apim_publisher_name
  sku_name                      = var.apim_sku_name
  public_network_access_enabled = true
  min_api_version               = "2021-08-01"
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }

  security {
    frontend_tls10_enabled     = false
    frontend_tls11_enabled     = false
    backend_tls10_enabled      = false
    backend_tls11_enabled      = false
    backend_ssl30_enabled      = false
    triple_des_ciphers_enabled = false
  }
}

# Read access to the one secret the gateway needs, not to the whole vault.
resource "azurerm_role_assignment" "apim_forwarder_key_reader" {
  scope              = local.forwarder_key_id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.key_vault_secrets_user}"
  principal_id       = azurerm_api_management.this.identity[0].principal_id
  principal_type     = "ServicePrincipal"

  depends_on = [azurerm_key_vault_secret.forwarder_key]
}

resource "azurerm_api_management_named_value" "plain" {
  for_each            = local.apim_named_values
  name                = each.key
  display_name        = each.key
  api_management_name = azurerm_api_management.this.name
  resource_group_name = data.azurerm_resource_group.this.name
  value               = each.value
  secret              = false
}

# The function key, read by APIM from Key Vault (refreshed every 4 hours after a rotation).
resource "azurerm_api_management_named_value" "forwarder_key" {
  name                = "chargeback-forwarder-key"
  display_name        = "chargeback-forwarder-key"
  api_management_name = azurerm_api_management.this.name
  resource_group_name = data.azurerm_resource_group.this.name
  secret              = true

  value_from_key_vault {
    secret_id = azurerm_key_vault_secret.forwarder_key.versionless_id
  }

  depends_on = [azurerm_role_assignment.apim_forwarder_key_reader]
}

resource "azurerm_api_management_policy_fragment" "chargeback" {
  for_each          = local.fragment_files
  api_management_id = azurerm_api_management.this.id
  name              = trimsuffix(each.value, ".xml")
  format            = "xml"
  description       = "apim_policies/fragments/${each.value}"
  value             = file("${local.policy_dir}/fragments/${each.value}")
}

resource "azurerm_api_management_api" "openai" {
  name                  = "azure-openai"
  api_management_name   = azurerm_api_management.this.name
  resource_group_name   = data.azurerm_resource_group.this.name
  revision              = "1"
  display_name          = "Azure OpenAI"
  description           = "Azure OpenAI data-plane API; every call produces a usage envelope for chargeback."
  path                  = "openai"
  protocols             = ["https"]
  service_url           = local.openai_base_url
  subscription_required = true
  api_type              = "http"

  subscription_key_parameter_names {
    header = "api-key"
    query  = "subscription-key"
  }
}

resource "azurerm_api_management_api_operation" "openai" {
  for_each            = local.apim_operations
  operation_id        = each.key
  api_name            = azurerm_api_management_api.openai.name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = data.azurerm_resource_group.this.name
  display_name        = each.value.display_name
  method              = "POST"
  url_template        = each.value.url_template

  dynamic "template_parameter" {
    for_each = strcontains(each.value.url_template, "{deployment-id}") ? ["deployment-id"] : []
    content {
      name     = template_parameter.value
      type     = "string"
      required = true
    }
  }
}

resource "azurerm_api_management_api_policy" "openai" {
  api_name            = azurerm_api_management_api.openai.name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = data.azurerm_resource_group.this.name
  xml_content         = file("${local.policy_dir}/azure-openai-api.xml")

  depends_on = [
    azapi_resource.apim_openai_pool,
    azurerm_api_management_policy_fragment.chargeback,
    azurerm_api_management_named_value.plain,
    azurerm_api_management_named_value.forwarder_key,
  ]
}

resource "azurerm_api_management_product" "genai" {
  for_each              = local.apim_products
  product_id            = each.key
  api_management_name   = azurerm_api_management.this.name
  resource_group_name   = data.azurerm_resource_group.this.name
  display_name          = each.value.display_name
  description           = each.value.description
  subscription_required = true
  approval_required     = each.value.approval_required
  subscriptions_limit   = each.value.subscriptions_limit
  published             = true
}

resource "azurerm_api_management_product_api" "genai" {
  for_each            = local.apim_products
  product_id          = azurerm_api_management_product.genai[each.key].product_id
  api_name            = azurerm_api_management_api.openai.name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = data.azurerm_resource_group.this.name
}

# Product policies live in apim_policies/products/<product>.xml.
resource "azurerm_api_management_product_policy" "genai" {
  for_each            = local.apim_products
  product_id          = azurerm_api_management_product.genai[each.key].product_id
  api_management_name = azurerm_api_management.this.name
  resource_group_name = data.azurerm_resource_group.this.name
  xml_content         = file("${local.policy_dir}/products/${each.key}.xml")

  depends_on = [
    azurerm_api_management_policy_fragment.chargeback,
    azurerm_api_management_named_value.plain,
  ]
}

# azurerm has no Azure Monitor logger type nor LLM logging settings yet, hence azapi.
resource "azapi_resource" "apim_azure_monitor_logger" {
  type      = "Microsoft.ApiManagement/service/loggers@2024-05-01"
  name      = "azuremonitor"
  parent_id = azurerm_api_management.this.id
  body = {
    properties = {
      loggerType = "azureMonitor"
      isBuffered = true
    }
  }
}

# Token counts per call (ApiManagementGatewayLlmLog), which the pipeline joins on request id for
# passthrough streams. Messages stay off: prompts and completions are never persisted.
resource "azapi_resource" "apim_llm_diagnostic" {
  type      = "Microsoft.ApiManagement/service/apis/diagnostics@2024-06-01-preview"
  name      = "azuremonitor"
  parent_id = "${azurerm_api_management.this.id}/apis/${azurerm_api_management_api.openai.name}"
  body = {
    properties = {
      loggerId    = azapi_resource.apim_azure_monitor_logger.id
      alwaysLog   = "allErrors"
      logClientIp = false
      verbosity   = "information"
      sampling = {
        samplingType = "fixed"
        percentage   = 100
      }
      frontend = {
        request  = { body = { bytes = 0 } }
        response = { body = { bytes = 0 } }
      }
      backend = {
        request  = { body = { bytes = 0 } }
        response = { body = { bytes = 0 } }
      }
      largeLanguageModel = {
        logs      = "enabled"
        requests  = { messages = "none" }
        responses = { messages = "none" }
      }
    }
  }
}

# Resource-specific tables (ApiManagementGatewayLogs, ApiManagementGatewayLlmLog) for the alerts
# and for the pipeline's reconciliation query.
resource "azurerm_monitor_diagnostic_setting" "apim" {
  name                           = "gateway-to-log-analytics"
  target_resource_id             = azurerm_api_management.this.id
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.this.id
  log_analytics_destination_type = "Dedicated"

  enabled_log {
    category = "GatewayLogs"
  }

  enabled_log {
    category = "GatewayLlmLogs"
  }
}
