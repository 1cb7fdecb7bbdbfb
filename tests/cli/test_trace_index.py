# ruff: noqa: F811  (fixtures shared with the pipelines' own tests are imported by name)
"""``mailroom trace`` over the identifier index the pipelines write: any id of an email, from
either source, finds its whole story, and the three answers agree with the records below."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import responses

from chalicelib.handlers import router
from chalicelib.mail.actions import GmailRequest, MailRef
from chalicelib.mail.inbound_email import EmailSource, S3Location
from chalicelib.platform.logging import hash_id
from tests.cli.conftest import Invoke, dead_letter
from tests.conftest import REGION, Stage
from tests.inbound.conftest import bridge, client, created, freescout, payload, post  # noqa: F401
from tests.ses.conftest import Receive, receive  # noqa: F401

POSTMARK_ID = "73e6d360-66eb-11e1-8e72-a8904824019b"
RFC_ID = "<CAE-first-4711@mail.example.org>"


def _without_message_id() -> bytes:
    return (
        b"From: Alice <alice@sender.example>\r\nTo: sales@example.com\r\n"
        b"Subject: no id\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nHi\r\n"
    )


def _report(mailroom: Invoke, *args: str) -> dict[str, Any]:
    result = mailroom("trace", *args, json_output=True)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def _postmark_to_freescout(aws: Stage, post: Any, payload: Any, bridge: Any, fs: Any) -> None:
    aws.put_route("support@mailroom.test", "freescout", "3")
    fs.add(**created(42))
    post(payload())
    _, _, error = bridge()
    assert error is None


def test_postmark_message_id_of_a_freescout_email_shows_its_conversation(
    aws: Stage,
    mailroom: Invoke,
    post: Any,
    payload: Any,
    bridge: Any,
    freescout: responses.RequestsMock,
) -> None:
    _postmark_to_freescout(aws, post, payload, bridge, freescout)

    report = _report(mailroom, POSTMARK_ID)

    assert report["answers"]["did we accept it"].startswith("yes (received via postmark")
    assert (
        "freescout delivered: conversation_id=42" in report["answers"]["did the provider accept it"]
    )
    assert report["conversation_id"] == "42"
    assert report["ids"]["rfc"] == [RFC_ID.lower()]
    assert _report(mailroom, "42")["ids"]["postmark"] == [POSTMARK_ID]  # by conversation id


def test_message_id_without_brackets_or_recipient_never_contradicts_its_conversation(
    aws: Stage,
    mailroom: Invoke,
    post: Any,
    payload: Any,
    bridge: Any,
    freescout: responses.RequestsMock,
) -> None:
    _postmark_to_freescout(aws, post, payload, bridge, freescout)

    for spelling in (RFC_ID, RFC_ID.strip("<>"), RFC_ID.strip("<>").upper()):
        report = _report(mailroom, spelling)

        assert report["conversation_id"] == "42"
        assert report["answers"]["did we accept it"] != "no record of it"
        assert [k["status"] for k in report["idempotency"]] == ["COMPLETED"]
        assert report["ids"]["postmark"] == [POSTMARK_ID]


def test_ses_id_of_mail_without_message_id_shows_it_received_and_routed(
    aws: Stage, mailroom: Invoke, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "gmail", "sales.team@gmail.com")
    note = receive(_without_message_id(), recipients=["sales@example.com"], message_id="")
    _, _, error = aws.run_lambda("ses-inbound", router.handle_batch)
    assert error is None
    ses_id = note["mail"]["messageId"]

    report = _report(mailroom, ses_id)

    [email] = report["emails"]
    assert email["email"] == f"ses:{ses_id}"
    assert [s["stage"] for s in email["story"]] == ["received", "routed"]
    assert email["story"][1]["details"]["rule"] == "sales@example.com"
    assert report["answers"]["did we accept it"].startswith("yes (received via ses")
    assert report["answers"]["did the provider accept it"] == "not yet: routed to gmail"


def test_an_address_lists_every_email_to_or_from_it_within_the_window(
    aws: Stage, mailroom: Invoke, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "gmail", "sales.team@gmail.com")
    note = receive(_without_message_id(), recipients=["sales@example.com"], message_id="")
    aws.run_lambda("ses-inbound", router.handle_batch)

    sent = _report(mailroom, "Sales@Example.com", "--since", "7d")
    nothing = mailroom("trace", "stranger@example.com", "--since", "7d")

    [row] = sent["emails"]
    assert (row["role"], row["email"]) == ("to", f"ses:{note['mail']['messageId']}")
    assert nothing.exit_code == 1
    assert "no mail to or from 'stranger@example.com' in the last 7 days" in nothing.output


def test_a_gmail_dead_letter_is_found_by_its_message_id_and_peek_shows_its_ids(
    aws: Stage, mailroom: Invoke
) -> None:
    request = GmailRequest(
        recipient="sales@example.com",
        mailbox="sales.team@gmail.com",
        labels=("INBOX",),
        mail=MailRef(
            source=EmailSource.SES,
            provider_message_id="ses-dead-1",
            received_at=datetime(2026, 11, 22, 10, tzinfo=UTC),
            rfc_message_id="<lost-1@sender.example>",
            location=S3Location(bucket=aws.bucket, key="raw/ses-dead-1"),
        ),
    )
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queues["gmail-forwarder"].dlq_url,
        MessageBody=request.model_dump_json(),
        MessageAttributes={
            f"mailroom_{k}": {"DataType": "String", "StringValue": v}
            for k, v in {
                "error_class": "GmailAuthRevoked",
                "reason": "invalid_grant: re-authorize",
                "disposition": "permanent",
            }.items()
        },
    )

    report = _report(mailroom, "lost-1@sender.example")
    peek = json.loads(mailroom("dlq", "peek", "gmail", json_output=True).stdout)

    [letter] = report["dead_letters"]
    assert letter["reason"] == "invalid_grant: re-authorize"
    assert report["answers"]["did the provider accept it"] == "no (dead-lettered)"
    assert peek[0]["business_ids"] == (
        "ses:ses-dead-1 rfc:<lost-1@sender.example> mailbox:sales.team@gmail.com"
    )


def test_a_drop_audited_by_message_id_hash_shows_when_traced_by_ses_id(
    aws: Stage, mailroom: Invoke, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "drop")
    message_id = f"<{uuid.uuid4().hex}@sender.example>"
    note = receive(
        b"Message-ID: " + message_id.encode() + b"\r\nFrom: a@b.example\r\n\r\nhi\r\n",
        recipients=["sales@example.com"],
        message_id=message_id,
    )
    aws.run_lambda("ses-inbound", router.handle_batch)

    report = _report(mailroom, note["mail"]["messageId"])

    assert report["ids"]["rfc"] == [message_id]
    [drop] = report["audit"]
    assert (drop["action"], drop["details"]["message_hash"]) == ("drop", hash_id(message_id))
    assert report["answers"]["did the provider accept it"] == "no: dropped (rule sales@example.com)"


def test_a_redriven_email_traces_to_its_redrive_audit_record(aws: Stage, mailroom: Invoke) -> None:
    payload = {
        "MessageID": "pm-redriven-1",
        "Headers": [{"Name": "Message-ID", "Value": "<redriven-1@sender.example>"}],
    }
    sqs_id = dead_letter(aws, payload=payload)
    assert mailroom("dlq", "redrive", "--id", sqs_id).exit_code == 0

    by_postmark = _report(mailroom, "pm-redriven-1")

    assert [a["action"] for a in by_postmark["audit"]] == ["dlq.redrive"]


def test_the_sqs_id_of_a_dead_letter_finds_its_email_ids(aws: Stage, mailroom: Invoke) -> None:
    payload = {
        "MessageID": "pm-dead-2",
        "Headers": [{"Name": "Message-ID", "Value": "<dead-2@sender.example>"}],
    }
    sqs_id = dead_letter(aws, payload=payload, reason="freescout answered 503")

    report = _report(mailroom, sqs_id)

    assert report["ids"]["postmark"] == ["pm-dead-2"]
    assert report["ids"]["rfc"] == ["<dead-2@sender.example>"]
    assert report["answers"]["did we accept it"] == "yes (dead-lettered: freescout answered 503)"
