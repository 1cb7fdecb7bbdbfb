"""Every transition of the idempotency protocol, against moto's DynamoDB."""

from __future__ import annotations

import boto3
import pytest

from chalicelib.platform.errors import (
    EffectNotRecorded,
    PermanentError,
    ProviderTransientError,
)
from chalicelib.platform.idempotency import AlreadyInProgress, IdempotencyStore, KeyState
from tests.conftest import REGION, Stage

TIMEOUT_AFTER_SEND = ProviderTransientError(
    "request timed out", provider="freescout", may_have_acted=True
)
REFUSED = ProviderTransientError("connection failed", provider="freescout")


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def store(aws: Stage, clock: list[float]) -> IdempotencyStore:
    client = boto3.client("dynamodb", region_name=REGION)
    return IdempotencyStore(
        aws.state_table, lock_seconds=60, ttl_days=30, client=client, clock=lambda: clock[0]
    )


def _expire_lock(clock: list[float]) -> None:
    clock[0] += 60 + 10 + 1  # function timeout plus slack


def test_first_claim_is_new_and_a_second_is_locked(store: IdempotencyStore) -> None:
    assert store.claim("k").state is KeyState.NEW
    with pytest.raises(AlreadyInProgress):
        store.claim("k")


def test_a_locked_key_is_not_counted_as_an_attempt() -> None:
    assert AlreadyInProgress("locked").counts_as_attempt is False


def test_completed_claim_returns_the_stored_result(store: IdempotencyStore) -> None:
    store.claim("k")
    store.complete("k", {"conversation_id": "42"})

    claim = store.claim("k")

    assert claim.state is KeyState.COMPLETED
    assert claim.result == {"conversation_id": "42"}


def test_expired_lock_is_taken_over_as_uncertain_with_the_first_attempts_time(
    store: IdempotencyStore, clock: list[float]
) -> None:
    first = store.claim("k")
    _expire_lock(clock)

    second = store.claim("k")

    assert (first.state, second.state) == (KeyState.NEW, KeyState.UNCERTAIN)
    assert second.first_attempt_at == first.first_attempt_at == 1_000_000


def test_failure_that_proves_nothing_happened_releases_a_new_key(
    store: IdempotencyStore,
) -> None:
    store.settle_failure(store.claim("k"), REFUSED)

    assert store.claim("k").state is KeyState.NEW


def test_our_own_error_before_any_request_releases_a_new_key(store: IdempotencyStore) -> None:
    store.settle_failure(store.claim("k"), PermanentError("no routing rule"))

    assert store.inspect("k") is None


@pytest.mark.parametrize(
    "err",
    [TIMEOUT_AFTER_SEND, EffectNotRecorded("sent, not recorded"), RuntimeError("bug")],
    ids=["timeout-after-send", "effect-not-recorded", "unexpected"],
)
def test_failure_that_may_have_acted_makes_the_key_uncertain_and_unlocked(
    store: IdempotencyStore, err: BaseException
) -> None:
    store.settle_failure(store.claim("k"), err)

    record = store.inspect("k")
    assert record is not None
    assert record.status == "UNCERTAIN"
    assert store.claim("k").state is KeyState.UNCERTAIN  # no wait for a lock


def test_an_uncertain_key_is_never_released_even_by_a_clean_refusal(
    store: IdempotencyStore,
) -> None:
    store.settle_failure(store.claim("k"), TIMEOUT_AFTER_SEND)
    retry = store.claim("k")

    store.settle_failure(retry, REFUSED)

    assert store.claim("k").state is KeyState.UNCERTAIN


def test_an_uncertain_key_can_be_completed(store: IdempotencyStore) -> None:
    store.settle_failure(store.claim("k"), TIMEOUT_AFTER_SEND)
    store.claim("k")
    store.complete("k", {"message_id": "pm-1"})

    assert store.claim("k").result == {"message_id": "pm-1"}


def test_a_stale_attempt_cannot_release_the_lock_of_the_attempt_that_took_over(
    store: IdempotencyStore, clock: list[float]
) -> None:
    stale = store.claim("k")
    _expire_lock(clock)
    store.claim("k")  # the takeover holds the lock now

    store.settle_failure(stale, REFUSED)

    with pytest.raises(AlreadyInProgress):
        store.claim("k")


def test_inspect_shows_an_expired_lock_as_uncertain_and_counts_attempts(
    store: IdempotencyStore, clock: list[float]
) -> None:
    store.claim("k")
    _expire_lock(clock)
    store.claim("k")
    _expire_lock(clock)

    record = store.inspect("k")

    assert record is not None
    assert (record.status, record.attempts, record.first_attempt_at) == (
        "UNCERTAIN",
        2,
        1_000_000,
    )


def test_completed_item_keeps_the_first_attempts_time(aws: Stage, store: IdempotencyStore) -> None:
    claim = store.claim("k")
    item = store.completed_item(claim, {"conversation_id": "7"})
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=aws.state_table, Item=item)

    again = store.claim("k")

    assert (again.state, again.result, again.first_attempt_at) == (
        KeyState.COMPLETED,
        {"conversation_id": "7"},
        1_000_000,
    )


def test_record_outlives_queue_and_dlq_retention(
    aws: Stage, store: IdempotencyStore, clock: list[float]
) -> None:
    store.claim("k")
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=aws.state_table, Key={"PK": {"S": "IDEMPOTENCY#k"}, "SK": {"S": "v1"}}
    )["Item"]

    assert int(item["expires_at"]["N"]) - clock[0] == 30 * 86_400 > (4 + 14) * 86_400
    assert int(item["lock_expires_at"]["N"]) - clock[0] == 70
