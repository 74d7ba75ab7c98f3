"""The raw envelope store: one layout, a local-folder backend and an Azure Blob backend."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from chargeback_pipeline.settings import is_connection_string
from chargeback_pipeline.store.base import (
    SLICE_BYTES,
    EnvelopeStore,
    HourSlice,
    StoredEnvelope,
    StoreError,
    hour_slices,
    read_hour,
    read_slice,
)
from chargeback_pipeline.store.local import LocalEnvelopeStore

__all__ = [
    "SLICE_BYTES",
    "EnvelopeStore",
    "HourSlice",
    "LocalEnvelopeStore",
    "StoreError",
    "hour_slices",
    "open_store",
    "read_hour",
    "read_store_slice",
]


def _client_options() -> dict[str, object]:
    """Short SDK retries: the forwarder must answer 503 within seconds so APIM can retry, and
    pipeline runs have their own Dagster RetryPolicy with longer backoff."""
    from azure.storage.blob import ExponentialRetry

    return {
        "connection_timeout": 10,
        "read_timeout": 120,
        "retry_policy": ExponentialRetry(
            initial_backoff=0.5, increment_base=2, retry_total=2, random_jitter_range=0.5
        ),
    }


def open_store(spec: str, container: str = "envelopes") -> EnvelopeStore:
    """The store named by CHARGEBACK_STORE: a folder, a connection string, or `az://container`."""
    if spec.startswith("az://"):
        return _blob_store_with_identity(spec)
    if is_connection_string(spec):
        from azure.storage.blob import ContainerClient

        from chargeback_pipeline.store.blob import BlobEnvelopeStore

        client = ContainerClient.from_connection_string(spec, container, **_client_options())
        store = BlobEnvelopeStore(client)
        store.ensure_container()
        return store
    if "://" in spec:
        raise StoreError(f"CHARGEBACK_STORE scheme not supported: {spec.split('://')[0]}://")
    return LocalEnvelopeStore(Path(spec))


def _blob_store_with_identity(spec: str) -> EnvelopeStore:
    """`az://container` (account from AZURE_STORAGE_ACCOUNT_NAME) or `az://account/container`."""
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import ContainerClient

    from chargeback_pipeline.store.blob import BlobEnvelopeStore

    parsed = urlparse(spec)
    path = parsed.path.strip("/")
    account, container = (parsed.netloc, path) if path else (None, parsed.netloc)
    account = account or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
    if not account or not container:
        raise StoreError(
            "CHARGEBACK_STORE=az://container needs AZURE_STORAGE_ACCOUNT_NAME "
            "(or use az://account/container)"
        )
    client = ContainerClient(
        f"https://{account}.blob.core.windows.net",
        container,
        credential=DefaultAzureCredential(),
        **_client_options(),
    )
    return BlobEnvelopeStore(client)


@cache
def _store_of_process(spec: str, container: str) -> EnvelopeStore:
    return open_store(spec, container)


def read_store_slice(
    spec: str, container: str, part: HourSlice
) -> tuple[list[StoredEnvelope], int]:
    """`read_slice` on the store named by `spec`, opened once per process (parse workers)."""
    return read_slice(_store_of_process(spec, container), part)
