"""SES's account-level suppression list follows ours, whoever changed ours: Postmark's events,
Postmark's 406 at send time, SES's own feedback; and a stage that never sends through SES
leaves SES alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from chalicelib.handlers import ses_feedback
from chalicelib.platform.aws import reset_clients
from mailroom_local import ses
from tests.conftest import REGION, Stage, serve_wsgi
from tests.outbound.conftest import (
    Standin,
    hard_bounce,
    outbound,
    publish,
    recorded,
    subscription_change,
)

Post = Any


class SesList:
    """The SES stand-in's account-level list, and the requests it received."""

    def __init__(self, url: str) -> None:
        self.url = url

    def addresses(self) -> list[str]:
        return list(requests.get(f"{self.url}/_control/sent", timeout=5).json()["suppressed"])

    def reason(self, address: str) -> str:
        answer = requests.get(f"{self.url}/v2/email/suppression/addresses/{address}", timeout=5)
        return str(answer.json()["SuppressedDestination"]["Reason"])

    def calls(self) -> list[str]:
        seen = requests.get(f"{self.url}/_control/requests", timeout=5).json()["requests"]
        return [f"{r['method']} {r['path']}" for r in seen if "/suppression/" in r["path"]]

    def fail_next(self, count: int) -> None:
        rule = {"status": 500, "count": count, "path": "/v2/email/suppression"}
        requests.post(f"{self.url}/_control/faults", json={"rules": [rule]}, timeout=5)


def _serve(monkeypatch: pytest.MonkeyPatch, providers: str) -> Iterator[SesList]:
    for url in serve_wsgi(ses.create_app(publish=lambda: None)):
        monkeypatch.setenv("MAILROOM_SES_ENDPOINT_URL", url)
        monkeypatch.setenv("MAILROOM_OUTBOUND_PROVIDERS", providers)
        reset_clients()
        yield SesList(url)


@pytest.fixture
def ses_list(aws: Stage, monkeypatch: pytest.MonkeyPatch) -> Iterator[SesList]:
    """A stage that may send through SES (Postmark first), SES being the local stand-in."""
    yield from _serve(monkeypatch, "postmark,ses")


def test_a_postmark_hard_bounce_puts_the_address_on_ses_list_too(
    ses_list: SesList, event: Post
) -> None:
    assert event(hard_bounce("Ann@Example.org")).status_code == 200

    assert ses_list.addresses() == ["ann@example.org"]
    assert ses_list.reason("ann@example.org") == "BOUNCE"


def test_a_postmark_spam_complaint_is_a_complaint_on_ses_list(
    ses_list: SesList, event: Post
) -> None:
    complaint = recorded("spam_complaint", Email="bob@example.org")

    assert event(complaint).status_code == 200
    assert ses_list.reason("bob@example.org") == "COMPLAINT"


def test_a_postmark_reactivation_takes_the_address_off_ses_list(
    ses_list: SesList, event: Post
) -> None:
    event(subscription_change("ann@example.org", suppress=True, ChangedAt="2026-11-22T09:00:00Z"))
    assert ses_list.addresses() == ["ann@example.org"]

    assert event(subscription_change("ann@example.org", suppress=False)).status_code == 200

    assert ses_list.addresses() == []


def test_when_ses_fails_postmark_is_asked_to_retry_and_the_retry_puts_it_there(
    ses_list: SesList, event: Post
) -> None:
    ses_list.fail_next(1)

    first = event(hard_bounce("ann@example.org"))
    again = event(hard_bounce("ann@example.org"))  # Postmark retries a 5xx with the same event

    assert first.status_code >= 500
    assert again.status_code == 200
    assert json.loads(again.body)["status"] == "stored"
    assert ses_list.addresses() == ["ann@example.org"]


def test_an_event_older_than_our_list_changes_nothing_on_either_list(
    ses_list: SesList, event: Post
) -> None:
    event(subscription_change("ann@example.org", suppress=False, ChangedAt="2030-01-01T00:00:00Z"))

    event(hard_bounce("ann@example.org"))  # bounced before the reactivation above

    assert ses_list.calls() == ["DELETE /v2/email/suppression/addresses/ann@example.org"]
    assert ses_list.addresses() == []


def test_postmarks_406_at_send_time_puts_the_inactive_recipient_on_ses_list(
    aws: Stage, ses_list: SesList, standin: Standin, sender: Any
) -> None:
    standin.inactive("gone@example.org")
    publish(aws, outbound("order-7", to="gone@example.org"))
    aws.make_visible("outbound-sender")

    sender()

    assert ses_list.addresses() == ["gone@example.org"]


def test_ses_own_permanent_bounce_is_mirrored_to_its_list(aws: Stage, ses_list: SesList) -> None:
    mail = {"timestamp": "2026-12-04T10:00:00.000Z", "messageId": "ses-1", "destination": []}
    bounce = {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "cy@example.org"}],
        "timestamp": "2026-12-04T10:00:01.000Z",
        "feedbackId": "fb-1",
    }
    notification = {"notificationType": "Bounce", "mail": mail, "bounce": bounce}
    boto3.client("sns", region_name=REGION).publish(
        TopicArn=aws.topics["ses-feedback"], Message=json.dumps(notification)
    )
    aws.make_visible("ses-feedback")

    _, _, error = aws.run_lambda("ses-feedback", ses_feedback.handle_batch)

    assert error is None
    assert ses_list.addresses() == ["cy@example.org"]


def test_a_stage_that_never_sends_through_ses_leaves_ses_alone(
    aws: Stage, monkeypatch: pytest.MonkeyPatch, event: Post
) -> None:
    for ses_only in _serve(monkeypatch, "postmark"):
        assert event(hard_bounce("ann@example.org")).status_code == 200

        assert ses_only.calls() == []
