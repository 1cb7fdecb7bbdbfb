"""Raw RFC 5322 bytes parsed with the standard library: the header block alone for functions
that need no body, or the whole message fed in chunks; every part that could not be decoded
is named as a defect, so nothing is dropped without a word.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from email import errors as email_errors
from email.message import EmailMessage
from email.parser import BytesFeedParser, BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from chalicelib.platform.errors import PoisonMessageError

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=\s]")
# Header blocks are a few KiB; a block larger than this is not a header block we will read.
MAX_HEADER_BYTES = 1024 * 1024
_DEFECTS_ON_STRUCTURE = {
    email_errors.StartBoundaryNotFoundDefect: "MIME boundary not found: body shown undecoded",
    email_errors.CloseBoundaryNotFoundDefect: (
        "message ends before its closing MIME boundary (cut short): its last part may be incomplete"
    ),
    email_errors.MissingHeaderBodySeparatorDefect: "a part has no blank line after its headers",
}
# Kept out of the structural list: the first comes with a boundary defect that says what the
# reader loses; base64 damage is named per part, with the part's name.
_NOT_WORTH_A_NOTE = (
    email_errors.MultipartInvariantViolationDefect,
    email_errors.InvalidBase64LengthDefect,
    email_errors.InvalidBase64CharactersDefect,
    email_errors.InvalidBase64PaddingDefect,
)


def header_block(raw: bytes) -> bytes:
    """The header block of ``raw`` (up to the first empty line), without the body."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := raw.find(sep)) >= 0]
    return raw[: min(ends)] if ends else raw


def parse_headers(head: bytes) -> EmailMessage:
    """Only the header fields (``BytesHeaderParser``): the body is never read or decoded."""
    if not isinstance(head, bytes | bytearray) or not head.strip():
        raise PoisonMessageError("unparseable MIME: empty message")
    try:
        message = BytesHeaderParser(policy=default_policy).parsebytes(bytes(head))
    except Exception as err:  # the parser is lenient; anything it raises is about the input
        raise PoisonMessageError(f"unparseable MIME: {type(err).__name__}") from err
    return _checked(message)


def parse_chunks(chunks: Iterable[bytes]) -> EmailMessage:
    """The whole message fed chunk by chunk: no second whole-message copy as text."""
    parser = BytesFeedParser(policy=default_policy)
    fed = False
    # Failures reading the chunks (S3) keep their own class; only the parser's are poison.
    for chunk in chunks:
        fed = fed or bool(chunk.strip())
        try:
            parser.feed(chunk)
        except Exception as err:  # the parser is lenient; anything it raises is the input's
            raise PoisonMessageError(f"unparseable MIME: {type(err).__name__}") from err
    try:
        message = parser.close()
    except Exception as err:
        raise PoisonMessageError(f"unparseable MIME: {type(err).__name__}") from err
    if not fed:
        raise PoisonMessageError("unparseable MIME: empty message")
    return _checked(message)


def _checked(message: Any) -> EmailMessage:
    if not isinstance(message, EmailMessage) or not message.keys():
        raise PoisonMessageError("unparseable MIME: no header fields")
    # No From is read on: Gmail imports the bytes as they are, and the bridge names the
    # customer by the envelope sender instead.
    return message


def structural_defects(message: EmailMessage) -> list[str]:
    """What the parser found wrong with the message's structure, in words."""
    found: list[str] = []
    for part in message.walk():
        for defect in part.defects:
            if isinstance(defect, _NOT_WORTH_A_NOTE):
                continue
            text = next(
                (t for cls, t in _DEFECTS_ON_STRUCTURE.items() if isinstance(defect, cls)),
                None,
            )
            text = text or f"MIME defect: {type(defect).__name__}"
            if text not in found:
                found.append(text)
    return found


def undecoded_body(message: EmailMessage) -> str:
    """A multipart whose boundary was never found holds its body as one undecoded string."""
    payload = message.get_payload()
    if not isinstance(payload, str):
        return ""
    return payload.encode("ascii", "surrogateescape").decode("utf-8", "replace")


def text_of(part: Any, label: str, defects: list[str]) -> str:
    """A text part's content; an unknown charset or bytes outside it are decoded anyway, and
    said so."""
    payload = part.get_payload(decode=True)
    payload = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
    if _base64_defects(part, label, defects, kept="left out (it is in the original)"):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset)
    except LookupError:
        defects.append(f"{label}: unknown charset {charset!r}, shown as Latin-1")
        return payload.decode("latin-1")
    except UnicodeDecodeError:
        defects.append(f"{label}: bytes not valid in charset {charset!r}, replaced")
        return payload.decode(charset, "replace")


def attachment_content(part: Any, label: str, defects: list[str]) -> bytes | None:
    """An attachment's bytes; None if its transfer encoding could not be decoded at all."""
    payload = decoded(part)
    if _base64_defects(part, label, defects, kept="left out (it is in the original)"):
        return None
    return payload


def decoded(part: Any) -> bytes:
    """A leaf part's payload with its transfer encoding undone. Clean base64 is decoded in
    one pass (the standard library first splits it into a list of lines and joins them:
    three more copies of a 40 MB attachment); damaged base64 gets the standard library's
    repair, which records what it found on ``part.defects``."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64" and isinstance(payload, str):
        data = payload.encode("ascii", "surrogateescape")
        if _NOT_BASE64.search(data) is None:
            try:
                return base64.b64decode(data)
            except (binascii.Error, ValueError):
                pass  # bad length or padding: repaired below, and named
        del data
    found = part.get_payload(decode=True)
    return bytes(found) if isinstance(found, bytes | bytearray) else b""


def _base64_defects(part: Any, label: str, defects: list[str], *, kept: str) -> bool:
    """Name ``part``'s base64 damage; True when nothing could be decoded."""
    undecodable = any(isinstance(d, email_errors.InvalidBase64LengthDefect) for d in part.defects)
    if undecodable:
        defects.append(f"{label}: base64 could not be decoded, {kept}")
    elif any(isinstance(d, _NOT_WORTH_A_NOTE[2:]) for d in part.defects):
        defects.append(f"{label}: damaged base64, decoded as far as possible")
    return undecodable
