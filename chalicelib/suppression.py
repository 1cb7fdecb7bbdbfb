"""One suppression list for every provider, keyed by normalised address, in the state table.

Items are ``PK = SUPPRESSION#<address>``, ``SK = v1`` with the reason, source and time.
``filter`` checks many addresses with one BatchGetItem, so a send costs one read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "SUPPRESSION#"


def normalise(address: str) -> str:
    """Lowercased bare address: ``"Ann <Ann@X.org>"`` → ``ann@x.org``."""
    return address.rsplit("<", 1)[-1].rstrip(">").strip().lower()


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: str
    source: str
    suppressed_at: str


class SuppressionList:
    """Check, add, list and remove suppressed addresses."""

    def __init__(self, table_name: str, *, client: Any) -> None:
        self._table = table_name
        self._client = client

    def add(self, address: str, *, reason: str, source: str, at: datetime | None = None) -> None:
        when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
        self._client.put_item(
            TableName=self._table,
            Item={
                "PK": {"S": PREFIX + normalise(address)},
                "SK": {"S": "v1"},
                "reason": {"S": reason},
                "source": {"S": source},
                "suppressed_at": {"S": when},
            },
        )

    def remove(self, address: str) -> None:
        self._client.delete_item(
            TableName=self._table, Key={"PK": {"S": PREFIX + normalise(address)}, "SK": {"S": "v1"}}
        )

    def suppressed(self, addresses: list[str]) -> set[str]:
        """The normalised addresses among ``addresses`` that are suppressed."""
        wanted = sorted({normalise(a) for a in addresses})
        found: set[str] = set()
        for start in range(0, len(wanted), 100):
            keys = [
                {"PK": {"S": PREFIX + a}, "SK": {"S": "v1"}} for a in wanted[start : start + 100]
            ]
            request: dict[str, Any] = {self._table: {"Keys": keys}}
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
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
            "FilterExpression": "begins_with(PK, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": PREFIX}},
        }
        while True:
            page = self._client.scan(**kwargs)
            found.extend(
                Suppression(
                    address=item["PK"]["S"][len(PREFIX) :],
                    reason=item["reason"]["S"],
                    source=item["source"]["S"],
                    suppressed_at=item["suppressed_at"]["S"],
                )
                for item in page.get("Items", [])
            )
            if "LastEvaluatedKey" not in page:
                return sorted(found, key=lambda s: s.address)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
