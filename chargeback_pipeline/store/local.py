"""The envelope store as a local folder laid out exactly like the Blob container."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

from chargeback_pipeline.store.base import (
    StoredObject,
    StoreError,
    batch_object_name,
    hour_prefix,
    needs_own_object,
    single_object_name,
    writer_id,
)


class LocalEnvelopeStore:
    """Append-per-writer NDJSON batches and single objects under `root`."""

    def __init__(self, root: Path, writer: str | None = None) -> None:
        self.root = root
        self.writer = writer or writer_id()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def write_envelope(self, raw: bytes, timestamp: datetime, request_id: str) -> str:
        arrived = datetime.now(UTC)
        try:
            if needs_own_object(raw):
                name = single_object_name(timestamp, request_id, arrived)
                self._write_new(name, raw)
            else:
                name = batch_object_name(timestamp, arrived, self.writer)
                self._append_line(name, raw)
        except OSError as error:
            raise StoreError(f"cannot write to {self.describe()}: {error.strerror}") from error
        return name

    def _append_line(self, name: str, raw: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            # One write per line under an exclusive lock: no torn or interleaved lines.
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(raw + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _write_new(self, name: str, raw: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(raw)
        os.replace(partial, path)

    def list_hour(self, hour_key: str) -> list[StoredObject]:
        folder = self.root / hour_prefix(hour_key)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            if path.suffix in (".ndjson", ".json") and path.is_file():
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                found.append(
                    StoredObject(path.relative_to(self.root).as_posix(), stat.st_size, modified)
                )
        return sorted(found, key=lambda item: item.name)

    def read_object(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as error:
            raise StoreError(
                f"cannot read {name} from {self.describe()}: {error.strerror}"
            ) from error
