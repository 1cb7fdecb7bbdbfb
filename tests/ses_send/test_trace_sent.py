"""What support asks first, "the customer says they never got it": the mail we sent is in the
identifier index, so ``mailroom trace ADDRESS`` lists it with what its provider said since,
and the provider's message id finds it like any other id."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from chalicelib.mail.trace_index import TraceIndex
from tests.cli.conftest import Invoke
from tests.conftest import REGION, Stage
from tests.outbound.conftest import Standin, hard_bounce, outbound, publish

Post = Any


def _index(aws: Stage) -> TraceIndex:
    return TraceIndex(aws.state_table, client=boto3.client("dynamodb", region_name=REGION))


def _send(aws: Stage, sender: Any, **request: Any) -> None:
    publish(aws, outbound(**request))
    aws.make_visible("outbound-sender")
    _, _, error = sender()
    assert error is None


def test_a_sent_email_is_listed_under_each_recipient_and_the_sender_with_its_bounce(
    aws: Stage, standin: Standin, sender: Any, event: Post, mailroom: Invoke
) -> None:
    _send(aws, sender, correlation_id="order-1", to="ann@example.org", cc=["bob@example.org"])
    [message] = standin.sent()
    bounce = hard_bounce("ann@example.org", correlation_id="order-1")
    bounce["MessageID"] = message["MessageID"]
    event(bounce)

    result = mailroom("trace", "Ann@Example.org", "--since", "7d", json_output=True)

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["emails"]
    assert (row["role"], row["email"]) == ("to", "outbound:order-1")
    assert row["last_step"].startswith("bounced at ")
    assert [s["outcome"] for s in row["story"]] == ["sent"]
    assert [hit.kind for hit in _index(aws).by_address("bob@example.org", _long_ago())] == ["to"]
    assert [hit.kind for hit in _index(aws).by_address("shop@example.com", _long_ago())] == ["from"]


def test_the_providers_message_id_finds_the_sent_email_in_the_index(
    aws: Stage, standin: Standin, sender: Any
) -> None:
    _send(aws, sender, correlation_id="order-2")
    [message] = standin.sent()

    [hit] = _index(aws).emails(message["MessageID"])

    assert (hit.email, hit.kind) == ("outbound:order-2", "outbound")
    [step] = _index(aws).story(hit.email)
    assert step["details"]["provider"] == "postmark"


def test_a_suppressed_send_is_listed_under_its_recipient_as_suppressed(
    aws: Stage, standin: Standin, sender: Any, event: Post, mailroom: Invoke
) -> None:
    event(hard_bounce("gone@example.org", correlation_id="order-0"))

    _send(aws, sender, correlation_id="order-3", to="gone@example.org")

    assert standin.sent() == []
    result = mailroom("trace", "gone@example.org", "--since", "1d", json_output=True)
    rows = json.loads(result.stdout)["emails"]
    assert [(r["email"], r["story"][-1]["outcome"]) for r in rows] == [
        ("outbound:order-3", "suppressed")
    ]


def _long_ago() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)
