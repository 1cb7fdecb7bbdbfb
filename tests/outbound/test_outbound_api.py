"""POST /v1/outbound: signatures, replay, validation, and the message it puts on the topic."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import boto3
import pytest

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.platform.auth import sign
from tests.conftest import REGION, SIGNING_SECRET, Stage
from tests.outbound.conftest import history, outbound

Submit = Any


def _queued(aws: Stage) -> list[dict[str, Any]]:
    return aws.drain(aws.queues["outbound-sender"].url)


def test_a_signed_request_is_queued_with_the_documented_group_and_dedup_ids(
    aws: Stage, submit: Submit
) -> None:
    response = submit(outbound("order-7", to="Ann <Ann@Example.org>, bob@example.org"))

    assert response.status_code == 202
    assert json.loads(response.body) == {"status": "queued", "correlation_id": "order-7"}
    [message] = _queued(aws)
    envelope = json.loads(message["Body"])
    assert json.loads(envelope["Message"])["correlation_id"] == "order-7"
    attributes = message["Attributes"]
    assert attributes["MessageGroupId"] == hashlib.sha256(b"ann@example.org").hexdigest()
    assert attributes["MessageDeduplicationId"] == "order-7"
    assert [s for s, _ in history(aws, "order-7")] == [DeliveryStatus.QUEUED]


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("", "missing signature header"),
        ("v1=abc", "malformed signature header"),
        ("t=soon,v1=abc", "malformed signature header"),
        (None, "signature does not match"),  # signed with the wrong secret below
    ],
)
def test_a_missing_malformed_or_wrong_signature_is_401(
    aws: Stage, submit: Submit, signature: str | None, reason: str
) -> None:
    response = submit(outbound(), secret="not-the-secret", signature=signature)

    assert response.status_code == 401
    assert json.loads(response.body)["message"] == reason
    assert _queued(aws) == []


def test_a_stale_timestamp_is_401_even_with_the_right_secret(aws: Stage, submit: Submit) -> None:
    response = submit(outbound(), timestamp=int(time.time()) - 301)

    assert response.status_code == 401
    assert json.loads(response.body)["message"] == "stale signature timestamp"


def test_a_replayed_request_is_401_and_queued_once(aws: Stage, submit: Submit) -> None:
    body = json.dumps(outbound("order-r")).encode()
    signature = sign(body, SIGNING_SECRET)

    first = submit(body, signature=signature)
    replay = submit(body, signature=signature)
    resigned = submit(body, timestamp=int(time.time()) + 1)

    assert (first.status_code, replay.status_code) == (202, 401)
    assert json.loads(replay.body)["message"] == "replayed signature"
    assert resigned.status_code == 202  # a fresh signature is a new request (SNS dedupes it)
    assert len(_queued(aws)) == 1


def test_the_previous_secret_is_accepted_during_a_rotation(aws: Stage, submit: Submit) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/mailroom/test/outbound/signing-secret-previous",
        Value="old-secret",
        Type="SecureString",
    )

    assert submit(outbound("order-old"), secret="old-secret").status_code == 202
    assert submit(outbound("order-new")).status_code == 202
    assert submit(outbound("order-x"), secret="older-secret").status_code == 401


def test_invalid_fields_are_400_and_named(aws: Stage, submit: Submit) -> None:
    response = submit(outbound(to="nobody", correlation_id="has space", colour="red"))

    assert response.status_code == 400
    body = json.loads(response.body)
    assert body["error"] == "invalid_payload"
    assert {"to", "correlation_id", "colour"} <= set(body["fields"])


def test_broken_json_is_400_and_an_oversized_body_413(
    aws: Stage, submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert json.loads(submit(b"{not json").body)["error"] == "invalid_json"
    monkeypatch.setenv("MAILROOM_MAX_WEBHOOK_BYTES", "2048")
    from chalicelib.platform.aws import reset_clients

    reset_clients()
    assert submit(outbound(text_body="x" * 4096)).status_code == 413


def test_a_publish_failure_is_503_and_the_retry_with_the_same_signature_is_accepted(
    aws: Stage, submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.platform.aws import reset_clients

    body = json.dumps(outbound("order-503")).encode()
    signature = sign(body, SIGNING_SECRET)
    monkeypatch.setenv("MAILROOM_OUTBOUND_TOPIC_ARN", aws.topics["outbound"] + "-gone")
    reset_clients()
    failed = submit(body, signature=signature)
    monkeypatch.setenv("MAILROOM_OUTBOUND_TOPIC_ARN", aws.topics["outbound"])
    reset_clients()
    retried = submit(body, signature=signature)

    assert (failed.status_code, retried.status_code) == (503, 202)
    assert len(_queued(aws)) == 1


def _signature_items(aws: Stage) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=aws.state_table)["Items"]
    return [item for item in items if item["PK"]["S"].startswith("SIGNATURE#")]


def test_a_crash_right_after_publishing_does_not_turn_the_retry_into_a_replay(
    aws: Stage, submit: Submit
) -> None:
    from chalicelib.platform.aws import aws_client

    body = json.dumps(outbound("order-crash")).encode()
    signature = sign(body, SIGNING_SECRET)
    left_behind: list[dict[str, Any]] = []

    def crash(**_: Any) -> None:  # the Lambda dies once SNS has the message
        left_behind.extend(_signature_items(aws))
        raise RuntimeError("killed")

    sns = aws_client("sns")
    sns.meta.events.register("after-call.sns.Publish", crash)
    crashed = submit(body, signature=signature)
    sns.meta.events.unregister("after-call.sns.Publish", crash)
    # A killed process runs no cleanup: the table holds what it held at the crash.
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for item in _signature_items(aws):
        dynamodb.delete_item(TableName=aws.state_table, Key={"PK": item["PK"], "SK": item["SK"]})
    for item in left_behind:
        dynamodb.put_item(TableName=aws.state_table, Item=item)
    retried = submit(body, signature=signature)
    replayed = submit(body, signature=signature)

    assert crashed.status_code >= 500
    assert left_behind == []
    assert (retried.status_code, replayed.status_code) == (202, 401)
    assert len(_queued(aws)) == 1  # the topic dedupes the second publish by correlation id
