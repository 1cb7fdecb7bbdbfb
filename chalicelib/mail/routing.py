"""Routing rules as data: which action a recipient address gets, and where the rules live.

``resolve`` is pure: exact address → address without ``+tag`` → ``*@domain`` → ``*``,
case-insensitive, disabled rules skipped, first match wins. ``DynamoRouteStore`` reads the
routes table (``PK=ROUTE#<pattern>``, ``SK=RULE#v1``) with one Scan cached per container.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ConfigDict, field_validator

from chalicelib.platform.payload import Model


class RouteAction(StrEnum):
    FREESCOUT = "freescout"
    GMAIL = "gmail"
    BOUNCE = "bounce"
    DROP = "drop"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> RouteAction:
        return cls.UNKNOWN


class RouteRule(Model):
    """One routing rule; ``pattern`` is an address, ``*@domain`` or ``*``."""

    model_config = ConfigDict(frozen=True)

    pattern: str
    action: RouteAction
    target: str = ""
    enabled: bool = True
    description: str = ""
    created_at: str = ""
    updated_at: str = ""

    @field_validator("pattern")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


def candidates(address: str) -> list[str]:
    """Patterns to try for ``address``, most specific first."""
    address = address.strip().lower()
    local, at, domain = address.rpartition("@")
    found = [address]
    if at and "+" in local:
        found.append(f"{local.split('+', 1)[0]}@{domain}")
    if at:
        found.append(f"*@{domain}")
    found.append("*")
    return found


def resolve(address: str, rules: Mapping[str, RouteRule]) -> RouteRule | None:
    """The first enabled rule matching ``address``, or None."""
    for pattern in candidates(address):
        rule = rules.get(pattern)
        if rule is not None and rule.enabled:
            return rule
    return None


class RouteStore(Protocol):
    def rules(self) -> Mapping[str, RouteRule]: ...

    def put_rule(self, rule: RouteRule) -> None: ...


class MemoryRouteStore:
    """Rules in a dict: for pure tests and the contract test."""

    def __init__(self, rules: list[RouteRule] | None = None) -> None:
        self._rules = {r.pattern: r for r in rules or []}

    def rules(self) -> Mapping[str, RouteRule]:
        return dict(self._rules)

    def put_rule(self, rule: RouteRule) -> None:
        self._rules[rule.pattern] = rule


class DynamoRouteStore:
    """Rules in the routes table, read with one Scan and cached for ``cache_seconds``."""

    def __init__(
        self,
        table_name: str,
        *,
        cache_seconds: int,
        client: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table_name
        self._cache_seconds = cache_seconds
        self._client = client
        self._clock = clock
        self._cached: dict[str, RouteRule] | None = None
        self._loaded_at = 0.0

    def rules(self) -> Mapping[str, RouteRule]:
        if self._cached is None or self._clock() - self._loaded_at >= self._cache_seconds:
            self._cached = self._scan()
            self._loaded_at = self._clock()
        return self._cached

    def fresh_rules(self) -> Mapping[str, RouteRule]:
        """The rules as the table holds them now (and cached from now on)."""
        self._cached = None
        return self.rules()

    def _scan(self) -> dict[str, RouteRule]:
        found: dict[str, RouteRule] = {}
        kwargs: dict[str, Any] = {"TableName": self._table}
        while True:
            page = self._client.scan(**kwargs)
            for item in page.get("Items", []):
                if not item.get("PK", {}).get("S", "").startswith("ROUTE#"):
                    continue
                rule = RouteRule(
                    pattern=item["PK"]["S"][len("ROUTE#") :],
                    action=item.get("action", {}).get("S", "unknown"),
                    target=item.get("target", {}).get("S", ""),
                    enabled=item.get("enabled", {}).get("BOOL", True),
                    description=item.get("description", {}).get("S", ""),
                    created_at=item.get("created_at", {}).get("S", ""),
                    updated_at=item.get("updated_at", {}).get("S", ""),
                )
                found[rule.pattern] = rule
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_rule(self, rule: RouteRule) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self._client.put_item(
            TableName=self._table,
            Item={
                "PK": {"S": f"ROUTE#{rule.pattern}"},
                "SK": {"S": "RULE#v1"},
                "action": {"S": rule.action.value},
                "target": {"S": rule.target},
                "enabled": {"BOOL": rule.enabled},
                "description": {"S": rule.description},
                "created_at": {"S": rule.created_at or now},
                "updated_at": {"S": now},
            },
        )
        self._cached = None
