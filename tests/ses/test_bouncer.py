"""Router → bouncer → SES stand-in (SendBounce) or the outbound path (DSN for Postmark mail)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.handlers import bouncer, router
from chalicelib.handlers.dispatch import enqueue
from chalicelib.mail.actions import BounceRequest, MailRef
from chalicelib.mail.audit import AuditLog
from chalicelib.mail.inbound_email import EmailSource
from chalicelib.mail.outbound import OutboundEmail
from chalicelib.platform.aws import aws_client, reset_clients
from chalicelib.platform.errors import ProviderError
from chalicelib.platform.settings import get_settings
from chalicelib.providers.postmark.inbound import PostmarkInbound, postmark_ref
from chalicelib.providers.ses.client import Bounce, SesBouncer
from chalicelib.providers.ses.receipt import SesNotification
from mailroom_local import ses
from tests.conftest import REGION, Stage, serve_wsgi
from tests.ses.conftest import Receive, mime

EVENTS = Path(__file__).resolve().parents[1] / "events"


class Ses:
    def __init__(self, url: str) -> None:
        self.url = url

    def received(self, message_id: str, at: datetime) -> None:
        requests.post(
            f"{self.url}/_control/received",
            json={"message_id": message_id, "received_at": at.isoformat()},
            timeout=5,
        )

    def bounces(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.url}/_control/bounces", timeout=5).json()["bounces"])


@pytest.fixture
def standin(aws: Stage, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ses]:
    for url in serve_wsgi(ses.create_app()):
        monkeypatch.setenv("MAILROOM_SES_ENDPOINT_URL", url)
        monkeypatch.setenv("MAILROOM_BOUNCE_SENDER", "mailer-daemon@example.com")
        reset_clients()
        aws.put_route("*", "bounce")
        yield Ses(url)


def _audit() -> list[str]:
    log = AuditLog.for_settings(get_settings(), boto3.client("dynamodb", region_name=REGION))
    return [r.reason for r in log.list()]


def _bounce_all(aws: Stage) -> BaseException | None:
    aws.run_lambda("ses-inbound", router.handle_batch)
    _, _, error = aws.run_lambda("bouncer", bouncer.handle_batch)
    return error


def test_authenticated_mail_to_an_unknown_address_gets_one_bounce_with_5_1_1(
    aws: Stage, receive: Receive, standin: Ses
) -> None:
    note = receive(mime(), recipients=["nobody@example.com"])
    standin.received(note["mail"]["messageId"], datetime.now(UTC))

    assert _bounce_all(aws) is None
    # The same request again (a redelivery): a duplicate, not a second bounce.
    enqueue(get_settings().bouncer_queue_name, _request_like(note))
    assert aws.run_lambda("bouncer", bouncer.handle_batch)[2] is None

    [sent] = standin.bounces()
    assert sent["OriginalMessageId"] == note["mail"]["messageId"]
    assert sent["BounceSender"] == "mailer-daemon@example.com"
    [recipient] = sent["Recipients"]
    assert recipient["Recipient"] == "nobody@example.com"
    assert recipient["RecipientDsnFields.Status"] == "5.1.1"
    assert "mailbox does not exist" in recipient["RecipientDsnFields.DiagnosticCode"]


def test_the_bouncer_reads_only_the_header_block_of_a_large_email(
    aws: Stage, receive: Receive, standin: Ses
) -> None:
    # SES truncated the headers in its notification: the Message-ID must come from S3.
    raw = mime(attachment=b"\x01" * 3_000_000)
    note = receive(raw, recipients=["nobody@example.com"], headers_truncated=True)
    standin.received(note["mail"]["messageId"], datetime.now(UTC))
    reads: list[dict[str, Any]] = []
    aws_client("s3").meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: reads.append(dict(params))
    )

    assert _bounce_all(aws) is None

    assert len(standin.bounces()) == 1
    assert reads, "the Message-ID is read from the stored message"
    assert all("Range" in r for r in reads)  # never the whole 3 MB object
    assert all(int(r["Range"].rsplit("-", 1)[1]) < 1_000_000 for r in reads)


def _request_like(note: dict[str, Any]) -> BounceRequest:
    return BounceRequest(
        recipient="nobody@example.com",
        mail=MailRef(
            source=EmailSource.SES,
            provider_message_id=note["mail"]["messageId"],
            received_at=datetime.fromisoformat(note["receipt"]["timestamp"]),
            envelope_sender=note["mail"]["source"],
            rfc_message_id=note["mail"]["commonHeaders"]["messageId"].lower(),
            verdicts=SesNotification.parse(json.dumps(note)).verdicts,
        ),
    )


def test_a_bounce_more_than_24_hours_after_receipt_is_not_sent_and_is_audited(
    aws: Stage, receive: Receive, standin: Ses
) -> None:
    old = datetime.now(UTC) - timedelta(hours=25)
    note = receive(mime(), recipients=["nobody@example.com"], received_at=old)
    standin.received(note["mail"]["messageId"], old)

    assert _bounce_all(aws) is None

    assert standin.bounces() == []
    assert _audit() == ["too old to bounce"]


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("Throttling", 400, True),
        ("ServiceUnavailable", 503, True),
        ("MessageRejected", 400, False),
    ],
)
def test_ses_throttling_is_transient_and_a_rejection_is_permanent(
    code: str, status: int, transient: bool
) -> None:
    from botocore.stub import Stubber

    client = boto3.client("ses", region_name=REGION)
    bouncer_client = SesBouncer(client, sender="mailer-daemon@example.com", interval_seconds=0)
    with Stubber(client) as stub:
        stub.add_client_error("send_bounce", code, http_status_code=status)
        with pytest.raises(ProviderError) as caught:
            bouncer_client.send(
                Bounce("ses-1", "a@example.com", "5.1.1", "gone", datetime.now(UTC))
            )
    assert caught.value.transient is transient
    assert caught.value.may_have_acted is False


def test_bounces_are_paced_to_one_per_second() -> None:
    now = [100.0]
    waits: list[float] = []
    client = boto3.client("ses", region_name=REGION)
    paced = SesBouncer(
        client,
        sender="s@example.com",
        clock=lambda: now[0],
        sleep=lambda seconds: (waits.append(seconds), now.__setitem__(0, now[0] + seconds)),
    )
    from botocore.stub import Stubber

    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("send_bounce", {"MessageId": "b"})
        for _ in range(3):
            paced.send(Bounce("ses-1", "a@example.com", "5.1.1", "gone", datetime.now(UTC)))
            now[0] += 0.25
    assert waits == [0.75, 0.75]


def _postmark_request(
    spf: str,
    *,
    return_path: str | None = "bounces@example.org",
    checked: str | None = "bounces@example.org",
    extra: dict[str, str] | None = None,
) -> BounceRequest:
    payload = json.loads((EVENTS / "postmark_inbound_basic.json").read_text())
    named = f" envelope-from={checked};" if checked else ""
    payload["Headers"].append({"Name": "Received-SPF", "Value": f"{spf} (mx.postmark){named}"})
    if return_path is not None:
        payload["Headers"].append({"Name": "Return-Path", "Value": f"<{return_path}>"})
    for name, value in (extra or {}).items():
        payload["Headers"].append({"Name": name, "Value": value})
    parsed = PostmarkInbound.model_validate(payload)
    return BounceRequest(
        recipient="gone@mailroom.test", mail=postmark_ref(json.dumps(payload), parsed)
    )


def test_a_postmark_received_message_gets_one_dsn_through_the_outbound_path(
    aws: Stage, standin: Ses
) -> None:
    request = _postmark_request("Pass")
    enqueue(get_settings().bouncer_queue_name, request)
    enqueue(get_settings().bouncer_queue_name, request)  # delivered twice

    assert aws.run_lambda("bouncer", bouncer.handle_batch)[2] is None

    [queued] = aws.drain(aws.queues["outbound-sender"].url)
    dsn = OutboundEmail.model_validate_json(json.loads(queued["Body"])["Message"])
    # The envelope sender SPF passed for, not the From header (ada.customer@example.org).
    assert dsn.to == ["bounces@example.org"]
    assert dsn.correlation_id.startswith("dsn-")
    assert [a.content_type for a in dsn.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert standin.bounces() == []


def test_a_postmark_message_without_spf_pass_is_not_bounced_and_is_audited(
    aws: Stage, standin: Ses
) -> None:
    enqueue(get_settings().bouncer_queue_name, _postmark_request("Softfail"))

    assert aws.run_lambda("bouncer", bouncer.handle_batch)[2] is None

    assert aws.drain(aws.queues["outbound-sender"].url) == []
    assert _audit() == ["not bounced: sender not authenticated"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"return_path": None, "checked": None}, "not bounced: null sender"),
        ({"return_path": "", "checked": None}, "not bounced: null sender"),
        ({"return_path": "MAILER-DAEMON@example.org"}, "not bounced: null sender"),
        ({"checked": "someone.else@example.org"}, "not bounced: SPF passed for another address"),
        (
            {"extra": {"Content-Type": "multipart/report; report-type=delivery-status"}},
            "not bounced: the message is itself a report or auto-submitted",
        ),
        (
            {"extra": {"Auto-Submitted": "auto-replied"}},
            "not bounced: the message is itself a report or auto-submitted",
        ),
    ],
)
def test_no_dsn_goes_to_the_from_header_a_null_sender_or_about_a_report(
    aws: Stage, standin: Ses, headers: dict[str, Any], reason: str
) -> None:
    enqueue(get_settings().bouncer_queue_name, _postmark_request("Pass", **headers))

    assert aws.run_lambda("bouncer", bouncer.handle_batch)[2] is None

    assert aws.drain(aws.queues["outbound-sender"].url) == []
    assert _audit() == [reason]


def test_ses_mail_from_mailer_daemon_is_never_bounced(
    aws: Stage, receive: Receive, standin: Ses
) -> None:
    note = receive(mime(), recipients=["nobody@example.com"])
    standin.received(note["mail"]["messageId"], datetime.now(UTC))
    request = _request_like(note)
    null = request.mail.model_copy(update={"envelope_sender": "MAILER-DAEMON@sender.example"})
    enqueue(get_settings().bouncer_queue_name, request.model_copy(update={"mail": null}))

    assert aws.run_lambda("bouncer", bouncer.handle_batch)[2] is None

    assert standin.bounces() == []
    assert _audit() == ["not bounced: null sender"]


def test_a_sendbounce_whose_answer_was_lost_is_never_sent_again(
    aws: Stage, receive: Receive, standin: Ses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_HTTP_TIMEOUT_SECONDS", "1")
    reset_clients()
    note = receive(mime(), recipients=["nobody@example.com"])
    standin.received(note["mail"]["messageId"], datetime.now(UTC))
    # SES takes the bounce and answers after the client has given up.
    requests.post(
        f"{standin.url}/_control/faults",
        json={"rules": [{"delay_ms": 2500, "count": 1}]},
        timeout=5,
    )

    aws.run_lambda("ses-inbound", router.handle_batch)
    _, _, first = aws.run_lambda("bouncer", bouncer.handle_batch)
    aws.make_visible("bouncer")
    _, _, _second = aws.run_lambda("bouncer", bouncer.handle_batch)

    assert first is not None  # the timeout: retried, the key left uncertain
    assert len(standin.bounces()) == 1
    [dead] = aws.drain(aws.queues["bouncer"].dlq_url)
    reason = dead["MessageAttributes"]["mailroom_reason"]["StringValue"]
    assert reason == "bounce may have been sent; not sent again"
