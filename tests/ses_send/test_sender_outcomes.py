"""SES-only streams, SES's refusals as named outcomes, the provider settings, and the feedback
types that say a message was dropped inside SES."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.mail.delivery_log import DeliveryStatus
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.errors import ConfigurationError
from chalicelib.platform.settings import Settings
from chalicelib.providers.ses.feedback import MalformedFeedback, parse_feedback
from tests.conftest import Stage
from tests.outbound.conftest import Standin, history, outbound, publish
from tests.ses_send.conftest import sent_through_ses

QUEUE = "outbound-sender"
BASE = {"AWS_REGION": "us-east-1"}


def test_a_stream_configured_for_ses_sends_through_ses_with_its_id_logged(
    aws: Stage, standin: Standin, sender: Any, ses: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_OUTBOUND_STREAM_PROVIDERS", "receipts=ses")
    reset_clients()
    publish(aws, outbound("order-1", message_stream="receipts"))
    publish(aws, outbound("order-2", to="bob@example.org"))

    _, _, error = sender()

    assert error is None
    assert sent_through_ses() == 1
    assert [m["Metadata"]["correlation_id"] for m in standin.sent()] == ["order-2"]
    [(_, details)] = history(aws, "order-1")
    assert details["provider"] == "ses"


def test_ses_refusing_a_message_dead_letters_it_with_the_named_reason(
    aws: Stage, standin: Standin, sender: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_OUTBOUND_PROVIDERS", "ses")
    reset_clients()  # no identity verified: moto answers MessageRejected
    publish(aws, outbound("order-1"))

    sender()

    [dead] = aws.drain(aws.queues[QUEUE].dlq_url)
    reason = dead["MessageAttributes"]["mailroom_reason"]["StringValue"]
    assert reason.startswith("ses: MessageRejected")
    [(status, details)] = history(aws, "order-1")
    assert status is DeliveryStatus.DEAD_LETTERED
    assert "MessageRejected" in details["reason"]
    assert standin.sent() == []


def test_provider_settings_are_validated_and_name_the_variable() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "MAILROOM_OUTBOUND_PROVIDERS": "postmark, SES",
            "MAILROOM_OUTBOUND_STREAM_PROVIDERS": "broadcast=ses;receipts=postmark,ses",
        }
    )
    assert settings.providers_for("outbound") == ("postmark", "ses")
    assert settings.providers_for("broadcast") == ("ses",)
    for name, value in {
        "MAILROOM_OUTBOUND_PROVIDERS": "mailgun",
        "MAILROOM_OUTBOUND_STREAM_PROVIDERS": "broadcast",
    }.items():
        with pytest.raises(ConfigurationError) as caught:
            Settings.from_env({**BASE, name: value})
        assert caught.value.variable == name


def _event(kind: str, key: str, body: dict[str, Any]) -> str:
    mail = {"timestamp": "2026-12-04T10:00:00Z", "messageId": "m-1", "destination": ["a@b.org"]}
    return json.dumps({"eventType": kind, "mail": mail, key: body})


def test_reject_and_rendering_failure_say_the_message_was_dropped_inside_ses() -> None:
    [reject] = parse_feedback(_event("Reject", "reject", {"reason": "Bad content"}))
    [failure] = parse_feedback(
        _event("Rendering Failure", "failure", {"templateName": "t", "errorMessage": "no var"})
    )

    assert (reject.status, reject.details["reason"]) == (DeliveryStatus.REJECTED, "Bad content")
    assert failure.status is DeliveryStatus.RENDERING_FAILED
    assert failure.details["error"] == "no var"
    assert reject.suppress_reason is None


def test_the_subscription_confirmation_is_ignored_and_garbage_is_poison() -> None:
    assert parse_feedback(json.dumps({"notificationType": "AmazonSnsSubscriptionSucceeded"})) == []
    with pytest.raises(MalformedFeedback):
        parse_feedback(json.dumps(["not", "an", "object"]))
