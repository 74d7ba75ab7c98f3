"""Typed Dagster resources over the CHARGEBACK_* settings; fields override the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import dagster as dg

from chargeback_pipeline.lib.reference import ReferenceData, ReferenceDataError, load_reference
from chargeback_pipeline.settings import ConfigurationError, Settings, load_settings
from chargeback_pipeline.store import EnvelopeStore, open_store


class ChargebackSettings(dg.ConfigurableResource):
    """Where envelopes, the lake, the marts and the reference data live (unset = environment)."""

    lake: str | None = None
    store: str | None = None
    duckdb_path: str | None = None
    reference_dir: str | None = None
    pseudonym_key: str | None = None

    def resolve(self) -> Settings:
        """The environment's settings with this resource's explicit fields on top."""
        base = load_settings()
        overrides: dict[str, object] = {
            "lake": self.lake,
            "store": self.store,
            "duckdb_path": Path(self.duckdb_path) if self.duckdb_path else None,
            "reference_dir": Path(self.reference_dir) if self.reference_dir else None,
            "pseudonym_key": self.pseudonym_key,
        }
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def envelope_store(self) -> EnvelopeStore:
        settings = self.resolve()
        return open_store(settings.store, settings.container)

    def reference(self) -> ReferenceData:
        return load_reference(self.resolve().reference_dir)

    def table(self, name: str) -> str:
        return f"{self.resolve().lake.rstrip('/')}/{name}"

    def lake_options(self) -> dict[str, str] | None:
        """Storage options for the lake's Delta tables, creating its container when it can."""
        settings = self.resolve()
        options = settings.lake_storage_options()
        if options is not None and settings.lake_connection_string:
            ensure_container(settings.lake_connection_string, lake_container(settings.lake))
        return options


@contextmanager
def fail_fast_on_bad_setup() -> Iterator[None]:
    """Configuration and reference-data errors fail the step at once: a retry cannot fix them."""
    try:
        yield
    except (ConfigurationError, ReferenceDataError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


def lake_container(lake: str) -> str:
    """The container of an `az://container/path` or `abfss://container@account...` lake."""
    location = lake.split("://", 1)[1]
    return location.split("/", 1)[0].split("@", 1)[0]


def ensure_container(connection_string: str, container: str) -> None:
    """Create a Blob container if it is missing (delta-rs writes into existing containers only)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(connection_string, container)
    with suppress(ResourceExistsError):
        client.create_container()
