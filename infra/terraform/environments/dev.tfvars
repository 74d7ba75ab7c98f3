# dev: smallest SKUs, LRS, short retention. The PostgreSQL password comes from the environment:
#   export TF_VAR_postgres_administrator_password=...
resource_group_name = "rg-chargeback-dev"
environment_name    = "dev"
name_prefix         = "chgbk"
tags = {
  costCenter = "CC-3300"
  owner      = "platform-team"
}

log_retention_days                   = 30
storage_replication_type             = "LRS"
raw_retention_days                   = 7
key_vault_soft_delete_retention_days = 7

openai_location           = "eastus"
openai_secondary_location = "westeurope"
openai_primary_weight     = 1
openai_secondary_weight   = 1

openai_deployments = [
  { name = "gpt-4o-mini", model = "gpt-4o-mini", version = "2024-07-18", sku_name = "GlobalStandard", capacity = 10 },
  { name = "text-embedding-3-small", model = "text-embedding-3-small", version = "1", sku_name = "GlobalStandard", capacity = 10 },
]

apim_sku_name        = "Developer_1"
apim_publisher_email = "genai-platform@contoso.com"
apim_publisher_name  = "GenAI Platform (dev)"
streaming_mode       = "buffered"
cost_centers         = ["*"]
tokens_per_minute    = 20000

function_maximum_instance_count = 40
postgres_sku_name               = "B_Standard_B1ms"

alert_emails = ["genai-platform@contoso.com"]
