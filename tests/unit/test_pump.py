"""The local pump: finds handlers through the Chalice app and applies Lambda's rules."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.batch import LogContext, SqsRecord, process_batch
from chalicelib.errors import TransientError
from mailroom_local.pump import Pump, pump_once
from tests.conftest import REGION, Stage


def _send(aws: Stage, *names: str) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for name in names:
        sqs.send_message(
            QueueUrl=aws.queues["inbound-bridge"].url,
            MessageBody=json.dumps({"name": name}),
            MessageGroupId=name[0],
            MessageDeduplicationId=name,
        )


def _record_handler(record: SqsRecord, ctx: LogContext) -> str:
    if json.loads(record.body)["name"] == "b1":
        raise TransientError("downstream 503")
    return "success"


@pytest.mark.parametrize("flag", [True, False], ids=["with-flag", "without-flag"])
def test_pump_keeps_exactly_the_failed_message_under_either_setting(aws: Stage, flag: bool) -> None:
    _send(aws, "a1", "b1", "c1")
    sqs = boto3.client("sqs", region_name=REGION)
    queue = aws.queues["inbound-bridge"]
    seen: list[Any] = []

    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        seen.append(context.get_remaining_time_in_millis())
        aws.in_flight.setdefault("inbound-bridge", []).extend(event["Records"])
        return process_batch(event, _record_handler, event_type="test")

    handled = pump_once(
        sqs,
        queue.url,
        queue.arn,
        lambda_handler,
        name="inbound_bridge",
        region=REGION,
        batch_size=10,
        report_batch_item_failures=flag,
        wait_seconds=0,
    )
    aws.make_visible("inbound-bridge")
    left = [json.loads(m["Body"])["name"] for m in aws.drain(queue.url)]

    assert handled == 3
    assert seen[0] > 50_000
    assert left == ["b1"]


def test_pump_finds_every_sqs_handler_through_the_chalice_app(aws: Stage) -> None:
    import app

    pump = Pump(
        app, boto3.client("sqs", region_name=REGION), region=REGION, report_batch_item_failures=True
    )
    try:
        started = pump.start()
    finally:
        pump.stop()

    sqs_sources = [s for s in app.app.event_sources if type(s).__name__ == "SQSEventConfig"]
    assert started == [s.name for s in sqs_sources]
    assert "inbound_bridge" in started
