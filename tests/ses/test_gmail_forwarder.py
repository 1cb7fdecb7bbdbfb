"""Router → Gmail forwarder → the Gmail stand-in: imported once, whatever fails on the way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from chalicelib.handlers import gmail_forwarder, router
from chalicelib.handlers.dispatch import enqueue
from chalicelib.mail.actions import GmailRequest
from chalicelib.mail.trace_index import TraceIndex
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.logging import hash_id
from chalicelib.platform.secrets import reset_secrets
from chalicelib.platform.settings import get_settings
from chalicelib.providers.gmail.client import REAUTHORIZE
from chalicelib.providers.postmark.inbound import PostmarkInbound, postmark_ref
from mailroom_local import gmail
from mailroom_local.authorize import ensure_labels
from tests.conftest import REGION, Stage, serve_wsgi
from tests.ses.conftest import Receive, dlq, mime

MAILBOX = "team@gmail.test"
CLIENT = {"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}
EVENTS = Path(__file__).resolve().parents[1] / "events"


class Gmail:
    def __init__(self, url: str) -> None:
        self.url = url

    def faults(self, **faults: object) -> None:
        requests.post(f"{self.url}/_control/gmail-faults", json=faults, timeout=5)

    def create_label(self, mailbox: str, name: str) -> str:
        gmail = {"url": self.url, "token_url": f"{self.url}/token", **CLIENT}
        return ensure_labels(gmail, mailbox, [name])[name]

    def imported(self) -> dict[str, int]:
        return dict(requests.get(f"{self.url}/_control/mailboxes", timeout=5).json())

    def calls(self, fragment: str) -> int:
        seen = requests.get(f"{self.url}/_control/requests", timeout=5).json()["requests"]
        return sum(fragment in f"{r['method']} {r['path']}" for r in seen)


@pytest.fixture
def standin(aws: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gmail]:
    app = gmail.create_app(
        client_id="cid", client_secret="cs", refresh_token="rt", state_dir=tmp_path, dedupe=False
    )
    for url in serve_wsgi(app):
        monkeypatch.setenv("MAILROOM_GMAIL_API_URL", url)
        monkeypatch.setenv("MAILROOM_GMAIL_TOKEN_URL", f"{url}/token")
        reset_clients()
        reset_secrets()
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name="/mailroom/test/gmail/team_at_gmail.test",
            Value=json.dumps(CLIENT),
            Type="SecureString",
        )
        aws.put_route("*@example.com", "gmail", MAILBOX)
        yield Gmail(url)


def _route_and_forward(aws: Stage) -> BaseException | None:
    aws.run_lambda("ses-inbound", router.handle_batch)
    _, _, error = aws.run_lambda("gmail-forwarder", gmail_forwarder.handle_batch)
    return error


def _reason(message: dict[str, object]) -> str:
    attributes = message["MessageAttributes"]
    assert isinstance(attributes, dict)
    return str(attributes["mailroom_reason"]["StringValue"])


def test_after_the_route_is_fixed_a_redriven_label_dead_letter_imports_with_its_labels(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    """The runbook's fix-then-redrive: the dead letter carries the labels the router chose, so
    the forwarder asks the route again (not its cache) when Gmail refuses a label."""
    aws.put_route("*@example.com", "gmail", f"{MAILBOX};labels=INBOX,Label_99")
    receive(mime())
    _route_and_forward(aws)
    [dead] = dlq(aws, "gmail-forwarder")
    made = standin.create_label(MAILBOX, "Support")
    aws.put_route("*@example.com", "gmail", f"{MAILBOX};labels=INBOX,{made}")

    boto3.client("sqs", region_name=REGION).send_message(  # what `dlq redrive` sends
        QueueUrl=aws.queues["gmail-forwarder"].url, MessageBody=str(dead["Body"])
    )
    _, _, error = aws.run_lambda("gmail-forwarder", gmail_forwarder.handle_batch)

    assert error is None
    assert dlq(aws, "gmail-forwarder") == []
    assert standin.imported() == {MAILBOX: 1}
    assert standin.calls("/import") == 3  # refused; refused again as redriven; then fixed


def test_mail_without_a_from_header_or_an_envelope_sender_is_imported(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    """Gmail takes the bytes as they are: a missing From is no reason to hold mail back."""
    receive(b"To: x@example.com\r\nSubject: Enclosed\r\n\r\nbody\r\n", source="")

    error = _route_and_forward(aws)

    assert error is None
    assert dlq(aws, "gmail-forwarder") == []
    assert standin.imported() == {MAILBOX: 1}


def test_a_received_email_is_imported_once_even_when_routed_twice(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    raw = mime()
    receive(raw)
    receive(raw)  # a redriven router message, or SES retrying the notification

    assert _route_and_forward(aws) is None

    assert standin.imported() == {MAILBOX: 1}
    assert dlq(aws, "gmail-forwarder") == []


def test_invalid_grant_dead_letters_with_the_reauthorize_reason_and_a_health_record(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    standin.faults(revoked=True)
    receive(mime())

    _route_and_forward(aws)

    [dead] = dlq(aws, "gmail-forwarder")
    assert REAUTHORIZE in _reason(dead)
    [health] = gmail_forwarder.auth_failures(
        get_settings(), boto3.client("dynamodb", region_name=REGION)
    )
    assert health["mailbox"] == MAILBOX
    assert health["status"] == "reauthorize"


def test_a_route_label_the_mailbox_lacks_dead_letters_at_once_naming_the_label_and_the_fix(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    aws.put_route("*@example.com", "gmail", f"{MAILBOX};labels=INBOX,Label_99")
    receive(mime())

    _route_and_forward(aws)

    [dead] = dlq(aws, "gmail-forwarder")
    reason = _reason(dead)
    attributes = dead["MessageAttributes"]
    assert isinstance(attributes, dict)
    assert attributes["mailroom_error_class"]["StringValue"] == "GmailLabelNotFound"
    assert attributes["mailroom_attempts"]["StringValue"] == "1"  # permanent: not retried
    assert "no label Label_99" in reason
    assert f"mailbox_id {hash_id(MAILBOX)}" in reason
    assert "mailroom routes set" in reason
    assert MAILBOX not in reason  # reasons are logged: the address stays hashed
    assert standin.imported() == {}


def test_a_rate_limited_import_is_retried_and_imported_once(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    standin.faults(status=429, reason="rateLimitExceeded", count=1)
    receive(mime())

    assert _route_and_forward(aws) is not None  # left for SQS to redeliver
    aws.make_visible("gmail-forwarder")
    _, _, error = aws.run_lambda("gmail-forwarder", gmail_forwarder.handle_batch)

    assert error is None
    assert standin.imported() == {MAILBOX: 1}


def test_an_import_that_failed_after_gmail_stored_it_is_found_not_imported_again(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    standin.faults(fail_after_store=1, status=500)
    receive(mime(message_id="<stored-then-500@sender.example>"))

    assert _route_and_forward(aws) is not None
    aws.make_visible("gmail-forwarder")
    _, _, error = aws.run_lambda("gmail-forwarder", gmail_forwarder.handle_batch)

    assert error is None
    assert standin.imported() == {MAILBOX: 1}  # the stand-in does not dedupe: the search did
    assert standin.calls("GET /gmail/v1/users/team@gmail.test/messages") == 1


def test_an_import_that_timed_out_after_gmail_stored_it_leaves_one_copy(
    aws: Stage, receive: Receive, standin: Gmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_GMAIL_TIMEOUT_SECONDS", "1")
    reset_clients()
    standin.faults(fail_after_store=1, delay_ms=2500)  # stored, answered after the timeout
    receive(mime(message_id="<stored-then-timeout@sender.example>"))

    assert _route_and_forward(aws) is not None
    aws.make_visible("gmail-forwarder")
    _, _, error = aws.run_lambda("gmail-forwarder", gmail_forwarder.handle_batch)

    assert error is None
    assert standin.imported() == {MAILBOX: 1}
    assert standin.calls("GET /gmail/v1/users/team@gmail.test/messages") == 1


def test_malformed_mime_dead_letters_with_the_reason(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    receive(b"this is not an email at all")

    _route_and_forward(aws)

    [dead] = dlq(aws, "gmail-forwarder")
    assert _reason(dead) == "unparseable MIME: no header fields"
    assert standin.imported() == {}


def test_postmark_and_ses_copies_of_one_message_are_imported_once(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    payload = json.loads((EVENTS / "postmark_inbound_basic.json").read_text())
    message_id = "<CAE-first-4711@mail.example.org>"
    enqueue(
        get_settings().gmail_queue_name,
        GmailRequest(
            recipient="support@example.com",
            mailbox=MAILBOX,
            labels=("INBOX", "UNREAD"),
            mail=postmark_ref(json.dumps(payload), PostmarkInbound.model_validate(payload)),
        ),
    )
    receive(mime(message_id=message_id), recipients=["support@example.com"])

    assert _route_and_forward(aws) is None

    assert standin.imported() == {MAILBOX: 1}


def test_one_email_to_two_addresses_routed_to_one_mailbox_is_imported_once(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    # Both addresses match the fixture's *@example.com rule to the same mailbox.
    receive(mime(), recipients=["sales@example.com", "info@example.com"])

    assert _route_and_forward(aws) is None

    assert standin.imported() == {MAILBOX: 1}
    assert dlq(aws, "gmail-forwarder") == []


def test_an_import_recorded_under_the_recipient_key_is_not_imported_again(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    from chalicelib.mail.inbound_email import EmailSource, delivery_key_for
    from chalicelib.platform.idempotency import IdempotencyStore

    store = IdempotencyStore.for_settings(
        get_settings(), boto3.client("dynamodb", region_name=REGION)
    )
    # Imported before the key named the mailbox; the same email is redelivered afterwards.
    earlier = delivery_key_for(
        "<m-1@sender.example>", EmailSource.SES, "x", "support@example.com", "gmail"
    )
    store.claim(earlier)
    store.complete(earlier, {"gmail_id": "g-1"})
    receive(mime(), recipients=["support@example.com"])

    assert _route_and_forward(aws) is None

    assert standin.imported() == {}


def test_an_imported_email_is_indexed_by_its_gmail_id_and_message_id(
    aws: Stage, receive: Receive, standin: Gmail
) -> None:
    note = receive(mime(), recipients=["sales@example.com"])

    assert _route_and_forward(aws) is None
    index = TraceIndex.for_settings(get_settings(), boto3.client("dynamodb", region_name=REGION))
    key = f"ses:{note['mail']['messageId']}"
    story = index.story(key)
    [imported] = [s for s in story if s["stage"] == "delivered"]
    assert [s["stage"] for s in story] == ["received", "routed", "delivered"]
    assert [h.email for h in index.emails(imported["ids"]["gmail"])] == [key]
    assert [h.email for h in index.emails("M-1@Sender.Example")] == [key]
