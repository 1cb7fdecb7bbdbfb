"""POST /webhooks/postmark/events: suppression, delivery log, duplicates, bad input; and the
loop back to the sender (a hard bounce stops the next send, a reactivation resumes it)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
import responses

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.mail.suppression import SuppressionList
from tests.conftest import REGION, Stage
from tests.outbound.conftest import (
    Standin,
    hard_bounce,
    history,
    outbound,
    publish,
    recorded,
    subscription_change,
)

Post = Any


def _suppressed(aws: Stage) -> dict[str, str]:
    found = SuppressionList(
        aws.state_table, client=boto3.client("dynamodb", region_name=REGION)
    ).list()
    return {s.address: s.reason for s in found}


def _objects(aws: Stage, prefix: str) -> list[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=aws.bucket, Prefix=prefix
    )
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_hard_bounce_suppresses_the_address_and_logs_the_bounce(aws: Stage, event: Post) -> None:
    response = event(hard_bounce("Ann@Example.org", correlation_id="order-1"))

    assert response.status_code == 200
    assert _suppressed(aws) == {"ann@example.org": "HardBounce"}
    [(status, details)] = history(aws, "order-1")
    assert (status, details["type"]) == (DeliveryStatus.BOUNCED, "HardBounce")
    assert len(_objects(aws, "events/")) == 1


def test_a_soft_bounce_is_logged_but_does_not_suppress(aws: Stage, event: Post) -> None:
    soft = hard_bounce("ann@example.org", Type="SoftBounce", TypeCode=4096, Inactive=False)

    assert event(soft).status_code == 200
    assert _suppressed(aws) == {}
    assert [s for s, _ in history(aws, "order-0")] == [DeliveryStatus.BOUNCED]


@pytest.mark.parametrize(
    ("name", "correlation_id", "logged", "suppressed"),
    [
        ("bounce", "order-0", DeliveryStatus.BOUNCED, {"ann@example.org": "HardBounce"}),
        (
            "spam_complaint",
            "order-1",
            DeliveryStatus.COMPLAINED,
            {"ann@example.org": "SpamComplaint"},
        ),
        ("delivery", "order-2", DeliveryStatus.DELIVERED, {}),
        ("open", "order-4", DeliveryStatus.OPENED, {}),
        ("click", "order-5", DeliveryStatus.CLICKED, {}),
    ],
)
def test_each_recorded_event_is_stored_and_applied(
    aws: Stage,
    event: Post,
    name: str,
    correlation_id: str,
    logged: DeliveryStatus,
    suppressed: dict[str, str],
) -> None:
    response = event(recorded(name))

    assert response.status_code == 200
    assert json.loads(response.body)["status"] == "stored"
    assert _suppressed(aws) == suppressed
    [(status, details)] = history(aws, correlation_id)
    assert status is logged
    assert details["recipient"] == "ann@example.org"
    assert len(_objects(aws, "events/")) == 1


def test_a_duplicate_is_acknowledged_and_does_not_undo_a_later_reactivation(
    aws: Stage, event: Post
) -> None:
    bounce = hard_bounce("ann@example.org")
    event(bounce)
    event(subscription_change("ann@example.org", suppress=False))
    again = event(bounce)

    assert again.status_code == 200
    assert json.loads(again.body)["status"] == "duplicate"
    assert _suppressed(aws) == {}


def test_a_bounce_retried_late_does_not_undo_a_newer_reactivation(aws: Stage, event: Post) -> None:
    event(subscription_change("ann@example.org", suppress=False))  # 11:00
    late = event(hard_bounce("ann@example.org", BouncedAt="2026-11-22T05:00:00-05:00"))  # 10:00

    assert late.status_code == 200
    assert _suppressed(aws) == {}


def test_a_subscription_change_that_suppresses_adds_the_address(aws: Stage, event: Post) -> None:
    assert event(subscription_change("ann@example.org", suppress=True)).status_code == 200
    assert _suppressed(aws) == {"ann@example.org": "ManualSuppression"}


def test_an_unknown_record_type_is_stored_and_acknowledged(aws: Stage, event: Post) -> None:
    response = event({"RecordType": "InboundRuleTriggered", "MessageID": "pm-2", "Whatever": 1})

    assert response.status_code == 200
    assert json.loads(response.body)["record_type"] == "InboundRuleTriggered"
    assert len(_objects(aws, "events/")) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{broken",
        b"[1, 2]",
        json.dumps({"MessageID": "pm-3"}).encode(),  # no RecordType
        json.dumps({"RecordType": "Bounce", "MessageID": "pm-4"}).encode(),  # no Email
        json.dumps({"RecordType": "SubscriptionChange", "Recipient": "a@b.org"}).encode(),
    ],
)
def test_a_malformed_event_is_400_and_kept_under_rejected(
    aws: Stage, event: Post, body: bytes
) -> None:
    response = event(body)

    assert response.status_code == 400
    assert len(_objects(aws, "rejected/")) == 1
    assert _objects(aws, "events/") == []


def test_wrong_credentials_are_401_and_change_nothing(aws: Stage, event: Post) -> None:
    response = event(hard_bounce("ann@example.org"), password="wrong")

    assert response.status_code == 401
    assert _suppressed(aws) == {}


def test_a_storage_outage_is_5xx_so_postmark_retries(
    aws: Stage, event: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.platform.aws import reset_clients

    monkeypatch.setenv("MAILROOM_STATE_TABLE", "mailroom-test-missing")
    reset_clients()

    response = event(hard_bounce("ann@example.org"))

    assert response.status_code == 503
    assert json.loads(response.body)["error"] == "unavailable"


def test_a_hard_bounce_then_a_send_to_that_address_is_suppressed_and_reactivation_resumes(
    aws: Stage, event: Post, sender: Any, standin: Standin
) -> None:
    event(hard_bounce("ann@example.org"))
    publish(aws, outbound("order-a", to="ann@example.org"))
    sender()
    event(subscription_change("ann@example.org", suppress=False))
    publish(aws, outbound("order-b", to="ann@example.org"))
    sender()

    assert [s for s, _ in history(aws, "order-a")] == [DeliveryStatus.SUPPRESSED]
    assert [s for s, _ in history(aws, "order-b")] == [DeliveryStatus.SENT]
    assert [m["Metadata"]["correlation_id"] for m in standin.sent()] == ["order-b"]


def test_no_postmark_call_for_a_suppressed_address(aws: Stage, event: Post, sender: Any) -> None:
    event(hard_bounce("ann@example.org"))
    publish(aws, outbound("order-c", to="ann@example.org"))

    with responses.RequestsMock() as postmark:
        sender()

    assert len(postmark.calls) == 0
