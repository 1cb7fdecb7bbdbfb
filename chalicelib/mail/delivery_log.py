"""The delivery log: what happened to a correlation id, in order, in the state table.

Items are ``PK = DELIVERY#<correlation_id>``, ``SK = EVENT#<iso time>#<status>`` with string
details (Postmark MessageID, recipient, reason); ``history`` is one Query. Entries expire
with the idempotency records (``expires_at``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict, Unpack

from chalicelib.platform.errors import error_class
from chalicelib.platform.logging import log_event
from chalicelib.platform.settings import Settings

PREFIX = "DELIVERY#"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"
    DEAD_LETTERED = "dead_lettered"
    OPENED = "opened"
    CLICKED = "clicked"
    # Provider feedback beyond Postmark's (SES): dropped inside the provider, or not yet final.
    REJECTED = "rejected"
    RENDERING_FAILED = "rendering_failed"
    DELAYED = "delayed"
    SUBSCRIPTION = "subscription"


class EventOptions(TypedDict, total=False):
    """What an event may carry beyond its id and status (``DeliveryLog.item``'s keywords)."""

    at: datetime | None
    details: Mapping[str, str] | None
    discriminator: str


@dataclass(frozen=True)
class DeliveryEvent:
    at: str
    status: DeliveryStatus
    details: dict[str, str]


class DeliveryLog:
    """Record and read the events of one correlation id."""

    def __init__(self, table_name: str, *, client: Any, ttl_days: int = 30) -> None:
        self._table = table_name
        self._client = client
        self._ttl_seconds = ttl_days * 86_400

    @classmethod
    def for_settings(cls, settings: Settings, client: Any) -> DeliveryLog:
        """The stage's log, whose entries live as long as the idempotency records."""
        return cls(settings.state_table, client=client, ttl_days=settings.idempotency_ttl_days)

    def record(
        self, correlation_id: str, status: DeliveryStatus, **options: Unpack[EventOptions]
    ) -> None:
        """Write one event (the item ``item`` builds)."""
        self._client.put_item(
            TableName=self._table, Item=self.item(correlation_id, status, **options)
        )

    def record_quietly(self, correlation_id: str, status: DeliveryStatus, **details: str) -> None:
        """``record`` where the log is a by-product: the message's fate is already settled
        (queued, sent, dead-lettered), so a failed write is logged, not raised."""
        try:
            self.record(correlation_id, status, details=details)
        except Exception as err:
            log_event(
                "delivery log write failed", status=status.value, error_class=error_class(err)
            )

    def item(
        self,
        correlation_id: str,
        status: DeliveryStatus,
        *,
        at: datetime | None = None,
        details: Mapping[str, str] | None = None,
        discriminator: str = "",
    ) -> dict[str, Any]:
        """The DynamoDB item ``record`` writes, for callers that batch their writes.

        ``discriminator`` tells apart events of the same time and status (one per recipient
        of a provider event), so a redelivered event rewrites its own item.
        """
        when = (at or datetime.now(UTC)).isoformat(timespec="microseconds")
        suffix = f"#{discriminator}" if discriminator else ""
        item: dict[str, Any] = {
            "PK": {"S": PREFIX + correlation_id},
            "SK": {"S": f"EVENT#{when}#{status.value}{suffix}"},
            "status": {"S": status.value},
            "at": {"S": when},
            "expires_at": {"N": str(int(time.time()) + self._ttl_seconds)},
        }
        if details:
            item["details"] = {"M": {k: {"S": v} for k, v in details.items()}}
        return item

    def history(self, correlation_id: str) -> list[DeliveryEvent]:
        """Every event of ``correlation_id``, oldest first."""
        events: list[DeliveryEvent] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :event)",
            "ExpressionAttributeValues": {
                ":pk": {"S": PREFIX + correlation_id},
                ":event": {"S": "EVENT#"},
            },
        }
        while True:
            page = self._client.query(**kwargs)
            events.extend(
                DeliveryEvent(
                    at=item["at"]["S"],
                    status=DeliveryStatus(item["status"]["S"]),
                    details={k: v["S"] for k, v in item.get("details", {}).get("M", {}).items()},
                )
                for item in page.get("Items", [])
            )
            if "LastEvaluatedKey" not in page:
                return events
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
