"""The envelope store as a local folder laid out exactly like the Blob container."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

from chargeback_pipeline.store.base import (
    RAW_PREFIX,
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

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with (self.root / name).open("rb") as file:
                file.seek(offset)
                return file.read(length)
        except OSError as error:
            raise StoreError(
                f"cannot read {name} from {self.describe()}: {error.strerror}"
            ) from error

    def delete_object(self, name: str) -> None:
        check_deletable(name)
        path = self.root / name
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise StoreError(
                f"cannot delete {name} from {self.describe()}: {error.strerror}"
            ) from error
        self._remove_empty_folders(path.parent)

    def _remove_empty_folders(self, folder: Path) -> None:
        """Drop emptied hour, day, month and year folders so later walks stay short."""
        # A writer that made the folder just before rmdir gets an error, answers 503 and the
        # sender retries; only envelopes older than the retention period can land here.
        top = self.root / RAW_PREFIX
        while folder != top and top in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def list_hours_before(self, cutoff_hour_key: str) -> list[str]:
        return hours_before(self._folders, cutoff_hour_key)

    def _folders(self, prefix: str) -> list[str]:
        try:
            with os.scandir(self.root / prefix) as entries:
                return [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StoreError(f"cannot list {self.describe()}: {error.strerror}") from error
