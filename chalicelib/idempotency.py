"""One record per business key, so a redelivered message is recognised, not redone.

Records live in the state table as ``PK = IDEMPOTENCY#<key>``, ``SK = v1`` with a status
(IN_PROGRESS or COMPLETED), a lock expiry tied to the function timeout, the result of the
work (e.g. the FreeScout conversation id) and a TTL longer than queue plus DLQ retention.

Written here rather than with Powertools' idempotency utility for two measured reasons:
it adds ~240 ms to a cold import (bench/cold_start.py), and it cannot tell the caller that
an earlier attempt died mid-flight. ``claim`` returns exactly that (``Claim.takeover``), so
the caller can look for the side effect of the earlier attempt before repeating it. The
claim is one conditional PutItem that returns the old item in both the success and the
failure case, so a new key costs one write and no read.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.clients.aws import aws_client
from chalicelib.errors import TransientError
from chalicelib.settings import Settings

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
# Extra lock time beyond the function timeout, for clock skew between containers.
LOCK_SLACK_SECONDS = 10


class ClaimState(StrEnum):
    NEW = "new"
    COMPLETED = "completed"


class AlreadyInProgress(TransientError):
    """Another invocation holds the lock for this key; SQS will redeliver later."""


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``: work to do, or the result of work already done."""

    key: str
    state: ClaimState
    result: dict[str, Any] = field(default_factory=dict)
    takeover: bool = False  # an earlier attempt held the lock and expired: it may have acted


class IdempotencyStore:
    """DynamoDB-backed idempotency records in the state table."""

    def __init__(
        self,
        table_name: str,
        *,
        lock_seconds: int,
        ttl_days: int,
        client: Any | None = None,
        clock: Any = time.time,
    ) -> None:
        self._table = table_name
        self._lock_seconds = lock_seconds
        self._ttl_seconds = ttl_days * 86_400
        self._client = client
        self._clock = clock

    @classmethod
    def for_settings(cls, settings: Settings, client: Any) -> IdempotencyStore:
        """The stage's store: locks outlive the function timeout, records the queues."""
        return cls(
            settings.state_table,
            lock_seconds=settings.function_timeout_seconds,
            ttl_days=settings.idempotency_ttl_days,
            client=client,
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("dynamodb")
        return self._client

    def claim(self, key: str) -> Claim:
        """Take the lock for ``key``, or learn that the work is done or under way."""
        from botocore.exceptions import ClientError

        now = int(self._clock())
        try:
            response = self.client.put_item(
                TableName=self._table,
                Item={
                    "PK": {"S": _pk(key)},
                    "SK": {"S": "v1"},
                    "status": {"S": IN_PROGRESS},
                    "lock_expires_at": {"N": str(now + self._lock_seconds + LOCK_SLACK_SECONDS)},
                    "created_at": {"N": str(now)},
                    "expires_at": {"N": str(now + self._ttl_seconds)},
                },
                ConditionExpression=(
                    "attribute_not_exists(PK) OR (#s = :in_progress AND lock_expires_at < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": IN_PROGRESS},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = err.response.get("Item") or {}
            if old.get("status", {}).get("S") == COMPLETED:
                return Claim(key, ClaimState.COMPLETED, _result_of(old))
            raise AlreadyInProgress("idempotency key is locked by another attempt") from err
        return Claim(key, ClaimState.NEW, takeover=bool(response.get("Attributes")))

    def complete(self, key: str, result: dict[str, str]) -> None:
        """Mark ``key`` done and keep ``result`` (string values) for later duplicates."""
        self.client.update_item(
            TableName=self._table,
            Key={"PK": {"S": _pk(key)}, "SK": {"S": "v1"}},
            UpdateExpression="SET #s = :completed, #r = :result REMOVE lock_expires_at",
            ExpressionAttributeNames={"#s": "status", "#r": "result"},
            ExpressionAttributeValues={
                ":completed": {"S": COMPLETED},
                ":result": {"M": {k: {"S": v} for k, v in result.items()}},
            },
        )

    def completed_item(self, key: str, result: dict[str, str]) -> dict[str, Any]:
        """The whole COMPLETED record, for callers that complete many keys in one batch write."""
        now = int(self._clock())
        return {
            "PK": {"S": _pk(key)},
            "SK": {"S": "v1"},
            "status": {"S": COMPLETED},
            "result": {"M": {k: {"S": v} for k, v in result.items()}},
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(now + self._ttl_seconds)},
        }

    def release(self, key: str) -> None:
        """Drop an IN_PROGRESS lock after a failure, so the retry can claim at once."""
        self.client.delete_item(
            TableName=self._table,
            Key={"PK": {"S": _pk(key)}, "SK": {"S": "v1"}},
            ConditionExpression="#s = :in_progress",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":in_progress": {"S": IN_PROGRESS}},
        )

    def release_quietly(self, key: str) -> None:
        """``release`` for error paths: a failure here only delays the retry until expiry."""
        # The lock expires on its own; the original error is the one that matters.
        with contextlib.suppress(Exception):
            self.release(key)


def _pk(key: str) -> str:
    return f"IDEMPOTENCY#{key}"


def _result_of(item: dict[str, Any]) -> dict[str, Any]:
    stored = item.get("result", {}).get("M", {})
    return {k: v.get("S") for k, v in stored.items()}
