"""The SES router: per envelope recipient, a rule, the verdict table, one message per action."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from chalicelib.handlers import dispatch, router
from chalicelib.mail.audit import AuditLog, AuditRecord
from chalicelib.mail.inbound_email import load_ses_email
from chalicelib.mail.routing import RouteRule
from chalicelib.platform.aws import reset_clients
from chalicelib.platform.settings import get_settings
from chalicelib.providers.postmark.inbound import PostmarkInbound, postmark_ref
from tests.conftest import REGION, Stage
from tests.ses.conftest import PASSING, Receive, bodies, dlq, mime, notification, sns_envelope


def _audit() -> list[AuditRecord]:
    return AuditLog.for_settings(
        get_settings(), boto3.client("dynamodb", region_name=REGION)
    ).list()


def _reason(message: dict[str, object]) -> str:
    attributes = message["MessageAttributes"]
    assert isinstance(attributes, dict)
    return str(attributes["mailroom_reason"]["StringValue"])


def test_one_email_to_three_recipients_fans_out_to_three_actions(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "gmail", "sales.team@gmail.com")
    aws.put_route("nobody@example.com", "bounce")
    aws.put_route("support@example.com", "freescout", "1")
    receive(mime(), recipients=["sales@example.com", "nobody@example.com", "support@example.com"])

    _, _, error = aws.run_lambda("ses-inbound", router.handle_batch)

    assert error is None
    [gmail] = bodies(aws, "gmail-forwarder")
    assert gmail["recipient"] == "sales@example.com"
    assert gmail["mailbox"] == "sales.team@gmail.com"
    assert gmail["labels"] == ["INBOX", "UNREAD"]
    assert gmail["mail"]["location"]["key"].startswith("raw/")
    [bounce] = bodies(aws, "bouncer")
    assert (bounce["recipient"], bounce["status"]) == ("nobody@example.com", "5.1.1")
    [bridged] = aws.drain(aws.queues["inbound-bridge"].url)
    handed = json.loads(json.loads(bridged["Body"])["Message"])
    assert handed["source"] == "ses"
    assert handed["recipient"] == "support@example.com"
    assert {"bucket", "key", "ses_message_id", "verdicts"} <= set(handed)
    email = load_ses_email(handed)  # what the bridge does with it
    assert (email.recipient, email.rfc_message_id) == (
        "support@example.com",
        "<m-1@sender.example>",
    )
    assert email.verdicts.spf == "PASS"


def test_a_bccd_envelope_recipient_is_routed_although_no_header_names_it(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("*@example.com", "gmail", "all@gmail.com;labels=INBOX,Label_7")
    receive(mime(to="someone-else@other.example"), recipients=["hidden@example.com"])

    aws.run_lambda("ses-inbound", router.handle_batch)

    [gmail] = bodies(aws, "gmail-forwarder")
    assert gmail["recipient"] == "hidden@example.com"
    assert gmail["labels"] == ["INBOX", "Label_7"]


def test_spam_for_a_gmail_route_gets_the_rules_spam_label_and_leaves_the_inbox(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "gmail", "s@gmail.com;spam_label=SPAM")
    receive(
        mime(),
        recipients=["sales@example.com"],
        verdicts={**PASSING, "spamVerdict": {"status": "FAIL"}},
    )

    aws.run_lambda("ses-inbound", router.handle_batch)

    [gmail] = bodies(aws, "gmail-forwarder")
    assert gmail["labels"] == ["UNREAD", "SPAM"]
    assert gmail["spam"] is True


def test_spam_virus_forged_and_dmarc_rejected_mail_is_not_bounced_and_is_audited(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("*", "bounce")
    cases = {
        "spam": {**PASSING, "spamVerdict": {"status": "FAIL"}},
        "virus detected": {**PASSING, "virusVerdict": {"status": "FAIL"}},
        "not bounced: sender not authenticated": {
            **PASSING,
            "spfVerdict": {"status": "FAIL"},
            "dkimVerdict": {"status": "GRAY"},
        },
        "DMARC failed and the sender's policy says reject or quarantine": {
            **PASSING,
            "dmarcVerdict": {"status": "FAIL"},
            "dmarcPolicy": "reject",
        },
    }
    for verdicts in cases.values():
        receive(mime(), recipients=["who@example.com"], verdicts=verdicts)

    aws.run_lambda("ses-inbound", router.handle_batch)

    assert bodies(aws, "bouncer") == []
    records = _audit()
    assert sorted(r.reason for r in records) == sorted(cases)
    refused = next(r for r in records if r.action == "refuse_bounce")
    assert refused.details["verdict_spf"] == "FAIL"
    assert refused.details["rule_action"] == "bounce"
    assert refused.details["message_hash"]
    assert "who@example.com" not in json.dumps([r.details for r in records])


def test_truncated_headers_and_missing_verdict_fields_route_without_error(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "gmail", "s@gmail.com")
    aws.put_route("gone@example.com", "bounce")
    receive(
        mime(),
        recipients=["sales@example.com", "gone@example.com"],
        verdicts={"spamVerdict": {"status": "PASS"}, "dkimVerdict": {}},
        headers_truncated=True,
    )

    _, _, error = aws.run_lambda("ses-inbound", router.handle_batch)

    assert error is None
    [gmail] = bodies(aws, "gmail-forwarder")
    assert gmail["mail"]["verdicts"]["spf"] == "UNKNOWN"
    assert gmail["mail"]["rfc_message_id"] is None
    assert bodies(aws, "bouncer") == []  # SPF and DKIM missing: never bounce
    assert [r.action for r in _audit()] == ["refuse_bounce"]


def test_a_missing_raw_object_dead_letters_the_notification_with_the_reason(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("*", "gmail", "s@gmail.com")
    receive(None)  # SES notified, but nothing is in S3

    aws.run_lambda("ses-inbound", router.handle_batch)

    [dead] = dlq(aws, "ses-inbound")
    assert _reason(dead) == "raw message is missing from S3"
    assert bodies(aws, "gmail-forwarder") == []


def test_a_recipient_without_a_rule_dead_letters_after_the_others_are_routed(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("sales@example.com", "gmail", "s@gmail.com")
    receive(mime(), recipients=["sales@example.com", "unknown@nowhere.example"])

    aws.run_lambda("ses-inbound", router.handle_batch)

    assert len(bodies(aws, "gmail-forwarder")) == 1
    [dead] = dlq(aws, "ses-inbound")
    assert _reason(dead) == "no routing rule for 1 of 2 envelope recipient(s)"


def test_a_notification_that_is_not_ses_is_poison_in_the_dlq(aws: Stage) -> None:
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queues["ses-inbound"].url,
        MessageBody=json.dumps({"notificationType": "Received", "receipt": {}}),
    )

    aws.run_lambda("ses-inbound", router.handle_batch)

    [dead] = dlq(aws, "ses-inbound")
    assert dead["MessageAttributes"]["mailroom_disposition"]["StringValue"] == "poison"
    assert _reason(dead).startswith("not an SES receipt notification: mail, receipt")


def test_a_router_that_keeps_failing_dead_letters_the_notification_as_exhausted(
    aws: Stage, receive: Receive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILROOM_MAX_ATTEMPTS", "2")
    reset_clients()
    receive(mime())
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=aws.routes_table)

    _, _, first = aws.run_lambda("ses-inbound", router.handle_batch)
    aws.make_visible("ses-inbound")
    aws.run_lambda("ses-inbound", router.handle_batch)

    assert first is not None  # left for SQS to redeliver the first time
    [dead] = dlq(aws, "ses-inbound")
    assert dead["MessageAttributes"]["mailroom_disposition"]["StringValue"] == "exhausted"
    assert aws.drain(aws.queues["ses-inbound"].url) == []


def test_postmark_mail_with_a_gmail_or_bounce_route_is_dispatched_by_the_same_code(
    aws: Stage,
) -> None:
    payload = json.loads(
        (Path(__file__).parents[1] / "events" / "postmark_inbound_basic.json").read_text()
    )
    payload["Headers"][0] = {"Name": "X-Spam-Status", "Value": "Yes, score=9.1"}
    mail = postmark_ref(json.dumps(payload), PostmarkInbound.model_validate(payload))
    settings = get_settings()
    audit = AuditLog.for_settings(settings, boto3.client("dynamodb", region_name=REGION))

    spam_to_gmail = dispatch.dispatch(
        mail,
        "support@mailroom.test",
        RouteRule(pattern="*", action="gmail", target="g@x.test"),
        settings,
        audit,
    )
    labelled = dispatch.dispatch(
        mail,
        "support@mailroom.test",
        RouteRule(pattern="*", action="gmail", target="g@x.test;spam_label=Label_9"),
        settings,
        audit,
    )

    assert (spam_to_gmail, labelled) == ("dropped", "gmail")
    [queued] = bodies(aws, "gmail-forwarder")
    assert queued["labels"] == ["UNREAD", "Label_9"]
    assert queued["mail"]["source"] == "postmark"
    assert [r.reason for r in _audit()] == ["spam"]


def test_mail_to_an_address_containing_the_setup_marker_is_routed_not_skipped(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("*@example.com", "gmail", "s@gmail.com")
    receive(mime(), recipients=["AMAZON_SES_SETUP_NOTIFICATION@example.com"])

    _, _, error = aws.run_lambda("ses-inbound", router.handle_batch)

    assert error is None
    [gmail] = bodies(aws, "gmail-forwarder")
    assert gmail["recipient"] == "amazon_ses_setup_notification@example.com"


def test_ses_setup_notification_is_skipped_with_an_audit_record(
    aws: Stage, receive: Receive
) -> None:
    aws.put_route("*", "gmail", "s@gmail.com")
    # What SES writes when a rule with an S3 action is saved: the marker as the SES message
    # id and as the object's name, and no mail behind it.
    note = notification(
        bucket=aws.bucket, key="raw/AMAZON_SES_SETUP_NOTIFICATION", recipients=["x@example.com"]
    )
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queues["ses-inbound"].url, MessageBody=sns_envelope(note)
    )

    _, _, error = aws.run_lambda("ses-inbound", router.handle_batch)

    assert error is None
    assert bodies(aws, "gmail-forwarder") == []
    assert dlq(aws, "ses-inbound") == []
    [record] = _audit()
    assert (record.action, record.reason) == ("ignore", "SES setup notification")


def test_a_lookalike_setup_message_id_is_not_skipped(aws: Stage, receive: Receive) -> None:
    aws.put_route("*", "gmail", "s@gmail.com")
    note = notification(
        bucket=aws.bucket,
        key="raw/AMAZON_SES_SETUP_NOTIFICATION-x",
        recipients=["x@example.com"],
    )
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queues["ses-inbound"].url, MessageBody=sns_envelope(note)
    )

    aws.run_lambda("ses-inbound", router.handle_batch)

    # Not the setup notification: treated as mail, whose raw object is missing.
    [dead] = dlq(aws, "ses-inbound")
    assert _reason(dead) == "raw message is missing from S3"
