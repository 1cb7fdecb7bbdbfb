"""The identifier index: any id of an email leads to the email's key, and the key to its story.

Items in the state table (all with ``expires_at``):

- ``PK = ID#<hash of the normalised id>``, ``SK = EMAIL#<email key>``: ``kind``, ``value``,
  ``email``. One per id an email is known by: Postmark MessageID, RFC Message-ID, SES message
  id, provider outbound message id, correlation id, FreeScout conversation id, Gmail id, SES
  bounce id, SQS message id. Ids are normalised alike (``normalise_id``: surrounding angle
  brackets and blanks removed, lower-cased), so ``<A@b>`` and ``a@b`` find the same email.
- ``PK = ADDR#<hash of the normalised address>``, ``SK = <iso time>#<email key>``: ``role``
  (``to``/``from``), ``email``; a Query with ``SK >= since`` lists an address's mail.
- ``PK = EMAIL#<email key>``, ``SK = <stage>#<part>``: one step of the story (``stage``,
  ``outcome``, ``at``, ``ids``, ``details``). The sort key is deterministic, so a retried
  step overwrites itself instead of appearing twice.

Writers build a ``Mark`` per step and either add ``TraceIndex.items(mark)`` to a write they
already make (the bridge's transaction) or call ``TraceIndex.write(marks)`` (one
BatchWriteItem). The email key is ``<source>:<provider message id>`` for received mail
(``email_key``) and ``outbound:<correlation id>`` for sent mail. Addresses are stored
only as hashes; ids as they are (they are not personal data).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from chalicelib.mail.suppression import normalise
from chalicelib.platform.logging import hash_id, log_event
from chalicelib.platform.settings import Settings

ID_PREFIX = "ID#"
ADDRESS_PREFIX = "ADDR#"
EMAIL_PREFIX = "EMAIL#"
# Longer than the DLQ retention plus a redrive's life: the story outlives the mail's retries.
TTL_SECONDS = 365 * 86_400
_BATCH = 25  # BatchWriteItem's limit


class IdKind(StrEnum):
    """What an indexed id is."""

    POSTMARK = "postmark"  # Postmark inbound MessageID
    RFC = "rfc"  # RFC 5322 Message-ID
    SES = "ses"  # SES receipt message id
    OUTBOUND = "outbound"  # provider's message id of sent mail (Postmark or SES)
    CORRELATION = "correlation"
    CONVERSATION = "conversation"  # FreeScout conversation id
    GMAIL = "gmail"  # Gmail message id
    BOUNCE = "bounce"  # SES SendBounce message id
    SQS = "sqs"  # SQS message id (of a dead letter, or a redriven copy)


def normalise_id(value: str) -> str:
    """``" <Abc@X.org> "`` → ``abc@x.org``: the form every id is hashed in."""
    return value.strip().removeprefix("<").removesuffix(">").strip().lower()


def id_hash(value: str) -> str:
    return hash_id(normalise_id(value)) or ""


def address_hash(address: str) -> str:
    return hash_id(normalise(address)) or ""


def email_key(source: str, provider_message_id: str) -> str:
    """The key of one received email: ``ses:<id>`` or ``postmark:<MessageID>``."""
    return f"{source}:{provider_message_id}"


def outbound_key(correlation_id: str) -> str:
    """The key of one email we send: ``outbound:<correlation id>``."""
    return f"outbound:{correlation_id}"


@dataclass(frozen=True)
class Mark:
    """One step of an email's story: received, routed, delivered, dropped, sent, ..."""

    email: str
    stage: str
    outcome: str
    part: str = ""  # tells apart steps of one stage (per recipient, per action)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ids: Mapping[str, str] = field(default_factory=dict)  # kind → exact value
    addresses: Mapping[str, Sequence[str]] = field(default_factory=dict)  # role → addresses
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """An email an id or address leads to."""

    email: str
    kind: str
    at: str = ""


class TraceIndex:
    """Write and read the identifier index and the stories."""

    def __init__(self, table_name: str, *, client: Any, clock: Any = time.time) -> None:
        self._table = table_name
        self._client = client
        self._clock = clock

    @classmethod
    def for_settings(cls, settings: Settings, client: Any) -> TraceIndex:
        return cls(settings.state_table, client=client)

    def items(self, mark: Mark) -> list[dict[str, Any]]:
        """The DynamoDB items of ``mark`` (for callers that batch their writes)."""
        expires = {"N": str(int(self._clock()) + TTL_SECONDS)}
        at = mark.at.astimezone(UTC).isoformat(timespec="microseconds")
        email = {"S": mark.email}
        ids = {k: v for k, v in mark.ids.items() if v}
        items: list[dict[str, Any]] = [
            {
                "PK": {"S": f"{EMAIL_PREFIX}{mark.email}"},
                "SK": {"S": f"{mark.stage}#{mark.part}"},
                "stage": {"S": mark.stage},
                "outcome": {"S": mark.outcome},
                "at": {"S": at},
                "ids": {"M": {k: {"S": v} for k, v in ids.items()}},
                "details": {"M": {k: {"S": str(v)} for k, v in mark.details.items()}},
                "expires_at": expires,
            }
        ]
        for kind, value in ids.items():
            items.append(
                {
                    "PK": {"S": f"{ID_PREFIX}{id_hash(value)}"},
                    "SK": {"S": f"{EMAIL_PREFIX}{mark.email}"},
                    "kind": {"S": kind},
                    "value": {"S": value},
                    "email": email,
                    "at": {"S": at},
                    "expires_at": expires,
                }
            )
        for role, addresses in mark.addresses.items():
            for address in dict.fromkeys(a for a in addresses if a and a.strip("<> ")):
                items.append(
                    {
                        "PK": {"S": f"{ADDRESS_PREFIX}{address_hash(address)}"},
                        "SK": {"S": f"{at}#{mark.email}"},
                        "role": {"S": role},
                        "email": email,
                        "expires_at": expires,
                    }
                )
        return items

    def write(self, marks: Iterable[Mark]) -> bool:
        """Write ``marks`` in BatchWriteItem calls; False (and a log line) if some failed.

        The index is a view: a failure to write it never fails the mail it describes.
        """
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for mark in marks:
            for item in self.items(mark):
                unique[(item["PK"]["S"], item["SK"]["S"])] = item
        pending = [{"PutRequest": {"Item": item}} for item in unique.values()]
        try:
            for start in range(0, len(pending), _BATCH):
                chunk = pending[start : start + _BATCH]
                for _ in range(3):
                    answer = self._client.batch_write_item(RequestItems={self._table: chunk})
                    chunk = answer.get("UnprocessedItems", {}).get(self._table, [])
                    if not chunk:
                        break
                if chunk:
                    raise RuntimeError("unprocessed items")
        except Exception:
            log_event("trace index not written", event_type="trace_index", outcome="failure")
            return False
        return True

    def emails(self, ident: str) -> list[Hit]:
        """The emails ``ident`` is an id of (any kind, any spelling of a Message-ID)."""
        return [
            Hit(email=item["email"]["S"], kind=item["kind"]["S"], at=item["at"]["S"])
            for item in self._query(f"{ID_PREFIX}{id_hash(ident)}")
        ]

    def by_address(self, address: str, since: datetime) -> list[Hit]:
        """The emails to or from ``address`` since ``since``, oldest first."""
        start = since.astimezone(UTC).isoformat(timespec="microseconds")
        return [
            Hit(email=item["email"]["S"], kind=item["role"]["S"], at=item["SK"]["S"].split("#")[0])
            for item in self._query(f"{ADDRESS_PREFIX}{address_hash(address)}", start)
        ]

    def story(self, email: str) -> list[dict[str, Any]]:
        """The steps of ``email``, in the order they happened."""
        steps = [
            {
                "stage": item["stage"]["S"],
                "outcome": item["outcome"]["S"],
                "at": item["at"]["S"],
                "ids": {k: v["S"] for k, v in item.get("ids", {}).get("M", {}).items()},
                "details": {k: v["S"] for k, v in item.get("details", {}).get("M", {}).items()},
            }
            for item in self._query(f"{EMAIL_PREFIX}{email}")
        ]
        return sorted(steps, key=lambda s: s["at"])

    def _query(self, pk: str, sk_from: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if sk_from is not None:
            kwargs["KeyConditionExpression"] += " AND SK >= :from"
            kwargs["ExpressionAttributeValues"][":from"] = {"S": sk_from}
        found: list[dict[str, Any]] = []
        while True:
            page = self._client.query(**kwargs)
            found.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# Result fields of a completed action that are ids an operator may hold.
_RESULT_IDS = {
    "conversation_id": IdKind.CONVERSATION,
    "gmail_id": IdKind.GMAIL,
    "bounce_id": IdKind.BOUNCE,
    "correlation_id": IdKind.CORRELATION,
}


def delivered(
    email: str,
    *,
    action: str,
    recipient: str,
    key: str,
    result: Mapping[str, Any],
    outcome: str = "delivered",
) -> Mark:
    """The step of one action done for one recipient, with the ids its result holds."""
    recipient_hash = address_hash(recipient)
    return Mark(
        email=email,
        stage="delivered",
        outcome=outcome,
        part=f"{action}#{recipient_hash}",
        ids={kind: str(result[name]) for name, kind in _RESULT_IDS.items() if result.get(name)},
        details={
            "action": action,
            "key": key,
            "recipient_hash": recipient_hash,
            **{k: str(v) for k, v in result.items() if v not in (None, "")},
        },
    )


def routed(email: str, *, recipient: str, rule: str | None, action: str, outcome: str) -> Mark:
    """The routing decision for one recipient: the rule that matched and what it started."""
    recipient_hash = address_hash(recipient)
    return Mark(
        email=email,
        stage="routed",
        outcome=outcome,
        part=recipient_hash,
        details={"recipient_hash": recipient_hash, "rule": rule or "-", "action": action},
    )


def sent(
    correlation_id: str,
    *,
    outcome: str,
    sender: str,
    recipients: Sequence[str],
    provider: str = "",
    message_id: str = "",
    details: Mapping[str, str] | None = None,
) -> Mark:
    """What the sender did with one outbound email (sent, suppressed, dead-lettered), findable
    by its correlation id, the provider's message id and every address on it."""
    return Mark(
        email=outbound_key(correlation_id),
        stage="sent",
        outcome=outcome,
        part=provider,
        ids={IdKind.CORRELATION: correlation_id, IdKind.OUTBOUND: message_id},
        addresses={"to": recipients, "from": [sender]},
        details={"provider": provider, **(details or {})} if provider else dict(details or {}),
    )
