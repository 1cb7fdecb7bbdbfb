"""Amazon SES receipt notifications ("Received"), parsed once: verdicts, envelope, S3 action.

SES's verdict fields become the mail layer's ``Verdicts``; a value SES adds later,
``DISABLED`` or a missing field becomes ``UNKNOWN`` (never a KeyError).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator

from chalicelib.mail.decision import is_automatic_report
from chalicelib.mail.verdicts import Verdicts
from chalicelib.platform.errors import PoisonMessageError
from chalicelib.platform.payload import Model, json_object

# When a receipt rule with an S3 action is saved, SES writes a test object of this name
# (after the rule's key prefix) and notifies with it as ``mail.messageId``.
SETUP_NOTIFICATION = "AMAZON_SES_SETUP_NOTIFICATION"


def is_setup_notification(message: str) -> bool:
    """Whether ``message`` is SES's own setup notification, by its shape: a ``Received``
    notification whose ``mail.messageId`` is exactly the marker and whose S3 object (when
    named) is the marker after the prefix. A recipient or subject naming it is still mail."""
    try:
        raw = json.loads(message)
    except ValueError:
        return False
    if not isinstance(raw, dict) or raw.get("notificationType") != "Received":
        return False
    mail = raw.get("mail")
    if not isinstance(mail, dict) or mail.get("messageId") != SETUP_NOTIFICATION:
        return False
    receipt = raw.get("receipt")
    action = receipt.get("action") if isinstance(receipt, dict) else None
    key = action.get("objectKey") if isinstance(action, dict) else None
    return key is None or (isinstance(key, str) and key.endswith(SETUP_NOTIFICATION))


def receipt_verdicts(receipt: dict[str, Any]) -> Verdicts:
    """The verdicts of an SES ``receipt`` object (``spamVerdict`` … ``dmarcPolicy``)."""
    return Verdicts.model_validate(
        {
            "spam": receipt.get("spamVerdict"),
            "virus": receipt.get("virusVerdict"),
            "spf": receipt.get("spfVerdict"),
            "dkim": receipt.get("dkimVerdict"),
            "dmarc": receipt.get("dmarcVerdict"),
            "dmarc_policy": receipt.get("dmarcPolicy"),
        }
    )


class ReceiptAction(Model):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    type: str = ""
    bucket_name: str = Field(default="", alias="bucketName")
    object_key: str = Field(default="", alias="objectKey")
    topic_arn: str = Field(default="", alias="topicArn")


class Receipt(Model):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    timestamp: datetime
    recipients: list[str] = Field(min_length=1)
    action: ReceiptAction = Field(default_factory=ReceiptAction)
    verdicts: Verdicts = Field(default_factory=Verdicts)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class SesMail(Model):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    message_id: str = Field(alias="messageId", min_length=1)
    source: str = ""
    timestamp: datetime | None = None
    headers_truncated: bool = Field(default=False, alias="headersTruncated")
    common_headers: dict[str, Any] = Field(default_factory=dict, alias="commonHeaders")
    headers: list[Any] = Field(default_factory=list)


class SesNotification(Model):
    """One ``Received`` notification (the SNS ``Message`` of an SES receipt rule action)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    notification_type: str = Field(alias="notificationType")
    receipt: Receipt
    mail: SesMail

    @classmethod
    def parse(cls, message: str) -> SesNotification:
        """Parse, or raise ``PoisonMessageError`` naming the fields at fault."""
        raw = json_object(message, what="SES notification")
        receipt = raw.get("receipt")
        if isinstance(receipt, dict):
            raw = {**raw, "receipt": {**receipt, "verdicts": receipt_verdicts(receipt)}}
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
            raise PoisonMessageError(
                f"not an SES receipt notification: {', '.join(fields)}"
            ) from err

    @property
    def verdicts(self) -> Verdicts:
        return self.receipt.verdicts

    @property
    def auto_report(self) -> bool:
        """Whether the received message is itself a report or auto-submitted (by the headers
        SES passed; when SES truncated them, the bouncer checks the raw message again)."""
        return is_automatic_report(
            [
                (str(h.get("name", "")), str(h.get("value", "")))
                for h in self.mail.headers
                if isinstance(h, dict)
            ]
        )

    @property
    def rfc_message_id(self) -> str | None:
        """From ``commonHeaders`` (absent when SES truncated the headers: read S3 instead)."""
        value = self.mail.common_headers.get("messageId")
        return str(value).strip().lower() or None if value else None
