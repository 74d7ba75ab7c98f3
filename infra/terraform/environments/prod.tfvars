# prod: zone- and geo-redundant storage and database, an SLA-backed APIM tier, 90-day logs, the
# default 30-day raw retention. The PostgreSQL password comes from the environment:
#   export TF_VAR_postgres_administrator_password=...   (from the team's secret store)
resource_group_name = "rg-chargeback-prod"
environment_name    = "prod"
name_prefix         = "chgbk"
tags = {
  costCenter  = "CC-3300"
  owner       = "platform-team"
  criticality = "high"
}

log_retention_days                   = 90
storage_replication_type             = "GZRS"
raw_retention_days                   = 30
key_vault_soft_delete_retention_days = 90

openai_location           = "eastus"
openai_secondary_location = "westeurope"
openai_primary_weight     = 3
openai_secondary_weight   = 1
openai_ptu_deployments = [
  { name = "gpt-4o", model = "gpt-4o", version = "2024-08-06", sku_name = "ProvisionedManaged", capacity = 50 },
]

openai_deployments = [
  { name = "gpt-4o", model = "gpt-4o", version = "2024-08-06", sku_name = "GlobalStandard", capacity = 300 },
  { name = "gpt-4o-mini", model = "gpt-4o-mini", version = "2024-07-18", sku_name = "GlobalStandard", capacity = 300 },
  { name = "o4-mini", model = "o4-mini", version = "2025-04-16", sku_name = "GlobalStandard", capacity = 100 },
  { name = "text-embedding-3-large", model = "text-embedding-3-large", version = "1", sku_name = "GlobalStandard", capacity = 300 },
  { name = "text-embedding-3-small", model = "text-embedding-3-small", version = "1", sku_name = "GlobalStandard", capacity = 300 },
]

apim_sku_name        = "StandardV2_2"
apim_publisher_email = "genai-platform@contoso.com"
apim_publisher_name  = "GenAI Platform"
streaming_mode       = "buffered"
cost_centers         = ["CC-2200", "CC-3300", "CC-4100", "CC-5100", "CC-6100", "CC-6200"]
require_cost_center  = true
tokens_per_minute    = 200000

function_maximum_instance_count = 200
postgres_sku_name               = "GP_Standard_D2ds_v5"
postgres_high_availability      = true
postgres_geo_redundant_backup   = true

alert_emails = ["genai-platform@contoso.com", "finops@contoso.com"]
