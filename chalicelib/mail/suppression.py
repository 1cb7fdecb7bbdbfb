"""One suppression list for every provider, keyed by normalised address, in the state table.

Items are ``PK = SUPPRESSION#<address>``, ``SK = v1`` with the state (``suppressed`` or
``reactivated``), reason, source and ``changed_at``, the time of the change itself (a
bounce's BouncedAt, not when we heard of it) to the microsecond. A change older than the
stored one is ignored, so a bounce that Postmark retries for hours cannot undo a
reactivation made in the meantime, even within the same second. At equal times suppression
wins: a reactivation never replaces a suppression of the same instant (sending to an address
that may complain is the costlier mistake). A reactivation stays as a marker until it
expires (``REACTIVATED_DAYS``).
``suppressed`` checks many addresses with one BatchGetItem, so a batch costs one read.
A ``Mirror`` (SES's account-level list) is given every change our list takes, after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.platform.aws import conditional_write

PREFIX = "SUPPRESSION#"
SUPPRESSED = "suppressed"
REACTIVATED = "reactivated"
# How long a reactivation is remembered to outrank older, late-arriving bounces.
REACTIVATED_DAYS = 30


def normalise(address: str) -> str:
    """Lowercased bare address: ``"Ann <Ann@X.org>"``, ``" <Ann@X.org> "`` → ``ann@x.org``."""
    return address.strip().rsplit("<", 1)[-1].rstrip(">").strip().lower()


def changed_at(at: datetime) -> str:
    """The stored, ordered form of a change time: UTC ISO 8601 to the microsecond."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: str
    source: str
    suppressed_at: str


class Mirror(Protocol):
    """Another provider's list kept in step with ours (both calls idempotent)."""

    def put(self, address: str, *, reason: str) -> None: ...

    def delete(self, address: str) -> bool: ...


class SuppressionList:
    """Check, add, list and remove suppressed addresses.

    With a ``mirror``, a change our list takes is then made there too. A mirror that fails
    raises after ours is written: the caller's retry makes the same change (same time), which
    our list takes again, so the mirror gets it again; the two lists end in agreement.
    """

    def __init__(self, table_name: str, *, client: Any, mirror: Mirror | None = None) -> None:
        self._table = table_name
        self._client = client
        self._mirror = mirror

    def add(self, address: str, *, reason: str, source: str, at: datetime | None = None) -> bool:
        """Suppress ``address``; False if a newer change (a reactivation) already holds."""
        return self._change(address, SUPPRESSED, reason=reason, source=source, at=at)

    def remove(self, address: str, *, source: str = "operator", at: datetime | None = None) -> bool:
        """Make ``address`` sendable again; False if a newer suppression already holds."""
        return self._change(address, REACTIVATED, reason="reactivated", source=source, at=at)

    def _change(
        self, address: str, state: str, *, reason: str, source: str, at: datetime | None
    ) -> bool:

        when = changed_at(at or datetime.now(UTC))
        item: dict[str, Any] = {
            "PK": {"S": PREFIX + normalise(address)},
            "SK": {"S": "v1"},
            "state": {"S": state},
            "reason": {"S": reason},
            "source": {"S": source},
            "changed_at": {"S": when},
        }
        if state == REACTIVATED:
            item["expires_at"] = {"N": str(int(time.time()) + REACTIVATED_DAYS * 86_400)}
        # Fixed-width UTC strings compare as times do. Items written at whole seconds
        # ("…:00+00:00") sort before every sub-second time of that second ('+' < '.').
        values = {":when": {"S": when}}
        extra: dict[str, Any] = {}
        if state == SUPPRESSED:
            condition = "attribute_not_exists(PK) OR changed_at <= :when"
        else:  # equal times: suppression wins, so only a reactivation is replaced
            condition = (
                "attribute_not_exists(PK) OR changed_at < :when"
                " OR (changed_at = :when AND #state = :reactivated)"
            )
            values[":reactivated"] = {"S": REACTIVATED}
            extra["ExpressionAttributeNames"] = {"#state": "state"}
        written = conditional_write(
            self._client.put_item,
            TableName=self._table,
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            **extra,
        )
        if not written:
            return False
        if self._mirror is not None:
            if state == SUPPRESSED:
                self._mirror.put(normalise(address), reason=reason)
            else:
                self._mirror.delete(normalise(address))
        return True

    def suppressed(self, addresses: list[str]) -> set[str]:
        """The normalised addresses among ``addresses`` that are suppressed."""
        wanted = sorted({normalise(a) for a in addresses})
        found: set[str] = set()
        for start in range(0, len(wanted), 100):
            keys = [
                {"PK": {"S": PREFIX + a}, "SK": {"S": "v1"}} for a in wanted[start : start + 100]
            ]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": "PK, #state",
                    "ExpressionAttributeNames": {"#state": "state"},
                }
            }
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    if item.get("state", {}).get("S") != REACTIVATED:
                        found.add(item["PK"]["S"][len(PREFIX) :])
                request = response.get("UnprocessedKeys") or {}
        return found

    def filter(self, addresses: list[str]) -> tuple[list[str], list[str]]:
        """``addresses`` split into (sendable, suppressed), order kept."""
        blocked = self.suppressed(addresses)
        keep = [a for a in addresses if normalise(a) not in blocked]
        drop = [a for a in addresses if normalise(a) in blocked]
        return keep, drop

    def list(self) -> list[Suppression]:
        """Every suppressed address (a Scan: for the operator, not the hot path)."""
        found: list[Suppression] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(PK, :prefix) AND #state <> :reactivated",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":prefix": {"S": PREFIX},
                ":reactivated": {"S": REACTIVATED},
            },
        }
        while True:
            page = self._client.scan(**kwargs)
            found.extend(
                Suppression(
                    address=item["PK"]["S"][len(PREFIX) :],
                    reason=item["reason"]["S"],
                    source=item["source"]["S"],
                    suppressed_at=item["changed_at"]["S"],
                )
                for item in page.get("Items", [])
            )
            if "LastEvaluatedKey" not in page:
                return sorted(found, key=lambda s: s.address)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
