"""The local pump: finds handlers through the Chalice app and applies Lambda's rules."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.platform.batch import LogContext, SqsRecord, process_batch
from chalicelib.platform.errors import TransientError
from mailroom_local import moto_sqs
from mailroom_local.pump import Pump, pump_once
from tests.conftest import REGION, Stage


@pytest.fixture
def fifo_order() -> Any:
    """moto with the local stack's FIFO group-order patch, undone afterwards."""
    undo = moto_sqs.install()
    yield
    undo()


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


def _pump(aws: Stage, lambda_handler: Any) -> int:
    queue = aws.queues["inbound-bridge"]
    return pump_once(
        boto3.client("sqs", region_name=REGION),
        queue.url,
        queue.arn,
        lambda_handler,
        name="inbound_bridge",
        region=REGION,
        batch_size=10,
        report_batch_item_failures=True,
        wait_seconds=0,
    )


def test_pump_keeps_a_groups_order_through_a_retry(aws: Stage, fifo_order: None) -> None:
    names = [f"a{n}" for n in range(1, 8)]
    _send(aws, *names)
    # A visibility timeout of 0 stands for "the timeout has run out" without waiting for it:
    # the held-back a2..a7 are visible again at the next receive, as after a real timeout.
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.set_queue_attributes(
        QueueUrl=aws.queues["inbound-bridge"].url, Attributes={"VisibilityTimeout": "0"}
    )
    handled: list[str] = []

    def record_handler(record: SqsRecord, ctx: LogContext) -> str:
        name = json.loads(record.body)["name"]
        handled.append(name)
        if name == "a2" and handled.count("a2") == 1:
            raise TransientError("downstream 503")
        return "success"

    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        return process_batch(event, record_handler, event_type="test")

    while _pump(aws, lambda_handler):
        pass

    assert handled == ["a1", "a2", *names[1:]]


def test_moto_alone_hands_out_the_last_held_back_message_first(aws: Stage) -> None:
    """Why ``moto_sqs`` exists: without it, the group above comes back a7 first."""
    _send(aws, "a1", "a2", "a3")
    sqs = boto3.client("sqs", region_name=REGION)
    url = aws.queues["inbound-bridge"].url
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    first = [m["Body"] for m in aws.receive(url)]

    again = [json.loads(m["Body"])["name"] for m in aws.receive(url)]

    assert len(first) == 3
    assert again[0] == "a3"


def test_pump_runs_several_batches_of_a_queue_at_once(aws: Stage) -> None:
    import app

    pump = Pump(
        app,
        boto3.client("sqs", region_name=REGION),
        region=REGION,
        report_batch_item_failures=True,
        pollers=3,
    )
    try:
        pump.start()
        threads = [t.name for t in pump._threads]
    finally:
        pump.stop()

    assert threads.count("pump-inbound_bridge-0") == 1
    assert sum(name.startswith("pump-inbound_bridge-") for name in threads) == 3
