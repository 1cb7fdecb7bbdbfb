"""The SES sender against the local SES stand-in over HTTP: SESv2 shapes, simulator
feedback in both shapes, and the faults the e2e tests and the bench inject."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from chalicelib.mail.outbound import parse_outbound
from chalicelib.platform.errors import ProviderTransientError, may_have_acted
from chalicelib.providers.ses.feedback import parse_feedback
from chalicelib.providers.ses.sender import SesSender
from chalicelib.providers.ses.suppression import SesSuppressionList
from mailroom_local import ses
from tests.conftest import REGION, serve_wsgi
from tests.e2e.conftest import until


@pytest.fixture
def standin() -> Iterator[tuple[str, list[str]]]:
    published: list[str] = []
    for url in serve_wsgi(ses.create_app(publish=lambda: published.append)):
        yield url, published


def _sender(url: str, *, timeout: float = 5) -> SesSender:
    config = Config(read_timeout=timeout, retries={"total_max_attempts": 1})
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=url, config=config)
    return SesSender(client, configuration_set="mailroom-test")


def _email(to: str) -> Any:
    return parse_outbound(
        json.dumps(
            {
                "correlation_id": "order-1",
                "from": "shop@example.com",
                "to": to,
                "subject": "Hi",
                "text_body": "Hello",
            }
        )
    )


def test_a_bounce_simulator_send_yields_send_and_a_permanent_bounce_in_both_shapes(
    standin: tuple[str, list[str]],
) -> None:
    url, published = standin
    sender = _sender(url)

    message_id = sender.send(_email("bounce+1@simulator.amazonses.com"))

    until(lambda: len(published) >= 3, seconds=10)
    events = [f for body in published for f in parse_feedback(body)]
    assert {f.provider_message_id for f in events} == {message_id}
    assert {f.correlation_id for f in events if f.event == "Send"} == {"order-1"}
    bounces = [f for f in events if f.event == "Bounce"]
    assert len(bounces) == 2  # configuration-set event and identity notification
    assert all(b.suppress_reason == "bounce:General" for b in bounces)
    assert len({(b.at, b.discriminator) for b in bounces}) == 1  # one delivery log line
    assert sender.send_rate() == 14.0


def test_throttling_is_retryable_and_sent_nothing(standin: tuple[str, list[str]]) -> None:
    url, _ = standin
    rule = {"status": 429, "count": 1, "path": "/v2/email/outbound-emails"}
    requests.post(f"{url}/_control/faults", json={"rules": [rule]}, timeout=5)

    with pytest.raises(ProviderTransientError) as caught:
        _sender(url).send(_email("success@simulator.amazonses.com"))

    assert not may_have_acted(caught.value)
    assert requests.get(f"{url}/_control/sent", timeout=5).json()["messages"] == []


def test_an_answer_lost_after_accepting_is_uncertain(standin: tuple[str, list[str]]) -> None:
    url, _ = standin
    rule = {"delay_ms": 1500, "path": "/v2/email/outbound-emails"}
    requests.post(f"{url}/_control/faults", json={"rules": [rule]}, timeout=5)
    started = time.monotonic()

    with pytest.raises(ProviderTransientError) as caught:
        _sender(url, timeout=0.5).send(_email("success@simulator.amazonses.com"))

    assert may_have_acted(caught.value)
    assert time.monotonic() - started < 1.5  # botocore did not retry the send itself
    assert len(requests.get(f"{url}/_control/sent", timeout=5).json()["messages"]) == 1


def test_the_account_suppression_list_round_trips(standin: tuple[str, list[str]]) -> None:
    url, _ = standin
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=url)

    client.put_suppressed_destination(EmailAddress="Ann@Example.org", Reason="BOUNCE")
    found = client.get_suppressed_destination(EmailAddress="ann@example.org")
    client.delete_suppressed_destination(EmailAddress="ann@example.org")

    assert found["SuppressedDestination"]["Reason"] == "BOUNCE"
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_suppressed_destination(EmailAddress="ann@example.org")


def test_our_reasons_map_onto_ses_suppression_reasons(standin: tuple[str, list[str]]) -> None:
    url, _ = standin
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=url)
    ses_list = SesSuppressionList(client)

    ses_list.put("ann@example.org", reason="complaint")
    ses_list.put("bob@example.org", reason="bounce:General")

    reasons = {
        a: client.get_suppressed_destination(EmailAddress=a)["SuppressedDestination"]["Reason"]
        for a in ("ann@example.org", "bob@example.org")
    }
    assert reasons == {"ann@example.org": "COMPLAINT", "bob@example.org": "BOUNCE"}
    assert ses_list.delete("ann@example.org") is True
    assert ses_list.delete("ann@example.org") is False
