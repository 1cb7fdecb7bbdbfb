"""The outbound request the product hands mailroom, and its published JSON Schema.

``python -m chalicelib.mail.outbound`` rewrites ``schemas/outbound.json``; a test keeps the
committed schema equal to the model, so product teams can validate before sending.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from chalicelib.mail import CORRELATION_KEY
from chalicelib.mail.suppression import normalise
from chalicelib.platform.payload import Model, parse

MAX_RECIPIENTS = 50  # Postmark's limit for To + Cc + Bcc
# Postmark keeps at most 10 metadata fields (names ≤ 20 characters, values ≤ 80); mailroom
# adds ``correlation_id`` to every message, which leaves 9 fields for the product.
MAX_METADATA_FIELDS = 9
MAX_METADATA_NAME = 20
MAX_METADATA_VALUE = 80
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "outbound.json"
NOT_OUTBOUND = "not an outbound request"
_ADDRESS = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+$")
# Header injection: CR, LF and every other C0/C1 control (and Unicode line separators) are
# refused in anything that becomes a header. NO_CONTROLS is the same rule for JSON Schema.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
NO_CONTROLS = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
# RFC 5322 field-name: printable ASCII except ":".
HEADER_NAME = "^[!-9;-~]+$"
# Headers that decide who receives the message or who it claims to be from: set through their
# own fields (suppression and the recipient limit apply there), never as custom headers.
RESERVED_HEADERS = frozenset(
    {"to", "cc", "bcc", "from", "sender", "reply-to", "return-path", "message-id"}
)
# The same rule for JSON Schema, whose (ECMA) patterns have no case-insensitive flag.
_ANY_CASE = (
    "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name)
    for name in sorted(RESERVED_HEADERS)
)
RESERVED_PATTERN = f"^({'|'.join(_ANY_CASE)})$"


def _no_controls(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains a control character (CR, LF or another); header injection")
    return value


# A string that ends up in a message header.
HeaderText = Annotated[
    str, Field(json_schema_extra={"pattern": NO_CONTROLS}), AfterValidator(_no_controls)
]
HeaderName = Annotated[str, Field(pattern=HEADER_NAME, max_length=100)]


class TrackLinks(StrEnum):
    NONE = "None"
    HTML_AND_TEXT = "HtmlAndText"
    HTML_ONLY = "HtmlOnly"
    TEXT_ONLY = "TextOnly"


class OutboundAttachment(Model):
    model_config = ConfigDict(extra="forbid")

    name: HeaderText = Field(min_length=1, max_length=255)
    content: str = Field(min_length=1, description="base64")
    content_type: HeaderText = Field(min_length=3)
    content_id: HeaderText | None = Field(default=None, description="cid:… for inline parts")


def _addresses(value: Any) -> Any:
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    return value


class OutboundEmail(Model):
    """One email to send; ``correlation_id`` is the idempotency key."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    correlation_id: str = Field(
        min_length=1,
        max_length=MAX_METADATA_VALUE,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="idempotency key; also the SNS deduplication id and Postmark metadata",
    )
    from_: HeaderText = Field(alias="from", min_length=3, description='"Name <address>" or address')
    to: list[HeaderText] = Field(min_length=1)
    cc: list[HeaderText] = Field(default_factory=list)
    bcc: list[HeaderText] = Field(default_factory=list)
    subject: HeaderText = Field(min_length=1, max_length=2000)
    text_body: str | None = None
    html_body: str | None = None
    reply_to: HeaderText | None = None
    headers: dict[HeaderName, HeaderText] = Field(
        default_factory=dict,
        description="custom headers; not To, Cc, Bcc, From, Sender, Reply-To, Return-Path "
        "or Message-ID (use the fields)",
        json_schema_extra={
            "propertyNames": {
                "pattern": HEADER_NAME,
                "maxLength": 100,
                "not": {"pattern": RESERVED_PATTERN},
            }
        },
    )
    attachments: list[OutboundAttachment] = Field(default_factory=list)
    tag: HeaderText | None = Field(default=None, max_length=1000)
    metadata: dict[HeaderText, HeaderText] = Field(
        default_factory=dict, max_length=MAX_METADATA_FIELDS
    )
    message_stream: str = "outbound"
    track_opens: bool = False
    track_links: TrackLinks = TrackLinks.NONE

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _addresses(value)

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _ADDRESS.match(normalise(address)):
                raise ValueError("not an email address")
        return value

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(name for name in value if name.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"custom headers may not set {', '.join(reserved)}; use the fields")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name == CORRELATION_KEY:
                raise ValueError(f"{CORRELATION_KEY} is set by mailroom")
            if not 0 < len(name) <= MAX_METADATA_NAME:
                raise ValueError(f"names are 1 to {MAX_METADATA_NAME} characters")
            if len(text) > MAX_METADATA_VALUE:
                raise ValueError(f"values are at most {MAX_METADATA_VALUE} characters")
        return value

    @model_validator(mode="after")
    def _limits(self) -> OutboundEmail:
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise ValueError(f"to, cc and bcc together exceed {MAX_RECIPIENTS} recipients")
        if not (self.text_body or self.html_body):
            raise ValueError("text_body or html_body is required")
        return self

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]

    def postmark_message(self, blocked: Collection[str] = ()) -> dict[str, Any]:
        """Postmark's message object, without the recipients in ``blocked`` (normalised).

        ``Metadata`` carries the correlation id, so events and the outbound search find it.
        """

        def keep(addresses: list[str]) -> str:
            return ", ".join(a for a in addresses if normalise(a) not in blocked)

        message: dict[str, Any] = {
            "From": self.from_,
            "To": keep(self.to),
            "Subject": self.subject,
            "MessageStream": self.message_stream,
            "TrackOpens": self.track_opens,
            "TrackLinks": self.track_links.value,
            "Metadata": {**self.metadata, CORRELATION_KEY: self.correlation_id},
        }
        optional = {
            "Cc": keep(self.cc),
            "Bcc": keep(self.bcc),
            "TextBody": self.text_body,
            "HtmlBody": self.html_body,
            "ReplyTo": self.reply_to,
            "Tag": self.tag,
        }
        message.update({k: v for k, v in optional.items() if v})
        if self.headers:
            message["Headers"] = [{"Name": k, "Value": v} for k, v in self.headers.items()]
        if self.attachments:
            message["Attachments"] = [
                {
                    "Name": a.name,
                    "Content": a.content,
                    "ContentType": a.content_type,
                    **({"ContentID": a.content_id} if a.content_id else {}),
                }
                for a in self.attachments
            ]
        return message


def parse_outbound(payload: bytes | str) -> OutboundEmail:
    """The one parser of an outbound request, at the API and in the sender alike.

    Raises ``PayloadRejected`` (poison) naming the failing fields.
    """
    return parse(OutboundEmail, payload, what=NOT_OUTBOUND)


def schema_text() -> str:
    """The JSON Schema of ``OutboundEmail`` as committed to ``schemas/outbound.json``."""
    schema = OutboundEmail.model_json_schema(by_alias=True)
    schema["$id"] = "https://mailroom/schemas/outbound.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(schema_text())
    sys.exit(0)
