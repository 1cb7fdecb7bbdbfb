"""Audit records: who did what to which messages, when and why, in the state table.

Items are ``PK = AUDIT#<yyyy-mm-dd>``, ``SK = <iso time>#<random>`` so one Query per day
lists them in order. Written by every destructive operator command (redrive, discard,
quarantine, stop, resume, route and suppression changes) and by the pipelines where they
drop mail on purpose (a verdict drop, a refused bounce). Values are strings; callers pass
hashes, never raw addresses or bodies, in ``details``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Required, TypedDict, Unpack

from chalicelib.platform.settings import Settings

PREFIX = "AUDIT#"
# Audit records outlive the messages they speak of (DLQ retention is 14 days).
DEFAULT_TTL_DAYS = 400


class RecordFields(TypedDict, total=False):
    """Who did it and why (``AuditLog.item``'s keywords; ``actor`` and ``reason`` required)."""

    actor: Required[str]
    reason: Required[str]
    count: int
    details: dict[str, str] | None


@dataclass(frozen=True)
class AuditRecord:
    """One audited action."""

    at: str
    action: str
    actor: str
    reason: str
    count: int = 1
    details: dict[str, str] = field(default_factory=dict)


class AuditLog:
    """Append and list audit records."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any,
        ttl_days: int = DEFAULT_TTL_DAYS,
        clock: Any = time.time,
    ) -> None:
        self._table = table_name
        self._client = client
        self._ttl_seconds = ttl_days * 86_400
        self._clock = clock

    @classmethod
    def for_settings(cls, settings: Settings, client: Any) -> AuditLog:
        return cls(settings.state_table, client=client)

    def item(
        self,
        action: str,
        *,
        actor: str,
        reason: str,
        count: int = 1,
        details: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The DynamoDB item for one record (for callers that batch their writes)."""
        now = self._clock()
        at = datetime.fromtimestamp(now, UTC)
        return {
            "PK": {"S": f"{PREFIX}{at.date().isoformat()}"},
            "SK": {"S": f"{at.isoformat(timespec='microseconds')}#{secrets.token_hex(4)}"},
            "action": {"S": action},
            "actor": {"S": actor or "unknown"},
            "reason": {"S": reason or "-"},
            "count": {"N": str(count)},
            "details": {"M": {k: {"S": str(v)} for k, v in (details or {}).items()}},
            "expires_at": {"N": str(int(now) + self._ttl_seconds)},
        }

    def record(self, action: str, **fields: Unpack[RecordFields]) -> None:
        """Append one record (the item ``item`` builds)."""
        self._client.put_item(TableName=self._table, Item=self.item(action, **fields))

    def list(self, *, days: int = 7, limit: int = 100) -> list[AuditRecord]:
        """The newest ``limit`` records of the last ``days`` days, newest first."""
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        found: list[AuditRecord] = []
        for back in range(days):
            day = (today - timedelta(days=back)).isoformat()
            response = self._client.query(
                TableName=self._table,
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": {"S": f"{PREFIX}{day}"}},
                ScanIndexForward=False,
                Limit=limit - len(found),
            )
            found.extend(_record(item) for item in response.get("Items", []))
            if len(found) >= limit:
                break
        return found


def _record(item: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        at=item["SK"]["S"].split("#", 1)[0],
        action=item.get("action", {}).get("S", ""),
        actor=item.get("actor", {}).get("S", ""),
        reason=item.get("reason", {}).get("S", ""),
        count=int(item.get("count", {}).get("N", "1")),
        details={k: v.get("S", "") for k, v in item.get("details", {}).get("M", {}).items()},
    )
