"""The delivery log answers "what happened to correlation id X" in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from tests.conftest import REGION, Stage


def test_history_lists_each_event_with_its_details_oldest_first(aws: Stage) -> None:
    log = DeliveryLog(aws.state_table, client=boto3.client("dynamodb", region_name=REGION))
    start = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    log.record(
        "order-42",
        DeliveryStatus.SENT,
        at=start + timedelta(seconds=1),
        details={"postmark_id": "pm-1"},
    )
    log.record("order-42", DeliveryStatus.QUEUED, at=start)
    log.record(
        "order-42",
        DeliveryStatus.BOUNCED,
        at=start + timedelta(minutes=5),
        details={"reason": "HardBounce"},
    )
    log.record("order-43", DeliveryStatus.QUEUED, at=start)

    history = log.history("order-42")

    assert [e.status for e in history] == [
        DeliveryStatus.QUEUED,
        DeliveryStatus.SENT,
        DeliveryStatus.BOUNCED,
    ]
    assert history[1].details == {"postmark_id": "pm-1"}
    assert history[2].details == {"reason": "HardBounce"}
    assert log.history("unknown") == []
