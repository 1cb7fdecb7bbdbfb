"""The batch rules against real (moto) FIFO queues, judged by Lambda's own delete rules."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.platform.batch import PENDING, BatchIncomplete, LogContext, SqsRecord, process_batch
from chalicelib.platform.errors import PermanentError, PoisonMessageError, TransientError
from tests.conftest import REGION, Stage

QUEUE = "inbound-bridge"


def _send(aws: Stage, *messages: tuple[str, str]) -> None:
    """Send (group, name) messages in order."""
    sqs = boto3.client("sqs", region_name=REGION)
    for group, name in messages:
        sqs.send_message(
            QueueUrl=aws.queues[QUEUE].url,
            MessageBody=json.dumps({"name": name}),
            MessageGroupId=group,
            MessageDeduplicationId=name,
        )


def _names(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(json.loads(m["Body"])["name"] for m in messages)


class Scripted:
    """A record handler whose behaviour per message name is given up front."""

    def __init__(self, behaviour: dict[str, BaseException | str]) -> None:
        self.behaviour = behaviour
        self.attempted: list[str] = []

    def __call__(self, record: SqsRecord, ctx: LogContext) -> str | None:
        name = json.loads(record.body)["name"]
        self.attempted.append(name)
        outcome = self.behaviour.get(name, "success")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _run(aws: Stage, handler: Scripted, *, flag: bool) -> tuple[Any, BaseException | None]:
    _, result, error = aws.run_lambda(
        QUEUE,
        lambda e: process_batch(e, handler, event_type="test"),
        report_batch_item_failures=flag,
    )
    aws.make_visible(QUEUE)
    return result, error


def _left(aws: Stage) -> list[str]:
    return _names(aws.drain(aws.queues[QUEUE].url))


def _dead(aws: Stage) -> list[dict[str, Any]]:
    return aws.drain(aws.queues[QUEUE].dlq_url)


@pytest.mark.parametrize("flag", [True, False], ids=["with-flag", "without-flag"])
def test_failure_in_group_a_holds_later_a_messages_while_group_b_is_delivered(
    aws: Stage, flag: bool
) -> None:
    _send(aws, ("A", "a1"), ("B", "b1"), ("A", "a2"), ("B", "b2"), ("A", "a3"))
    handler = Scripted({"a1": TransientError("downstream 503")})

    _, error = _run(aws, handler, flag=flag)

    assert isinstance(error, BatchIncomplete)
    assert handler.attempted == ["a1", "b1", "b2"]
    assert _left(aws) == ["a1", "a2", "a3"]
    assert _dead(aws) == []


@pytest.mark.parametrize("flag", [True, False], ids=["with-flag", "without-flag"])
def test_poison_message_mid_batch_is_dead_lettered_and_the_rest_delivered(
    aws: Stage, flag: bool
) -> None:
    _send(aws, ("A", "a1"), ("A", "a2"), ("A", "a3"), ("B", "b1"))
    handler = Scripted({"a2": PoisonMessageError("not a Postmark inbound payload")})

    result, error = _run(aws, handler, flag=flag)

    assert error is None
    assert result == {"batchItemFailures": []}
    assert handler.attempted == ["a1", "a2", "a3", "b1"]
    assert _left(aws) == []
    [dead] = _dead(aws)
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert json.loads(dead["Body"]) == {"name": "a2"}
    assert dead["Attributes"]["MessageGroupId"] == "A"
    assert attributes["mailroom_error_class"] == "PoisonMessageError"
    assert attributes["mailroom_reason"] == "not a Postmark inbound payload"
    assert attributes["mailroom_disposition"] == "poison"
    assert attributes["mailroom_attempts"] == "1"


@pytest.mark.parametrize("flag", [True, False], ids=["with-flag", "without-flag"])
def test_mixed_batch_loses_nothing_under_either_setting(aws: Stage, flag: bool) -> None:
    _send(aws, ("A", "a1"), ("B", "b1"), ("C", "c1"), ("D", "d1"), ("A", "a2"))
    handler = Scripted(
        {
            "b1": TransientError("timeout"),
            "c1": PermanentError("rejected"),
            "d1": RuntimeError("a bug"),  # unknown errors are retried, never dropped
        }
    )

    _, error = _run(aws, handler, flag=flag)

    assert isinstance(error, BatchIncomplete)
    assert len(error.remaining) == 2
    assert _left(aws) == ["b1", "d1"]
    assert _names(_dead(aws)) == ["c1"]


def test_a_naive_handler_returning_failures_without_the_flag_would_lose_them(
    aws: Stage,
) -> None:
    """Why batch.py raises: the same partial result, returned, is lost without the flag."""
    _send(aws, ("A", "a1"), ("B", "b1"))

    def naive(event: dict[str, Any]) -> dict[str, Any]:
        failed = [r["messageId"] for r in event["Records"] if "b1" in r["body"]]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}

    aws.run_lambda(QUEUE, naive, report_batch_item_failures=False)
    aws.make_visible(QUEUE)

    assert _left(aws) == []  # b1 is gone: exactly the loss batch.py prevents


def test_dead_letter_send_failure_keeps_the_message(aws: Stage) -> None:
    _send(aws, ("A", "a1"))
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.delete_queue(QueueUrl=aws.queues[QUEUE].dlq_url)
    handler = Scripted({"a1": PermanentError("rejected")})

    _, error = _run(aws, handler, flag=False)

    assert isinstance(error, BatchIncomplete)
    assert _left(aws) == ["a1"]


def test_time_guard_leaves_unstarted_records_for_redelivery(aws: Stage) -> None:
    _send(aws, ("A", "a1"), ("B", "b1"), ("C", "c1"))
    handler = Scripted({})
    budget = iter([60_000, 1_000, 1_000])

    _, _, error = aws.run_lambda(
        QUEUE,
        lambda e: process_batch(
            e, handler, event_type="test", remaining_time_ms=lambda: next(budget)
        ),
        report_batch_item_failures=False,
    )
    aws.make_visible(QUEUE)

    assert isinstance(error, BatchIncomplete)
    assert handler.attempted == ["a1"]
    assert _left(aws) == ["b1", "c1"]


def test_empty_event_is_a_complete_success() -> None:
    assert process_batch({"Records": []}, Scripted({}), event_type="test") == {
        "batchItemFailures": []
    }


class Acting:
    """Prepares every record (``PENDING``) and settles them in one call, as scripted."""

    def __init__(self, answers: dict[str, BaseException | str], crash: bool = False) -> None:
        self.answers = answers
        self.crash = crash
        self.calls: list[list[str]] = []

    def prepare(self, record: SqsRecord, ctx: LogContext) -> str:
        name = json.loads(record.body)["name"]
        if name.startswith("slow"):
            raise TransientError("not ready")
        return PENDING

    def act(self, records: list[SqsRecord]) -> dict[str, str | BaseException]:
        names = {r.message_id: json.loads(r.body)["name"] for r in records}
        self.calls.append(sorted(names.values()))
        if self.crash:
            raise TransientError("the one call failed")
        return {mid: self.answers.get(name, "sent") for mid, name in names.items()}


def _act(aws: Stage, acting: Acting) -> BaseException | None:
    _, _, error = aws.run_lambda(
        QUEUE,
        lambda e: process_batch(e, acting.prepare, event_type="test", act=acting.act),
        report_batch_item_failures=False,
    )
    aws.make_visible(QUEUE)
    return error


def test_prepared_records_are_settled_by_one_action_per_batch(aws: Stage) -> None:
    _send(aws, ("a", "a1"), ("b", "b1"), ("c", "c1"), ("d", "d1"))
    acting = Acting({"b1": TransientError("busy"), "c1": PermanentError("rejected")})

    error = _act(aws, acting)

    assert isinstance(error, BatchIncomplete)
    assert acting.calls == [["a1", "b1", "c1", "d1"]]
    assert _left(aws) == ["b1"]
    assert _names(_dead(aws)) == ["c1"]


def test_a_record_held_back_before_the_action_holds_its_group_out_of_the_call(aws: Stage) -> None:
    _send(aws, ("a", "slow-a1"), ("a", "a2"), ("b", "b1"))
    acting = Acting({})

    _act(aws, acting)

    assert acting.calls == [["b1"]]
    assert _left(aws) == ["a2", "slow-a1"]


def test_an_action_that_crashes_leaves_every_prepared_record_for_redelivery(aws: Stage) -> None:
    _send(aws, ("a", "a1"), ("b", "b1"))

    error = _act(aws, Acting({}, crash=True))

    assert isinstance(error, BatchIncomplete)
    assert _left(aws) == ["a1", "b1"]
    assert _dead(aws) == []
