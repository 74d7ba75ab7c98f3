terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.30"
    }
    # Only for what azurerm has no resource for yet: the APIM Azure Monitor logger, the API
    # diagnostic with LLM (token) logging, and backends with circuit breakers and the pool.
    azapi = {
      source  = "Azure/azapi"
      version = "~> 2.4"
    }
  }

  # Add a remote backend for shared state, e.g.
  #   backend "azurerm" {}   with   terraform init -backend-config=...
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
  }
  # Shared keys are disabled on every storage account: data-plane calls must use Entra ID.
  storage_use_azuread = true
}

provider "azapi" {}
