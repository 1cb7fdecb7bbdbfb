"""Request authentication: Postmark's HTTP Basic credentials and mailroom's HMAC signatures.

Postmark does not sign webhooks; it sends Basic credentials embedded in the hook URL. The
outbound API takes ``X-Mailroom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.
Both accept every currently valid secret (current and previous during a rotation) and
compare in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

SIGNATURE_HEADER = "X-Mailroom-Signature"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (API Gateway and chalice local differ in case)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def basic_auth_ok(headers: Mapping[str, str], valid: Iterable[str]) -> bool:
    """True if the Authorization header carries one of ``valid`` (``user:password``)."""
    value = header(headers, "Authorization")
    if value is None or value[:6].lower() != "basic ":
        return False
    try:
        presented = base64.b64decode(value[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    # Compare against every candidate without short-circuiting, in constant time each.
    matches = [hmac.compare_digest(presented, secret.encode("utf-8")) for secret in valid]
    return any(matches)


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``X-Mailroom-Signature`` value for ``body`` (used by clients and tests)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256)
    return f"t={t},v1={digest.hexdigest()}"


class SignatureRejected(Exception):
    """The signature is missing, malformed, stale or wrong; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> int:
    """Check the signature header against ``secrets``; return its timestamp or raise."""
    value = header(headers, SIGNATURE_HEADER)
    if not value:
        raise SignatureRejected("missing signature header")
    parts: dict[str, list[str]] = {}
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise SignatureRejected("malformed signature header")
        parts.setdefault(key, []).append(val)
    stamp = parts.get("t", [""])[0]
    # ASCII digits only, and few: int() would take "¹²", "1_0" or 4,000 digits (which then
    # overflow a float below).
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise SignatureRejected("malformed signature header")
    timestamp = int(stamp)
    # compare_digest refuses non-ASCII str; compare bytes.
    candidates = [c.encode("utf-8", "surrogatepass") for c in parts.get("v1", [])]
    if not candidates:
        raise SignatureRejected("malformed signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureRejected("stale signature timestamp")
    signed = f"{timestamp}.".encode() + body
    expected = [
        hmac.new(s.encode("utf-8"), signed, hashlib.sha256).hexdigest().encode() for s in secrets
    ]
    if any(hmac.compare_digest(e, c) for e in expected for c in candidates):
        return timestamp
    raise SignatureRejected("signature does not match")
