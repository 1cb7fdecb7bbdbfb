"""The one normalised inbound email: built from raw MIME here, from a provider's payload by
that provider (``providers.postmark.inbound``).

Routing and every action (FreeScout, Gmail, bounce) consume it. ``delivery_key`` names the
idempotency key of one action for one recipient, so a Postmark and an SES copy of the same
RFC Message-ID are delivered once per action.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from chalicelib.mail.suppression import normalise
from chalicelib.mail.verdicts import Verdicts
from chalicelib.platform.errors import PoisonMessageError, TransientError
from chalicelib.platform.payload import Model

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# Longer key parts are hashed: DynamoDB keys stay short and printable whatever the input.
_MAX_PLAIN = 200


class EmailSource(StrEnum):
    POSTMARK = "postmark"
    SES = "ses"


class S3Location(Model):
    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str


class InboundAttachment(Model):
    model_config = ConfigDict(frozen=True)

    filename: str
    content_type: str
    content: bytes = Field(repr=False)
    content_id: str = ""


class InboundEmail(Model):
    """What every action needs to know about one received email."""

    model_config = ConfigDict(frozen=True)

    source: EmailSource
    provider_message_id: str
    recipients: tuple[str, ...]
    envelope_sender: str = ""
    from_address: str = ""
    from_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    date: str = ""
    rfc_message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    text_body: str = ""
    html_body: str = ""
    attachments: tuple[InboundAttachment, ...] = ()
    raw_location: S3Location | None = None
    verdicts: Verdicts = Field(default_factory=Verdicts)

    @property
    def recipient(self) -> str:
        return self.recipients[0] if self.recipients else ""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for n, v in self.headers if n.lower() == lowered), None)

    @property
    def referenced_ids(self) -> list[str]:
        """Message-IDs this email replies to: In-Reply-To first, then References newest first."""
        seen: list[str] = []
        for found in [*self.in_reply_to, *reversed(self.references)]:
            if found not in seen:
                seen.append(found)
        return seen

    @classmethod
    def from_mime(
        cls,
        raw: bytes,
        *,
        recipients: Sequence[str],
        verdicts: Verdicts,
        s3_location: S3Location | None,
        envelope_sender: str = "",
        provider_message_id: str = "",
    ) -> InboundEmail:
        """Parse raw RFC 5322 bytes with the standard library (default policy)."""
        message = _parse(raw)
        headers = tuple((str(n), _header_text(message, n, v)) for n, v in message.raw_items())
        from_name, from_address = parseaddr(_get(message, "From"))
        text, html, attachments = _parts(message)
        return cls(
            source=EmailSource.SES,
            provider_message_id=provider_message_id,
            recipients=tuple(normalise(r) for r in recipients),
            envelope_sender=normalise(envelope_sender) if envelope_sender else from_address,
            from_address=from_address,
            from_name=from_name,
            to=tuple(a for _, a in getaddresses([_get(message, "To")]) if a),
            cc=tuple(a for _, a in getaddresses([_get(message, "Cc")]) if a),
            subject=_get(message, "Subject"),
            date=_get(message, "Date"),
            rfc_message_id=next(iter(message_ids(_get(message, "Message-ID"))), None),
            in_reply_to=message_ids(_get(message, "In-Reply-To")),
            references=message_ids(_get(message, "References")),
            headers=headers,
            text_body=text,
            html_body=html,
            attachments=tuple(attachments),
            raw_location=s3_location,
            verdicts=verdicts,
        )

    def to_mime(self) -> bytes:
        """RFC 5322 bytes for an email that arrived as JSON (Postmark), e.g. for a Gmail import."""
        message = EmailMessage(policy=default_policy)
        skip = {"content-type", "content-transfer-encoding", "mime-version"}
        for name, value in self.headers:
            if name.lower() not in skip:
                message[name] = value
        for name, value in (
            ("From", f"{self.from_name} <{self.from_address}>" if self.from_name else ""),
            ("To", ", ".join(self.to)),
            ("Subject", self.subject),
            ("Date", self.date),
            ("Message-ID", self.rfc_message_id or ""),
        ):
            if value and name not in message:
                message[name] = value
        message.set_content(self.text_body or "")
        if self.html_body:
            message.add_alternative(self.html_body, subtype="html")
        for attachment in self.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(
                attachment.content,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=attachment.filename,
            )
        return bytes(message.as_bytes(policy=default_policy.clone(linesep="\r\n")))


def delivery_key(email: InboundEmail, recipient: str, action: str) -> str:
    """Idempotency key of ``action`` for ``recipient``: the same for a Postmark and an SES copy
    of one RFC Message-ID. Without a Message-ID only the provider's own id can dedupe."""
    return delivery_key_for(
        email.rfc_message_id, email.source, email.provider_message_id, recipient, action
    )


def delivery_key_for(
    rfc_message_id: str | None,
    source: EmailSource,
    provider_message_id: str,
    recipient: str,
    action: str,
) -> str:
    """``delivery_key`` from its parts, for a worker that has not loaded the email."""
    identity = rfc_message_id or f"{source}:{provider_message_id}"
    recipient = normalise(recipient)
    if len(recipient) > _MAX_PLAIN or not recipient.isprintable():
        recipient = _digest(recipient)
    return f"deliver:{action}:{_digest(identity)}:{recipient}"


def load_ses_email(message: dict[str, Any]) -> InboundEmail:
    """The email behind a router message ``{"source": "ses", "bucket", "key", "recipient",
    "ses_message_id", "verdicts"}`` (what the router publishes for FreeScout and Gmail)."""
    try:
        bucket, key, recipient = message["bucket"], message["key"], message["recipient"]
    except (KeyError, TypeError) as err:
        raise PoisonMessageError("SES delivery message lacks bucket, key or recipient") from err
    verdicts = message.get("verdicts") or {}
    return InboundEmail.from_mime(
        read_raw(bucket, key),
        recipients=[recipient],
        verdicts=Verdicts.model_validate(verdicts) if isinstance(verdicts, dict) else Verdicts(),
        s3_location=S3Location(bucket=bucket, key=key),
        envelope_sender=str(message.get("envelope_sender") or ""),
        provider_message_id=str(message.get("ses_message_id") or key),
    )


def read_raw(bucket: str, key: str) -> bytes:
    """The raw MIME SES stored; a missing object is permanent, anything else transient."""
    from botocore.exceptions import ClientError

    from chalicelib.platform.aws import aws_client

    try:
        return bytes(aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise PoisonMessageError("raw message is missing from S3") from err
        raise TransientError("cannot read the raw message from S3") from err


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def message_ids(value: str | None) -> tuple[str, ...]:
    """The ``<id>`` tokens of a Message-ID, In-Reply-To or References value, lower-cased."""
    return tuple(found.lower() for found in _MESSAGE_ID.findall(value or ""))


def decode_base64(content: str) -> bytes:
    """A provider's base64 attachment content; text that is not base64 is kept as sent."""
    import base64
    import binascii

    try:
        return base64.b64decode(content)
    except (binascii.Error, ValueError):
        return content.encode("utf-8")


def _parse(raw: bytes) -> EmailMessage:
    if not isinstance(raw, bytes | bytearray) or not raw.strip():
        raise PoisonMessageError("unparseable MIME: empty message")
    try:
        message = message_from_bytes(raw, policy=default_policy)
    except Exception as err:  # the parser is lenient; anything it raises is about the input
        raise PoisonMessageError(f"unparseable MIME: {type(err).__name__}") from err
    if not isinstance(message, EmailMessage) or not message.keys():
        raise PoisonMessageError("unparseable MIME: no header fields")
    if "From" not in message:
        raise PoisonMessageError("unparseable MIME: no From header")
    return message


def _get(message: EmailMessage, name: str) -> str:
    """A header's text; a header the policy cannot parse falls back to its raw value."""
    try:
        value = message.get(name)
    except Exception:  # malformed header: keep what was written
        raw = next((v for n, v in message.raw_items() if n.lower() == name.lower()), "")
        return str(raw).strip()
    return str(value).strip() if value is not None else ""


def _header_text(message: EmailMessage, name: str, value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return _get(message, name)


def _parts(message: EmailMessage) -> tuple[str, str, list[InboundAttachment]]:
    """Text body, HTML body and attachments; a body part that cannot be decoded is poison."""
    try:
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        text = _content(text_part) if text_part is not None else ""
        html = _content(html_part) if html_part is not None else ""
        attachments = []
        for part in message.iter_attachments():
            payload = part.get_payload(decode=True)
            attachments.append(
                InboundAttachment(
                    filename=part.get_filename() or "attachment",
                    content_type=part.get_content_type(),
                    content=payload if isinstance(payload, bytes) else b"",
                    content_id=str(part.get("Content-ID") or ""),
                )
            )
    except (LookupError, ValueError, TypeError, AttributeError) as err:
        raise PoisonMessageError(f"unparseable MIME body: {type(err).__name__}") from err
    return text, html, attachments


def _content(part: Any) -> str:
    try:
        return str(part.get_content())
    except LookupError:  # unknown charset: decode as Latin-1 rather than lose the text
        payload = part.get_payload(decode=True) or b""
        return bytes(payload).decode("latin-1")
