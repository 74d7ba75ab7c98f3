# Inputs, named and bounded like infra/bicep/main.bicep's parameters (snake_case here).

variable "resource_group_name" {
  description = "Existing resource group that receives every resource of one environment."
  type        = string
}

variable "environment_name" {
  description = "Environment this deployment serves; part of names and tags."
  type        = string
  validation {
    condition     = contains(["dev", "test", "prod"], var.environment_name)
    error_message = "environment_name must be dev, test or prod."
  }
}

variable "name_prefix" {
  description = "Short lowercase name (letters and digits) prefixed to every resource name."
  type        = string
  default     = "chgbk"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.name_prefix))
    error_message = "name_prefix must be 2-8 lowercase letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region of every resource except the Azure OpenAI accounts; null means the resource group's region."
  type        = string
  default     = null
}

variable "openai_location" {
  description = "Primary Azure OpenAI region: the PTU account (when openai_ptu_deployments is set) and the first pay-as-you-go account."
  type        = string
  default     = "eastus"
  validation {
    condition     = length(var.openai_location) > 0
    error_message = "openai_location must not be empty."
  }
}

variable "openai_secondary_location" {
  description = "Secondary Azure OpenAI region: the second pay-as-you-go account, which takes the spill when the primary is throttled or down."
  type        = string
  default     = "westeurope"
  validation {
    condition     = var.openai_secondary_location != var.openai_location
    error_message = "openai_secondary_location must differ from openai_location."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Days Log Analytics keeps gateway, LLM and application logs."
  type        = number
  default     = 30
  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "storage_replication_type" {
  description = "Replication of the data storage account (raw envelopes and the lake)."
  type        = string
  default     = "ZRS"
  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "GZRS", "RAGRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be LRS, ZRS, GRS, GZRS, RAGRS or RAGZRS."
  }
}

variable "raw_container_name" {
  description = "Container of the raw envelopes (CHARGEBACK_CONTAINER)."
  type        = string
  default     = "envelopes"
  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$", var.raw_container_name))
    error_message = "raw_container_name must be a valid blob container name."
  }
}

variable "lake_container_name" {
  description = "Container of the Delta lake (CHARGEBACK_LAKE = az://<container>/chargeback)."
  type        = string
  default     = "lake"
  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$", var.lake_container_name))
    error_message = "lake_container_name must be a valid blob container name."
  }
}

variable "raw_retention_days" {
  description = "Days raw envelopes are kept before the lifecycle rule deletes them; usage_events keeps the tokens."
  type        = number
  default     = 30
  validation {
    condition     = var.raw_retention_days >= 1 && var.raw_retention_days <= 3650
    error_message = "raw_retention_days must be between 1 and 3650."
  }
}

variable "key_vault_soft_delete_retention_days" {
  description = "Days a deleted vault or secret stays recoverable."
  type        = number
  default     = 90
  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90
    error_message = "key_vault_soft_delete_retention_days must be between 7 and 90."
  }
}

variable "key_vault_secret_officer_principal_ids" {
  description = "Object ids (groups) allowed to set Key Vault secrets, e.g. the operator who sets the pseudonym key."
  type        = list(string)
  default     = []
}

variable "openai_deployments" {
  description = "Pay-as-you-go model deployments, created in both regions; names must match dbt_like_sql/seeds/deployments.csv."
  type = list(object({
    name     = string
    model    = string
    version  = string
    sku_name = string
    capacity = number
  }))
  validation {
    condition     = length(var.openai_deployments) > 0
    error_message = "openai_deployments needs at least one deployment."
  }
  validation {
    condition = alltrue([for d in var.openai_deployments : contains(
      ["GlobalStandard", "DataZoneStandard", "Standard", "GlobalProvisionedManaged", "DataZoneProvisionedManaged", "ProvisionedManaged", "GlobalBatch", "DataZoneBatch"],
    d.sku_name)])
    error_message = "openai_deployments[*].sku_name must be an Azure OpenAI deployment type such as GlobalStandard."
  }
}

variable "openai_ptu_deployments" {
  description = "Provisioned (PTU) deployments of a third account in the primary region, at pool priority 1; use the names of openai_deployments so the spill serves the same paths. Empty: no PTU backend."
  type = list(object({
    name     = string
    model    = string
    version  = string
    sku_name = string
    capacity = number
  }))
  default = []
  validation {
    condition     = alltrue([for d in var.openai_ptu_deployments : endswith(d.sku_name, "ProvisionedManaged")])
    error_message = "openai_ptu_deployments[*].sku_name must be a provisioned type such as ProvisionedManaged."
  }
}

variable "openai_primary_weight" {
  description = "Weight of the primary pay-as-you-go account within pool priority 2."
  type        = number
  default     = 1
  validation {
    condition     = var.openai_primary_weight >= 1 && var.openai_primary_weight <= 1000
    error_message = "openai_primary_weight must be between 1 and 1000."
  }
}

variable "openai_secondary_weight" {
  description = "Weight of the secondary pay-as-you-go account within pool priority 2."
  type        = number
  default     = 1
  validation {
    condition     = var.openai_secondary_weight >= 1 && var.openai_secondary_weight <= 1000
    error_message = "openai_secondary_weight must be between 1 and 1000."
  }
}

variable "circuit_breaker_failure_count" {
  description = "Failures (429, 5xx, connection failure, timeout) within circuit_breaker_interval_seconds that trip a pool member; 1 spills a throttled PTU backend at once."
  type        = number
  default     = 1
  validation {
    condition     = var.circuit_breaker_failure_count >= 1 && var.circuit_breaker_failure_count <= 100
    error_message = "circuit_breaker_failure_count must be between 1 and 100."
  }
}

variable "circuit_breaker_interval_seconds" {
  description = "Seconds over which a pool member's failures are counted."
  type        = number
  default     = 10
  validation {
    condition     = var.circuit_breaker_interval_seconds >= 1 && var.circuit_breaker_interval_seconds <= 3600
    error_message = "circuit_breaker_interval_seconds must be between 1 and 3600."
  }
}

variable "circuit_breaker_trip_seconds" {
  description = "Seconds a tripped pool member is skipped when it sent no Retry-After header."
  type        = number
  default     = 10
  validation {
    condition     = var.circuit_breaker_trip_seconds >= 1 && var.circuit_breaker_trip_seconds <= 3600
    error_message = "circuit_breaker_trip_seconds must be between 1 and 3600."
  }
}

variable "apim_sku_name" {
  description = "API Management tier and units as azurerm spells them, e.g. Developer_1, StandardV2_2, Premium_1."
  type        = string
  default     = "Developer_1"
  validation {
    condition     = can(regex("^(Developer|Basic|Standard|Premium|BasicV2|StandardV2|PremiumV2)_([1-9]|1[0-2])$", var.apim_sku_name))
    error_message = "apim_sku_name must be <tier>_<units>, e.g. Developer_1 or StandardV2_2."
  }
}

variable "apim_publisher_email" {
  description = "E-mail address of the API publisher."
  type        = string
  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+$", var.apim_publisher_email))
    error_message = "apim_publisher_email must be an e-mail address."
  }
}

variable "apim_publisher_name" {
  description = "Name of the API publisher."
  type        = string
  validation {
    condition     = length(var.apim_publisher_name) > 0
    error_message = "apim_publisher_name must not be empty."
  }
}

variable "streaming_mode" {
  description = "Streaming mode of the policies: buffered (exact usage) or passthrough (token-by-token, usage reconciled from Log Analytics)."
  type        = string
  default     = "buffered"
  validation {
    condition     = contains(["buffered", "passthrough"], var.streaming_mode)
    error_message = "streaming_mode must be buffered or passthrough."
  }
}

variable "cost_centers" {
  description = "Cost centers accepted in the x-chargeback-cost-center header (\"*\" for any); keep in line with dbt_like_sql/seeds/cost_centers.csv."
  type        = list(string)
  validation {
    condition     = length(var.cost_centers) > 0
    error_message = "cost_centers needs at least one entry."
  }
}

variable "require_cost_center" {
  description = "Refuse calls whose x-chargeback-cost-center is missing or not in cost_centers."
  type        = bool
  default     = false
}

variable "tokens_per_minute" {
  description = "Tokens per minute per APIM subscription (azure-openai-token-limit)."
  type        = number
  default     = 100000
  validation {
    condition     = var.tokens_per_minute >= 1000
    error_message = "tokens_per_minute must be at least 1000."
  }
}

variable "max_body_chars" {
  description = "Envelope bodies longer than this many characters are cut (named value chargeback-max-body-chars)."
  type        = number
  default     = 16777216
  validation {
    condition     = var.max_body_chars >= 65536
    error_message = "max_body_chars must be at least 65536."
  }
}

variable "cors_origin" {
  description = "Origin allowed by the API's CORS policy; * allows any origin without credentials."
  type        = string
  default     = "*"
}

variable "forwarder_auth" {
  description = "How APIM authenticates to the forwarder: function-key, or managed-identity for a Function behind App Service Authentication."
  type        = string
  default     = "function-key"
  validation {
    condition     = contains(["function-key", "managed-identity"], var.forwarder_auth)
    error_message = "forwarder_auth must be function-key or managed-identity."
  }
}

variable "forwarder_audience" {
  description = "Application ID URI of the forwarder's Entra ID registration; only with forwarder_auth managed-identity."
  type        = string
  default     = ""
}

variable "function_maximum_instance_count" {
  description = "Maximum instances of the forwarding Function."
  type        = number
  default     = 100
  validation {
    condition     = var.function_maximum_instance_count >= 40 && var.function_maximum_instance_count <= 1000
    error_message = "function_maximum_instance_count must be between 40 and 1000."
  }
}

variable "function_instance_memory_mb" {
  description = "Memory per Function instance in MB."
  type        = number
  default     = 2048
  validation {
    condition     = contains([2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 2048 or 4096."
  }
}

variable "max_envelope_bytes" {
  description = "Envelopes larger than this are refused with 413 (CHARGEBACK_MAX_ENVELOPE_BYTES)."
  type        = number
  default     = 104857600
  validation {
    condition     = var.max_envelope_bytes >= 1024 && var.max_envelope_bytes <= 104857600
    error_message = "max_envelope_bytes must be between 1024 and 104857600 (the Functions host limit)."
  }
}

variable "postgres_sku_name" {
  description = "PostgreSQL flexible server SKU as azurerm spells it, e.g. B_Standard_B1ms or GP_Standard_D2ds_v5."
  type        = string
  default     = "B_Standard_B1ms"
  validation {
    condition     = can(regex("^(B|GP|MO)_Standard_", var.postgres_sku_name))
    error_message = "postgres_sku_name must look like B_Standard_B1ms, GP_Standard_D2ds_v5 or MO_Standard_E2ds_v5."
  }
}

variable "postgres_storage_mb" {
  description = "PostgreSQL storage in MB."
  type        = number
  default     = 32768
  validation {
    condition     = var.postgres_storage_mb >= 32768
    error_message = "postgres_storage_mb must be at least 32768."
  }
}

variable "postgres_high_availability" {
  description = "Zone-redundant high availability for PostgreSQL (not on Burstable SKUs)."
  type        = bool
  default     = false
}

variable "postgres_geo_redundant_backup" {
  description = "Geo-redundant PostgreSQL backups."
  type        = bool
  default     = false
}

variable "postgres_administrator_password" {
  description = "PostgreSQL administrator password; pass it as TF_VAR_postgres_administrator_password, never in a file."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.postgres_administrator_password) >= 16
    error_message = "postgres_administrator_password must have at least 16 characters."
  }
}

variable "dagster_image" {
  description = "Dagster image (this package + dagster.yaml + workspace.yaml). Empty on the first apply: the apps are created once the image exists and the pseudonym key is set."
  type        = string
  default     = ""
}

variable "container_registry_server" {
  description = "Login server of the registry holding dagster_image (pulled with the Dagster identity, which needs AcrPull)."
  type        = string
  default     = ""
}

variable "dagster_webserver_external_ingress" {
  description = "Expose the Dagster UI outside the Container Apps environment (only behind Container Apps authentication)."
  type        = bool
  default     = false
}

variable "alert_emails" {
  description = "E-mail addresses that receive alerts."
  type        = list(string)
  validation {
    condition     = length(var.alert_emails) > 0
    error_message = "alert_emails needs at least one address."
  }
}

variable "alert_error_rate_percent" {
  description = "Error-rate alert threshold in percent of gateway calls (5xx over 5 minutes)."
  type        = number
  default     = 5
  validation {
    condition     = var.alert_error_rate_percent > 0 && var.alert_error_rate_percent <= 100
    error_message = "alert_error_rate_percent must be between 1 and 100."
  }
}

variable "alert_latency_p95_milliseconds" {
  description = "p95 gateway latency alert threshold in milliseconds (over 15 minutes)."
  type        = number
  default     = 2000
  validation {
    condition     = var.alert_latency_p95_milliseconds >= 100
    error_message = "alert_latency_p95_milliseconds must be at least 100."
  }
}

variable "alert_requests_per_minute" {
  description = "Request-rate alert threshold in requests per minute."
  type        = number
  default     = 1000
  validation {
    condition     = var.alert_requests_per_minute >= 1
    error_message = "alert_requests_per_minute must be positive."
  }
}

variable "alert_failed_auth_count" {
  description = "Failed-authentication alert threshold in calls (401/403) per 5 minutes."
  type        = number
  default     = 20
  validation {
    condition     = var.alert_failed_auth_count >= 1
    error_message = "alert_failed_auth_count must be positive."
  }
}

variable "alert_daily_cost_increase_percent" {
  description = "Daily spend growth alert threshold in percent (last 24 h against the previous 24 h)."
  type        = number
  default     = 20
  validation {
    condition     = var.alert_daily_cost_increase_percent >= 1
    error_message = "alert_daily_cost_increase_percent must be positive."
  }
}
