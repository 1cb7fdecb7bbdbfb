"""The raw MIME message SES sends, and SES's answers named as mailroom's errors (pure)."""

from __future__ import annotations

import base64
from email import message_from_bytes
from email.message import Message
from email.policy import default

from chalicelib.mail.outbound import OutboundEmail, parse_outbound
from chalicelib.mail.outbound_mime import build_mime
from chalicelib.platform.errors import is_transient, may_have_acted
from chalicelib.providers.ses.sender import (
    SesDailyQuotaExceeded,
    SesIdentityNotVerified,
    SesMessageRejected,
    SesSendingPaused,
    classify,
    correlation_from_tags,
    correlation_tags,
)


def _email(**extra: object) -> OutboundEmail:
    body = {
        "correlation_id": "order-1",
        "from": "Shop <shop@example.com>",
        "to": "ann@example.org, gone@example.org",
        "subject": "Your receipt",
        "text_body": "Thanks.",
        **extra,
    }
    import json

    return parse_outbound(json.dumps(body))


def _parsed(data: bytes) -> Message:
    return message_from_bytes(data, policy=default)


def test_bcc_travels_in_the_envelope_only_and_blocked_recipients_are_left_out() -> None:
    raw = build_mime(_email(bcc=["audit@example.com"]), {"gone@example.org"})

    message = _parsed(raw.data)
    assert message["Bcc"] is None
    assert message["To"] == "ann@example.org"
    assert raw.recipients == ["ann@example.org", "audit@example.com"]


def test_reply_to_custom_headers_attachments_and_inline_parts_survive() -> None:
    logo = base64.b64encode(b"\x89PNG-logo").decode()
    pdf = base64.b64encode(b"%PDF-1.4 receipt").decode()
    email = _email(
        html_body='<img src="cid:logo">',
        reply_to="help@example.com",
        headers={"X-Order": "42"},
        attachments=[
            {
                "name": "logo.png",
                "content": logo,
                "content_type": "image/png",
                "content_id": "cid:logo",
            },
            {"name": "receipt.pdf", "content": pdf, "content_type": "application/pdf"},
        ],
    )

    message = _parsed(build_mime(email).data)

    assert message["Reply-To"] == "help@example.com"
    assert message["X-Order"] == "42"
    parts = {p.get_filename(): p for p in message.walk() if p.get_filename()}
    assert parts["receipt.pdf"].get_payload(decode=True) == b"%PDF-1.4 receipt"
    assert parts["logo.png"]["Content-ID"] == "<logo>"
    assert parts["logo.png"].get_payload(decode=True) == b"\x89PNG-logo"


def test_ses_answers_become_named_outcomes() -> None:
    cases = {
        ("TooManyRequestsException", "Maximum sending rate exceeded.", 429): None,
        (
            "MessageRejected",
            "Email address is not verified. The following identities failed the check: a@b.c",
            400,
        ): SesIdentityNotVerified,
        ("MessageRejected", "Message contains a virus", 400): SesMessageRejected,
        ("SendingPausedException", "Sending is paused for this account", 400): SesSendingPaused,
        ("TooManyRequestsException", "Daily message quota exceeded.", 429): SesDailyQuotaExceeded,
    }
    for (code, message, status), expected in cases.items():
        err = classify(code, message, status)
        if expected is None:
            assert is_transient(err)
            assert not may_have_acted(err)
        else:
            assert type(err) is expected
            assert not is_transient(err)


def test_a_5xx_other_than_503_may_have_sent() -> None:
    assert may_have_acted(classify("InternalFailure", "boom", 500))
    assert not may_have_acted(classify("ServiceUnavailable", "later", 503))


def test_correlation_ids_survive_ses_tag_rules() -> None:
    for correlation_id in ("order-1", "shop:order.42"):
        tags = {t["Name"]: [t["Value"]] for t in correlation_tags(correlation_id)}
        assert all(c.isalnum() or c in "_-" for [v] in tags.values() for c in v)
        assert correlation_from_tags(tags) == correlation_id
