"""The batch runner counts a record's own failed attempts and dead-letters it with its reason."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.platform.batch import process_batch
from chalicelib.platform.errors import AlreadyInProgress, TransientError
from tests.conftest import REGION, Stage
from tests.unit.test_batch import QUEUE, Scripted, _dead, _left, _send


def _run(aws: Stage, handler: Scripted) -> BaseException | None:
    _, _, error = aws.run_lambda(
        QUEUE,
        lambda e: process_batch(e, handler, event_type="test"),
        report_batch_item_failures=False,
    )
    aws.make_visible(QUEUE)
    return error


def _attributes(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}


def test_a_record_that_keeps_failing_is_dead_lettered_with_its_reason_after_the_limit(
    aws: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "3")
    _send(aws, ("A", "a1"))
    handler = Scripted({"a1": TransientError("freescout: server error status=503")})

    for _ in range(3):
        _run(aws, handler)

    assert handler.attempted == ["a1", "a1", "a1"]
    assert _left(aws) == []
    [dead] = _dead(aws)
    attributes = _attributes(dead)
    assert attributes["mailroom_disposition"] == "exhausted"
    assert attributes["mailroom_reason"] == "freescout: server error status=503"
    assert attributes["mailroom_error_class"] == "TransientError"
    assert attributes["mailroom_attempts"] == "3"
    assert attributes["mailroom_first_seen"]
    assert dead["Attributes"]["MessageGroupId"] == "A"


def test_records_held_back_behind_their_group_are_not_counted(
    aws: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "2")
    _send(aws, ("A", "a1"), ("A", "a2"))
    handler = Scripted({"a1": TransientError("down"), "a2": TransientError("down")})

    _run(aws, handler)  # a1 fails; a2 is held back (received, not attempted)
    _run(aws, handler)  # a1 exhausted and dead-lettered; a2 attempted once
    _run(aws, handler)  # a2's second attempt

    assert handler.attempted == ["a1", "a1", "a2", "a2"]
    dead = {json.loads(m["Body"])["name"]: _attributes(m) for m in _dead(aws)}
    assert dead["a2"]["mailroom_attempts"] == "2"  # received three times, attempted twice
    assert _left(aws) == []


def test_a_lock_held_elsewhere_is_not_an_attempt(
    aws: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "1")
    _send(aws, ("A", "a1"))
    handler = Scripted({"a1": AlreadyInProgress("locked")})

    _run(aws, handler)

    assert _dead(aws) == []
    assert _left(aws) == ["a1"]


def test_a_redriven_copy_starts_counting_again(aws: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "2")
    _send(aws, ("A", "a1"))
    handler = Scripted({"a1": TransientError("down")})
    _run(aws, handler)
    _run(aws, handler)
    [dead] = _dead(aws)
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(  # what a redrive does: a new message, a new id
        QueueUrl=aws.queues[QUEUE].url,
        MessageBody=dead["Body"],
        MessageGroupId="A",
        MessageDeduplicationId="redrive-1",
    )

    _run(aws, handler)

    assert _left(aws) == ["a1"]  # one failure of the new copy: not yet exhausted
