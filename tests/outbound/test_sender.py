"""The outbound sender against the Postmark stand-in over HTTP (and `responses` for a timeout)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import boto3
import pytest
import requests
import responses

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.suppression import SuppressionList
from tests.conftest import POSTMARK_URL, REGION, Stage
from tests.outbound.conftest import Standin, history, outbound, publish

Sender = Any


def _suppressions(aws: Stage) -> SuppressionList:
    return SuppressionList(aws.state_table, client=boto3.client("dynamodb", region_name=REGION))


def test_a_batch_of_ten_is_sent_with_one_http_call(
    aws: Stage, standin: Standin, sender: Sender
) -> None:
    for i in range(10):
        publish(aws, outbound(f"order-{i}", to=f"r{i}@example.org"))

    event, _, error = sender()

    assert error is None
    assert len(event["Records"]) == 10
    assert standin.calls("/email/batch") == 1
    assert standin.calls("/email") == 0
    sent = standin.sent()
    assert sorted(m["Metadata"]["correlation_id"] for m in sent) == sorted(
        f"order-{i}" for i in range(10)
    )
    [(status, details)] = history(aws, "order-3")
    assert status is DeliveryStatus.SENT
    assert details["postmark_message_id"] in {m["MessageID"] for m in sent}
    assert aws.drain(aws.queues["outbound-sender"].url) == []


def test_two_inactive_of_ten_are_suppressed_not_retried_and_eight_sent_once(
    aws: Stage, standin: Standin, sender: Sender
) -> None:
    standin.inactive("r2@example.org", "r7@example.org")
    for i in range(10):
        publish(aws, outbound(f"order-{i}", to=f"r{i}@example.org"))

    _, _, error = sender()
    aws.make_visible("outbound-sender")
    second, _, _ = sender()

    assert error is None
    assert second["Records"] == []
    sent = sorted(m["Metadata"]["correlation_id"] for m in standin.sent())
    assert sent == sorted(f"order-{i}" for i in range(10) if i not in {2, 7})
    assert {s.address for s in _suppressions(aws).list()} == {"r2@example.org", "r7@example.org"}
    assert [s for s, _ in history(aws, "order-2")] == [DeliveryStatus.SUPPRESSED]
    assert aws.drain(aws.queues["outbound-sender"].dlq_url) == []


def test_inactive_cc_is_dropped_and_the_message_goes_to_the_others_in_the_same_run(
    aws: Stage, standin: Standin, sender: Sender
) -> None:
    standin.inactive("gone@example.org")
    publish(aws, outbound("order-cc", cc=["gone@example.org", "boss@example.org"]))

    _, _, error = sender()

    assert error is None
    [message] = standin.sent()
    assert message["Recipients"] == ["ann@example.org", "boss@example.org"]
    assert _suppressions(aws).suppressed(["gone@example.org"]) == {"gone@example.org"}


def test_rate_limited_then_accepted_is_sent_once(
    aws: Stage, standin: Standin, sender: Sender
) -> None:
    standin.faults(status=429, count=1)
    publish(aws, outbound("order-429"))

    _, _, first_error = sender()
    assert first_error is not None
    assert standin.sent() == []
    aws.make_visible("outbound-sender")
    _, _, second_error = sender()

    assert second_error is None
    assert standin.calls("/email/batch") == 2
    assert [m["Metadata"]["correlation_id"] for m in standin.sent()] == ["order-429"]
    assert [s for s, _ in history(aws, "order-429")] == [DeliveryStatus.SENT]


def test_a_timeout_after_postmark_accepted_is_found_by_correlation_id_not_sent_again(
    aws: Stage, sender: Sender
) -> None:
    publish(aws, outbound("order-timeout"))
    with responses.RequestsMock() as postmark:
        postmark.post(f"{POSTMARK_URL}/email/batch", body=requests.ReadTimeout("read timed out"))
        _, _, error = sender()
    assert error is not None

    aws.make_visible("outbound-sender")
    with responses.RequestsMock() as postmark:
        search = postmark.get(
            f"{POSTMARK_URL}/messages/outbound",
            json={"TotalCount": 1, "Messages": [{"MessageID": "pm-already-sent"}]},
            match=[
                responses.matchers.query_param_matcher(
                    {"metadata_correlation_id": "order-timeout", "count": "50", "offset": "0"}
                )
            ],
        )
        _, _, error = sender()

    assert error is None
    assert search.call_count == 1
    [(status, details)] = history(aws, "order-timeout")
    assert (status, details["postmark_message_id"]) == (DeliveryStatus.SENT, "pm-already-sent")
    assert details["found_by"] == "search"


def test_the_same_correlation_id_twice_is_sent_once(
    aws: Stage, standin: Standin, sender: Sender
) -> None:
    publish(aws, outbound("order-dup"))
    sender()
    # Past the SNS deduplication window, the same request arrives again.
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queues["outbound-sender"].url,
        MessageBody=json.dumps(outbound("order-dup")),
        MessageGroupId="g",
        MessageDeduplicationId="later",
    )
    _, _, error = sender()

    assert error is None
    assert len(standin.sent()) == 1


def test_all_recipients_suppressed_means_no_call_and_outcome_suppressed(
    aws: Stage, sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    _suppressions(aws).add("Ann@Example.org", reason="HardBounce", source="postmark")
    publish(aws, outbound("order-s", to="ann@example.org"))

    with responses.RequestsMock() as postmark:  # any HTTP call would fail the test
        _, _, error = sender()

    assert error is None
    assert len(postmark.calls) == 0
    outcomes = [getattr(r, "fields", {}) for r in caplog.records]
    assert [o["outcome"] for o in outcomes if o.get("event_type") == "outbound_sender"] == [
        "suppressed"
    ]
    assert [s for s, _ in history(aws, "order-s")] == [DeliveryStatus.SUPPRESSED]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}, "token"),
        (
            422,
            {"ErrorCode": 300, "Message": "Invalid 'From' address: 'Shop'."},
            "Invalid 'From'",
        ),
    ],
)
def test_a_permanent_rejection_is_dead_lettered_with_the_reason(
    aws: Stage, sender: Sender, status: int, body: dict[str, Any], reason: str
) -> None:
    publish(aws, outbound("order-bad"))
    with responses.RequestsMock() as postmark:
        postmark.post(f"{POSTMARK_URL}/email/batch", status=status, json=body)
        _, _, error = sender()

    assert error is None
    [dead] = aws.drain(aws.queues["outbound-sender"].dlq_url)
    assert reason in dead["MessageAttributes"]["mailroom_reason"]["StringValue"]
    [(status_, details)] = history(aws, "order-bad")
    assert status_ is DeliveryStatus.DEAD_LETTERED
    assert reason in details["reason"]


def test_one_rejected_element_of_a_batch_is_dead_lettered_the_others_sent(
    aws: Stage, sender: Sender
) -> None:
    for i in range(3):
        publish(aws, outbound(f"order-{i}", to=f"r{i}@example.org"))
    answers = [
        {"ErrorCode": 0, "Message": "OK", "MessageID": "pm-0", "To": "r0@example.org"},
        {"ErrorCode": 300, "Message": "Invalid 'To' address."},
        {"ErrorCode": 0, "Message": "OK", "MessageID": "pm-2", "To": "r2@example.org"},
    ]
    with responses.RequestsMock() as postmark:
        postmark.post(f"{POSTMARK_URL}/email/batch", json=answers)
        _, _, error = sender()

    assert error is None
    [dead] = aws.drain(aws.queues["outbound-sender"].dlq_url)
    assert json.loads(dead["Body"])["Message"].count("order-1") == 1
    assert [s for s, _ in history(aws, "order-0")] == [DeliveryStatus.SENT]
    assert [s for s, _ in history(aws, "order-1")] == [DeliveryStatus.DEAD_LETTERED]


def test_a_malformed_request_is_dead_lettered_as_poison(aws: Stage, sender: Sender) -> None:
    publish(aws, {"correlation_id": "order-p", "to": "ann@example.org"})

    with responses.RequestsMock() as postmark:
        _, _, error = sender()

    assert error is None
    assert len(postmark.calls) == 0
    [dead] = aws.drain(aws.queues["outbound-sender"].dlq_url)
    attributes = dead["MessageAttributes"]
    assert attributes["mailroom_disposition"]["StringValue"] == "poison"
    assert "from" in attributes["mailroom_reason"]["StringValue"]
    [(status, details)] = history(aws, "order-p")
    assert status is DeliveryStatus.DEAD_LETTERED
    assert details["reason"].startswith("not an outbound request")


def test_the_postmark_message_carries_threading_headers_attachments_and_the_correlation_id(
    aws: Stage, standin: Standin, sender: Sender, tmp_path: Any
) -> None:
    request = outbound(
        "order-full",
        bcc="audit@example.org",
        html_body="<p>Thanks</p>",
        reply_to="help@example.com",
        headers={"In-Reply-To": "<a@mail>", "References": "<a@mail>"},
        attachments=[{"name": "r.pdf", "content": "JVBERg==", "content_type": "application/pdf"}],
        tag="receipt",
        metadata={"order": "42"},
        track_opens=True,
        track_links="HtmlOnly",
    )
    publish(aws, request)

    sender()

    [accepted] = standin.sent()
    raw = json.loads(
        next((tmp_path / "postmark").glob(f"message-{accepted['MessageID']}.json")).read_text()
    )
    assert raw["Headers"] == [
        {"Name": "In-Reply-To", "Value": "<a@mail>"},
        {"Name": "References", "Value": "<a@mail>"},
    ]
    assert raw["Attachments"] == [
        {"Name": "r.pdf", "Content": "JVBERg==", "ContentType": "application/pdf"}
    ]
    assert raw["Metadata"] == {"order": "42", "correlation_id": "order-full"}
    assert (raw["Bcc"], raw["ReplyTo"], raw["Tag"]) == (
        "audit@example.org",
        "help@example.com",
        "receipt",
    )
    assert (raw["TrackOpens"], raw["TrackLinks"]) == (True, "HtmlOnly")


def test_a_request_too_big_for_sns_travels_by_claim_check_and_is_sent_whole(
    aws: Stage, standin: Standin, sender: Sender, submit: Any, tmp_path: Any
) -> None:
    content = base64.b64encode(os.urandom(300_000)).decode()
    attachment = {"name": "big.bin", "content": content, "content_type": "application/pdf"}

    assert submit(outbound("order-big", attachments=[attachment])).status_code == 202
    [queued] = aws.receive(aws.queues["outbound-sender"].url)
    assert "mailroom_claim_check" in json.loads(queued["Body"])["Message"]
    boto3.client("sqs", region_name=REGION).change_message_visibility(
        QueueUrl=aws.queues["outbound-sender"].url,
        ReceiptHandle=queued["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    _, _, error = sender()

    assert error is None
    [accepted] = standin.sent()
    raw = json.loads(
        next((tmp_path / "postmark").glob(f"message-{accepted['MessageID']}.json")).read_text()
    )
    assert raw["Attachments"][0]["Content"] == content


def test_a_send_whose_claim_could_not_be_completed_is_found_later_not_sent_twice(
    aws: Stage, standin: Standin, sender: Sender
) -> None:
    from chalicelib.platform.aws import aws_client

    publish(aws, outbound("order-lost-write"))

    def refuse(**_: Any) -> None:
        raise RuntimeError("DynamoDB is unavailable")

    events = aws_client("dynamodb").meta.events
    events.register("before-call.dynamodb.BatchWriteItem", refuse, unique_id="refuse")
    _, _, error = sender()
    events.unregister("before-call.dynamodb.BatchWriteItem", unique_id="refuse")
    assert error is not None
    assert len(standin.sent()) == 1

    # The claim is still locked; let its lock run out, as time would.
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=aws.state_table,
        Key={"PK": {"S": "IDEMPOTENCY#outbound:order-lost-write"}, "SK": {"S": "v1"}},
        UpdateExpression="SET lock_expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )
    aws.make_visible("outbound-sender")
    _, _, error = sender()

    assert error is None
    assert len(standin.sent()) == 1
    [(status, details)] = history(aws, "order-lost-write")
    assert (status, details["found_by"]) == (DeliveryStatus.SENT, "search")
