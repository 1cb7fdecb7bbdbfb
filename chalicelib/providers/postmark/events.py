"""Postmark's outbound event webhooks (Bounce, SpamComplaint, Delivery, SubscriptionChange,
Open, Click): the fields mailroom acts on; every other field is kept as sent.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from chalicelib.mail import CORRELATION_KEY
from chalicelib.platform.payload import Model, parse


class RecordType(StrEnum):
    BOUNCE = "Bounce"
    SPAM_COMPLAINT = "SpamComplaint"
    DELIVERY = "Delivery"
    SUBSCRIPTION_CHANGE = "SubscriptionChange"
    OPEN = "Open"
    CLICK = "Click"
    UNKNOWN = "Unknown"  # a type Postmark adds later: stored and acknowledged


# Where each record type keeps its address and its time.
_ADDRESS_FIELD = {RecordType.BOUNCE: "email", RecordType.SPAM_COMPLAINT: "email"}
_TIME_FIELDS = ("bounced_at", "delivered_at", "changed_at", "received_at")
# Postmark keeps metadata values to 80 characters; a longer value is not our correlation id.
_MAX_CORRELATION_ID = 80
NOT_AN_EVENT = "not a Postmark event"


class PostmarkEvent(Model):
    """One event webhook body; ``record_type`` is ``UNKNOWN`` for types we do not know."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    # Lengths bound what reaches DynamoDB keys and items: an oversized value is the caller's
    # 400, not a storage error answered 503 and retried by Postmark for hours.
    record_type: RecordType = Field(alias="RecordType")
    raw_record_type: str = Field(default="", max_length=64)
    message_id: str = Field(default="", alias="MessageID", max_length=256)
    event_id: str = Field(default="", alias="ID", max_length=256)
    email: str = Field(default="", alias="Email", max_length=320)
    recipient: str = Field(default="", alias="Recipient", max_length=320)
    type: str = Field(default="", alias="Type", max_length=100)
    inactive: bool = Field(default=False, alias="Inactive")
    suppress_sending: bool | None = Field(default=None, alias="SuppressSending")
    suppression_reason: str = Field(default="", alias="SuppressionReason", max_length=100)
    metadata: dict[str, str] = Field(default_factory=dict, alias="Metadata")
    bounced_at: str = Field(default="", alias="BouncedAt", max_length=64)
    delivered_at: str = Field(default="", alias="DeliveredAt", max_length=64)
    changed_at: str = Field(default="", alias="ChangedAt", max_length=64)
    received_at: str = Field(default="", alias="ReceivedAt", max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # Postmark sends null for fields that do not apply (SuppressionReason, Tag).
            data = {k: v for k, v in data.items() if v is not None}
        if isinstance(data, dict) and isinstance(data.get("RecordType"), str):
            raw = data["RecordType"]
            known = raw in {t.value for t in RecordType} and raw != RecordType.UNKNOWN
            return {**data, "RecordType": raw if known else "Unknown", "raw_record_type": raw}
        return data

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _address_present(self) -> PostmarkEvent:
        if self.record_type is RecordType.UNKNOWN:
            return self
        if not self.address.strip():
            name = "Email" if self.record_type in _ADDRESS_FIELD else "Recipient"
            raise ValueError(f"{name} is required for {self.record_type.value} events")
        if self.record_type is RecordType.SUBSCRIPTION_CHANGE and self.suppress_sending is None:
            raise ValueError("SuppressSending is required for SubscriptionChange events")
        return self

    @property
    def address(self) -> str:
        return self.email if self.record_type in _ADDRESS_FIELD else self.recipient

    @property
    def correlation_id(self) -> str | None:
        found = self.metadata.get(CORRELATION_KEY)
        return found if found and len(found) <= _MAX_CORRELATION_ID else None

    @property
    def occurred_at(self) -> datetime | None:
        """When it happened, from the record type's own timestamp field."""
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            if value:
                try:
                    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                    # In UTC now: year 9999 at -23:59 overflows here, not in a store later.
                    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
                except (ValueError, OverflowError):
                    return None
        return None

    @property
    def evidence(self) -> dict[str, str]:
        """What the receiving server said, as Postmark passed it on (bounces, deliveries)."""
        extra = self.model_extra or {}
        said = "smtp_response" if self.record_type is RecordType.DELIVERY else "diagnostic_code"
        found = {said: extra.get("Details"), "description": extra.get("Description")}
        return {k: str(v)[:500] for k, v in found.items() if isinstance(v, str) and v}

    def dedupe_key(self, body: bytes) -> str:
        """Same event, same key: (type, MessageID, address, ID or time), else the body."""
        parts = [self.raw_record_type, self.message_id, self.address.lower(), self.event_id]
        parts += [getattr(self, name) for name in _TIME_FIELDS]
        if not self.message_id:
            parts.append(hashlib.sha256(body).hexdigest())
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def parse_postmark_event(payload: bytes | str) -> PostmarkEvent:
    """One event webhook body; ``PayloadRejected`` (poison) names what is wrong."""
    return parse(PostmarkEvent, payload, what=NOT_AN_EVENT)
