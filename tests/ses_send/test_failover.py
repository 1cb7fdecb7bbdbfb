"""Failover between Postmark and SES that never sends a message through both."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from chalicelib.mail.delivery_log import DeliveryLog, DeliveryStatus
from chalicelib.mail.failover import KEY, ProviderSwitch, SwitchState, choose
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.errors import ProviderTransientError
from chalicelib.platform.idempotency import IdempotencyStore
from tests.conftest import REGION, Stage
from tests.outbound.conftest import Standin, history, outbound, publish
from tests.ses_send.conftest import sent_through_ses

QUEUE = "outbound-sender"


@pytest.fixture
def failover(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROOM_OUTBOUND_PROVIDERS", "postmark,ses")
    monkeypatch.setenv("MAILROOM_FAILOVER_THRESHOLD", "2")
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "3")
    reset_clients()


def _dynamodb() -> Any:
    return boto3.client("dynamodb", region_name=REGION)


def _switch(aws: Stage) -> ProviderSwitch:
    return ProviderSwitch(aws.state_table, client=_dynamodb())


def _run(aws: Stage, sender: Any) -> Any:
    aws.make_visible(QUEUE)
    return sender()


def _uncertain(aws: Stage, correlation_id: str, *, provider: str | None) -> None:
    """An earlier attempt that may have sent (through ``provider`` if named)."""
    store = IdempotencyStore(aws.state_table, lock_seconds=60, ttl_days=30, client=_dynamodb())
    claim = store.claim(f"outbound:{correlation_id}")
    if provider:
        store.note_attempt(claim, provider)
    store.mark_uncertain(
        claim, ProviderTransientError("no answer", provider="x", may_have_acted=True)
    )


def test_choose_takes_a_forced_provider_else_the_first_that_is_not_down() -> None:
    order = ("postmark", "ses")
    assert choose(order, SwitchState()) == "postmark"
    assert choose(order, SwitchState(down="postmark")) == "ses"
    assert choose(("postmark",), SwitchState(down="postmark")) == "postmark"
    assert choose(order, SwitchState(forced="ses", down=None)) == "ses"
    assert choose(("ses", "postmark"), SwitchState(forced="postmark")) == "postmark"


def test_a_run_of_postmark_503s_switches_to_ses_and_the_message_goes_out_once(
    aws: Stage, standin: Standin, sender: Any, ses: None, failover: None
) -> None:
    standin.faults(status=503, count=2)
    publish(aws, outbound("order-1"))

    sender()
    _run(aws, sender)
    assert _switch(aws).read().down == "postmark"
    _run(aws, sender)

    assert standin.sent() == []
    assert sent_through_ses() == 1
    [(status, details)] = history(aws, "order-1")
    assert status is DeliveryStatus.SENT
    assert details["provider"] == "ses"
    assert details["ses_message_id"]
    assert aws.drain(aws.queues[QUEUE].dlq_url) == []


def test_an_uncertain_postmark_attempt_waits_for_postmark_while_it_is_down(
    aws: Stage, standin: Standin, sender: Any, ses: None, failover: None
) -> None:
    _switch(aws).record_failure("postmark", threshold=1, error="ProviderTransientError")
    _uncertain(aws, "order-1", provider=None)
    standin.faults(status=503, count=100)
    publish(aws, outbound("order-1"))

    for _ in range(4):  # more than MAILROOM_MAX_ATTEMPTS: waiting is not an attempt
        _run(aws, sender)

    assert sent_through_ses() == 0
    assert aws.drain(aws.queues[QUEUE].dlq_url) == []
    standin.clear_faults()
    _run(aws, sender)  # Postmark's search proves it unsent: now it may move to SES
    assert standin.sent() == []
    assert sent_through_ses() == 1


def test_an_uncertain_ses_attempt_is_never_sent_again_and_is_dead_lettered_with_why(
    aws: Stage, standin: Standin, sender: Any, ses: None, failover: None
) -> None:
    _uncertain(aws, "order-1", provider="ses")
    publish(aws, outbound("order-1"))

    sender()
    _run(aws, sender)
    _run(aws, sender)

    assert standin.sent() == []
    assert sent_through_ses() == 0
    [dead] = aws.drain(aws.queues[QUEUE].dlq_url)
    assert "SES may have sent" in dead["MessageAttributes"]["mailroom_reason"]["StringValue"]


def test_an_uncertain_ses_attempt_completes_from_its_ses_event(
    aws: Stage, standin: Standin, sender: Any, ses: None, failover: None
) -> None:
    _uncertain(aws, "order-1", provider="ses")
    DeliveryLog(aws.state_table, client=_dynamodb()).record(
        "order-1",
        DeliveryStatus.SENT,
        details={"provider": "ses", "ses_message_id": "0100-abc", "event": "Send"},
    )
    publish(aws, outbound("order-1"))

    _, _, error = sender()

    assert error is None
    assert standin.sent() == []
    assert sent_through_ses() == 0
    assert aws.drain(aws.queues[QUEUE].url) == []


def test_a_successful_probe_switches_back_to_postmark(
    aws: Stage, standin: Standin, sender: Any, ses: None, failover: None
) -> None:
    _dynamodb().put_item(
        TableName=aws.state_table,
        Item={**KEY, "down": {"S": "postmark"}, "probe_at": {"N": "0"}, "reason": {"S": "t"}},
    )
    publish(aws, outbound("order-1"))

    sender()

    assert _switch(aws).read().down is None
    assert len(standin.sent()) == 1
    assert sent_through_ses() == 0


def test_an_operator_forces_ses_for_every_stream(
    aws: Stage, standin: Standin, sender: Any, ses: None
) -> None:
    _switch(aws).force("ses", reason="Postmark incident", actor="ops")
    publish(aws, outbound("order-1"))

    sender()

    assert standin.sent() == []
    assert sent_through_ses() == 1
    assert _switch(aws).read().mode == "forced:ses"
