"""Idempotency records against moto's DynamoDB."""

from __future__ import annotations

import boto3
import pytest

from chalicelib.idempotency import AlreadyInProgress, ClaimState, IdempotencyStore
from tests.conftest import REGION, Stage


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def store(aws: Stage, clock: list[float]) -> IdempotencyStore:
    client = boto3.client("dynamodb", region_name=REGION)
    return IdempotencyStore(
        aws.state_table, lock_seconds=60, ttl_days=30, client=client, clock=lambda: clock[0]
    )


def test_first_claim_is_new_and_a_second_is_locked(store: IdempotencyStore) -> None:
    assert store.claim("k").state is ClaimState.NEW
    with pytest.raises(AlreadyInProgress):
        store.claim("k")


def test_completed_claim_returns_the_stored_result(store: IdempotencyStore) -> None:
    store.claim("k")
    store.complete("k", {"conversation_id": "42"})

    claim = store.claim("k")

    assert claim.state is ClaimState.COMPLETED
    assert claim.result == {"conversation_id": "42"}


def test_expired_lock_is_taken_over_and_says_so(
    store: IdempotencyStore, clock: list[float]
) -> None:
    first = store.claim("k")
    clock[0] += 60 + 10 + 1  # function timeout plus slack

    second = store.claim("k")

    assert (first.takeover, second.state, second.takeover) == (False, ClaimState.NEW, True)


def test_release_lets_the_retry_claim_at_once(store: IdempotencyStore) -> None:
    store.claim("k")
    store.release("k")
    assert store.claim("k").takeover is False


def test_record_outlives_queue_and_dlq_retention(
    aws: Stage, store: IdempotencyStore, clock: list[float]
) -> None:
    store.claim("k")
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=aws.state_table, Key={"PK": {"S": "IDEMPOTENCY#k"}, "SK": {"S": "v1"}}
    )["Item"]

    assert int(item["expires_at"]["N"]) - clock[0] == 30 * 86_400 > (4 + 14) * 86_400
    assert int(item["lock_expires_at"]["N"]) - clock[0] == 70
