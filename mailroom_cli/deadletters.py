"""Dead letters as the operator sees them, and what to do with each kind: pure functions.

A DLQ message carries its reason in ``mailroom_*`` attributes (``chalicelib/platform/batch.py``);
one without ``mailroom_reason`` was moved by SQS's maxReceiveCount backstop after a crash
loop. The business id (Postmark MessageID, correlation id, SES message id) is unpacked from
the SNS envelope and, when the payload was too big, from its claim check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.platform.batch import DLQ_ATTRIBUTE_PREFIX
from chalicelib.platform.claimcheck import POINTER_KEY
from chalicelib.platform.envelope import unwrap
from chalicelib.platform.errors import PoisonMessageError

REDRIVE_COUNT = f"{DLQ_ATTRIBUTE_PREFIX}redrive_count"
# Reads a claim-checked payload: (bucket, key) → text.
PayloadReader = Callable[[str, str], str]


@dataclass(frozen=True)
class BusinessId:
    kind: str  # postmark | correlation | ses | rfc
    value: str


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ message, parsed once."""

    message_id: str
    receipt_handle: str
    body: str
    group_id: str | None
    sent_at: str
    sent_ms: int
    receive_count: int
    attributes: dict[str, str]  # message attributes, as strings
    raw_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    business_ids: tuple[BusinessId, ...] = field(default_factory=tuple)

    @property
    def error_class(self) -> str:
        return self.attributes.get(f"{DLQ_ATTRIBUTE_PREFIX}error_class", "-")

    @property
    def reason(self) -> str | None:
        return self.attributes.get(f"{DLQ_ATTRIBUTE_PREFIX}reason")

    @property
    def disposition(self) -> str:
        return self.attributes.get(f"{DLQ_ATTRIBUTE_PREFIX}disposition", "backstop")

    @property
    def attempts(self) -> str:
        return self.attributes.get(f"{DLQ_ATTRIBUTE_PREFIX}attempts", str(self.receive_count))

    @property
    def first_seen(self) -> str:
        return self.attributes.get(f"{DLQ_ATTRIBUTE_PREFIX}first_seen", self.sent_at)

    @property
    def redrive_count(self) -> int:
        try:
            return int(self.attributes.get(REDRIVE_COUNT, "0"))
        except ValueError:
            return 0

    @property
    def arrival(self) -> tuple[str, int]:
        """Sort key for the order the message first arrived in (first seen, then sent)."""
        return self.first_seen, self.sent_ms

    @property
    def business_id(self) -> BusinessId | None:
        return self.business_ids[0] if self.business_ids else None

    @property
    def signature(self) -> tuple[str, str]:
        return self.error_class, normalise_reason(self.reason)

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` names this message (SQS message id or any business id)."""
        return wanted == self.message_id or any(b.value == wanted for b in self.business_ids)

    def summary(self) -> dict[str, Any]:
        business = self.business_id
        return {
            "message_id": self.message_id,
            "group": self.group_id,
            "attempts": self.attempts,
            "first_seen": self.first_seen,
            "error_class": self.error_class,
            "reason": self.reason,
            "disposition": self.disposition,
            "business_id": f"{business.kind}:{business.value}" if business else None,
            "redrive_count": self.redrive_count,
        }


def parse(message: Mapping[str, Any], read_payload: PayloadReader | None = None) -> DeadLetter:
    """A ReceiveMessage result (``AttributeNames=All``, ``MessageAttributeNames=All``)."""
    system = message.get("Attributes") or {}
    try:
        sent_ms = int(system.get("SentTimestamp", "0"))
    except ValueError:
        sent_ms = 0
    sent_at = datetime.fromtimestamp(sent_ms / 1000, UTC).isoformat(timespec="seconds")
    body = str(message.get("Body", ""))
    return DeadLetter(
        message_id=str(message["MessageId"]),
        receipt_handle=str(message["ReceiptHandle"]),
        body=body,
        group_id=system.get("MessageGroupId"),
        sent_at=sent_at,
        sent_ms=sent_ms,
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        attributes={
            name: str(value.get("StringValue", ""))
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        raw_attributes={
            name: {
                "DataType": str(value.get("DataType", "String")),
                "StringValue": str(value.get("StringValue", "")),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
            if value.get("StringValue") is not None
        },
        business_ids=business_ids(body, read_payload),
    )


def payload_of(body: str, read_payload: PayloadReader | None = None) -> str:
    """The published payload inside an SQS body: SNS envelope and claim check unpacked."""
    try:
        message, _ = unwrap(body)
    except PoisonMessageError:
        return body
    if POINTER_KEY in message[:64] and read_payload is not None:
        try:
            pointer = json.loads(message)[POINTER_KEY]
            return read_payload(str(pointer["bucket"]), str(pointer["key"]))
        except Exception:  # a missing or unreadable claim check: show what we have
            return message
    return message


def business_ids(body: str, read_payload: PayloadReader | None = None) -> tuple[BusinessId, ...]:
    """Every business id found in the payload, most specific first."""
    try:
        payload = json.loads(payload_of(body, read_payload))
    except ValueError:
        return ()
    if not isinstance(payload, dict):
        return ()
    found: list[BusinessId] = []
    if isinstance(payload.get("MessageID"), str):
        found.append(BusinessId("postmark", payload["MessageID"]))
    if isinstance(payload.get("correlation_id"), str):
        found.append(BusinessId("correlation", payload["correlation_id"]))
    mail = payload.get("mail")
    if isinstance(mail, dict) and isinstance(mail.get("messageId"), str):
        found.append(BusinessId("ses", mail["messageId"]))
    if isinstance(payload.get("ses_message_id"), str):
        found.append(BusinessId("ses", payload["ses_message_id"]))
    for header in payload.get("Headers") or []:
        if isinstance(header, dict) and str(header.get("Name", "")).lower() == "message-id":
            found.append(BusinessId("rfc", str(header.get("Value", ""))))
    key = idempotency_key(payload)
    if key is not None:
        found.append(BusinessId("key", key))
    return tuple(found)


def idempotency_key(payload: dict[str, Any]) -> str | None:
    """The idempotency key the pipeline claims for ``payload``, where it can be computed
    without S3: a Postmark email's FreeScout delivery, a Gmail or bounce request."""
    from pydantic import ValidationError

    from chalicelib.mail.actions import GmailRequest, MailRef
    from chalicelib.mail.inbound_email import delivery_key
    from chalicelib.providers.postmark.inbound import parse_postmark_inbound, to_inbound_email

    try:
        if "MessageID" in payload and "FromFull" in payload:
            parsed = parse_postmark_inbound(json.dumps(payload))
            email = to_inbound_email(parsed, parsed.recipient)
            return delivery_key(email, email.recipient, "freescout")
        if isinstance(payload.get("mail"), dict) and payload.get("kind") == "gmail":
            return GmailRequest.model_validate(payload).key()
        if isinstance(payload.get("mail"), dict) and payload.get("kind") == "bounce":
            mail = MailRef.model_validate(payload["mail"])
            return mail.key(str(payload.get("recipient", "")), str(payload["kind"]))
    except (PoisonMessageError, ValidationError, ValueError):
        return None
    return None


_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\d+"), "<n>"),
]


def normalise_reason(reason: str | None) -> str:
    """``reason`` with ids, quoted values and numbers replaced, so alike failures group."""
    if reason is None:
        return "(no reason: moved by SQS after maxReceiveCount)"
    for pattern, placeholder in _VOLATILE:
        reason = pattern.sub(placeholder, reason)
    return " ".join(reason.split())[:200]


@dataclass(frozen=True)
class Suggestion:
    action: str  # redrive | discard | quarantine | investigate | fix-then-redrive
    why: str


# A missing IAM permission: the same call fails on every redrive until the policy is fixed,
# however many attempts it took (before it was its own class, it was retried to exhaustion).
_PERMISSION = (
    frozenset({"AccessDenied"}),
    ("accessdenied", "access denied", "not authorized to perform"),
    Suggestion(
        "fix-then-redrive",
        "missing IAM permission: add it in infra/policies.py and deploy, then redrive",
    ),
)

# The disposition table: first matching row wins. (error classes, reason words, suggestion)
_TABLE: tuple[tuple[frozenset[str], tuple[str, ...], Suggestion], ...] = (
    (
        frozenset({"UnauthenticatedError", "SignatureError", "SpoofedError"}),
        ("unauthenticated", "spoof", "signature", "dmarc", "spf"),
        Suggestion("quarantine", "unauthenticated or spoofed: keep the body, never deliver it"),
    ),
    (
        frozenset({"PoisonMessageError"}),
        (),
        Suggestion("discard", "poison: the message itself is malformed; no retry can help"),
    ),
    (
        frozenset({"ProviderAuthError", "GmailAuthRevoked"}),
        ("unauthorized", "invalid_grant", "token expired", "forbidden", "re-authorize"),
        Suggestion("fix-then-redrive", "credentials rejected: rotate them in SSM, then redrive"),
    ),
    (
        frozenset({"ActionNotAvailable"}),
        ("no routing rule",),
        Suggestion("fix-then-redrive", "routing or deployment gap: fix the route, then redrive"),
    ),
    (
        frozenset({"TransientError", "ProviderTransientError", "AlreadyInProgress"}),
        ("timeout", "timed out", "unavailable", "rate limit", "throttl", "connection"),
        Suggestion("redrive", "provider outage or throttling: redrive once it has healed"),
    ),
)


def suggest(letter: DeadLetter, *, completed: bool = False) -> Suggestion:
    """What to do with ``letter`` (``completed``: its business key is already COMPLETED)."""
    if completed:
        return Suggestion("discard", "duplicate: its idempotency key is already completed")
    if letter.reason is None:
        return Suggestion(
            "investigate", "no reason: SQS's backstop moved it after a crash loop; read the logs"
        )
    reason = letter.reason.lower()
    denied_classes, denied_words, permission = _PERMISSION
    if letter.error_class in denied_classes or any(w in reason for w in denied_words):
        return permission
    if letter.disposition == "exhausted":
        return Suggestion("redrive", "retries exhausted: redrive once the cause has healed")
    for classes, words, suggestion in _TABLE:
        if letter.error_class in classes or any(w in reason for w in words):
            return suggestion
    if letter.disposition == "poison":
        return _TABLE[1][2]
    rejected = _rejection(letter)
    if rejected is not None:
        return rejected
    return Suggestion("investigate", "unknown signature: read the logs (mailroom trace ID)")


# A provider's 4xx names what it refused: our configuration (fix it, then redrive) or the
# message as built (unchanged it fails again, so it goes, a copy kept).
_STATUS = re.compile(r"\bstatus=(\d{3})\b")
_CONFIGURATION_WORDS = ("mailbox", "not found", "no such", "unknown", "permission", "access")


def _rejection(letter: DeadLetter) -> Suggestion | None:
    reason = (letter.reason or "").lower()
    found = _STATUS.search(reason)
    status = int(found.group(1)) if found else None
    permanent = letter.error_class == "ProviderPermanentError" or letter.disposition == "permanent"
    if not permanent or (status is not None and not 400 <= status < 500):
        return None
    if status in (403, 404) or any(word in reason for word in _CONFIGURATION_WORDS):
        return Suggestion(
            "fix-then-redrive",
            "the provider refused our configuration (4xx: mailbox, route, permission): "
            "fix it, then redrive",
        )
    return Suggestion(
        "discard",
        "the provider refused this message as built (permanent 4xx): unchanged it fails "
        "again; discard it (a copy is kept), or fix the sender and have it re-send",
    )
