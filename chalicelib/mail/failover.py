"""The outbound provider switch, shared by every container: which provider sends new mail.

One state-table item (``PK = OUTBOUND#provider-switch``) holds the provider that is down
(opened by a run of its failures, closed by a successful probe), an operator's forced choice,
the reason and since when, and the run of failures per provider. ``choose`` is the pure
decision; ``ProviderSwitch`` keeps the item with conditional writes so two containers that
see the same run open the switch once and one of them probes at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.platform.aws import conditional_write
from chalicelib.platform.errors import ProviderTransientError
from chalicelib.platform.settings import OUTBOUND_PROVIDERS

KEY = {"PK": {"S": "OUTBOUND#provider-switch"}, "SK": {"S": "v1"}}
AUTO = "auto"


@dataclass(frozen=True)
class SwitchState:
    """What the switch item says; the empty state is "every provider up, none forced"."""

    down: str | None = None  # opened automatically: this provider is skipped
    forced: str | None = None  # set by an operator: every stream sends through this one
    reason: str = ""
    since: str = ""
    actor: str = ""
    failures: dict[str, int] = field(default_factory=dict)
    probe_at: int = 0

    @property
    def active(self) -> bool:
        """Whether mail goes anywhere but each stream's first provider (alarmed)."""
        return bool(self.down or self.forced)

    @property
    def mode(self) -> str:
        return f"forced:{self.forced}" if self.forced else AUTO


def choose(order: tuple[str, ...], state: SwitchState) -> str:
    """The provider for a new send of a stream whose providers are ``order`` (primary first).

    A forced provider wins; otherwise the first that is not down. If every provider of the
    stream is down, the primary: waiting on it loses nothing.
    """
    if state.forced:
        return state.forced
    for provider in order:
        if provider != state.down:
            return provider
    return order[0]


def outage(err: BaseException) -> bool:
    """Whether ``err`` counts toward a provider's run of failures: 5xx, timeouts,
    connection errors and throttling: the provider, not the message, is the problem."""
    return isinstance(err, ProviderTransientError)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ProviderSwitch:
    """Read and change the switch item."""

    def __init__(self, table_name: str, *, client: Any, clock: Any = time.time) -> None:
        self._table = table_name
        self._client = client
        self._clock = clock

    def read(self) -> SwitchState:
        item = self._client.get_item(TableName=self._table, Key=KEY, ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return SwitchState()
        return SwitchState(
            down=item.get("down", {}).get("S"),
            forced=item.get("forced", {}).get("S"),
            reason=item.get("reason", {}).get("S", ""),
            since=item.get("since", {}).get("S", ""),
            actor=item.get("actor", {}).get("S", ""),
            failures={
                name: int(item[f"failures_{name}"]["N"])
                for name in OUTBOUND_PROVIDERS
                if f"failures_{name}" in item
            },
            probe_at=int(item.get("probe_at", {}).get("N", "0")),
        )

    def record_failure(self, provider: str, *, threshold: int, error: str) -> bool:
        """Count one more failure of ``provider``; True if this one opened the switch."""
        count = self._client.update_item(
            TableName=self._table,
            Key=KEY,
            UpdateExpression="ADD #f :one",
            ExpressionAttributeNames={"#f": f"failures_{provider}"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )["Attributes"][f"failures_{provider}"]["N"]
        if int(count) < threshold:
            return False
        return self._update_if(
            "attribute_not_exists(down) AND attribute_not_exists(forced)",
            UpdateExpression=(
                "SET down = :p, reason = :r, since = :s, actor = :a, probe_at = :now"
            ),
            ExpressionAttributeValues={
                ":p": {"S": provider},
                ":r": {"S": f"{count} failures in a row, the last {error}"[:300]},
                ":s": {"S": _now_iso()},
                ":a": {"S": AUTO},
                ":now": {"N": str(int(self._clock()))},
            },
        )

    def record_success(self, provider: str, state: SwitchState) -> None:
        """End ``provider``'s run of failures (one write, only if there was a run)."""
        if state.failures.get(provider):
            self._client.update_item(
                TableName=self._table,
                Key=KEY,
                UpdateExpression="SET #f = :zero",
                ExpressionAttributeNames={"#f": f"failures_{provider}"},
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )

    def claim_probe(self, interval_seconds: int) -> bool:
        """True for the one container whose turn it is to probe the provider that is down."""
        now = int(self._clock())
        return self._update_if(
            "attribute_exists(down) AND probe_at <= :due",
            UpdateExpression="SET probe_at = :now",
            ExpressionAttributeValues={
                ":now": {"N": str(now)},
                ":due": {"N": str(now - interval_seconds)},
            },
        )

    def close(self, provider: str) -> bool:
        """After a successful probe: ``provider`` is up again; True if it was down."""
        return self._update_if(
            "down = :p",
            UpdateExpression="SET #f = :zero, reason = :r, since = :s, actor = :a REMOVE down",
            ExpressionAttributeNames={"#f": f"failures_{provider}"},
            ExpressionAttributeValues={
                ":p": {"S": provider},
                ":zero": {"N": "0"},
                ":r": {"S": f"{provider} answered a probe"},
                ":s": {"S": _now_iso()},
                ":a": {"S": AUTO},
            },
        )

    def _update_if(self, condition: str, **params: Any) -> bool:
        """Update the switch's item if ``condition`` holds; False if it did not."""
        return conditional_write(
            self._client.update_item,
            TableName=self._table,
            Key=KEY,
            ConditionExpression=condition,
            **params,
        )

    def force(self, provider: str | None, *, reason: str, actor: str) -> None:
        """An operator's choice: send everything through ``provider``; None is automatic."""
        values: dict[str, Any] = {
            ":r": {"S": reason},
            ":s": {"S": _now_iso()},
            ":a": {"S": actor},
        }
        if provider is None:
            expression = "SET reason = :r, since = :s, actor = :a REMOVE forced, down"
        else:
            expression = "SET forced = :p, reason = :r, since = :s, actor = :a"
            values[":p"] = {"S": provider}
        self._client.update_item(
            TableName=self._table,
            Key=KEY,
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )
