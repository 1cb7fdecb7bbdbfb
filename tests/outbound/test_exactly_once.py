"""Outbound sends when the outcome is unknown: timeouts, failed searches, redrives and
re-submissions each end with exactly one message at Postmark (the stand-in, over HTTP)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.platform.aws import aws_client, reset_clients
from tests.conftest import REGION, Stage
from tests.e2e.conftest import until
from tests.outbound.conftest import Standin, outbound, publish

QUEUE = "outbound-sender"


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROOM_HTTP_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "2")
    reset_clients()


def _run(aws: Stage, sender: Any) -> BaseException | None:
    _, _, error = sender()
    aws.make_visible(QUEUE)
    return error


def _sent_to(standin: Standin, address: str) -> int:
    return sum(1 for m in standin.sent() if address in str(m.get("To", "")))


def _timed_out_after_postmark_stored_it(aws: Stage, sender: Any, standin: Standin) -> None:
    """The first attempt: Postmark takes the message after our 1 s timeout has passed."""
    standin.faults(delay_ms=1500)
    _run(aws, sender)
    standin.clear_faults()
    until(lambda: _sent_to(standin, "ann@example.org") == 1)


def test_a_send_that_timed_out_after_postmark_took_it_is_not_sent_again(
    aws: Stage, standin: Standin, sender: Any, short_timeout: None
) -> None:
    publish(aws, outbound())
    _timed_out_after_postmark_stored_it(aws, sender, standin)

    error = _run(aws, sender)

    assert error is None
    assert _sent_to(standin, "ann@example.org") == 1
    assert standin.calls("/messages/outbound") == 1


def test_an_ambiguous_send_redriven_after_failed_searches_is_not_sent_twice(
    aws: Stage, standin: Standin, sender: Any, short_timeout: None
) -> None:
    publish(aws, outbound())
    _timed_out_after_postmark_stored_it(aws, sender, standin)
    standin.faults(status=503, count=10)  # every search fails until the message is exhausted
    _run(aws, sender)
    [dead] = aws.drain(aws.queues[QUEUE].dlq_url)
    assert dead["MessageAttributes"]["mailroom_disposition"]["StringValue"] == "exhausted"
    standin.clear_faults()

    boto3.client("sqs", region_name=REGION).send_message(  # a redrive: new id, count 1
        QueueUrl=aws.queues[QUEUE].url,
        MessageBody=dead["Body"],
        MessageGroupId=dead["Attributes"]["MessageGroupId"],
        MessageDeduplicationId="redrive-1",
    )
    error = _run(aws, sender)

    assert error is None
    assert _sent_to(standin, "ann@example.org") == 1


def test_the_same_correlation_id_resubmitted_in_another_group_is_proven_not_resent(
    aws: Stage, standin: Standin, sender: Any, short_timeout: None
) -> None:
    publish(aws, outbound())
    _timed_out_after_postmark_stored_it(aws, sender, standin)
    sqs = boto3.client("sqs", region_name=REGION)
    [stuck] = aws.drain(aws.queues[QUEUE].url)
    sqs.delete_message(QueueUrl=aws.queues[QUEUE].url, ReceiptHandle=stuck["ReceiptHandle"])
    sqs.send_message(
        QueueUrl=aws.queues[QUEUE].url,
        MessageBody=json.dumps(outbound()),
        MessageGroupId=hashlib.sha256(b"other-group").hexdigest(),
        MessageDeduplicationId="resubmitted",
    )

    _run(aws, sender)

    assert _sent_to(standin, "ann@example.org") == 1


@pytest.fixture
def suppression_writes_fail() -> Iterator[None]:
    """DynamoDB refuses writes to the suppression list (a botocore hook, as a fault would)."""
    from botocore.exceptions import ClientError

    def refuse(params: dict[str, Any], **_: Any) -> None:
        item = params.get("Item") or params.get("Key") or {}
        if str(item.get("PK", {}).get("S", "")).startswith("SUPPRESSION#"):
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem"
            )

    events = aws_client("dynamodb").meta.events
    events.register("before-call.dynamodb.PutItem", refuse)
    yield
    events.unregister("before-call.dynamodb.PutItem", refuse)


def test_a_failure_settling_a_406_never_resends_a_message_postmark_accepted(
    aws: Stage, standin: Standin, sender: Any, suppression_writes_fail: None
) -> None:
    standin.inactive("gone@example.org")
    publish(aws, outbound("order-1", to="ann@example.org"))
    publish(aws, outbound("order-2", to="gone@example.org, bob@example.org"))

    _run(aws, sender)
    _run(aws, sender)

    assert _sent_to(standin, "ann@example.org") == 1


def test_an_uncertain_send_is_not_searched_until_postmark_can_show_it(
    aws: Stage, standin: Standin, sender: Any, short_timeout: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(aws, outbound())
    _timed_out_after_postmark_stored_it(aws, sender, standin)
    monkeypatch.setenv("MAILROOM_PROOF_DELAY_SECONDS", "3600")
    reset_clients()

    for _ in range(3):  # more than MAILROOM_MAX_ATTEMPTS: waiting is not an attempt
        _run(aws, sender)

    assert standin.calls("/messages/outbound") == 0
    assert aws.drain(aws.queues[QUEUE].dlq_url) == []
    monkeypatch.setenv("MAILROOM_PROOF_DELAY_SECONDS", "0")
    reset_clients()
    _run(aws, sender)
    assert standin.calls("/messages/outbound") == 1
    assert _sent_to(standin, "ann@example.org") == 1
