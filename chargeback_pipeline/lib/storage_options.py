"""Delta (object_store) storage options for a lake in Azure Blob Storage, from configuration."""

from __future__ import annotations

EMULATOR_ACCOUNT = "devstoreaccount1"


def is_remote(lake: str) -> bool:
    """Whether the lake root is a cloud URI rather than a local folder."""
    return lake.startswith(("az://", "abfs://", "abfss://", "adl://", "azure://"))


def parse_connection_string(connection_string: str) -> dict[str, str]:
    """`Key=Value;...` pairs of an Azure Storage connection string (values may contain '=')."""
    pairs = (part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return {key.strip(): value.strip() for key, value in pairs}


def delta_storage_options(connection_string: str | None, account: str | None) -> dict[str, str]:
    """Complete options for delta-rs: incomplete ones make it probe managed identity silently."""
    if connection_string:
        parts = parse_connection_string(connection_string)
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            return {"azure_storage_use_emulator": "true"}
        options = {
            "azure_storage_account_name": parts.get("AccountName", account or ""),
            "azure_storage_account_key": parts.get("AccountKey", ""),
        }
        endpoint = parts.get("BlobEndpoint")
        if endpoint:
            options["azure_storage_endpoint"] = endpoint
            if endpoint.startswith("http://"):
                options["allow_http"] = "true"
        return {key: value for key, value in options.items() if value}
    if account:
        # No key: object_store's credential chain (managed identity, workload identity, CLI).
        return {"azure_storage_account_name": account}
    return {}
