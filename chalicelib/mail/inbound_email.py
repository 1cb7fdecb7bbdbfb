"""The one normalised inbound email: built from raw MIME here, from a provider's payload by
that provider (``providers.postmark.inbound``).

Routing and every action (FreeScout, Gmail, bounce) consume it. ``delivery_key`` names the
idempotency key of one action for one recipient, so a Postmark and an SES copy of the same
RFC Message-ID are delivered once per action.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from chalicelib.mail.mime import (
    MAX_HEADER_BYTES,
    attachment_content,
    header_block,
    parse_chunks,
    parse_headers,
    structural_defects,
    text_of,
    undecoded_body,
)
from chalicelib.mail.suppression import normalise
from chalicelib.mail.verdicts import Verdicts
from chalicelib.platform.errors import PoisonMessageError, TransientError
from chalicelib.platform.payload import Model

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# Longer key parts are hashed: DynamoDB keys stay short and printable whatever the input.
_MAX_PLAIN = 200
_CHUNK = 1024 * 1024
# Most header blocks fit in the first range read; a longer one is read again, 4x larger.
_HEAD_RANGE = 64 * 1024


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
    # What could not be read, in words (a part that could not be decoded, a message cut
    # short): every action shows or logs it; nothing is dropped without a word.
    defects: tuple[str, ...] = ()

    @property
    def recipient(self) -> str:
        return self.recipients[0] if self.recipients else ""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for n, v in self.headers if n.lower() == lowered), None)

    @property
    def readable(self) -> bool:
        """Whether anything of the content could be read (a body or an attachment)."""
        return bool(self.text_body.strip() or self.html_body.strip() or self.attachments)

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
        raw: bytes | Iterable[bytes],
        *,
        recipients: Sequence[str],
        verdicts: Verdicts,
        s3_location: S3Location | None,
        envelope_sender: str = "",
        provider_message_id: str = "",
        headers_only: bool = False,
    ) -> InboundEmail:
        """Parse raw RFC 5322 bytes (or chunks of them) with the standard library; with
        ``headers_only`` only the header block is parsed and the body is never decoded."""
        if headers_only:
            if not isinstance(raw, bytes | bytearray):
                raise TypeError("headers_only takes the bytes of the header block")
            message = parse_headers(header_block(bytes(raw)))
            text, html = "", ""
            attachments: list[InboundAttachment] = []
            defects: list[str] = []
        else:
            message = parse_chunks(_slices(raw) if isinstance(raw, bytes | bytearray) else raw)
            text, html, attachments, defects = _parts(message)
        headers = tuple((str(n), _header_text(message, n, v)) for n, v in message.raw_items())
        from_name, from_address = parseaddr(_get(message, "From"))
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
            defects=tuple(defects),
        )

    def to_mime(self, *, original: tuple[str, str, bytes] | None = None) -> bytes:
        """RFC 5322 bytes for an email that arrived as JSON (Postmark), e.g. for a Gmail import.
        With defects, a note naming them and ``original`` (name, type, bytes) are attached."""
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
        if self.defects:
            note = "mailroom: part of this email could not be decoded:\n" + "".join(
                f"- {defect}\n" for defect in self.defects
            )
            message.add_attachment(note, filename="mailroom-note.txt")
            if original is not None:
                name, content_type, content = original
                maintype, _, subtype = content_type.partition("/")
                message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
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
    "ses_message_id", "verdicts"}`` (what the router publishes for FreeScout), streamed from
    S3 into the parser."""
    try:
        bucket, key, recipient = message["bucket"], message["key"], message["recipient"]
    except (KeyError, TypeError) as err:
        raise PoisonMessageError("SES delivery message lacks bucket, key or recipient") from err
    verdicts = message.get("verdicts") or {}
    return InboundEmail.from_mime(
        read_chunks(bucket, key),
        recipients=[recipient],
        verdicts=Verdicts.model_validate(verdicts) if isinstance(verdicts, dict) else Verdicts(),
        s3_location=S3Location(bucket=bucket, key=key),
        envelope_sender=str(message.get("envelope_sender") or ""),
        provider_message_id=str(message.get("ses_message_id") or key),
    )


def read_raw(bucket: str, key: str) -> bytes:
    """The raw MIME SES stored; a missing object is permanent, anything else transient."""
    return b"".join(read_chunks(bucket, key))


def read_chunks(bucket: str, key: str, *, byte_range: str | None = None) -> Iterator[bytes]:
    """The raw MIME SES stored, in chunks as they arrive (a missing object is poison, any
    other failure transient): a parser fed these never holds the message twice."""
    from botocore.exceptions import ClientError

    from chalicelib.platform.aws import aws_client

    extra = {"Range": byte_range} if byte_range else {}
    try:
        body = aws_client("s3").get_object(Bucket=bucket, Key=key, **extra)["Body"]
        while chunk := body.read(_CHUNK):
            yield bytes(chunk)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise PoisonMessageError("raw message is missing from S3") from err
        if err.response.get("Error", {}).get("Code") == "InvalidRange":
            return  # an empty object has no byte 0
        raise TransientError("cannot read the raw message from S3") from err
    except (OSError, ValueError) as err:  # the connection broke mid-body
        raise TransientError("cannot read the raw message from S3") from err


def read_head(bucket: str, key: str) -> bytes:
    """The header block of the stored message, read by byte ranges: never the body."""
    head = b""
    size = _HEAD_RANGE
    while True:
        head = b"".join(read_chunks(bucket, key, byte_range=f"bytes=0-{size - 1}"))
        block = header_block(head)
        if len(block) < len(head) or len(head) < size or size >= MAX_HEADER_BYTES:
            return block
        size *= 4


def _slices(raw: bytes | bytearray) -> Iterator[bytes]:
    """``raw`` a chunk at a time, so the parser's text copy is one chunk, not the message."""
    view = memoryview(raw)
    for start in range(0, len(raw), _CHUNK):
        yield bytes(view[start : start + _CHUNK])


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def message_ids(value: str | None) -> tuple[str, ...]:
    """The ``<id>`` tokens of a Message-ID, In-Reply-To or References value, lower-cased."""
    return tuple(found.lower() for found in _MESSAGE_ID.findall(value or ""))


def decode_base64(content: str) -> bytes | None:
    """A provider's base64 attachment content; None if it is not base64."""
    import base64
    import binascii

    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        try:  # line breaks and spaces are common and harmless
            return base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            return None


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


def _parts(message: EmailMessage) -> tuple[str, str, list[InboundAttachment], list[str]]:
    """Text body, HTML body, attachments, and in words what of them could not be decoded."""
    defects = structural_defects(message)
    try:
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        text = text_of(text_part, "text part", defects) if text_part is not None else ""
        html = text_of(html_part, "HTML part", defects) if html_part is not None else ""
        if text_part is None and html_part is None and message.is_multipart() is False:
            text = undecoded_body(message) if message.get_content_maintype() == "multipart" else ""
        attachments = []
        for part in message.iter_attachments():
            name = part.get_filename() or "attachment"
            label = f"attachment {name!r} ({part.get_content_type()})"
            content = attachment_content(part, label, defects)
            if content is None:
                continue
            attachments.append(
                InboundAttachment(
                    filename=name,
                    content_type=part.get_content_type(),
                    content=content,
                    content_id=str(part.get("Content-ID") or ""),
                )
            )
    except (LookupError, ValueError, TypeError, AttributeError) as err:
        raise PoisonMessageError(f"unparseable MIME body: {type(err).__name__}") from err
    return text, html, attachments, defects
