"""The raw MIME message of an outbound request, for providers that take a whole message (SES).

Built from the same model as Postmark's JSON, so attachments, inline parts, custom headers
and reply-to behave alike. Bcc is never a header: it travels only in the envelope.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from chalicelib.mail.outbound import OutboundEmail
from chalicelib.mail.suppression import normalise


@dataclass(frozen=True)
class RawMessage:
    """The bytes to send and the envelope that goes with them."""

    data: bytes
    to: list[str]
    cc: list[str]
    bcc: list[str]

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]


def _keep(addresses: list[str], blocked: Collection[str]) -> list[str]:
    return [a for a in addresses if normalise(a) not in blocked]


def build_mime(
    email: OutboundEmail, blocked: Collection[str] = (), *, domain: str = ""
) -> RawMessage:
    """``email`` as a MIME message without the recipients in ``blocked`` (normalised)."""
    to, cc, bcc = (_keep(email.to, blocked), _keep(email.cc, blocked), _keep(email.bcc, blocked))
    message = EmailMessage(policy=SMTP)
    message["From"] = email.from_
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    sender_domain = normalise(email.from_).rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=domain or sender_domain or None)
    for name, value in email.headers.items():
        message[name] = value
    if email.text_body:
        message.set_content(email.text_body)
    if email.html_body:
        if email.text_body:
            message.add_alternative(email.html_body, subtype="html")
        else:
            message.set_content(email.html_body, subtype="html")
    inline = [a for a in email.attachments if a.content_id]
    if inline and email.html_body:
        html = message.get_body(("html",))
        assert html is not None  # set just above
        for part in inline:
            maintype, _, subtype = part.content_type.partition("/")
            html.add_related(
                _decode(part.content),
                maintype=maintype,
                subtype=subtype or "octet-stream",
                cid=f"<{str(part.content_id).removeprefix('cid:').strip('<>')}>",
                filename=part.name,
                disposition="inline",
            )
    for part in email.attachments:
        if part.content_id and email.html_body:
            continue
        maintype, _, subtype = part.content_type.partition("/")
        message.add_attachment(
            _decode(part.content),
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=part.name,
        )
    return RawMessage(message.as_bytes(), to, cc, bcc)


def _decode(content: str) -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        # Postmark takes such content as sent; so do we, rather than refuse it here.
        return content.encode()
