"""The envelope store in Azure Blob Storage: append blobs per writer and minute, same layout."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobPrefix, BlobType, ContainerClient

from chargeback_pipeline.store.base import (
    StoredObject,
    StoreError,
    batch_object_name,
    check_deletable,
    hour_prefix,
    hours_before,
    needs_own_object,
    single_object_name,
    writer_id,
)


class BlobEnvelopeStore:
    """Envelopes as NDJSON append blobs (one append block per envelope) and single block blobs."""

    def __init__(self, container: ContainerClient, writer: str | None = None) -> None:
        self.container = container
        self.writer = writer or writer_id()
        self._parts: dict[str, int] = {}

    def describe(self) -> str:
        # The URL may carry a SAS token in its query; never put that in a message or a log.
        url = self.container.url.split("?", 1)[0]
        return f"blob container {self.container.container_name} at {url}"

    def ensure_container(self) -> None:
        """Create the container when missing (needs a key or Contributor rights)."""
        try:
            self.container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as error:
            raise StoreError(f"cannot create {self.describe()}: {_reason(error)}") from error

    def write_envelope(self, raw: bytes, timestamp: datetime, request_id: str) -> str:
        arrived = datetime.now(UTC)
        try:
            if needs_own_object(raw):
                name = single_object_name(timestamp, request_id, arrived)
                self.container.upload_blob(name, raw, overwrite=False)
            else:
                name = self._append_line(
                    batch_object_name(timestamp, arrived, self.writer), raw + b"\n"
                )
        except AzureError as error:
            raise StoreError(f"cannot write to {self.describe()}: {_reason(error)}") from error
        return name

    def _append_line(self, name: str, line: bytes) -> str:
        """Append to the minute's blob, rolling to `-N` parts past Azure's 50,000-block cap."""
        part = self._parts.get(name, 0)
        while True:
            target = name if part == 0 else name.replace(".ndjson", f"-{part}.ndjson")
            blob = self.container.get_blob_client(target)
            try:
                # One append block per envelope: Azure commits each block whole, never torn.
                blob.append_block(line)
                return target
            except ResourceNotFoundError:
                # Another thread of this writer may have created it first.
                with suppress(ResourceExistsError):
                    blob.create_append_blob(if_none_match="*")
                blob.append_block(line)
                return target
            except HttpResponseError as error:
                if error.error_code != "BlockCountExceedsLimit":
                    raise
                part += 1
                self._parts[name] = part

    def list_hour(self, hour_key: str) -> list[StoredObject]:
        try:
            blobs = self.container.list_blobs(name_starts_with=hour_prefix(hour_key))
            found = [
                StoredObject(b.name, int(b.size), b.last_modified)
                for b in blobs
                if b.name.endswith((".ndjson", ".json"))
                and b.blob_type in (BlobType.APPENDBLOB, BlobType.BLOCKBLOB)
            ]
        except ResourceNotFoundError:
            return []
        except AzureError as error:
            raise StoreError(f"cannot list {self.describe()}: {_reason(error)}") from error
        return sorted(found, key=lambda item: item.name)

    def read_object(self, name: str) -> bytes:
        try:
            return self.container.download_blob(name, max_concurrency=4).readall()
        except AzureError as error:
            raise StoreError(
                f"cannot read {name} from {self.describe()}: {_reason(error)}"
            ) from error

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            download = self.container.download_blob(name, offset=offset, length=length)
            return download.readall()
        except AzureError as error:
            raise StoreError(
                f"cannot read {name} from {self.describe()}: {_reason(error)}"
            ) from error

    def delete_object(self, name: str) -> None:
        check_deletable(name)
        try:
            # Snapshots would keep the envelopes readable, so they go with the blob.
            self.container.delete_blob(name, delete_snapshots="include")
        except ResourceNotFoundError:
            return
        except AzureError as error:
            raise StoreError(
                f"cannot delete {name} from {self.describe()}: {_reason(error)}"
            ) from error

    def list_hours_before(self, cutoff_hour_key: str) -> list[str]:
        return hours_before(self._folders, cutoff_hour_key)

    def _folders(self, prefix: str) -> list[str]:
        """Virtual folders directly under a prefix: one delimiter listing, no recursion."""
        try:
            items = self.container.walk_blobs(name_starts_with=prefix, delimiter="/")
            return [
                item.name[len(prefix) :].rstrip("/")
                for item in items
                if isinstance(item, BlobPrefix)
            ]
        except ResourceNotFoundError:
            return []
        except AzureError as error:
            raise StoreError(f"cannot list {self.describe()}: {_reason(error)}") from error


def _reason(error: AzureError) -> str:
    # The SDK's message can run to pages of HTTP detail; the first line says what happened.
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
