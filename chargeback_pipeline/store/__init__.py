"""The raw envelope store: one layout, a local-folder backend (and Blob, same layout)."""

from __future__ import annotations

from pathlib import Path

from chargeback_pipeline.store.base import EnvelopeStore, StoreError, read_hour
from chargeback_pipeline.store.local import LocalEnvelopeStore

__all__ = ["EnvelopeStore", "LocalEnvelopeStore", "StoreError", "open_store", "read_hour"]


def open_store(spec: str, container: str = "envelopes") -> EnvelopeStore:
    """The store named by CHARGEBACK_STORE: a folder path (Blob connection strings: see README)."""
    if "://" in spec or "=" in spec:
        raise StoreError(
            "CHARGEBACK_STORE names Azure Blob Storage, which this build cannot reach yet; "
            "set it to a local folder path"
        )
    return LocalEnvelopeStore(Path(spec))
