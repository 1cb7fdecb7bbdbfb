"""Postmark's inbound webhook payload, parsed once at the edge.

Field names follow Postmark's JSON (aliases); unknown fields are ignored so a new Postmark
field never rejects mail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from chalicelib.mail.actions import MailRef
from chalicelib.mail.decision import is_automatic_report
from chalicelib.mail.inbound_email import (
    EmailSource,
    InboundAttachment,
    InboundEmail,
    decode_base64,
    message_ids,
)
from chalicelib.mail.suppression import normalise
from chalicelib.mail.verdicts import Verdict, Verdicts
from chalicelib.platform import claimcheck
from chalicelib.platform.payload import Model, parse
from chalicelib.platform.settings import get_settings

NOT_INBOUND = "not a Postmark inbound payload"

_AUTH_RESULT = re.compile(r"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
_SPAM_STATUS_SCORE = re.compile(r"\b(?:score|hits)\s*=\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_SPF_MAILFROM = re.compile(
    r"\b(?:envelope-from|smtp\.mailfrom)\s*=\s*\"?([^\s\";]+)", re.IGNORECASE
)


class _PostmarkModel(Model):
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
        return next(iter(message_ids(self.header("Message-ID"))), None)

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


def to_inbound_email(payload: PostmarkInbound, recipient: str) -> InboundEmail:
    """The normalised email of a Postmark payload, for ``recipient``."""
    headers = tuple((h.name, h.value) for h in payload.headers)
    return_path = next((v for n, v in headers if n.lower() == "return-path"), "")
    attachments: list[InboundAttachment] = []
    defects: list[str] = []
    for a in payload.attachments:
        content = decode_base64(a.content)
        if content is None:
            # Named on the email (FreeScout and Gmail show the note), never silently lost.
            defects.append(
                f"attachment {a.name!r} ({a.content_type}): base64 could not be decoded,"
                " left out (it is in the original)"
            )
            continue
        attachments.append(
            InboundAttachment(
                filename=a.name,
                content_type=a.content_type,
                content=content,
                content_id=a.content_id,
            )
        )
    return InboundEmail(
        source=EmailSource.POSTMARK,
        provider_message_id=payload.message_id,
        recipients=(normalise(recipient),),
        envelope_sender=normalise(return_path) if return_path else payload.from_full.email,
        from_address=payload.from_full.email,
        from_name=payload.from_full.name,
        to=tuple(a.email for a in payload.to_full),
        cc=tuple(a.email for a in payload.cc_full),
        subject=payload.subject,
        date=payload.date,
        rfc_message_id=payload.rfc_message_id,
        in_reply_to=message_ids(payload.header("In-Reply-To")),
        references=message_ids(payload.header("References")),
        headers=headers,
        text_body=payload.text_body,
        html_body=payload.html_body,
        attachments=tuple(attachments),
        defects=tuple(defects),
        verdicts=postmark_verdicts(headers),
    )


def postmark_verdicts(
    headers: Sequence[tuple[str, str]], *, spam_score: float | None = None
) -> Verdicts:
    """SPF/DKIM/DMARC and spam as Postmark's receiving MTA wrote them (``Received-SPF``,
    ``Authentication-Results``, ``X-Spam-Status``, ``X-Spam-Score``); anything not stated is
    UNKNOWN (not PASS). Spam is FAIL when SpamAssassin said "Yes" or the score reaches
    ``spam_score`` (``MAILROOM_POSTMARK_SPAM_SCORE``)."""
    threshold = get_settings().postmark_spam_score if spam_score is None else spam_score
    found: dict[str, Any] = {}
    status: str | None = None
    score: float | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == "received-spf" and "spf" not in found:
            found["spf"] = value.strip().split(" ", 1)[0].strip("();").upper() or None
        elif lowered == "authentication-results":
            for method, result in _AUTH_RESULT.findall(value):
                found.setdefault(method.lower(), result.upper())
        elif lowered == "x-spam-status" and status is None:
            # SpamAssassin's verdict as Postmark passes it: "Yes, score=…" or "No, score=…".
            status = value.strip().split(",", 1)[0].strip().lower()
            score = _score(_SPAM_STATUS_SCORE.search(value), score)
        elif lowered == "x-spam-score":
            score = _score(re.match(r"\s*(-?\d+(?:\.\d+)?)", value), score)
    if status == "yes" or (score is not None and score >= threshold):
        found["spam"] = "FAIL"
    elif status == "no" or score is not None:
        found["spam"] = "PASS"
    return Verdicts.model_validate({k: Verdict(v) if v else None for k, v in found.items()})


def _score(match: re.Match[str] | None, current: float | None) -> float | None:
    return float(match.group(1)) if match is not None and current is None else current


def sender_facts(headers: Sequence[tuple[str, str]]) -> tuple[str, str | None, bool]:
    """The envelope sender (``Return-Path``, "" when absent: never ``From``, which the sender
    writes freely), the address the ``Received-SPF`` verdict names (``envelope-from`` or
    ``smtp.mailfrom``) if stated, and whether the message is itself a report."""
    envelope = ""
    spf_mailfrom: str | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == "return-path" and not envelope:
            envelope = value.strip().strip("<>").strip().lower() or "<>"
        elif lowered == "received-spf" and spf_mailfrom is None:
            named = _SPF_MAILFROM.search(value)
            spf_mailfrom = named.group(1).strip("<>").lower() if named else None
    return envelope, spf_mailfrom, is_automatic_report(headers)


def postmark_ref(payload: str | None, parsed: PostmarkInbound) -> MailRef:
    """The ``MailRef`` of Postmark mail for the one inbound decision; with ``payload``
    (claim-checked if large) when it goes to the Gmail forwarder or the bouncer."""
    headers = [(h.name, h.value) for h in parsed.headers]
    envelope, spf_mailfrom, report = sender_facts(headers)
    return MailRef(
        source=EmailSource.POSTMARK,
        provider_message_id=parsed.message_id,
        received_at=datetime.now(UTC),
        envelope_sender=envelope,
        rfc_message_id=parsed.rfc_message_id,
        verdicts=postmark_verdicts(headers),
        postmark_payload=claimcheck.check_in(payload) if payload is not None else None,
        auto_report=report,
        spf_mailfrom=spf_mailfrom,
    )
