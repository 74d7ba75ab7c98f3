"""Configuration from environment variables (CONTRACT §2-4), read when asked, never at import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chargeback_pipeline.lib.storage_options import delta_storage_options, is_remote

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_PSEUDONYM_KEY = "DEMO-ONLY-pseudonym-key-not-secret"
"""Set by `chargeback demo` when no key is configured; pseudonyms made with it are not private."""


class ConfigurationError(RuntimeError):
    """A setting is missing or unusable; the message says which variable to set."""


@dataclass(frozen=True)
class Settings:
    """Where things live and the pseudonym key; paths are absolute or URIs."""

    lake: str
    store: str
    container: str
    duckdb_path: Path
    reference_dir: Path
    sql_dir: Path
    pseudonym_key: str | None
    forwarder_key: str | None
    max_envelope_bytes: int
    lake_connection_string: str | None = None
    storage_account: str | None = None
    parse_workers: int = 1
    environment: str = "development"

    def lake_storage_options(self) -> dict[str, str] | None:
        """delta-rs options for a lake in Blob Storage; None for a local folder."""
        if not is_remote(self.lake):
            return None
        return delta_storage_options(self.lake_connection_string, self.storage_account)

    def require_pseudonym_key(self) -> bytes:
        """The HMAC key for user ids; refusing to run beats pseudonyms anyone can recompute."""
        if not self.pseudonym_key:
            raise ConfigurationError(
                "CHARGEBACK_PSEUDONYM_KEY is not set: set it to a long random secret "
                "(for example `openssl rand -hex 32`) kept in your secret store"
            )
        if self.environment == "production" and (
            self.pseudonym_key == DEMO_PSEUDONYM_KEY or len(self.pseudonym_key) < 32
        ):
            raise ConfigurationError(
                "CHARGEBACK_ENV=production needs a secret CHARGEBACK_PSEUDONYM_KEY of at least "
                "32 characters, not the demo key"
            )
        return self.pseudonym_key.encode("utf-8")


def _local(value: str | None, default: str) -> str:
    path = Path(value) if value else PROJECT_ROOT / default
    return str(path if path.is_absolute() else Path.cwd() / path)


def _is_uri(value: str) -> bool:
    return "://" in value or "=" in value


def is_connection_string(spec: str) -> bool:
    """Azure Storage connection strings are `Key=Value;` lists (`UseDevelopmentStorage=true`)."""
    return "=" in spec and "://" not in spec.split("=", 1)[0]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every CHARGEBACK_* variable with its documented default."""
    env = os.environ if env is None else env
    lake = env.get("CHARGEBACK_LAKE") or ""
    store = env.get("CHARGEBACK_STORE") or ""
    return Settings(
        lake=lake if lake and _is_uri(lake) else _local(lake, ".chargeback/lake"),
        store=store if store and _is_uri(store) else _local(store, ".chargeback/store"),
        container=env.get("CHARGEBACK_CONTAINER") or "envelopes",
        duckdb_path=Path(_local(env.get("CHARGEBACK_DUCKDB"), ".chargeback/marts.duckdb")),
        reference_dir=Path(_local(env.get("CHARGEBACK_REFERENCE_DIR"), "dbt_like_sql/seeds")),
        sql_dir=PROJECT_ROOT / "dbt_like_sql",
        pseudonym_key=env.get("CHARGEBACK_PSEUDONYM_KEY") or None,
        forwarder_key=env.get("CHARGEBACK_FORWARDER_KEY") or None,
        max_envelope_bytes=int(env.get("CHARGEBACK_MAX_ENVELOPE_BYTES") or 256 * 1024 * 1024),
        # The lake reuses the store's connection string unless it has its own.
        lake_connection_string=env.get("CHARGEBACK_LAKE_CONNECTION_STRING")
        or (store if store and is_connection_string(store) else None),
        storage_account=env.get("AZURE_STORAGE_ACCOUNT_NAME") or None,
        parse_workers=int(env.get("CHARGEBACK_PARSE_WORKERS") or os.cpu_count() or 1),
        environment=(env.get("CHARGEBACK_ENV") or "development").lower(),
    )
