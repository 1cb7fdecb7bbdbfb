"""One record per business key, so a side effect happens once even when an outcome is unknown.

Providers (FreeScout, Postmark, Gmail, SES) take no idempotency key, so every side effect
goes through this protocol. A key is in one of four states:

==============  ==========================================================================
state           meaning
==============  ==========================================================================
new             no record: nothing can have happened
in progress     an attempt holds the lock until ``lock_expires_at`` (function timeout + slack)
uncertain       an attempt may have acted: the request left and no answer came, the lock
                expired under a crash, or recording the provider's answer failed
completed       the effect exists; ``result`` keeps what the provider answered
==============  ==========================================================================

Transitions (``claim`` returns the state the caller must act on):

====================  ==========================  ==========================================
from                  event                       to (what ``claim`` tells the caller)
====================  ==========================  ==========================================
new                   claim                       in progress (``NEW``: act)
in progress, locked   claim                       unchanged (``AlreadyInProgress``, retried)
in progress, expired  claim (takeover)            in progress (``UNCERTAIN``: prove, then act)
uncertain             claim                       in progress (``UNCERTAIN``: prove, then act)
completed             claim                       unchanged (``COMPLETED``: a duplicate)
in progress           complete                    completed
in progress (NEW)     failure, nothing happened   deleted: released, the retry is ``NEW``
in progress (NEW)     failure, may have acted     uncertain
in progress (UNC.)    any failure                 uncertain (an uncertain key is never released)
====================  ==========================================================================

"Nothing happened" is decided by ``errors.may_have_acted``: only a refused connection or an
answer that proves rejection releases a key. An uncertain key stays uncertain for every later
attempt — a redelivery, a takeover, a redriven copy with a new SQS message id, a re-submission
in another group — and each of them proves whether the effect exists before acting.

The claim is one conditional UpdateItem that returns the old item whether it succeeds or
not, so a new key costs one write and no read. A lock token guards the failure transitions,
so an attempt whose lock expired cannot release the lock of the attempt that took over.
Written here rather than with Powertools' idempotency utility: it adds ~240 ms to a cold
import (bench/cold_start.py) and has no uncertain state.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import AlreadyInProgress, error_class, may_have_acted
from chalicelib.platform.logging import log_event
from chalicelib.platform.settings import Settings

IN_PROGRESS = "IN_PROGRESS"
UNCERTAIN = "UNCERTAIN"
COMPLETED = "COMPLETED"
# Extra lock time beyond the function timeout, for clock skew between containers.
LOCK_SLACK_SECONDS = 10

__all__ = ["AlreadyInProgress", "Claim", "IdempotencyStore", "KeyRecord", "KeyState"]


class KeyState(StrEnum):
    """What the caller of ``claim`` must do."""

    NEW = "new"  # act
    UNCERTAIN = "uncertain"  # prove whether the effect exists, then act
    COMPLETED = "completed"  # nothing: the result is in ``Claim.result``


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``: work to do, work to prove, or the result of work done."""

    key: str
    state: KeyState
    result: dict[str, str] = field(default_factory=dict)
    first_attempt_at: int = 0  # epoch seconds when the key's first attempt began
    token: str = ""
    previous_attempt_at: int | None = None  # when the attempt before this one began
    # Providers named by ``note_attempt`` before an earlier attempt (which one may have acted).
    attempted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KeyRecord:
    """A key's record as stored (for ``mailroom trace``)."""

    key: str
    status: str
    result: dict[str, str]
    first_attempt_at: int | None
    attempts: int
    last_error_class: str | None


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
        """Take the lock for ``key``; say whether to act, prove first, or nothing."""
        from botocore.exceptions import ClientError

        now = int(self._clock())
        token = secrets.token_hex(8)
        try:
            response = self.client.update_item(
                TableName=self._table,
                Key=_key(key),
                UpdateExpression=(
                    "SET #s = :in_progress, lock_expires_at = :lock, lock_token = :token,"
                    " first_attempt_at = if_not_exists(first_attempt_at, :now),"
                    " last_attempt_at = :now,"
                    " expires_at = :expires ADD attempts :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(PK) OR #s = :uncertain"
                    " OR (#s = :in_progress AND lock_expires_at < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": IN_PROGRESS},
                    ":uncertain": {"S": UNCERTAIN},
                    ":lock": {"N": str(now + self._lock_seconds + LOCK_SLACK_SECONDS)},
                    ":token": {"S": token},
                    ":now": {"N": str(now)},
                    ":expires": {"N": str(now + self._ttl_seconds)},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = err.response.get("Item") or {}
            if old.get("status", {}).get("S") == COMPLETED:
                first = _int(old, "first_attempt_at") or 0
                return Claim(key, KeyState.COMPLETED, _result_of(old), first)
            raise AlreadyInProgress("idempotency key is locked by another attempt") from err
        old = response.get("Attributes") or {}
        if not old:
            return Claim(key, KeyState.NEW, first_attempt_at=now, token=token)
        # Any earlier record that is not completed is an attempt that may have acted.
        previous = _int(old, "last_attempt_at") or _int(old, "first_attempt_at")
        return Claim(
            key,
            KeyState.UNCERTAIN,
            first_attempt_at=_int(old, "first_attempt_at") or now,
            token=token,
            previous_attempt_at=previous,
            attempted=frozenset(old.get("attempted", {}).get("SS", [])),
        )

    def note_attempt(self, claim: Claim, provider: str) -> None:
        """Write down, before the call, that this attempt goes to ``provider``, so a later
        attempt that finds the key uncertain knows whose records prove the outcome."""
        self.client.update_item(
            TableName=self._table,
            Key=_key(claim.key),
            UpdateExpression="ADD attempted :p",
            ConditionExpression="lock_token = :token",
            ExpressionAttributeValues={":p": {"SS": [provider]}, ":token": {"S": claim.token}},
        )

    def forget_attempt(self, claim: Claim, provider: str) -> None:
        """Undo ``note_attempt`` after ``provider`` proved it did not act (never raises: a
        leftover name only makes a later attempt wait for proof)."""
        try:
            self.client.update_item(
                TableName=self._table,
                Key=_key(claim.key),
                UpdateExpression="DELETE attempted :p",
                ConditionExpression="lock_token = :token",
                ExpressionAttributeValues={
                    ":p": {"SS": [provider]},
                    ":token": {"S": claim.token},
                },
            )
        except Exception as err:
            log_event("attempt not forgotten", error_class=error_class(err))

    def complete(self, key: str, result: dict[str, str]) -> None:
        """Mark ``key`` done and keep ``result`` (string values) for later duplicates."""
        self.client.update_item(
            TableName=self._table,
            Key=_key(key),
            UpdateExpression=(
                "SET #s = :completed, #r = :result REMOVE lock_expires_at, lock_token"
            ),
            ExpressionAttributeNames={"#s": "status", "#r": "result"},
            ExpressionAttributeValues={
                ":completed": {"S": COMPLETED},
                ":result": {"M": _string_map(result)},
            },
        )

    def completed_item(self, claim: Claim, result: dict[str, str]) -> dict[str, Any]:
        """The whole COMPLETED record, for callers that complete many keys in one write."""
        now = int(self._clock())
        return {
            **_key(claim.key),
            "status": {"S": COMPLETED},
            "result": {"M": _string_map(result)},
            "first_attempt_at": {"N": str(claim.first_attempt_at or now)},
            "expires_at": {"N": str(now + self._ttl_seconds)},
        }

    def settle_failure(self, claim: Claim, err: BaseException) -> None:
        """After a failed attempt: release the key only if nothing can have happened.

        Never raises: if this write fails, the lock expires and the next attempt takes the
        key over as uncertain, which is the safe side.
        """
        release = claim.state is KeyState.NEW and not may_have_acted(err)
        try:
            if release:
                self.client.delete_item(
                    TableName=self._table,
                    Key=_key(claim.key),
                    ConditionExpression="lock_token = :token",
                    ExpressionAttributeValues={":token": {"S": claim.token}},
                )
            else:
                self.mark_uncertain(claim, err)
        except Exception as write_err:
            log_event(
                "idempotency failure not recorded; the lock will expire",
                outcome="uncertain" if not release else "released",
                error_class=error_class(write_err),
            )

    def mark_uncertain(self, claim: Claim, err: BaseException) -> None:
        """Unlock ``claim``'s key as uncertain: every later attempt proves before acting.

        ``last_attempt_at`` is the last attempt that may have acted: one that failed without
        acting (a search that had to wait, say) gives the time back to the attempt before.
        """
        values = {
            ":uncertain": {"S": UNCERTAIN},
            ":error": {"S": error_class(err)},
            ":token": {"S": claim.token},
        }
        restore = ""
        if not may_have_acted(err) and claim.previous_attempt_at is not None:
            restore = ", last_attempt_at = :previous"
            values[":previous"] = {"N": str(claim.previous_attempt_at)}
        self.client.update_item(
            TableName=self._table,
            Key=_key(claim.key),
            UpdateExpression=(
                f"SET #s = :uncertain, last_error_class = :error{restore}"
                " REMOVE lock_expires_at, lock_token"
            ),
            ConditionExpression="lock_token = :token",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values,
        )

    def inspect(self, key: str) -> KeyRecord | None:
        """The stored record of ``key``, without claiming it."""
        item = self.client.get_item(TableName=self._table, Key=_key(key), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        status = item.get("status", {}).get("S", "")
        lock = _int(item, "lock_expires_at")
        if status == IN_PROGRESS and lock is not None and lock < int(self._clock()):
            status = UNCERTAIN  # a lock that expired is an attempt that may have acted
        return KeyRecord(
            key=key,
            status=status,
            result=_result_of(item),
            first_attempt_at=_int(item, "first_attempt_at"),
            attempts=_int(item, "attempts") or 0,
            last_error_class=item.get("last_error_class", {}).get("S"),
        )


def _key(key: str) -> dict[str, dict[str, str]]:
    return {"PK": {"S": f"IDEMPOTENCY#{key}"}, "SK": {"S": "v1"}}


def _string_map(values: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"S": str(v)} for k, v in values.items()}


def _int(item: dict[str, Any], name: str) -> int | None:
    raw = item.get(name, {}).get("N")
    return int(raw) if raw is not None else None


def _result_of(item: dict[str, Any]) -> dict[str, str]:
    stored = item.get("result", {}).get("M", {})
    return {k: str(v.get("S", "")) for k, v in stored.items()}
