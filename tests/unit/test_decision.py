"""The one inbound decision: rule + verdicts + sender facts → action, disposition, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.mail.actions import MailRef
from chalicelib.mail.decision import (
    NO_RULE,
    NULL_SENDER,
    OTHER_ADDRESS,
    REPORT,
    UNAUTHENTICATED,
    bounce_refusal,
    decide_inbound,
    is_automatic_report,
    is_null_sender,
)
from chalicelib.mail.inbound_email import EmailSource
from chalicelib.mail.routing import RouteRule
from chalicelib.mail.verdicts import Disposition, Verdicts
from chalicelib.providers.postmark.inbound import postmark_verdicts, sender_facts

AUTHENTICATED = Verdicts(spam="PASS", virus="PASS", spf="PASS", dkim="PASS", dmarc="PASS")


def _mail(**fields: Any) -> MailRef:
    base: dict[str, Any] = {
        "source": EmailSource.POSTMARK,
        "provider_message_id": "pm-1",
        "received_at": datetime(2026, 12, 1, tzinfo=UTC),
        "envelope_sender": "bounces@sender.example",
        "verdicts": AUTHENTICATED,
        "spf_mailfrom": "bounces@sender.example",
    }
    return MailRef.model_validate({**base, **fields})


def test_postmark_spam_to_a_freescout_route_is_dropped_with_an_audit_record() -> None:
    spam = postmark_verdicts([("X-Spam-Status", "Yes, score=7.2")])
    rule = RouteRule(pattern="support@x.test", action="freescout", target="3")

    decision = decide_inbound(_mail(verdicts=spam), "support@x.test", rule)

    assert decision.disposition is Disposition.DROP
    assert decision.audit is not None
    assert (decision.audit.action, decision.audit.reason) == ("drop", "spam")
    assert decision.audit.details["rule_action"] == "freescout"
    assert "support@x.test" not in str(decision.audit.details)


@pytest.mark.parametrize(
    ("headers", "threshold", "spam"),
    [
        ([("X-Spam-Score", "6.5")], 5.0, "FAIL"),
        ([("X-Spam-Score", "4.9")], 5.0, "PASS"),
        ([("X-Spam-Status", "No, score=3.1 required=5.0")], 3.0, "FAIL"),
        ([("X-Spam-Status", "No"), ("X-Spam-Score", "-0.1")], 5.0, "PASS"),
        ([("X-Spam-Status", "Yes")], 5.0, "FAIL"),
        ([], 5.0, "UNKNOWN"),
    ],
)
def test_postmark_spam_score_and_status_map_to_the_spam_verdict(
    headers: list[tuple[str, str]], threshold: float, spam: str
) -> None:
    assert postmark_verdicts(headers, spam_score=threshold).spam == spam


def test_a_drop_route_is_audited_and_no_rule_dead_letters_with_the_reason() -> None:
    dropped = decide_inbound(_mail(), "a@x.test", RouteRule(pattern="*", action="drop"))
    unrouted = decide_inbound(_mail(), "a@x.test", None)

    assert dropped.audit is not None
    assert dropped.audit.reason == "routing rule drops this recipient"
    assert (unrouted.dead_letter, unrouted.audit) == (NO_RULE, None)


@pytest.mark.parametrize(
    "sender", ["", "<>", "MAILER-DAEMON@mx.example", "postmaster@mx.example", "mailer-daemon"]
)
def test_a_null_sender_never_gets_a_report(sender: str) -> None:
    assert is_null_sender(sender)
    refused = bounce_refusal(_mail(envelope_sender=sender, spf_mailfrom=None))
    assert refused is not None
    assert refused[0] == NULL_SENDER


@pytest.mark.parametrize(
    "header",
    [
        ("Content-Type", 'multipart/report; report-type="delivery-status"; boundary=x'),
        ("Auto-Submitted", "auto-replied"),
        ("X-Failed-Recipients", "someone@x.test"),
    ],
)
def test_a_message_that_is_itself_a_report_never_gets_a_report(header: tuple[str, str]) -> None:
    assert is_automatic_report([header])
    refused = bounce_refusal(_mail(auto_report=True))
    assert refused is not None
    assert refused[0] == REPORT


def test_auto_submitted_no_is_ordinary_mail() -> None:
    assert not is_automatic_report([("Auto-Submitted", "no")])


def test_a_postmark_report_goes_only_where_spf_passed_for_that_exact_address() -> None:
    assert bounce_refusal(_mail()) is None
    other = bounce_refusal(_mail(spf_mailfrom="attacker@evil.example"))
    softfail = bounce_refusal(_mail(verdicts=AUTHENTICATED.model_copy(update={"spf": "FAIL"})))
    assert other is not None
    assert other[0] == OTHER_ADDRESS
    assert softfail is not None
    assert softfail[0] == UNAUTHENTICATED


def test_a_bounce_route_with_a_forged_from_and_no_return_path_is_refused_and_audited() -> None:
    headers = [("From", "victim@innocent.example"), ("Received-SPF", "Pass (mx)")]
    envelope, spf_mailfrom, report = sender_facts(headers)
    mail = _mail(envelope_sender=envelope, spf_mailfrom=spf_mailfrom, auto_report=report)

    decision = decide_inbound(mail, "gone@x.test", RouteRule(pattern="*", action="bounce"))

    assert envelope == ""
    assert decision.disposition is Disposition.REFUSE_BOUNCE
    assert decision.audit is not None
    assert decision.audit.action == "refuse_bounce"


def test_received_spf_names_the_envelope_sender_it_checked() -> None:
    headers = [
        ("Return-Path", "<Bounces@Sender.example>"),
        (
            "Received-SPF",
            "Pass (sender SPF authorized) identity=mailfrom; client-ip=1.2.3.4;"
            " envelope-from=bounces@sender.example; helo=mx.sender.example;",
        ),
    ]
    assert sender_facts(headers) == ("bounces@sender.example", "bounces@sender.example", False)


def test_gmail_requests_for_two_recipients_of_one_mailbox_share_one_key() -> None:
    from chalicelib.mail.actions import GmailRequest

    mail = _mail(rfc_message_id="<m-1@sender.example>")
    sales, info, other = (
        GmailRequest(recipient=r, mailbox=box, labels=("INBOX",), mail=mail)
        for r, box in [
            ("sales@x.test", "team@gmail.test"),
            ("info@x.test", "team@gmail.test"),
            ("info@x.test", "other@gmail.test"),
        ]
    )
    assert sales.key() == info.key() != other.key()
