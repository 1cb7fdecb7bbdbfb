"""Emulated event source mappings: one per pump handler, kept in ``<state_dir>/mappings.json``.

The pump consumes a queue only while its mapping is enabled, so ``mailroom --local stop``
leaves mail waiting in the queue as a disabled mapping does in AWS (nothing is received,
nothing drifts to the DLQ). ``LocalLambda`` answers the Lambda calls the CLI makes
(list/get/update event source mapping, function concurrency) from the same file.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

FILE = "mappings.json"
REPORT_FLAG = "ReportBatchItemFailures"


class MappingStore:
    """The mappings file: read by the pump (cached by modification time), written by the CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[tuple[int, int], dict[str, dict[str, Any]]] | None = None

    def create(
        self, *, function: str, queue_arn: str, region: str, report_batch_item_failures: bool
    ) -> None:
        """Add the (enabled) mapping of ``function``'s queue."""
        with self._lock:
            found = self._read()
            found[function] = {
                "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, queue_arn)),
                "EventSourceArn": queue_arn,
                "FunctionArn": f"arn:aws:lambda:{region}:123456789012:function:{function}",
                "State": "Enabled",
                "FunctionResponseTypes": [REPORT_FLAG] if report_batch_item_failures else [],
                "ScalingConfig": {},
            }
            self._write(found)

    def all(self) -> list[dict[str, Any]]:
        return list(self._read().values())

    def enabled(self, function: str) -> bool:
        """Whether the pump may receive for ``function`` (no mapping recorded: yes)."""
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return True
        # Every write replaces the file: a new inode, even within one mtime tick.
        stamp = (found.st_ino, found.st_mtime_ns)
        if self._seen is None or self._seen[0] != stamp:
            self._seen = (stamp, self._read())
        mapping = self._seen[1].get(function)
        return mapping is None or mapping.get("State") == "Enabled"

    def update(self, mapping_uuid: str, *, enabled: bool) -> dict[str, Any]:
        with self._lock:
            found = self._read()
            for mapping in found.values():
                if mapping["UUID"] == mapping_uuid:
                    mapping["State"] = "Enabled" if enabled else "Disabled"
                    self._write(found)
                    return mapping
        raise KeyError(mapping_uuid)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, found: dict[str, dict[str, Any]]) -> None:
        spare = self.path.with_suffix(".tmp")
        spare.write_text(json.dumps(found, indent=2))
        os.replace(spare, self.path)  # the pump never reads half a file


class LocalLambda:
    """The Lambda client calls ``mailroom stop|resume|health`` make, answered locally."""

    def __init__(self, path: Path) -> None:
        self._store = MappingStore(path)

    def list_event_source_mappings(self, **kwargs: Any) -> dict[str, Any]:
        arn = kwargs.get("EventSourceArn")
        found = [m for m in self._store.all() if arn is None or m["EventSourceArn"] == arn]
        return {"EventSourceMappings": found}

    def get_event_source_mapping(self, *, UUID: str) -> dict[str, Any]:
        for mapping in self._store.all():
            if mapping["UUID"] == UUID:
                return mapping
        raise KeyError(UUID)

    def update_event_source_mapping(self, *, UUID: str, Enabled: bool) -> dict[str, Any]:
        return self._store.update(UUID, enabled=Enabled)

    def get_function_concurrency(self, **_: Any) -> dict[str, Any]:
        return {}  # the pump runs a fixed number of pollers: no reserved concurrency
