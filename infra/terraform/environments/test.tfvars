# test: production-like topology on small SKUs; cost centers enforced as in prod.
#   export TF_VAR_postgres_administrator_password=...
resource_group_name = "rg-chargeback-test"
environment_name    = "test"
name_prefix         = "chgbk"
tags = {
  costCenter = "CC-3300"
  owner      = "platform-team"
}

log_retention_days                   = 30
storage_replication_type             = "ZRS"
raw_retention_days                   = 14
key_vault_soft_delete_retention_days = 30

openai_location           = "eastus"
openai_secondary_location = "westeurope"
openai_primary_weight     = 1
openai_secondary_weight   = 1

openai_deployments = [
  { name = "gpt-4o", model = "gpt-4o", version = "2024-08-06", sku_name = "GlobalStandard", capacity = 30 },
  { name = "gpt-4o-mini", model = "gpt-4o-mini", version = "2024-07-18", sku_name = "GlobalStandard", capacity = 30 },
  { name = "text-embedding-3-small", model = "text-embedding-3-small", version = "1", sku_name = "GlobalStandard", capacity = 30 },
]

apim_sku_name        = "Developer_1"
apim_publisher_email = "genai-platform@contoso.com"
apim_publisher_name  = "GenAI Platform (test)"
streaming_mode       = "buffered"
cost_centers         = ["CC-2200", "CC-3300", "CC-4100", "CC-5100", "CC-6100", "CC-6200"]
require_cost_center  = true
tokens_per_minute    = 50000

function_maximum_instance_count = 40
postgres_sku_name               = "B_Standard_B2s"

alert_emails = ["genai-platform@contoso.com"]
