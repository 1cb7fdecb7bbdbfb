"""Postmark's inbound webhook payload, parsed once at the edge.

Field names follow Postmark's JSON (aliases); unknown fields are ignored so a new Postmark
field never rejects mail.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.mail.suppression import normalise
from chalicelib.platform.payload import parse

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
NOT_INBOUND = "not a Postmark inbound payload"


class _PostmarkModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Address(_PostmarkModel):
    email: str = Field(alias="Email", min_length=3)
    name: str = Field(default="", alias="Name")
    mailbox_hash: str = Field(default="", alias="MailboxHash")

    @field_validator("email")
    @classmethod
    def _has_at(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("not an email address")
        return value.strip()


class Header(_PostmarkModel):
    name: str = Field(alias="Name")
    value: str = Field(default="", alias="Value")


class Attachment(_PostmarkModel):
    name: str = Field(alias="Name")
    content: str = Field(alias="Content")
    content_type: str = Field(default="application/octet-stream", alias="ContentType")
    content_length: int = Field(default=0, alias="ContentLength")
    content_id: str = Field(default="", alias="ContentID")


class PostmarkInbound(_PostmarkModel):
    """One inbound email as Postmark posts it."""

    message_id: str = Field(alias="MessageID", min_length=1, max_length=128)
    from_full: Address = Field(alias="FromFull")
    to_full: list[Address] = Field(default_factory=list, alias="ToFull")
    cc_full: list[Address] = Field(default_factory=list, alias="CcFull")
    original_recipient: str = Field(default="", alias="OriginalRecipient")
    subject: str = Field(default="", alias="Subject")
    text_body: str = Field(default="", alias="TextBody")
    html_body: str = Field(default="", alias="HtmlBody")
    date: str = Field(default="", alias="Date")
    headers: list[Header] = Field(default_factory=list, alias="Headers")
    attachments: list[Attachment] = Field(default_factory=list, alias="Attachments")

    @field_validator("message_id")
    @classmethod
    def _dedup_safe(cls, value: str) -> str:
        # The MessageID becomes an SNS deduplication id: alphanumerics and punctuation only.
        if not re.fullmatch(r"[\x21-\x7e]+", value):
            raise ValueError("must be printable ASCII without spaces")
        return value

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((h.value for h in self.headers if h.name.lower() == lowered), None)

    @property
    def rfc_message_id(self) -> str | None:
        """The RFC 5322 Message-ID (not Postmark's MessageID), lowercased, with brackets."""
        found = _MESSAGE_ID.findall(self.header("Message-ID") or "")
        return found[0].lower() if found else None

    @property
    def referenced_ids(self) -> list[str]:
        """Message-IDs this email replies to: In-Reply-To first, then References newest first."""
        ids = _MESSAGE_ID.findall(self.header("In-Reply-To") or "")
        ids += reversed(_MESSAGE_ID.findall(self.header("References") or ""))
        seen: list[str] = []
        for found in ids:
            if found.lower() not in seen:
                seen.append(found.lower())
        return seen

    @property
    def recipient(self) -> str:
        """The address that decides routing: OriginalRecipient, else the first To."""
        if self.original_recipient.strip():
            return normalise(self.original_recipient)
        if self.to_full:
            return normalise(self.to_full[0].email)
        return ""

    @property
    def body(self) -> str:
        return self.html_body or self.text_body


def parse_postmark_inbound(payload: bytes | str) -> PostmarkInbound:
    """The one parser of an inbound payload, at the webhook and in the bridge alike.

    Raises ``PayloadRejected`` (poison), e.g. "not a Postmark inbound payload: FromFull.Email:
    Field required".
    """
    return parse(PostmarkInbound, payload, what=NOT_INBOUND)
