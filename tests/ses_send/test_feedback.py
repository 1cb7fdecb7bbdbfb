"""SES feedback (both shapes) through SNS → SQS into the suppression list and delivery log."""

from __future__ import annotations

import json
from typing import Any

import boto3

from chalicelib.handlers import ses_feedback
from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.mail.message_ids import lookup_item
from chalicelib.mail.suppression import SuppressionList
from tests.conftest import REGION, Stage
from tests.outbound.conftest import history

QUEUE = "ses-feedback"
SES_ID = "010001812345abcd-11111111-2222-3333-4444-555555555555-000000"


def _mail(*, tags: dict[str, list[str]] | None = None) -> dict[str, Any]:
    mail: dict[str, Any] = {
        "timestamp": "2026-12-04T10:00:00.000Z",
        "source": "shop@example.com",
        "messageId": SES_ID,
        "destination": ["ann@example.org"],
    }
    if tags is not None:
        mail["tags"] = tags
    return mail


def _bounce(kind: str = "Permanent", sub: str = "General", **shape: Any) -> dict[str, Any]:
    return {
        **shape,
        "mail": _mail(tags=shape.pop("tags", None)) if "eventType" in shape else _mail(),
        "bounce": {
            "bounceType": kind,
            "bounceSubType": sub,
            "bouncedRecipients": [
                {
                    "emailAddress": "ann@example.org",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-12-04T10:00:05.000Z",
            "feedbackId": "feedback-1",
            "reportingMTA": "dns; a8-70.smtp-out.amazonses.com",
        },
    }


def _event(kind: str, body: dict[str, Any], at: str) -> dict[str, Any]:
    return {"eventType": kind, "mail": _mail(tags={"correlation_id": ["order-1"]}), **body}


def _publish(aws: Stage, notification: dict[str, Any] | str) -> None:
    message = notification if isinstance(notification, str) else json.dumps(notification)
    boto3.client("sns", region_name=REGION).publish(
        TopicArn=aws.topics["ses-feedback"], Message=message
    )


def _run(aws: Stage) -> Any:
    aws.make_visible(QUEUE)
    return aws.run_lambda(QUEUE, ses_feedback.handle_batch)


def _suppressed(aws: Stage) -> set[str]:
    client = boto3.client("dynamodb", region_name=REGION)
    return SuppressionList(aws.state_table, client=client).suppressed(["ann@example.org"])


def test_a_permanent_bounce_notification_suppresses_and_lands_on_the_delivery_we_sent(
    aws: Stage,
) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=aws.state_table, Item=lookup_item("ses", SES_ID, "order-1", ttl_days=30)
    )
    _publish(aws, {"notificationType": "Bounce", **_bounce()})

    _, _, error = _run(aws)

    assert error is None
    assert _suppressed(aws) == {"ann@example.org"}
    [(status, details)] = history(aws, "order-1")
    assert status is DeliveryStatus.BOUNCED
    assert details["diagnostic_code"] == "smtp; 550 5.1.1 user unknown"
    assert details["ses_message_id"] == SES_ID


def test_transient_bounces_and_delays_are_recorded_but_do_not_suppress(aws: Stage) -> None:
    _publish(aws, _event("Bounce", {"bounce": _bounce("Transient", "MailboxFull")["bounce"]}, ""))
    delay = {
        "delayType": "MailboxFull",
        "expirationTime": "2026-12-04T22:00:00.000Z",
        "delayedRecipients": [{"emailAddress": "ann@example.org", "status": "4.2.2"}],
        "timestamp": "2026-12-04T10:01:00.000Z",
    }
    _publish(aws, _event("DeliveryDelay", {"deliveryDelay": delay}, ""))

    _run(aws)

    assert _suppressed(aws) == set()
    statuses = dict(history(aws, "order-1"))
    assert statuses[DeliveryStatus.DELAYED]["expiration_time"] == "2026-12-04T22:00:00.000Z"
    assert statuses[DeliveryStatus.BOUNCED]["bounce_type"] == "Transient"


def test_duplicated_and_out_of_order_events_settle_to_the_same_state(aws: Stage) -> None:
    complaint = {
        "complaint": {
            "complainedRecipients": [{"emailAddress": "ann@example.org"}],
            "timestamp": "2026-12-04T11:00:00.000Z",
            "feedbackId": "feedback-2",
            "complaintFeedbackType": "abuse",
        }
    }
    delivery = {
        "delivery": {
            "timestamp": "2026-12-04T10:00:02.000Z",
            "recipients": ["ann@example.org"],
            "smtpResponse": "250 ok: Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        }
    }
    for _ in range(2):
        _publish(aws, _event("Complaint", complaint, ""))
    _run(aws)
    _publish(aws, _event("Delivery", delivery, ""))  # older, arrives later
    _run(aws)

    assert _suppressed(aws) == {"ann@example.org"}
    assert [s for s, _ in history(aws, "order-1")] == [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.COMPLAINED,
    ]


def test_unknown_types_and_malformed_notifications_are_dead_lettered_with_the_reason(
    aws: Stage,
) -> None:
    _publish(aws, {"eventType": "Teleport", "mail": _mail()})
    _publish(aws, "not json")
    _publish(aws, {"notificationType": "Bounce", "mail": {"timestamp": "x"}})

    _run(aws)

    dead = aws.drain(aws.queues[QUEUE].dlq_url)
    reasons = sorted(m["MessageAttributes"]["mailroom_reason"]["StringValue"] for m in dead)
    assert len(reasons) == 3
    assert any("unknown SES notification type 'Teleport'" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert aws.drain(aws.queues[QUEUE].url) == []


def test_feedback_for_mail_we_did_not_send_is_kept_under_the_ses_message_id(aws: Stage) -> None:
    _publish(aws, {"notificationType": "Bounce", **_bounce()})

    _run(aws)

    [(status, _)] = history(aws, f"ses:{SES_ID}")
    assert status is DeliveryStatus.BOUNCED


def test_trace_by_the_ses_message_id_answers_the_three_sending_questions(
    aws: Stage, mailroom: Any
) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    client.put_item(
        TableName=aws.state_table, Item=lookup_item("ses", SES_ID, "order-1", ttl_days=30)
    )
    log = DeliveryLog(aws.state_table, client=client)
    log.record(
        "order-1", DeliveryStatus.SENT, details={"provider": "ses", "ses_message_id": SES_ID}
    )
    _publish(aws, {"notificationType": "Bounce", **_bounce()})
    _run(aws)

    result = mailroom("trace", SES_ID, json_output=True)

    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["sent_answers"]
    assert answers["did the provider accept it"] == f"yes: ses {SES_ID}"
    assert answers["was it dropped inside the provider"] == "no"
    assert "bounced ann@example.org" in answers["what happened after"]
    assert "smtp; 550 5.1.1 user unknown" in answers["what happened after"]
