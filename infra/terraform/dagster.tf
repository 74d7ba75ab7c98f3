# Dagster on Azure Container Apps: a managed environment logging to Log Analytics, a PostgreSQL
# flexible server for the Dagster instance (runs, events, schedules), a user-assigned identity with
# read access to raw envelopes, write access to the lake, Key Vault secrets and Log Analytics, and
# the webserver, daemon and code-location apps once var.dagster_image is set.

locals {
  dagster_database = "dagster"
  dagster_code_app = "${local.names.dagster_apps}-code"

  # Runs execute in the code location (default run launcher), so it holds the marts file.
  dagster_apps = {
    code = {
      name     = local.dagster_code_app
      command  = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "chargeback_pipeline.definitions"]
      cpu      = 1.0
      memory   = "2Gi"
      port     = 4000
      external = false
      ingress  = true
    }
    daemon = {
      name     = "${local.names.dagster_apps}-daemon"
      command  = ["dagster-daemon", "run", "-w", "/opt/dagster/app/workspace.yaml"]
      cpu      = 0.5
      memory   = "1Gi"
      port     = 0
      external = false
      ingress  = false
    }
    web = {
      name     = "${local.names.dagster_apps}-web"
      command  = ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/dagster/app/workspace.yaml"]
      cpu      = 0.5
      memory   = "1Gi"
      port     = 3000
      external = var.dagster_webserver_external_ingress
      ingress  = true
    }
  }

  # Same settings in the three apps: the Dagster instance (dagster.yaml reads DAGSTER_PG_*), the
  # store and lake (CONTRACT.md section 4), the identity DefaultAzureCredential should use, and
  # CHARGEBACK_ENV=production so that a short or demo pseudonym key is refused.
  dagster_env = {
    CHARGEBACK_ENV                        = "production"
    DAGSTER_HOME                          = "/opt/dagster/dagster_home"
    DAGSTER_PG_HOST                       = azurerm_postgresql_flexible_server.dagster.fqdn
    DAGSTER_PG_DB                         = local.dagster_database
    DAGSTER_PG_USERNAME                   = azurerm_postgresql_flexible_server.dagster.administrator_login
    DAGSTER_CODE_LOCATION_HOST            = local.dagster_code_app
    AZURE_CLIENT_ID                       = azurerm_user_assigned_identity.dagster.client_id
    AZURE_STORAGE_ACCOUNT_NAME            = azurerm_storage_account.data.name
    CHARGEBACK_STORE                      = "az://${azurerm_storage_container.raw.name}"
    CHARGEBACK_CONTAINER                  = azurerm_storage_container.raw.name
    CHARGEBACK_LAKE                       = "az://${azurerm_storage_container.lake.name}/chargeback"
    CHARGEBACK_DUCKDB                     = "/mnt/marts/marts.duckdb"
    CHARGEBACK_LOG_ANALYTICS_WORKSPACE_ID = azurerm_log_analytics_workspace.this.workspace_id
  }
  dagster_secret_env = {
    DAGSTER_PG_PASSWORD      = "pg-password"
    CHARGEBACK_PSEUDONYM_KEY = "pseudonym-key"
  }
}

resource "azurerm_user_assigned_identity" "dagster" {
  name                = local.names.dagster_identity
  location            = local.location
  resource_group_name = data.azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_role_assignment" "dagster_raw_reader" {
  scope              = azurerm_storage_container.raw.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.storage_blob_data_reader}"
  principal_id       = azurerm_user_assigned_identity.dagster.principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_role_assignment" "dagster_lake_writer" {
  scope              = azurerm_storage_container.lake.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.storage_blob_data_contributor}"
  principal_id       = azurerm_user_assigned_identity.dagster.principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_role_assignment" "dagster_secrets_reader" {
  scope              = azurerm_key_vault.this.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.key_vault_secrets_user}"
  principal_id       = azurerm_user_assigned_identity.dagster.principal_id
  principal_type     = "ServicePrincipal"
}

# Reconciliation of passthrough streams reads ApiManagementGatewayLlmLog with LogsQueryClient.
resource "azurerm_role_assignment" "dagster_logs_reader" {
  scope              = azurerm_log_analytics_workspace.this.id
  role_definition_id = "${local.role_definition_prefix}/${local.role_ids.log_analytics_reader}"
  principal_id       = azurerm_user_assigned_identity.dagster.principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_postgresql_flexible_server" "dagster" {
  #checkov:skip=CKV_AZURE_136: geo-redundant backup is var.postgres_geo_redundant_backup (on in prod); the instance holds run history only, the lake holds the data
  #checkov:skip=CKV2_AZURE_57: private endpoint needs a VNet, which this deployment does not have yet
  name                          = local.names.postgres
  location                      = local.location
  resource_group_name           = data.azurerm_resource_group.this.name
  version                       = "16"
  sku_name                      = var.postgres_sku_name
  storage_mb                    = var.postgres_storage_mb
  auto_grow_enabled             = true
  backup_retention_days         = 7
  geo_redundant_backup_enabled  = var.postgres_geo_redundant_backup
  administrator_login           = "dagster"
  administrator_password        = var.postgres_administrator_password
  public_network_access_enabled = true
  tags                          = local.tags

  authentication {
    active_directory_auth_enabled = false
    password_auth_enabled         = true
  }

  dynamic "high_availability" {
    for_each = var.postgres_high_availability ? ["ZoneRedundant"] : []
    content {
      mode = high_availability.value
    }
  }

  lifecycle {
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }
}

resource "azurerm_postgresql_flexible_server_database" "dagster" {
  name      = local.dagster_database
  server_id = azurerm_postgresql_flexible_server.dagster.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# Container Apps without VNet integration leave from Azure addresses; TLS is enforced
# (require_secure_transport is on by default) and the password stays in Container Apps secrets.
resource "azurerm_postgresql_flexible_server_firewall_rule" "azure_services" {
  #checkov:skip=CKV2_AZURE_26: without a VNet, Container Apps egress comes from Azure addresses; the rule admits Azure services only, TLS is required and the password sits in Container Apps secrets; VNet integration replaces it
  name             = "AllowAllAzureServicesAndResourcesWithinAzureIps"
  server_id        = azurerm_postgresql_flexible_server.dagster.id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}

resource "azurerm_container_app_environment" "dagster" {
  name                = local.names.container_environment
  location            = local.location
  resource_group_name = data.azurerm_resource_group.this.name
  logs_destination    = "azure-monitor"
  tags                = local.tags

  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }
}

# Console and system logs go to the workspace through a diagnostic setting (no shared key).
resource "azurerm_monitor_diagnostic_setting" "container_apps" {
  name                       = "container-apps-to-log-analytics"
  target_resource_id         = azurerm_container_app_environment.dagster.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category_group = "allLogs"
  }
}

resource "azurerm_container_app" "dagster" {
  for_each                     = var.dagster_image == "" ? {} : local.dagster_apps
  name                         = each.value.name
  container_app_environment_id = azurerm_container_app_environment.dagster.id
  resource_group_name          = data.azurerm_resource_group.this.name
  revision_mode                = "Single"
  workload_profile_name        = "Consumption"
  tags                         = local.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.dagster.id]
  }

  secret {
    name  = "pg-password"
    value = var.postgres_administrator_password
  }

  secret {
    name                = "pseudonym-key"
    key_vault_secret_id = "${azurerm_key_vault.this.vault_uri}secrets/${local.pseudonym_key_secret_name}"
    identity            = azurerm_user_assigned_identity.dagster.id
  }

  dynamic "registry" {
    for_each = var.container_registry_server == "" ? [] : [var.container_registry_server]
    content {
      server   = registry.value
      identity = azurerm_user_assigned_identity.dagster.id
    }
  }

  dynamic "ingress" {
    for_each = each.value.ingress ? [each.value] : []
    content {
      external_enabled           = ingress.value.external
      target_port                = ingress.value.port
      transport                  = each.key == "code" ? "http2" : "auto"
      allow_insecure_connections = false
      traffic_weight {
        latest_revision = true
        percentage      = 100
      }
    }
  }

  template {
    min_replicas = 1
    max_replicas = 1

    container {
      name    = each.key
      image   = var.dagster_image
      command = each.value.command
      cpu     = each.value.cpu
      memory  = each.value.memory

      dynamic "env" {
        for_each = local.dagster_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.dagster_secret_env
        content {
          name        = env.key
          secret_name = env.value
        }
      }

      dynamic "volume_mounts" {
        for_each = each.key == "code" ? ["marts"] : []
        content {
          name = volume_mounts.value
          path = "/mnt/marts"
        }
      }
    }

    dynamic "volume" {
      for_each = each.key == "code" ? ["marts"] : []
      content {
        name         = volume.value
        storage_type = "EmptyDir"
      }
    }
  }

  depends_on = [
    azurerm_role_assignment.dagster_raw_reader,
    azurerm_role_assignment.dagster_lake_writer,
    azurerm_role_assignment.dagster_secrets_reader,
    azurerm_role_assignment.dagster_logs_reader,
    azurerm_postgresql_flexible_server_database.dagster,
  ]
}
