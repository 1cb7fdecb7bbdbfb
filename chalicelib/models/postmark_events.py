"""Postmark's outbound event webhooks (Bounce, SpamComplaint, Delivery, SubscriptionChange,
Open, Click): the fields mailroom acts on; every other field is kept as sent.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.models.outbound import CORRELATION_KEY


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


class PostmarkEvent(BaseModel):
    """One event webhook body; ``record_type`` is ``UNKNOWN`` for types we do not know."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    record_type: RecordType = Field(alias="RecordType")
    raw_record_type: str = ""
    message_id: str = Field(default="", alias="MessageID")
    event_id: str = Field(default="", alias="ID")
    email: str = Field(default="", alias="Email")
    recipient: str = Field(default="", alias="Recipient")
    type: str = Field(default="", alias="Type")
    inactive: bool = Field(default=False, alias="Inactive")
    suppress_sending: bool | None = Field(default=None, alias="SuppressSending")
    suppression_reason: str = Field(default="", alias="SuppressionReason")
    metadata: dict[str, str] = Field(default_factory=dict, alias="Metadata")
    bounced_at: str = Field(default="", alias="BouncedAt")
    delivered_at: str = Field(default="", alias="DeliveredAt")
    changed_at: str = Field(default="", alias="ChangedAt")
    received_at: str = Field(default="", alias="ReceivedAt")

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
        if not self.address:
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
        return self.metadata.get(CORRELATION_KEY) or None

    @property
    def occurred_at(self) -> datetime | None:
        """When it happened, from the record type's own timestamp field."""
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            if value:
                try:
                    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    return None
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return None

    def dedupe_key(self, body: bytes) -> str:
        """Same event, same key: (type, MessageID, address, ID or time), else the body."""
        parts = [self.raw_record_type, self.message_id, self.address.lower(), self.event_id]
        parts += [getattr(self, name) for name in _TIME_FIELDS]
        if not self.message_id:
            parts.append(hashlib.sha256(body).hexdigest())
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
