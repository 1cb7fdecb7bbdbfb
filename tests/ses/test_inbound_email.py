"""The normalised inbound email from raw MIME and from Postmark, and its delivery keys."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.mail.inbound_email import (
    EmailSource,
    InboundEmail,
    delivery_key,
    load_ses_email,
)
from chalicelib.mail.verdicts import Verdict, Verdicts
from chalicelib.platform.aws import aws_client
from chalicelib.platform.errors import PoisonMessageError, TransientError
from chalicelib.providers.postmark.inbound import (
    PostmarkInbound,
    postmark_verdicts,
    to_inbound_email,
)
from tests.conftest import REGION, Stage
from tests.ses.conftest import mime

EVENTS = Path(__file__).resolve().parents[1] / "events"


def _postmark(**overrides: object) -> PostmarkInbound:
    data = json.loads((EVENTS / "postmark_inbound_basic.json").read_text())
    data.update(overrides)
    return PostmarkInbound.model_validate(data)


def test_raw_mime_becomes_the_normalised_email_with_ids_bodies_and_attachments() -> None:
    raw = mime(message_id="<Abc@Sender.Example>", attachment=b"\x00\x01")
    raw = raw.replace(b"Subject:", b"In-Reply-To: <p-1@x>\nReferences: <p-0@x> <p-1@x>\nSubject:")

    email = InboundEmail.from_mime(
        raw,
        recipients=["Hidden@Example.com"],
        verdicts=Verdicts(spf="PASS"),
        s3_location=None,
        envelope_sender="bounces@sender.example",
        provider_message_id="ses-1",
    )

    assert email.source is EmailSource.SES
    assert email.recipient == "hidden@example.com"
    assert email.rfc_message_id == "<abc@sender.example>"
    assert email.referenced_ids == ["<p-1@x>", "<p-0@x>"]
    assert email.from_address == "alice@sender.example"
    assert email.envelope_sender == "bounces@sender.example"
    assert email.text_body.strip() == "Hi there"
    [attachment] = email.attachments
    assert (attachment.filename, attachment.content) == ("big.bin", b"\x00\x01")
    assert email.verdicts.spf is Verdict.PASS


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "unparseable MIME: empty message"),
        (b"   \r\n", "unparseable MIME: empty message"),
        (b"just some text without any header\n\nbody", "unparseable MIME: no header fields"),
    ],
)
def test_unparseable_mime_is_poison_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessageError) as caught:
        InboundEmail.from_mime(
            raw, recipients=["a@b.example"], verdicts=Verdicts(), s3_location=None
        )
    assert caught.value.reason == reason


def test_mail_without_a_from_header_is_read_and_keeps_its_envelope_sender() -> None:
    """Real mail may lack From (a forwarded enclosure, a bare notice): nothing of it is poison."""
    email = InboundEmail.from_mime(
        b"Subject: no sender\r\n\r\nbody",
        recipients=["a@b.example"],
        verdicts=Verdicts(),
        s3_location=None,
        envelope_sender="Bounces@Sender.Example",
    )
    assert (email.from_address, email.envelope_sender) == ("", "bounces@sender.example")
    assert email.text_body.strip() == "body"


def test_an_unknown_charset_keeps_the_text_instead_of_failing() -> None:
    raw = (
        b"From: a@b.example\r\nMessage-ID: <c@b>\r\n"
        b"Content-Type: text/plain; charset=x-unheard-of\r\n\r\ncaf\xe9\r\n"
    )
    email = InboundEmail.from_mime(
        raw, recipients=["x@y.example"], verdicts=Verdicts(), s3_location=None
    )
    assert "caf" in email.text_body


def test_postmark_and_ses_copies_of_one_message_share_the_delivery_key() -> None:
    from_postmark = to_inbound_email(_postmark(), "support@mailroom.test")
    from_ses = InboundEmail.from_mime(
        mime(message_id="<CAE-first-4711@mail.example.org>"),
        recipients=["support@mailroom.test"],
        verdicts=Verdicts(),
        s3_location=None,
    )

    key = delivery_key(from_postmark, "support@mailroom.test", "gmail")
    assert key == delivery_key(from_ses, "Support@Mailroom.test", "gmail")
    assert key != delivery_key(from_ses, "support@mailroom.test", "bounce")
    assert key != delivery_key(from_ses, "other@mailroom.test", "gmail")
    assert "CAE-first" not in key
    assert len(key) < 300


def test_without_a_message_id_the_key_falls_back_to_the_providers_id() -> None:
    email = to_inbound_email(_postmark(Headers=[]), "support@mailroom.test")
    assert email.rfc_message_id is None
    assert delivery_key(email, "support@mailroom.test", "gmail") != delivery_key(
        to_inbound_email(_postmark(Headers=[], MessageID="other"), "support@mailroom.test"),
        "support@mailroom.test",
        "gmail",
    )


def test_postmark_authentication_headers_give_spf_and_dkim_verdicts() -> None:
    verdicts = postmark_verdicts(
        [
            ("Received-SPF", "Pass (sender SPF authorized) identity=mailfrom"),
            ("Authentication-Results", "mx.postmarkapp.com; dkim=fail header.d=x; dmarc=none"),
        ]
    )
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == (
        Verdict.PASS,
        Verdict.FAIL,
        Verdict.UNKNOWN,
    )
    assert postmark_verdicts([]).spf is Verdict.UNKNOWN


def test_a_postmark_email_renders_as_mime_that_parses_back_the_same() -> None:
    email = to_inbound_email(_postmark(), "support@mailroom.test")
    again = InboundEmail.from_mime(
        email.to_mime(), recipients=["support@mailroom.test"], verdicts=Verdicts(), s3_location=None
    )
    assert again.rfc_message_id == email.rfc_message_id
    assert again.subject == email.subject
    assert again.html_body.strip() == email.html_body
    assert [a.content for a in again.attachments] == [a.content for a in email.attachments]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.binary(max_size=500).map(lambda b: b"From: a@b.example\r\n" + b),
        st.binary(max_size=500).map(
            lambda b: b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + b
        ),
    )
)
def test_arbitrary_bytes_parse_or_are_poison_never_another_error(raw: bytes) -> None:
    try:
        InboundEmail.from_mime(
            raw, recipients=["a@b.example"], verdicts=Verdicts(), s3_location=None
        )
    except PoisonMessageError as err:
        assert err.reason.startswith("unparseable MIME")  # noqa: PT017 - any other error fails


def _from_event(name: str, **kwargs: object) -> InboundEmail:
    return InboundEmail.from_mime(
        (EVENTS / name).read_bytes(),
        recipients=["support@example.com"],
        verdicts=Verdicts(),
        s3_location=None,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("fixture", "readable_text", "defect"),
    [
        ("mime_broken_boundary.eml", "The printer is on fire.", "MIME boundary not found"),
        ("mime_bad_base64.eml", "The printer is on fire.", "'report.pdf'"),
        ("mime_truncated.eml", "The printer is on fire.", "cut short"),
        ("mime_bad_charset.eml", "The printer is on fire", "unknown charset 'x-klingon-9'"),
    ],
)
def test_malformed_mime_keeps_what_was_readable_and_names_what_was_not(
    fixture: str, readable_text: str, defect: str
) -> None:
    email = _from_event(fixture)

    assert readable_text in email.text_body
    assert email.readable
    assert any(defect in found for found in email.defects)


def test_an_attachment_whose_base64_cannot_be_decoded_is_named_not_delivered_as_garbage() -> None:
    email = _from_event("mime_bad_base64.eml")

    assert email.attachments == ()
    assert email.defects == (
        "attachment 'report.pdf' (application/pdf): base64 could not be decoded,"
        " left out (it is in the original)",
    )


def test_a_message_cut_short_keeps_the_part_of_its_attachment_that_arrived() -> None:
    email = _from_event("mime_truncated.eml")

    [attachment] = email.attachments
    assert attachment.filename == "report.pdf"
    assert attachment.content.startswith(b"%PDF-1.4")


def test_well_formed_mime_has_no_defects() -> None:
    email = InboundEmail.from_mime(
        mime(attachment=b"\x00" * 100),
        recipients=["support@example.com"],
        verdicts=Verdicts(),
        s3_location=None,
    )

    assert email.defects == ()


def test_a_message_with_nothing_decodable_is_not_readable() -> None:
    email = _from_event("mime_unreadable.eml")

    assert not email.readable
    assert email.defects


def test_a_header_only_parse_never_reads_the_body() -> None:
    raw = mime(attachment=b"\x01" * 3_000_000)

    email = InboundEmail.from_mime(
        raw,
        recipients=["support@example.com"],
        verdicts=Verdicts(),
        s3_location=None,
        headers_only=True,
    )

    assert email.rfc_message_id == "<m-1@sender.example>"
    assert email.subject == "Hello"
    assert (email.text_body, email.attachments) == ("", ())


def test_a_postmark_email_with_an_undecodable_attachment_reaches_gmail_with_a_note() -> None:
    broken = [
        {"Name": "scan.pdf", "Content": "%%% not base64 %%%", "ContentType": "application/pdf"}
    ]
    email = to_inbound_email(_postmark(Attachments=broken), "support@mailroom.test")

    raw = email.to_mime(original=("original-postmark.json", "application/json", b"{}"))

    assert email.attachments == ()
    names = [
        part.get_filename() for part in message_from_bytes(raw, policy=default).iter_attachments()
    ]
    assert names == ["mailroom-note.txt", "original-postmark.json"]
    assert b"scan.pdf" in raw


def test_an_s3_failure_while_streaming_the_raw_message_stays_transient(aws: Stage) -> None:
    from botocore.exceptions import ClientError

    boto3.client("s3", region_name=REGION).put_object(Bucket=aws.bucket, Key="raw/m", Body=mime())

    def slow_down(**_: object) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "GetObject")

    aws_client("s3").meta.events.register("before-call.s3.GetObject", slow_down)

    with pytest.raises(TransientError):
        load_ses_email({"bucket": aws.bucket, "key": "raw/m", "recipient": "support@example.com"})
