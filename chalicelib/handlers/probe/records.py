"""Probe records in the state table: ``PK = PROBE#<kind>``, ``SK = <sent at>#<probe id>``.

What ``checks`` sends and settles, and what ``mailroom health`` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

PREFIX = "PROBE#"
SUBJECT = "mailroom probe {probe_id}"
# Probe records outlive a week of on-call questions ("when did the probe last pass?").
KEEP_SECONDS = 7 * 86_400
# Newest records read per check: more than the probes a timeout can leave pending.
PENDING_WINDOW = 50


class ProbeKind(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class ProbeStatus(StrEnum):
    SENT = "sent"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class ProbeRecord:
    """One probe: when it left, and once settled, whether and how fast it arrived."""

    kind: ProbeKind
    probe_id: str
    sent_at: float
    status: ProbeStatus = ProbeStatus.SENT
    detail: str = ""
    latency_ms: float | None = None
    checked_at: float | None = None

    @property
    def sort_key(self) -> str:
        return f"{_iso(self.sent_at)}#{self.probe_id}"

    @property
    def subject(self) -> str:
        return SUBJECT.format(probe_id=self.probe_id)


class ProbeStore:
    """Probe records in the state table."""

    def __init__(self, table: str, *, client: Any) -> None:
        self._table = table
        self._client = client

    def put(self, record: ProbeRecord) -> None:
        item: dict[str, Any] = {
            "PK": {"S": PREFIX + record.kind.value},
            "SK": {"S": record.sort_key},
            "probe_id": {"S": record.probe_id},
            "sent_at": {"N": repr(record.sent_at)},
            "status": {"S": record.status.value},
            "detail": {"S": record.detail},
            "expires_at": {"N": str(int(record.sent_at) + KEEP_SECONDS)},
        }
        if record.latency_ms is not None:
            item["latency_ms"] = {"N": repr(round(record.latency_ms, 1))}
        if record.checked_at is not None:
            item["checked_at"] = {"N": repr(record.checked_at)}
        self._client.put_item(TableName=self._table, Item=item)

    def recent(self, kind: ProbeKind, limit: int = PENDING_WINDOW) -> list[ProbeRecord]:
        """The newest ``limit`` probes of ``kind``, newest first."""
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": PREFIX + kind.value}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_record(kind, item) for item in page.get("Items", [])]


def _record(kind: ProbeKind, item: dict[str, Any]) -> ProbeRecord:
    return ProbeRecord(
        kind=kind,
        probe_id=item["probe_id"]["S"],
        sent_at=float(item["sent_at"]["N"]),
        status=ProbeStatus(item["status"]["S"]),
        detail=item.get("detail", {}).get("S", ""),
        latency_ms=float(item["latency_ms"]["N"]) if "latency_ms" in item else None,
        checked_at=float(item["checked_at"]["N"]) if "checked_at" in item else None,
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
